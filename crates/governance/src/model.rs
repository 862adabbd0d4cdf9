//! Applications, grants and their vocabulary.

use crate::Mask;
use serde::{Deserialize, Serialize};

/// What a grant opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Yes/no answers about claimed values only.
    Verify,
    /// Rows (masked, filtered).
    Read,
    /// Only groups of at least the minimum size.
    Aggregate,
}

impl Mode {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Verify => "verify",
            Mode::Read => "read",
            Mode::Aggregate => "aggregate",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify" => Some(Mode::Verify),
            "read" => Some(Mode::Read),
            "aggregate" => Some(Mode::Aggregate),
            _ => None,
        }
    }
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Waiting for the provider's steward.
    Pending,
    /// Granted (possibly narrowed).
    Approved,
    /// Refused, with a reason.
    Rejected,
}

impl AppStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Pending => "pending",
            AppStatus::Approved => "approved",
            AppStatus::Rejected => "rejected",
        }
    }
}

/// What a consumer department asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The table.
    pub table: String,
    /// Columns wanted.
    pub columns: Vec<String>,
    /// Why (the calls must state the same purpose).
    pub purpose: String,
    /// The business system that will use the data.
    pub business_system: String,
    /// The service matter it supports.
    pub service_matter: String,
    /// Period wanted, days.
    pub days: u32,
    /// Verify, read or aggregate.
    pub mode: Mode,
}

/// An application on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Id.
    pub id: String,
    /// The request.
    pub request: ApplyRequest,
    /// Applying department.
    pub consumer_dept: String,
    /// Applying person.
    pub subject: String,
    /// Where it stands.
    pub status: AppStatus,
    /// Rejection reason or approval note.
    pub reason: String,
    /// Steward who decided.
    pub decided_by: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// The grant made, if approved.
    pub grant_id: Option<String>,
}

/// One granted column and its mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantColumn {
    /// Column name.
    pub name: String,
    /// Mask, if any.
    #[serde(default)]
    pub mask: Option<Mask>,
}

/// The terms of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantTerms {
    /// Columns, in output order.
    pub columns: Vec<GrantColumn>,
    /// SQL predicate over the table's columns; rows failing it do not exist for the consumer.
    #[serde(default)]
    pub row_filter: Option<String>,
    /// Purpose calls must state.
    pub purpose: String,
    /// Verify, read or aggregate.
    pub mode: Mode,
    /// Calls per day (0 = unlimited).
    #[serde(default)]
    pub max_calls_per_day: u64,
    /// Rows per day (0 = unlimited).
    #[serde(default)]
    pub max_rows_per_day: u64,
    /// Aggregate grants: smallest group returned.
    #[serde(default)]
    pub min_group_size: u64,
}

/// A grant on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Id.
    pub id: String,
    /// The application it answers.
    pub application_id: String,
    /// The table.
    pub table: String,
    /// The consumer department.
    pub consumer_dept: String,
    /// What is granted.
    pub terms: GrantTerms,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// When revoked.
    pub revoked_at: Option<u64>,
    /// Why revoked.
    pub revoke_reason: String,
}

/// A steward's decision on a pending application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Approve or reject.
    pub approve: bool,
    /// Reason (required to reject).
    pub reason: String,
    /// Narrow the columns (empty: as applied).
    pub columns: Vec<String>,
    /// Masks per column.
    pub masks: Vec<(String, Mask)>,
    /// Row filter.
    pub row_filter: Option<String>,
    /// Validity in days (0: as applied).
    pub days: u32,
    /// Calls per day (0 = unlimited).
    pub max_calls_per_day: u64,
    /// Rows per day (0 = unlimited).
    pub max_rows_per_day: u64,
    /// Aggregate grants: smallest group (0: default 10).
    pub min_group_size: u64,
}
