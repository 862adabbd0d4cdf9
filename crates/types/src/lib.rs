//! Domain types shared by every CityBrain crate.
//!
//! This crate holds the small, dependency-free vocabulary of the hub: the two national key formats
//! with their check characters (citizen ID numbers, GB 11643-1999; unified social credit codes,
//! GB 32100-2015), the catalog's share types and update cycles, the roles a caller can hold, and
//! identifier rules for departments and tables. Everything here is pure and cheap, so the hot paths
//! (a malformed key is refused before any data is touched) can call it freely.

mod credit;
mod date;
mod ident;
mod idnum;
mod vocab;

pub use credit::{CREDIT_CHARSET, CreditCode, credit_check_char};
pub use date::{Date, days_from_civil, parse_utc_micros, rfc3339, rfc3339_micros};
pub use ident::{validate_column_name, validate_dept_code, validate_table_name};
pub use idnum::{CitizenId, id_check_char};
pub use vocab::{DataType, Library, Role, Sensitivity, ShareType, UpdateCycle};

/// Why a value of the hub's vocabulary was refused. Messages name the rule that failed and never
/// repeat the offending value, because that value may be personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A key (ID number, credit code, name) does not have the right length.
    #[error("{what} must be {expected} characters, got {got}")]
    Length {
        /// What kind of value was checked.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A character outside the allowed set.
    #[error("{what} has a character not allowed at position {position}")]
    Charset {
        /// What kind of value was checked.
        what: &'static str,
        /// 1-based position of the first bad character.
        position: usize,
    },
    /// The check character does not match the rest of the key.
    #[error("{what} has a wrong check character")]
    CheckChar {
        /// What kind of value was checked.
        what: &'static str,
    },
    /// The birth date inside an ID number is not a real date.
    #[error("citizen ID number has an impossible birth date")]
    BirthDate,
    /// A word that is not part of a vocabulary (share type, role, ...).
    #[error("unknown {what} '{got}', expected one of: {expected}")]
    Unknown {
        /// Which vocabulary.
        what: &'static str,
        /// The word that was given (vocabulary words are never personal data).
        got: String,
        /// The accepted words.
        expected: &'static str,
    },
    /// An identifier (department code, table or column name) that breaks the naming rule.
    #[error("{what} '{got}' is not valid: {rule}")]
    Identifier {
        /// Which kind of identifier.
        what: &'static str,
        /// The identifier as given.
        got: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
