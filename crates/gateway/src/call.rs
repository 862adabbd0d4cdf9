//! What a handler tells the audit record about its call.
//!
//! The serving guard puts a [`CallContext`] into every API request; handlers fill in who called,
//! which tables and columns, how many rows, and the status they answered with. The guard turns it
//! into the audit record, also when the handler never finishes (deadline, cancellation, panic).

use citybrain_audit::Outcome;
use citybrain_auth::Principal;
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Code, Request};

/// The parts of an audit record a handler knows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Draft {
    pub(crate) dept: String,
    pub(crate) subject: String,
    pub(crate) role: String,
    pub(crate) tables: Vec<String>,
    pub(crate) columns: Vec<String>,
    pub(crate) grant_id: Option<String>,
    pub(crate) purpose: String,
    pub(crate) key_hashes: Vec<String>,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) code: Option<Code>,
}

/// Shared between the guard and the handler of one call.
#[derive(Debug, Default)]
pub(crate) struct CallContext {
    draft: Mutex<Draft>,
}

impl CallContext {
    /// The context the guard attached to `req` (a detached one when called outside the guard).
    pub(crate) fn of<T>(req: &Request<T>) -> Arc<CallContext> {
        req.extensions()
            .get::<Arc<CallContext>>()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn draft(&self) -> MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the verified caller.
    pub(crate) fn principal(&self, p: &Principal) {
        let mut d = self.draft();
        d.dept = p.department.clone();
        d.subject = p.subject.clone();
        d.role = p.role.as_str().to_owned();
    }

    /// Records the tables the call touched.
    pub(crate) fn tables(&self, tables: impl IntoIterator<Item = String>) {
        self.draft().tables = tables.into_iter().collect();
    }

    /// Records the grant used and the purpose stated.
    pub(crate) fn grant(&self, grant_id: &str, purpose: &str) {
        let mut d = self.draft();
        d.grant_id = Some(grant_id.to_owned());
        d.purpose = purpose.to_owned();
    }

    /// Records the purpose stated (also when no grant could be used).
    pub(crate) fn purpose(&self, purpose: &str) {
        self.draft().purpose = purpose.to_owned();
    }

    /// Records the columns returned.
    pub(crate) fn columns(&self, columns: impl IntoIterator<Item = String>) {
        self.draft().columns = columns.into_iter().collect();
    }

    /// Records the keyed hashes of the keys asked for.
    pub(crate) fn key_hashes(&self, hashes: Vec<String>) {
        self.draft().key_hashes = hashes;
    }

    /// Records the rows returned.
    pub(crate) fn rows(&self, rows: u64) {
        self.draft().rows = rows;
    }

    /// Records the answer: its status and encoded size.
    pub(crate) fn answered(&self, code: Code, bytes: u64) {
        let mut d = self.draft();
        d.code = Some(code);
        d.bytes = bytes;
    }
}

/// The outcome a status code stands for.
pub(crate) fn outcome_of(code: Code) -> Outcome {
    match code {
        Code::Ok => Outcome::Ok,
        Code::PermissionDenied => Outcome::Denied,
        Code::Unauthenticated => Outcome::Unauthenticated,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::FailedPrecondition => Outcome::Invalid,
        Code::ResourceExhausted => Outcome::Quota,
        Code::DeadlineExceeded => Outcome::Timeout,
        Code::Cancelled => Outcome::Cancelled,
        Code::Unknown
        | Code::Aborted
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => Outcome::Error,
    }
}
