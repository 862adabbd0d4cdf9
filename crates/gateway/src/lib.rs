//! The hub's front door: gRPC services over the domain crates.
//!
//! The gateway turns wire requests into domain calls and domain errors into gRPC statuses. It
//! owns sign-in (every call presents a bearer token, verified into a `Principal`), the
//! authorisation rules of each method, and the serving limits: message sizes, a default deadline,
//! a global concurrency limit whose excess is refused with RESOURCE_EXHAUSTED and counted, HTTP/2
//! stream and header limits, and a guard that turns a panicking handler into INTERNAL for that
//! call only. Health checking and server reflection are served beside the API.
//!
//! The domain crates never see prost types: conversion lives in `convert`, and the one mapping
//! from errors to statuses lives in `status`.

mod audit_sql;
mod audit_svc;
mod call;
mod catalog_svc;
mod convert;
mod data_svc;
mod flight_svc;
mod guard;
mod hub;
mod identity_svc;
mod server;
mod sharing_svc;
mod status;

/// Limits of governed SQL.
pub use citybrain_query::Limits as SqlLimits;
pub use flight_svc::{MAX_MATCH_KEYS, PURPOSE_HEADER, PURPOSE_HEADER_BIN};
pub use guard::{AuditSink, Counters};
pub use hub::Hub;
pub use server::{Limits, RunningServer, serve};
pub use status::to_status;

/// Wire value of a share type.
pub use convert::share_type_to as share_type_to_wire;
/// Wire form of a manifest, for clients that register tables from manifest files.
pub use convert::spec_to as spec_to_wire;

/// Errors of the gateway: the domain crates' errors plus the gateway's own refusals.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Sign-in failed, or the hub's key files are broken.
    #[error(transparent)]
    Auth(#[from] citybrain_auth::Error),
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] citybrain_catalog::Error),
    /// The audit log failed or could not be read.
    #[error(transparent)]
    Audit(#[from] citybrain_audit::Error),
    /// Sharing governance refused or failed.
    #[error(transparent)]
    Governance(#[from] citybrain_governance::Error),
    /// A table's data could not be read.
    #[error(transparent)]
    Engine(#[from] citybrain_engine::Error),
    /// Governed SQL refused or failed.
    #[error(transparent)]
    Query(#[from] citybrain_query::Error),
    /// The caller is signed in but may not do this.
    #[error("{0}")]
    Denied(String),
    /// A request field is malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field, as a path (`spec.columns[1].data_type`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Serving infrastructure failed (binding, a blocking task).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
