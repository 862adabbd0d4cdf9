//! The one mapping from errors to gRPC statuses.
//!
//! Every variant is matched explicitly (no catch-all arm), so a new error cannot reach a caller
//! without someone choosing its code and message. Messages name what was wrong in the request;
//! internal details (paths, SQL, personal data) are logged for operators and never sent.

use crate::Error;
use citybrain_audit::Error as AuditError;
use citybrain_auth::Error as AuthError;
use citybrain_catalog::Error as CatalogError;
use citybrain_engine::{DataProblem, Error as EngineError};
use citybrain_governance::Error as GovError;
use citybrain_query::Error as QueryError;
use tonic::Status;

/// Converts an error into the status sent to the caller, logging at the level it deserves.
pub fn to_status(err: &Error) -> Status {
    match err {
        Error::Auth(e) => auth_status(e),
        Error::Catalog(e) => catalog_status(e),
        Error::Engine(e) => engine_status(e),
        Error::Query(e) => query_status(e),
        Error::Audit(e) => audit_status(e),
        Error::Governance(e) => governance_status(e),
        Error::Denied(reason) => Status::permission_denied(reason.clone()),
        Error::Invalid { .. } => Status::invalid_argument(err.to_string()),
        Error::Internal(detail) => internal(detail),
    }
}

/// A handler's domain result as a tonic response, noted in the call's audit record.
pub(crate) fn respond<T: prost::Message>(
    ctx: &crate::call::CallContext,
    r: crate::Result<T>,
) -> Result<tonic::Response<T>, Status> {
    match r {
        Ok(msg) => {
            ctx.answered(tonic::Code::Ok, msg.encoded_len() as u64);
            Ok(tonic::Response::new(msg))
        }
        Err(e) => {
            let status = to_status(&e);
            ctx.answered(status.code(), 0);
            Err(status)
        }
    }
}

fn internal(detail: &str) -> Status {
    tracing::error!(detail, "internal error");
    Status::internal("internal error")
}

fn auth_status(e: &AuthError) -> Status {
    match e {
        AuthError::MissingToken
        | AuthError::Malformed(_)
        | AuthError::UnknownKey
        | AuthError::WrongAlgorithm
        | AuthError::Expired
        | AuthError::NotYetValid
        | AuthError::WrongAudience
        | AuthError::WrongIssuer
        | AuthError::BadSignature
        | AuthError::MissingClaim(_) => {
            tracing::debug!(reason = %e, "unauthenticated call");
            Status::unauthenticated(e.to_string())
        }
        AuthError::KeyFile { .. } | AuthError::Signing(_) => internal(&e.to_string()),
    }
}

fn catalog_status(e: &CatalogError) -> Status {
    match e {
        CatalogError::Invalid { .. } | CatalogError::Parse { .. } | CatalogError::BadPageToken => {
            Status::invalid_argument(e.to_string())
        }
        CatalogError::TableNotFound { .. } => Status::not_found(e.to_string()),
        CatalogError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        CatalogError::Read { .. } | CatalogError::Database(_) | CatalogError::Corrupt { .. } => {
            internal(&e.to_string())
        }
    }
}

fn governance_status(e: &GovError) -> Status {
    match e {
        GovError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        GovError::NotFound { .. } => Status::not_found(e.to_string()),
        GovError::Denied(_) => Status::permission_denied(e.to_string()),
        GovError::Quota(_) => Status::resource_exhausted(e.to_string()),
        GovError::Conflict(_) => Status::failed_precondition(e.to_string()),
        GovError::Catalog(c) => catalog_status(c),
        // Evaluation errors can quote data values (a failed cast names its input): never sent.
        GovError::Database(_) | GovError::Arrow(_) | GovError::DataFusion(_) => {
            internal(&e.to_string())
        }
    }
}

fn audit_status(e: &AuditError) -> Status {
    match e {
        AuditError::Unavailable => Status::unavailable(
            "the audit log is unavailable; the hub does not answer unrecorded calls",
        ),
        AuditError::Damaged { .. } | AuditError::Io { .. } => internal(&e.to_string()),
    }
}

fn query_status(e: &QueryError) -> Status {
    match e {
        QueryError::NotAQuery(_) | QueryError::Invalid(_) => {
            Status::invalid_argument(e.to_string())
        }
        QueryError::Refused(_) => Status::permission_denied(e.to_string()),
        QueryError::Memory { .. } | QueryError::TooLarge { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        QueryError::Engine(inner) => engine_status(inner),
        QueryError::Internal(_) => internal(&e.to_string()),
    }
}

fn engine_status(e: &EngineError) -> Status {
    match e {
        EngineError::Unavailable { problem, .. } => {
            tracing::warn!(error = %e, "table data unavailable");
            let msg = e.to_string();
            match problem {
                DataProblem::Corrupt { .. } => Status::data_loss(msg),
                DataProblem::Unreadable { .. } => Status::unavailable(msg),
                DataProblem::NoFiles | DataProblem::SchemaMismatch { .. } => {
                    Status::failed_precondition(msg)
                }
            }
        }
        EngineError::NoDataset { .. } | EngineError::NoKey { .. } => {
            Status::failed_precondition(e.to_string())
        }
        EngineError::Root { .. } => internal(&e.to_string()),
        EngineError::Store(inner) => {
            tracing::warn!(error = %inner, "object store failure");
            Status::unavailable("data store unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn internal_details_stay_inside() {
        let e = Error::Catalog(CatalogError::Read {
            path: "/srv/secret/catalog".into(),
            reason: "permission denied".into(),
        });
        let s = to_status(&e);
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/srv"));
        let e = Error::Auth(AuthError::KeyFile {
            path: "/srv/keys/hub.pem".into(),
            reason: "x".into(),
        });
        assert!(!to_status(&e).message().contains("/srv"));
    }

    #[test]
    fn codes() {
        assert_eq!(
            to_status(&Error::Auth(AuthError::Expired)).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            to_status(&Error::Denied("no".into())).code(),
            Code::PermissionDenied
        );
        let e = Error::Engine(EngineError::Unavailable {
            table: "a.b".into(),
            problem: DataProblem::Corrupt { index: 1, files: 2 },
        });
        assert_eq!(to_status(&e).code(), Code::DataLoss);
        assert_eq!(
            to_status(&Error::Catalog(CatalogError::TableNotFound {
                name: "a.b".into()
            }))
            .code(),
            Code::NotFound
        );
    }
}
