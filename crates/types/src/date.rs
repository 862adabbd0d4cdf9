//! Calendar dates as days since 1970-01-01, the representation Arrow's `Date32` uses.

/// Days since the Unix epoch for a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    era * 146_097 + doe - 719_468
}

/// A calendar date.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date(i32);

impl Date {
    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i32) -> Self {
        Self(days)
    }

    /// A date from year, month and day, `None` when it does not exist.
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Self> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Self(days_from_civil(y, m, d)))
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> i32 {
        self.0
    }

    /// Year, month, day.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i32::from(m <= 2);
        (y, m, d)
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse_iso(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, '-');
        let y = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let d = it.next()?.parse().ok()?;
        if s.len() != 10 {
            return None;
        }
        Self::from_ymd(y, m, d)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-11-23T19:27:44Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i32;
    let rem = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        Date::from_days(days),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (UTC) into microseconds since the epoch.
pub fn parse_utc_micros(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let day = i64::from(Date::parse_iso(date)?.days());
    let mut us = day * 86_400_000_000;
    if let Some(t) = time {
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut it = hms.split(':');
        let h: i64 = it.next()?.parse().ok()?;
        let m: i64 = it.next()?.parse().ok()?;
        let sec: i64 = it.next()?.parse().ok()?;
        if it.next().is_some() || h > 23 || m > 59 || sec > 60 || frac.len() > 6 {
            return None;
        }
        let micros: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().ok()?
        };
        us += ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    }
    Some(us)
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn rfc3339_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400) as i32;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{frac:06}Z",
        Date::from_days(days),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_and_leap_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            Date::from_ymd(2000, 2, 29).unwrap().to_string(),
            "2000-02-29"
        );
        assert!(Date::from_ymd(1900, 2, 29).is_none());
        assert_eq!(Date::parse_iso("2024-03-01"), Date::from_ymd(2024, 3, 1));
        assert_eq!(Date::parse_iso("2024-3-01"), None);
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let us = 1_700_000_000_123_456;
        assert_eq!(rfc3339_micros(us), "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_utc_micros("2023-11-14T22:13:20.123456Z"), Some(us));
        assert_eq!(
            parse_utc_micros("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_utc_micros("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_utc_micros("2023-11-14T25:00:00Z"), None);
        assert_eq!(parse_utc_micros("yesterday"), None);
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -100_000i32..100_000) {
            let (y, m, d) = Date::from_days(days).ymd();
            prop_assert_eq!(Date::from_ymd(y, m, d).unwrap().days(), days);
        }
    }
}
