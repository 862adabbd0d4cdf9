//! Unified social credit codes (GB 32100-2015): 18 characters over a 31-character set.

use crate::{Error, Result};

/// The 31 characters of the code, in value order (no I, O, S, V, Z).
pub const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const WHAT: &str = "unified social credit code";

/// Value of one code character, `None` when it is not in the set.
fn value(c: u8) -> Option<u32> {
    // A lookup table would be faster still, but this is branch-light and allocation-free.
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'H' => Some(u32::from(c - b'A') + 10),
        b'J'..=b'N' => Some(u32::from(c - b'J') + 18),
        b'P'..=b'R' => Some(u32::from(c - b'P') + 23),
        b'T' | b'U' => Some(u32::from(c - b'T') + 26),
        b'W'..=b'Y' => Some(u32::from(c - b'W') + 28),
        _ => None,
    }
}

/// The check character for the first 17 characters of a credit code, or `None` when one of them
/// is outside the character set.
pub fn credit_check_char(body: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (c, w) in body.iter().zip(WEIGHTS) {
        sum += value(*c)? * w;
    }
    let c = (31 - sum % 31) % 31;
    Some(CREDIT_CHARSET[c as usize])
}

/// A validated 18-character unified social credit code.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct CreditCode([u8; 18]);

impl CreditCode {
    /// Validates length, character set and check character (upper case only, as issued).
    pub fn parse(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(Error::Length {
                what: WHAT,
                expected: 18,
                got: s.chars().count(),
            });
        }
        if let Some(pos) = b.iter().position(|c| value(*c).is_none()) {
            return Err(Error::Charset {
                what: WHAT,
                position: pos + 1,
            });
        }
        if credit_check_char(&b[..17]) != Some(b[17]) {
            return Err(Error::CheckChar { what: WHAT });
        }
        let mut out = [0u8; 18];
        out.copy_from_slice(b);
        Ok(Self(out))
    }

    /// Builds a code from its 17-character body, computing the check character.
    ///
    /// Returns `None` when the body is not 17 characters of the set.
    pub fn from_body(body: &str) -> Option<Self> {
        let b = body.as_bytes();
        if b.len() != 17 {
            return None;
        }
        let check = credit_check_char(b)?;
        let mut out = [0u8; 18];
        out[..17].copy_from_slice(b);
        out[17] = check;
        Some(Self(out))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only charset characters are ever stored")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_codes() {
        // Published codes of real organisations.
        assert!(CreditCode::parse("91350100M000100Y43").is_ok());
        assert!(CreditCode::parse("911100001000000000").is_err());
        assert!(matches!(
            CreditCode::parse("91350100M000100YI3"),
            Err(Error::Charset { position: 17, .. })
        ));
        assert!(matches!(
            CreditCode::parse("9135"),
            Err(Error::Length { .. })
        ));
    }

    #[test]
    fn charset_values_match_positions() {
        for (i, c) in CREDIT_CHARSET.iter().enumerate() {
            assert_eq!(value(*c), Some(i as u32));
        }
        for c in [b'I', b'O', b'S', b'V', b'Z', b'a'] {
            assert_eq!(value(c), None);
        }
    }

    proptest! {
        #[test]
        fn built_codes_validate(body in proptest::collection::vec(0usize..31, 17)) {
            let body: String = body.iter().map(|i| CREDIT_CHARSET[*i] as char).collect();
            let code = CreditCode::from_body(&body).unwrap();
            prop_assert!(CreditCode::parse(code.as_str()).is_ok());
        }

        #[test]
        fn one_changed_char_is_caught(body in proptest::collection::vec(0usize..31, 17), pos in 0usize..17, delta in 1usize..31) {
            let mut b: Vec<u8> = body.iter().map(|i| CREDIT_CHARSET[*i]).collect();
            let code = CreditCode::from_body(std::str::from_utf8(&b).unwrap()).unwrap();
            b.push(code.as_str().as_bytes()[17]);
            b[pos] = CREDIT_CHARSET[(body[pos] + delta) % 31];
            prop_assert!(CreditCode::parse(std::str::from_utf8(&b).unwrap()).is_err());
        }
    }
}
