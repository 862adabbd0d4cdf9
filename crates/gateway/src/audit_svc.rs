//! `citybrain.v1.AuditService`: the auditor's view of the log. Auditor role only.

use crate::call::CallContext;
use crate::hub::Hub;
use crate::status::respond;
use crate::{Error, Result};
use citybrain_audit::{Body, Filter, Outcome, Stored};
use citybrain_auth::Principal;
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::audit_service_server::AuditService;
use citybrain_types::{CitizenId, CreditCode, Role, parse_utc_micros, rfc3339_micros};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

const MAX_PAGE: u32 = 500;

pub(crate) struct AuditApi {
    pub(crate) hub: Arc<Hub>,
}

fn require_auditor(p: &Principal) -> Result<()> {
    if p.role == Role::Auditor {
        Ok(())
    } else {
        Err(Error::Denied(
            "reviewing the audit log requires the auditor role".into(),
        ))
    }
}

fn opt(s: String) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

fn time_bound(s: &str, field: &str) -> Result<Option<i64>> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_utc_micros(s)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"))
}

/// The wire form of a stored call record (`None` for checkpoints).
pub(crate) fn record_to(s: &Stored) -> Option<pb::CallRecord> {
    let Body::Call(e) = &s.payload.body else {
        return None;
    };
    Some(pb::CallRecord {
        seq: s.payload.seq,
        call_id: e.call_id.clone(),
        time: rfc3339_micros(e.time_us),
        department: e.dept.clone(),
        subject: e.subject.clone(),
        role: e.role.clone(),
        method: e.method.clone(),
        tables: e.tables.clone(),
        columns: e.columns.clone(),
        grant_id: e.grant_id.clone().unwrap_or_default(),
        purpose: e.purpose.clone(),
        key_hashes: e.key_hashes.clone(),
        rows: e.rows,
        bytes: e.bytes,
        outcome: e.outcome.as_str().to_owned(),
        code: e.code,
        latency_us: e.latency_us,
        hash: s.hash.clone(),
    })
}

impl AuditApi {
    async fn search(
        &self,
        req: Request<pb::SearchCallsRequest>,
        ctx: &CallContext,
    ) -> Result<pb::SearchCallsResponse> {
        require_auditor(&self.hub.principal(&req)?)?;
        let r = req.into_inner();
        if r.page_size > MAX_PAGE {
            return Err(Error::invalid("page_size", format!("at most {MAX_PAGE}")));
        }
        let key_hash = match r.key.trim() {
            "" => None,
            k => {
                // Validate before hashing, so a typo is not silently "nobody looked them up".
                if CitizenId::parse(k).is_err() && CreditCode::parse(k).is_err() {
                    return Err(Error::invalid(
                        "key",
                        "not a valid citizen ID number or credit code",
                    ));
                }
                let normal = k.to_ascii_uppercase();
                Some(self.hub.audit.hash_key(&normal))
            }
        };
        let outcome = match r.outcome.trim() {
            "" => None,
            o => Some(
                Outcome::parse(o)
                    .ok_or_else(|| Error::invalid("outcome", format!("unknown outcome '{o}'")))?,
            ),
        };
        let before = match r.page_token.as_str() {
            "" => None,
            t => Some(
                t.parse::<u64>()
                    .map_err(|_| Error::invalid("page_token", "invalid page token"))?,
            ),
        };
        let filter = Filter {
            dept: opt(r.department),
            table: opt(r.table),
            method: opt(r.method),
            outcome,
            purpose: opt(r.purpose),
            from_us: time_bound(&r.from, "from")?,
            to_us: time_bound(&r.to, "to")?,
            key_hash,
        };
        let size = if r.page_size == 0 { 50 } else { r.page_size } as usize;
        let audit = self.hub.audit.clone();
        let (page, next) = self
            .hub
            .blocking(move || audit.search(&filter, size, before))
            .await?;
        let calls: Vec<pb::CallRecord> = page.iter().filter_map(record_to).collect();
        ctx.rows(calls.len() as u64);
        Ok(pb::SearchCallsResponse {
            calls,
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        })
    }

