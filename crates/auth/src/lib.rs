//! Sign-in for the hub: JWT bearer tokens signed with Ed25519 (EdDSA) or ES256, verified into a
//! [`Principal`].
//!
//! The hub keeps its own Ed25519 key pair in the data directory (created on first start) and can
//! trust further issuers' public keys from a configuration file. Verification never trusts the
//! token to say where its key is: the header's `kid` is looked up by exact match among configured
//! keys, the algorithm must be the key's own, and `exp`, `nbf`, `iss`, `aud` and `sub` are all
//! required and checked.

mod claims;
mod keyfile;
mod keys;
mod token;

pub use claims::{AUDIENCE, Claims};
pub use keyfile::{ed25519_key, secret};
pub use keys::{LocalIssuer, TrustedKey, load_trusted_keys};
pub use token::{Authenticator, Principal};

/// Why sign-in failed or a key could not be loaded. The token variants map to UNAUTHENTICATED.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `authorization: Bearer …` header.
    #[error("missing bearer token")]
    MissingToken,
    /// Not a JWT, or a claim of the wrong shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The `kid` names no configured key.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The header algorithm is not the algorithm of the named key.
    #[error("token algorithm does not match its key")]
    WrongAlgorithm,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` is not this hub.
    #[error("token is for another audience")]
    WrongAudience,
    /// `iss` is not the issuer the key belongs to.
    #[error("token issuer does not match its key")]
    WrongIssuer,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// A required claim is absent.
    #[error("token lacks the required claim '{0}'")]
    MissingClaim(String),
    /// A key file could not be read, written or parsed.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file concerned (operator-facing; never sent to callers).
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Signing a token failed.
    #[error("could not sign token: {0}")]
    Signing(String),
}

impl Error {
    /// True for errors about a presented token (as opposed to the hub's own key files).
    pub fn is_token_error(&self) -> bool {
        !matches!(self, Error::KeyFile { .. } | Error::Signing(_))
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
