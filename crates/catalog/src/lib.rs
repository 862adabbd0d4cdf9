//! The catalog of shared tables (the data resource catalog) and its SQLite store.
//!
//! A table is described by a [`TableManifest`]: resource code, titles, provider department,
//! library, key column, update cycle, share and open attributes, and its columns with their own
//! share type and sensitivity. Manifests come from TOML files in `catalog/` (applied idempotently
//! by [`Catalog::apply`]) or from stewards through the API; both go through the same validation,
//! and an error names the file and the field. The store is one SQLite file in the data directory.

mod manifest;
mod store;

pub use manifest::{ColumnManifest, TableManifest, load_dir, parse_all, parse_manifest};
pub use store::{ApplyReport, Catalog, CatalogCounts, ListFilter, Page, TableEntry, TableStatus};

/// What went wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest field breaks a rule. `file` is the manifest's file name, or `request` for API
    /// calls.
    #[error("{file}: field '{field}': {reason}")]
    Invalid {
        /// The manifest file or `request`.
        file: String,
        /// The field, as a path (`columns[2].share_type`).
        field: String,
        /// The rule broken.
        reason: String,
    },
    /// A manifest file is not valid TOML or has unknown or missing fields.
    #[error("{file}: {message}")]
    Parse {
        /// The manifest file.
        file: String,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// Reading a manifest file or directory failed.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// What could not be read.
        path: String,
        /// Why.
        reason: String,
    },
    /// No table of that name.
    #[error("table '{name}' not found")]
    TableNotFound {
        /// The table name asked for.
        name: String,
    },
    /// A table of that name or resource code exists already.
    #[error("{what} '{value}' is already registered")]
    AlreadyExists {
        /// `table` or `resource code`.
        what: &'static str,
        /// The conflicting name or code.
        value: String,
    },
    /// A page token that this catalog did not issue.
    #[error("invalid page token")]
    BadPageToken,
    /// The SQLite database failed.
    #[error("catalog database: {0}")]
    Database(#[from] rusqlite::Error),
    /// Stored state does not decode (the database was edited by hand or is damaged).
    #[error("catalog database holds an unreadable entry for '{name}'")]
    Corrupt {
        /// The entry concerned.
        name: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
