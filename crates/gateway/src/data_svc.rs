//! `citybrain.v1.DataService`: governed lookups and verification by key.
//!
//! Both go through the same steps: validate the key before touching data, find the caller's
//! usable grant for the table and stated purpose, check its daily quota, read the rows by key,
//! then apply the compiled policy (row filter on raw values, then granted columns, masked).

use crate::call::CallContext;
use crate::convert::rows_to_wire;
use crate::hub::Hub;
use crate::status::respond;
use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use citybrain_audit::day_of;
use citybrain_catalog::TableManifest;
use citybrain_governance::{Grant, Mode, Policy};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::data_service_server::DataService;
use citybrain_types::{CitizenId, CreditCode, Role, validate_table_name};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(crate) struct DataApi {
    pub(crate) hub: Arc<Hub>,
}

/// Validates a key for a table's key column and returns its normal form. Hot path: no data is
/// touched for a malformed key.
pub(crate) fn check_key(m: &TableManifest, key: &str) -> Result<String> {
    let col = m
        .key_column
        .as_deref()
        .ok_or_else(|| Error::invalid("table", format!("table '{}' has no key column", m.name)))?;
    let bad = |e: citybrain_types::Error| Error::invalid("key", e.to_string());
    Ok(match col {
        "id_number" | "holder_id" => CitizenId::parse(key).map_err(bad)?.as_str().to_owned(),
        "credit_code" => CreditCode::parse(key).map_err(bad)?.as_str().to_owned(),
        "address_id" => {
            if key.len() != 17 || !key.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid("key", "an address id is 17 digits"));
            }
            key.to_owned()
        }
        _ => {
            if key.is_empty() || key.len() > 64 || key.chars().any(char::is_control) {
                return Err(Error::invalid("key", "1 to 64 printable characters"));
            }
            key.to_owned()
        }
    })
}

/// Text of one value for the wire: dates as YYYY-MM-DD.
fn texts(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(a, &DataType::Utf8).map_err(citybrain_governance::Error::from)?)
}

impl DataApi {
    /// Steps shared by both methods, up to the policy and the raw rows.
    async fn prepare(
        &self,
        p: &citybrain_auth::Principal,
        table: &str,
        key: &str,
        purpose: &str,
        ctx: &CallContext,
    ) -> Result<(Arc<Policy>, Vec<RecordBatch>)> {
        if p.role != Role::Consumer {
            return Err(Error::Denied("data calls require the consumer role".into()));
        }
        validate_table_name(table).map_err(|e| Error::invalid("table", e.to_string()))?;
        ctx.tables([table.to_owned()]);
        ctx.purpose(purpose);
        // The key is judged before the grant, so a malformed key is INVALID_ARGUMENT whatever
        // the caller holds.
        let (manifest, grant) = self
            .hub
            .table_and_grant(&p.department, table, purpose)
            .await?;
        let key = check_key(&manifest, key)?;
        ctx.key_hashes(vec![self.hub.audit.hash_key(&key)]);
        let grant = grant?;
        ctx.grant(&grant.id, purpose);
        check_quota(&self.hub, &grant)?;
        let policy = self.hub.policy(grant, &manifest)?;
        let rows = self
            .hub
            .engine
            .lookup_reading(&manifest, &[key], policy.columns_read())
            .await?;
        // Rebuild on the policy's schema (same columns and types, catalog order).
        let rows = rows
            .into_iter()
            .map(|b| RecordBatch::try_new(policy.table_schema().clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(citybrain_governance::Error::from)?;
        Ok((policy, rows))
    }
}

/// Daily quotas, counted from the audit log's meters.
pub(crate) fn check_quota(hub: &Hub, g: &Grant) -> Result<()> {
    let t = &g.terms;
    if t.max_calls_per_day == 0 && t.max_rows_per_day == 0 {
        return Ok(());
    }
    let today = day_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
    );
    let u = hub.audit.grant_usage(&g.id, &today);
    let used = (u.calls, u.rows);
    if t.max_calls_per_day > 0 && used.0 >= t.max_calls_per_day {
        return Err(citybrain_governance::Error::Quota(format!(
            "grant '{}' allows {} calls a day; today's are used",
            g.id, t.max_calls_per_day
        ))
        .into());
    }
    if t.max_rows_per_day > 0 && used.1 >= t.max_rows_per_day {
        return Err(citybrain_governance::Error::Quota(format!(
            "grant '{}' allows {} rows a day; today's are used",
            g.id, t.max_rows_per_day
        ))
        .into());
    }
    Ok(())
}

impl DataApi {
    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
        ctx: &CallContext,
    ) -> Result<pb::LookupResponse> {
        let p = self.hub.principal(&req)?;
        let r = req.into_inner();
        let (policy, raw) = self.prepare(&p, &r.table, &r.key, &r.purpose, ctx).await?;
        if policy.mode() != Mode::Read {
            return Err(Error::Denied(format!(
                "grant '{}' is a {} grant; Lookup needs a read grant",
                policy.grant.id,
                policy.mode().as_str()
            )));
        }
        let columns: Vec<String> = policy
            .output_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut rows = Vec::new();
        for b in &raw {
            rows_to_wire(&policy.apply(b)?, &mut rows)?;
        }
        ctx.columns(columns.clone());
        ctx.rows(rows.len() as u64);
        Ok(pb::LookupResponse {
            rows,
            columns,
            grant_id: policy.grant.id.clone(),
        })
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
        ctx: &CallContext,
    ) -> Result<pb::VerifyResponse> {
        let p = self.hub.principal(&req)?;
        let r = req.into_inner();
        if r.claims.is_empty() {
            return Err(Error::invalid("claims", "claim at least one value"));
        }
        let (policy, raw) = self.prepare(&p, &r.table, &r.key, &r.purpose, ctx).await?;
        if policy.mode() == Mode::Aggregate {
            return Err(Error::Denied(format!(
                "grant '{}' is an aggregate grant; Verify needs a verify or read grant",
                policy.grant.id
            )));
        }
        let granted: Vec<&str> = policy
            .grant
            .terms
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        for c in &r.claims {
            if !granted.contains(&c.column.as_str()) {
                return Err(Error::Denied(format!(
                    "column '{}' is not granted by '{}'",
                    c.column, policy.grant.id
                )));
            }
        }
        // Only rows the row filter lets through exist; values compared raw, never returned.
        let visible = raw
            .iter()
            .map(|b| policy.filter(b))
            .collect::<Result<Vec<_>, _>>()?;
        let key_found = visible.iter().any(|b| b.num_rows() > 0);
        let mut results = Vec::new();
        for c in &r.claims {
            let mut hit = false;
            for b in &visible {
                let col = b
                    .column_by_name(&c.column)
                    .ok_or_else(|| Error::Internal(format!("column {} vanished", c.column)))?;
                let s = texts(col)?;
                let s = s.as_string::<i32>();
                hit |= (0..s.len()).any(|i| s.is_valid(i) && s.value(i) == c.value.trim());
            }
            results.push(pb::ClaimResult {
                column: c.column.clone(),
                r#match: if key_found && hit {
                    pb::Match::Yes
                } else {
                    pb::Match::No
                }
                .into(),
            });
        }
        ctx.rows(0);
        Ok(pb::VerifyResponse {
            key_found,
            results,
            grant_id: policy.grant.id.clone(),
        })
    }
}

#[tonic::async_trait]
impl DataService for DataApi {
    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, DataApi::lookup(self, req, &ctx).await)
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, DataApi::verify(self, req, &ctx).await)
    }
}