    async fn metering(
        &self,
        req: Request<pb::GetMeteringRequest>,
        ctx: &CallContext,
    ) -> Result<pb::GetMeteringResponse> {
        require_auditor(&self.hub.principal(&req)?)?;
        let r = req.into_inner();
        for (field, day) in [("from_day", &r.from_day), ("to_day", &r.to_day)] {
            if !day.is_empty() && citybrain_types::Date::parse_iso(day).is_none() {
                return Err(Error::invalid(field, "expected YYYY-MM-DD"));
            }
        }
        let rows: Vec<pb::MeterRow> = self
            .hub
            .audit
            .metering(&r.department, &r.table, &r.from_day, &r.to_day)
            .into_iter()
            .map(|(k, u)| pb::MeterRow {
                department: k.dept,
                table: k.table,
                day: k.day,
                calls: u.calls,
                rows: u.rows,
                bytes: u.bytes,
            })
            .collect();
        let total = self.hub.audit.totals();
        ctx.rows(rows.len() as u64);
        Ok(pb::GetMeteringResponse {
            rows,
            total_calls: total.calls,
            total_rows: total.rows,
            total_bytes: total.bytes,
        })
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyLogRequest>,
        ctx: &CallContext,
    ) -> Result<pb::VerifyLogResponse> {
        require_auditor(&self.hub.principal(&req)?)?;
        let audit = self.hub.audit.clone();
        let result = self
            .hub
            .blocking(move || Ok::<_, Error>(audit.verify()))
            .await?;
        ctx.rows(1);
        Ok(match result {
            Ok(r) => pb::VerifyLogResponse {
                ok: true,
                failure: String::new(),
                segments: r.segments,
                records: r.records,
                checkpoints: r.checkpoints,
                last_seq: r.last_seq,
                unsigned_tail: r.unsigned_tail,
            },
            Err(f) => pb::VerifyLogResponse {
                ok: false,
                failure: f.to_string(),
                ..Default::default()
            },
        })
    }
}

impl AuditApi {
    async fn query(
        &self,
        req: Request<pb::QueryAuditRequest>,
        ctx: &CallContext,
    ) -> Result<pb::QueryAuditResponse> {
        require_auditor(&self.hub.principal(&req)?)?;
        let r = req.into_inner();
        if r.max_rows > crate::audit_sql::MAX_ROWS {
            return Err(Error::invalid(
                "max_rows",
                format!("at most {}", crate::audit_sql::MAX_ROWS),
            ));
        }
        let max = if r.max_rows == 0 { 1000 } else { r.max_rows };
        let out = crate::audit_sql::query(self.hub.audit.dir(), &r.sql, max).await?;
        ctx.rows(out.rows.len() as u64);
        Ok(out)
    }
}

type Tail = Pin<Box<dyn Stream<Item = Result<pb::CallRecord, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn search_calls(
        &self,
        req: Request<pb::SearchCallsRequest>,
    ) -> Result<Response<pb::SearchCallsResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.search(req, &ctx).await)
    }

    async fn get_metering(
        &self,
        req: Request<pb::GetMeteringRequest>,
    ) -> Result<Response<pb::GetMeteringResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.metering(req, &ctx).await)
    }

    async fn verify_log(
        &self,
        req: Request<pb::VerifyLogRequest>,
    ) -> Result<Response<pb::VerifyLogResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.verify(req, &ctx).await)
    }

    async fn query_sql(
        &self,
        req: Request<pb::QueryAuditRequest>,
    ) -> Result<Response<pb::QueryAuditResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.query(req, &ctx).await)
    }

    type TailCallsStream = Tail;

    async fn tail_calls(
        &self,
        req: Request<pb::TailCallsRequest>,
    ) -> Result<Response<Self::TailCallsStream>, Status> {
        let ctx = CallContext::of(&req);
        let opened = (|| {
            require_auditor(&self.hub.principal(&req)?)?;
            Ok::<_, Error>(opt(req.into_inner().department))
        })();
        let dept = match opened {
            Ok(d) => {
                ctx.answered(tonic::Code::Ok, 0);
                d
            }
            Err(e) => {
                let status = crate::to_status(&e);
                ctx.answered(status.code(), 0);
                return Err(status);
            }
        };
        let mut rx = self.hub.audit.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                match rx.recv().await {
                    Ok(s) => {
                        if let Some(rec) = record_to(&s)
                            && dept.as_ref().is_none_or(|d| &rec.department == d)
                            && tx.send(Ok(rec)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "the tail fell {n} records behind; search the log for them"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel; the task stops when the client goes away.
fn async_stream<F, Fut>(f: F) -> Tail
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::CallRecord, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
