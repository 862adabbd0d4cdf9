//! Errors of the command line.

/// What can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog refused (the message names the manifest file and field).
    #[error(transparent)]
    Catalog(#[from] citybrain_catalog::Error),
    /// Keys or tokens.
    #[error(transparent)]
    Auth(#[from] citybrain_auth::Error),
    /// The data root.
    #[error(transparent)]
    Engine(#[from] citybrain_engine::Error),
    /// Data generation.
    #[error(transparent)]
    Datagen(#[from] citybrain_datagen::Error),
    /// Serving.
    #[error(transparent)]
    Gateway(#[from] citybrain_gateway::Error),
    /// A call to a running hub failed.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Call(#[from] tonic::Status),
    /// Could not reach the hub.
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// The endpoint.
        server: String,
        /// Why.
        reason: String,
    },
    /// `audit verify` found tampering or damage.
    #[error("audit log verification FAILED: {0}")]
    Tampered(String),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Local I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
