//! Citizen ID numbers (GB 11643-1999): 6-digit address code, 8-digit birth date, 3-digit order
//! code (odd = male), one check character.

use crate::{Date, Error, Result};

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";
const WHAT: &str = "citizen ID number";

/// The check character for the first 17 digits of an ID number.
///
/// `digits` must hold 17 ASCII digits; anything else is a caller bug.
pub fn id_check_char(digits: &[u8]) -> u8 {
    debug_assert_eq!(digits.len(), 17);
    let sum: u32 = digits
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

/// A validated 18-character citizen ID number.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CitizenId([u8; 18]);

impl CitizenId {
    /// Validates length, digits, birth date and check character. A lower-case `x` is accepted and
    /// normalised to `X`. Hot path: no allocation.
    pub fn parse(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(Error::Length {
                what: WHAT,
                expected: 18,
                got: s.chars().count(),
            });
        }
        let mut out = [0u8; 18];
        for (i, &c) in b.iter().enumerate() {
            out[i] = match c {
                b'0'..=b'9' => c,
                b'x' | b'X' if i == 17 => b'X',
                _ => {
                    return Err(Error::Charset {
                        what: WHAT,
                        position: i + 1,
                    });
                }
            };
        }
        let num = |r: std::ops::Range<usize>| {
            out[r]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let (y, m, d) = (num(6..10), num(10..12), num(12..14));
        if !(1900..=2100).contains(&y) || Date::from_ymd(y as i32, m, d).is_none() {
            return Err(Error::BirthDate);
        }
        if id_check_char(&out[..17]) != out[17] {
            return Err(Error::CheckChar { what: WHAT });
        }
        Ok(Self(out))
    }

    /// Builds a valid ID number from its parts, computing the check character.
    pub fn from_parts(address_code: u32, birth: Date, order: u16) -> Self {
        let (y, m, d) = birth.ymd();
        let body = format!("{address_code:06}{y:04}{m:02}{d:02}{order:03}");
        let mut out = [0u8; 18];
        out[..17].copy_from_slice(body.as_bytes());
        out[17] = id_check_char(&out[..17]);
        Self(out)
    }

    /// The ID number as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only ASCII digits and X are ever stored")
    }

    /// The birth date encoded in the number.
    pub fn birth_date(&self) -> Date {
        let n = |r: std::ops::Range<usize>| {
            self.0[r]
                .iter()
                .fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
        };
        Date::from_ymd(n(6..10) as i32, n(10..12), n(12..14)).expect("validated on construction")
    }

    /// True when the order code is odd (male), as the standard defines.
    pub fn is_male(&self) -> bool {
        (self.0[16] - b'0') % 2 == 1
    }
}

impl std::fmt::Debug for CitizenId {
    // Never print a full ID number in logs or debug output: keep the region and the check char.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CitizenId({}…{})",
            &self.as_str()[..6],
            &self.as_str()[17..]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_valid_number() {
        // The worked example of GB 11643-1999.
        assert!(CitizenId::parse("11010519491231002X").is_ok());
        assert!(CitizenId::parse("11010519491231002x").is_ok());
        assert_eq!(
            CitizenId::parse("110105194912310021"),
            Err(Error::CheckChar { what: WHAT })
        );
    }

    #[test]
    fn rejects_shapes() {
        assert!(matches!(
            CitizenId::parse("123"),
            Err(Error::Length { got: 3, .. })
        ));
        assert!(matches!(
            CitizenId::parse("1101051949123100XX"),
            Err(Error::Charset { position: 17, .. })
        ));
        assert_eq!(
            CitizenId::parse("110105194913310020"),
            Err(Error::BirthDate)
        );
    }

    #[test]
    fn debug_hides_the_number() {
        let id = CitizenId::parse("11010519491231002X").unwrap();
        assert!(!format!("{id:?}").contains("19491231"));
    }

    proptest! {
        #[test]
        fn built_numbers_validate(code in 110000u32..660000, days in -25000i32..20000, order in 0u16..1000) {
            let birth = Date::from_days(days);
            let id = CitizenId::from_parts(code, birth, order);
            let parsed = CitizenId::parse(id.as_str()).unwrap();
            prop_assert_eq!(parsed.birth_date(), birth);
            prop_assert_eq!(parsed.is_male(), order % 2 == 1);
        }

        #[test]
        fn one_changed_digit_is_caught(code in 110000u32..660000, days in -20000i32..20000, order in 0u16..1000, pos in 0usize..17, delta in 1u8..10) {
            let id = CitizenId::from_parts(code, Date::from_days(days), order);
            let mut s = id.as_str().as_bytes().to_vec();
            s[pos] = b'0' + (s[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(s).unwrap();
            // A single changed digit either breaks the date or the check character.
            prop_assert!(CitizenId::parse(&s).is_err());
        }
    }
}
