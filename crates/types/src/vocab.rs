//! The catalog's vocabulary: share types, update cycles, libraries, sensitivity and roles.
//!
//! Each word has one spelling on the wire, in manifests and in SQLite (`snake_case`), parsed by
//! `FromStr` with an error that lists the accepted words.

use crate::Error;
use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(Error::Unknown {
                        what: $what,
                        got: s.chars().take(40).collect(),
                        expected: concat!($($word, " "),+),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// How a table or a column may be shared (无条件共享 / 有条件共享 / 不予共享).
    ShareType, "share type", {
        /// Any government department may use it directly.
        Unconditional = "unconditional",
        /// The consumer applies with a purpose; the provider decides.
        Conditional = "conditional",
        /// Not shared without a legal or policy basis.
        NotShared = "not_shared",
    }
);

impl ShareType {
    /// Whether records of this share type count as shareable in the share rate.
    pub fn is_shareable(self) -> bool {
        !matches!(self, ShareType::NotShared)
    }

    /// Openness rank: higher is more open. A column may not be more open than its table.
    pub fn openness(self) -> u8 {
        match self {
            ShareType::Unconditional => 2,
            ShareType::Conditional => 1,
            ShareType::NotShared => 0,
        }
    }
}

vocabulary!(
    /// How often the provider refreshes a table.
    UpdateCycle, "update cycle", {
        /// Real time.
        RealTime = "real_time",
        /// Daily.
        Daily = "daily",
        /// Weekly.
        Weekly = "weekly",
        /// Monthly.
        Monthly = "monthly",
        /// Quarterly.
        Quarterly = "quarterly",
        /// Half-yearly.
        HalfYearly = "half_yearly",
        /// Yearly.
        Yearly = "yearly",
        /// Irregular.
        Irregular = "irregular",
    }
);

vocabulary!(
    /// The class of a table: one of the three base libraries or a department's own table.
    Library, "library", {
        /// 人口库, the population base library.
        Population = "population",
        /// 法人库, the legal-entity base library.
        Legal = "legal",
        /// 地图库, the map / spatial geography base library.
        Map = "map",
        /// A departmental table.
        Department = "department",
    }
);

vocabulary!(
    /// How sensitive the values of a column are; drives default masks and logging.
    Sensitivity, "sensitivity", {
        /// Public information.
        Public = "public",
        /// Internal to government.
        Internal = "internal",
        /// Personal information (names, addresses, phone numbers).
        Personal = "personal",
        /// Sensitive personal information (ID numbers, health, finances).
        Sensitive = "sensitive",
    }
);

vocabulary!(
    /// What a signed-in caller may do.
    Role, "role", {
        /// A department using shared data.
        Consumer = "consumer",
        /// A data steward of a providing department.
        Steward = "steward",
        /// An auditor reviewing calls.
        Auditor = "auditor",
        /// An operator of the hub.
        Admin = "admin",
    }
);

vocabulary!(
    /// The type of a column's values, as stored in Parquet.
    DataType, "data type", {
        /// UTF-8 text.
        String = "string",
        /// 64-bit signed integer.
        Int64 = "int64",
        /// 32-bit signed integer.
        Int32 = "int32",
        /// 64-bit float.
        Float64 = "float64",
        /// Boolean.
        Bool = "bool",
        /// Calendar date.
        Date = "date",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        for s in ShareType::ALL {
            assert_eq!(s.as_str().parse::<ShareType>().unwrap(), *s);
        }
        let err = "Unconditional".parse::<ShareType>().unwrap_err();
        assert!(
            err.to_string()
                .contains("unconditional conditional not_shared")
        );
        assert_eq!(
            "half_yearly".parse::<UpdateCycle>().unwrap(),
            UpdateCycle::HalfYearly
        );
        assert!("root".parse::<Role>().is_err());
    }
}
