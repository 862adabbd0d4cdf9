//! Metering: calls, rows and bytes per department, table and day, derived from the same records
//! the log holds (rebuilt at start from the live segment's records and each sealed segment's
//! authenticated summary, then updated as records become durable).

use crate::record::Entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Usage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Calls.
    pub calls: u64,
    /// Rows returned.
    pub rows: u64,
    /// Bytes returned.
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, e: &Entry) {
        self.calls += 1;
        self.rows += e.rows;
        self.bytes += e.bytes;
    }

    fn absorb(&mut self, o: Usage) {
        self.calls += o.calls;
        self.rows += o.rows;
        self.bytes += o.bytes;
    }
}

/// One metering row: department, table (`""` for calls that touch none) and UTC day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MeterKey {
    /// Department code.
    pub dept: String,
    /// Table name.
    pub table: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Meter {
    rows: BTreeMap<MeterKey, Usage>,
    /// Answered calls per grant and day: what grant quotas are checked against.
    grants: std::collections::HashMap<(String, String), Usage>,
    total: Usage,
}

/// `YYYY-MM-DD` of a time in microseconds since the epoch.
pub fn day_of(time_us: i64) -> String {
    let days = time_us.div_euclid(86_400_000_000) as i32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i32::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A meter written out (a sealed segment's share, kept in its summary).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    rows: Vec<(MeterKey, Usage)>,
    grants: Vec<(String, String, Usage)>,
    total: Usage,
}

impl Meter {
    /// The counters as they stand.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut grants: Vec<(String, String, Usage)> = self
            .grants
            .iter()
            .map(|((g, d), u)| (g.clone(), d.clone(), *u))
            .collect();
        // In a stable order, so that a segment's summary is always written the same.
        grants.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Snapshot {
            rows: self.rows.iter().map(|(k, u)| (k.clone(), *u)).collect(),
            grants,
            total: self.total,
        }
    }

    /// Adds counters kept elsewhere (another segment's share).
    pub(crate) fn merge(&mut self, s: Snapshot) {
        self.total.absorb(s.total);
        for (k, u) in s.rows {
            self.rows.entry(k).or_default().absorb(u);
        }
        for (g, d, u) in s.grants {
            self.grants.entry((g, d)).or_default().absorb(u);
        }
    }

    /// Counts one call, once per table it touched.
    pub fn add(&mut self, e: &Entry) {
        self.total.add(e);
        let day = day_of(e.time_us);
        if let (Some(g), crate::Outcome::Ok) = (&e.grant_id, e.outcome) {
            // A SQL call over several granted tables names each grant, comma-separated; it
            // counts against every one of them.
            for g in g.split(',') {
                self.grants
                    .entry((g.to_owned(), day.clone()))
                    .or_default()
                    .add(e);
            }
        }
        let tables: &[String] = if e.tables.is_empty() {
            std::slice::from_ref(&EMPTY)
        } else {
            &e.tables
        };
        for t in tables {
            self.rows
                .entry(MeterKey {
                    dept: e.dept.clone(),
                    table: t.clone(),
                    day: day.clone(),
                })
                .or_default()
                .add(e);
        }
    }

    /// Answered calls made under a grant on a day.
    pub fn grant_usage(&self, grant_id: &str, day: &str) -> Usage {
        self.grants
            .get(&(grant_id.to_owned(), day.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// All calls ever recorded.
    pub fn total(&self) -> Usage {
        self.total
    }

    /// Rows matching the filters (empty filter strings match anything), days in `[from, to]`.
    pub fn rows(
        &self,
        dept: &str,
        table: &str,
        from_day: &str,
        to_day: &str,
    ) -> Vec<(MeterKey, Usage)> {
        self.rows
            .iter()
            .filter(|(k, _)| {
                (dept.is_empty() || k.dept == dept)
                    && (table.is_empty() || k.table == table)
                    && (from_day.is_empty() || k.day.as_str() >= from_day)
                    && (to_day.is_empty() || k.day.as_str() <= to_day)
            })
            .map(|(k, u)| (k.clone(), *u))
            .collect()
    }

    /// Departments that have called at least once with a table (consumers of data).
    pub fn departments_using_tables(&self) -> usize {
        let mut depts: Vec<&str> = self
            .rows
            .keys()
            .filter(|k| !k.table.is_empty() && !k.dept.is_empty())
            .map(|k| k.dept.as_str())
            .collect();
        depts.dedup();
        depts.len()
    }
}

static EMPTY: String = String::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_700_000_000_000_000), "2023-11-14");
        assert_eq!(day_of(-1), "1969-12-31");
    }

    #[test]
    fn a_call_under_several_grants_counts_against_each() {
        let mut m = Meter::default();
        m.add(&Entry {
            call_id: "c1".into(),
            time_us: 1_700_000_000_000_000,
            dept: "civil-affairs".into(),
            subject: "u".into(),
            role: "consumer".into(),
            method: "FlightSqlService/DoGet".into(),
            tables: vec!["legal.entities".into(), "population.residents".into()],
            columns: vec![],
            grant_id: Some("g-000001,g-000002".into()),
            purpose: "p".into(),
            key_hashes: vec![],
            rows: 7,
            bytes: 100,
            outcome: crate::Outcome::Ok,
            code: 0,
            latency_us: 1,
        });
        for g in ["g-000001", "g-000002"] {
            let u = m.grant_usage(g, "2023-11-14");
            assert_eq!((u.calls, u.rows), (1, 7), "{g}");
        }
    }
}
