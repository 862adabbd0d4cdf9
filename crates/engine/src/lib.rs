//! The hub's data engine: datasets on an object store and what their Parquet files hold.
//!
//! The data root is an object_store URL (a local directory by default, `s3://…` when scaled),
//! and each catalog table with data names a dataset path under it. The engine lists a dataset's
//! files, reads each file's Parquet footer once (cached by path, size and modification time) and
//! checks the file's schema against the catalog's columns. A missing, corrupt or mismatched file
//! makes that one table unavailable with an error that names the table and the problem, never a
//! path on the server; every other table keeps working.

mod dataset;
mod keyindex;
mod local;
mod lookup;
mod page;
mod point;
mod root;

pub use dataset::{DataInfo, Engine};
pub use root::DataRoot;

/// What is wrong with a table's data, as a caller may be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataProblem {
    /// The dataset holds no Parquet files.
    #[error("it has no data files")]
    NoFiles,
    /// A file is not valid Parquet (truncated, overwritten, ...).
    #[error("data file {index} of {files} is corrupt")]
    Corrupt {
        /// 1-based file number in name order.
        index: usize,
        /// Files in the dataset.
        files: usize,
    },
    /// A file disappeared or could not be read.
    #[error("data file {index} of {files} cannot be read")]
    Unreadable {
        /// 1-based file number in name order.
        index: usize,
        /// Files in the dataset.
        files: usize,
    },
    /// A file's columns do not match the catalog.
    #[error("data file {index} does not match the catalog: {detail}")]
    SchemaMismatch {
        /// 1-based file number in name order.
        index: usize,
        /// Which column and how.
        detail: String,
    },
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The table's data cannot be used right now.
    #[error("data of table '{table}' is unavailable: {problem}")]
    Unavailable {
        /// The table.
        table: String,
        /// What is wrong.
        problem: DataProblem,
    },
    /// The table has no key column, so it cannot be looked up by key.
    #[error("table '{table}' has no key column")]
    NoKey {
        /// The table.
        table: String,
    },
    /// The table has no dataset in the hub.
    #[error("table '{table}' holds no data in this hub")]
    NoDataset {
        /// The table.
        table: String,
    },
    /// The data root URL is not usable.
    #[error("data root '{url}': {reason}")]
    Root {
        /// The URL as configured.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// Listing the object store failed (the store itself, not one table's file).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
