//! Sharing governance: a consumer department applies for a table, the table's and columns' share
//! types decide what happens, a steward of the providing department approves (narrowing columns,
//! setting masks, a row filter, quotas, an expiry) or rejects, and grants can be revoked or
//! expire. Deny by default: without an active grant for the table and the stated purpose there is
//! no data.
//!
//! A grant compiles into one [`Policy`] that every data path applies the same way: the row filter
//! on raw values first, then only the granted columns, masked.

mod mask;
mod model;
mod policy;
mod store;

pub use mask::{Mask, mask_array, mask_text};
pub use model::{
    AppStatus, Application, ApplyRequest, Decision, Grant, GrantColumn, GrantTerms, Mode,
};
pub use policy::{Policy, compares_without_failing, compile_filter, table_schema};
pub use store::Governance;

/// Why a governance request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No such application or grant.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// `application` or `grant`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The caller may not do this, or has no usable grant. The reason names grants, tables and
    /// purposes, never data.
    #[error("{0}")]
    Denied(String),
    /// Over a daily quota.
    #[error("{0}")]
    Quota(String),
    /// The application or grant is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The catalog failed or has no such table.
    #[error(transparent)]
    Catalog(#[from] citybrain_catalog::Error),
    /// The governance database failed.
    #[error("governance database: {0}")]
    Database(#[from] rusqlite::Error),
    /// Applying a policy to data failed.
    #[error("policy evaluation: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Evaluating a row filter failed.
    #[error("policy evaluation: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
