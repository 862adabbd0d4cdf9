//! Column masks: what a grant lets a consumer see of a value.

use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;

/// How a column's values are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mask {
    /// Keep the first `first` and last `last` characters; the rest become `*`.
    Keep {
        /// Characters kept at the start.
        first: u32,
        /// Characters kept at the end.
        last: u32,
    },
    /// Keep the first character only (names: 张**).
    FirstChar,
    /// Dates: the year only.
    Year,
    /// A keyed hash, stable within one grant (so the consumer can match its own records) but
    /// different across grants (so two consumers cannot join on it).
    Hash,
    /// Nothing: null.
    Null,
}

impl Mask {
    /// Parses the wire spelling (`keep`, `first_char`, `year`, `hash`, `null`).
    pub fn from_parts(kind: &str, first: u32, last: u32) -> Result<Self> {
        Ok(match kind {
            "keep" => Mask::Keep { first, last },
            "first_char" => Mask::FirstChar,
            "year" => Mask::Year,
            "hash" => Mask::Hash,
            "null" => Mask::Null,
            other => {
                return Err(Error::Invalid {
                    field: "masks.kind".into(),
                    reason: format!(
                        "unknown mask '{other}'; expected keep, first_char, year, hash or null"
                    ),
                });
            }
        })
    }

    /// The type of masked values for an input type.
    pub fn output_type(&self, input: &DataType) -> DataType {
        match self {
            Mask::Null => input.clone(),
            Mask::Keep { .. } | Mask::FirstChar | Mask::Year | Mask::Hash => DataType::Utf8,
        }
    }

    /// Whether the mask can apply to a column of this type.
    pub fn check_type(&self, column: &str, input: &DataType) -> Result<()> {
        let ok = match self {
            Mask::Year => matches!(input, DataType::Date32 | DataType::Date64 | DataType::Utf8),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid {
                field: "masks".into(),
                reason: format!("mask 'year' needs a date column; '{column}' is {input}"),
            })
        }
    }
}

/// Masks one text value. Pure and allocation-light: used per value on every data path.
pub fn mask_text(mask: &Mask, s: &str, hash_key: &[u8]) -> Option<String> {
    Some(match mask {
        Mask::Keep { first, last } => {
            let n = s.chars().count();
            let (first, last) = (*first as usize, *last as usize);
            if first + last >= n {
                // Keeping everything would reveal the value: hide it all instead.
                "*".repeat(n)
            } else {
                let mut out = String::with_capacity(s.len());
                for (i, c) in s.chars().enumerate() {
                    out.push(if i < first || i >= n - last { c } else { '*' });
                }
                out
            }
        }
        Mask::FirstChar => {
            let mut chars = s.chars();
            match chars.next() {
                Some(c) => std::iter::once(c).chain(chars.map(|_| '*')).collect(),
                None => String::new(),
            }
        }
        Mask::Year => s.get(..4)?.to_owned(),
        Mask::Hash => {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(hash_key).expect("HMAC takes any key length");
            mac.update(s.as_bytes());
            mac.finalize()
                .into_bytes()
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        Mask::Null => return None,
    })
}

/// Masks a column.
pub fn mask_array(mask: &Mask, array: &ArrayRef, hash_key: &[u8]) -> Result<ArrayRef> {
    if *mask == Mask::Null {
        return Ok(new_null_array(array.data_type(), array.len()));
    }
    let text = cast(array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let out: StringArray = text
        .iter()
        .map(|v| v.and_then(|s| mask_text(mask, s, hash_key)))
        .collect();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Date32Array;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let k = b"k";
        let keep = Mask::Keep { first: 6, last: 4 };
        assert_eq!(
            mask_text(&keep, "11010519491231002X", k).unwrap(),
            "110105********002X"
        );
        assert_eq!(mask_text(&Mask::FirstChar, "欧阳娜娜", k).unwrap(), "欧***");
        assert_eq!(mask_text(&Mask::Year, "1949-12-31", k).unwrap(), "1949");
        assert_eq!(mask_text(&keep, "short", k).unwrap(), "*****");
        assert_ne!(
            mask_text(&Mask::Hash, "a", b"g1"),
            mask_text(&Mask::Hash, "a", b"g2")
        );
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(0), None]));
        let y = mask_array(&Mask::Year, &dates, k).unwrap();
        assert_eq!(y.as_string::<i32>().value(0), "1970");
        assert!(y.is_null(1));
    }

    proptest! {
        #[test]
        fn keep_reveals_only_the_ends(s in "\\\\PC{0,30}", first in 0u32..8, last in 0u32..8) {
            let m = mask_text(&Mask::Keep { first, last }, &s, b"k").unwrap();
            let chars: Vec<char> = s.chars().collect();
            let out: Vec<char> = m.chars().collect();
            prop_assert_eq!(out.len(), chars.len());
            let n = chars.len();
            let reveal = (first + last) as usize;
            for i in 0..n {
                if reveal >= n || (i >= first as usize && i < n - last as usize) {
                    prop_assert_eq!(out[i], '*');
                } else {
                    prop_assert_eq!(out[i], chars[i]);
                }
            }
        }

        #[test]
        fn first_char_hides_the_rest(s in "\\\\PC{1,12}") {
            let m = mask_text(&Mask::FirstChar, &s, b"k").unwrap();
            prop_assert_eq!(m.chars().next(), s.chars().next());
            prop_assert!(m.chars().skip(1).all(|c| c == '*'));
        }
    }
}
