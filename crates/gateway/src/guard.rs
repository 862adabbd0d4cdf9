//! The serving guard: one tower layer around every API call.
//!
//! It refuses calls beyond the global concurrency limit with RESOURCE_EXHAUSTED (counted; shed
//! calls never reach the handlers), applies the default deadline, turns a panic inside a handler
//! into INTERNAL for that call, and writes the call's audit record before the answer leaves. The
//! record is written from here, not from the handler, so that calls whose handler never finishes
//! are recorded too: a deadline (timeout), a panic (error), or a client that went away
//! (cancelled, written when the dropped call is dropped). If the record cannot be made durable the
//! answer is replaced by UNAVAILABLE: the hub never answers unrecorded.

use crate::call::{CallContext, outcome_of};
use citybrain_audit::{AuditLog, Entry, Outcome, Underway};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// Counters of the serving guard.
#[derive(Debug, Default)]
pub struct Counters {
    /// API calls admitted (health and reflection are not counted).
    pub calls: AtomicU64,
    /// Calls refused at the concurrency limit.
    pub shed: AtomicU64,
    /// Handlers that panicked.
    pub panics: AtomicU64,
    /// Calls stopped at the default deadline.
    pub deadline_exceeded: AtomicU64,
    /// Answers replaced by UNAVAILABLE because the audit log failed.
    pub unrecorded: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the guard sends call records. The hub uses its durable [`AuditLog`]; benchmarks may
/// measure against a sink of their own.
pub trait AuditSink: Send + Sync + 'static {
    /// Whether the sink refuses records (the hub then refuses calls).
    fn is_failed(&self) -> bool;
    /// Records one call and resolves when the record is durable. The record is handed over
    /// before this returns (the call's [`Underway`] mark may be dropped then).
    fn append(&self, entry: Entry) -> BoxFuture<'static, citybrain_audit::Result<u64>>;
    /// Records one call without waiting; false when the sink refuses.
    fn submit(&self, entry: Entry) -> bool;
    /// Marks a call under way until its record is made, if the sink batches on it.
    fn underway(&self) -> Option<Underway> {
        None
    }
}

impl AuditSink for AuditLog {
    fn is_failed(&self) -> bool {
        AuditLog::is_failed(self)
    }

    fn append(&self, entry: Entry) -> BoxFuture<'static, citybrain_audit::Result<u64>> {
        AuditLog::append(self, entry).boxed()
    }

    fn submit(&self, entry: Entry) -> bool {
        AuditLog::submit(self, entry)
    }

    fn underway(&self) -> Option<Underway> {
        Some(AuditLog::underway(self))
    }
}

/// Builds [`Guard`] services.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    permits: Arc<Semaphore>,
    deadline: Duration,
    counters: Arc<Counters>,
    audit: Arc<dyn AuditSink>,
}

impl GuardLayer {
    pub(crate) fn new(
        max_concurrent: usize,
        deadline: Duration,
        counters: Arc<Counters>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            deadline,
            counters,
            audit,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

/// Health checks and reflection must answer even when the API is saturated; they carry no
/// caller and no data, and are not audited.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Calls that stream (Arrow Flight, the audit tail): they may wait on their client, as a batch
/// match reads its keys, or run far longer than an audit batch is held, so they are not
/// counted as under way for it (see [`citybrain_audit::Gather`]).
fn streams(path: &str) -> bool {
    path.starts_with("/arrow.flight.protocol.") || path == "/citybrain.v1.AuditService/TailCalls"
}

/// `/citybrain.v1.CatalogService/GetStats` → `CatalogService/GetStats`.
fn method_name(path: &str) -> String {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((svc, m)) => format!("{}/{m}", svc.rsplit('.').next().unwrap_or(svc)),
        None => p.chars().take(128).collect(),
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The client's `x-request-id` when it is a sane token, else a fresh id.
fn call_id(req: &http::Request<Body>, time_us: i64) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{time_us:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn status_header(res: &http::Response<Body>) -> Option<Code> {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from)
}

fn unrecorded() -> http::Response<Body> {
    Status::unavailable("the audit log is unavailable; the hub does not answer unrecorded calls")
        .into_http()
}

/// The audit record of a call in flight. Dropped before it is taken (the client went away and
/// tonic dropped the call), it still records the call, as cancelled.
struct Pending {
    audit: Arc<dyn AuditSink>,
    ctx: Arc<CallContext>,
    method: String,
    call_id: String,
    time_us: i64,
    start: Instant,
    armed: bool,
    /// Dropped once the record is handed to the log: the log stops expecting it.
    underway: Option<Underway>,
}

impl Pending {
    fn entry(&mut self, code: Code) -> Entry {
        self.armed = false;
        let d = self.ctx.draft().clone();
        Entry {
            call_id: std::mem::take(&mut self.call_id),
            time_us: self.time_us,
            dept: d.dept,
            subject: d.subject,
            role: d.role,
            method: std::mem::take(&mut self.method),
            tables: d.tables,
            columns: d.columns,
            grant_id: d.grant_id,
            purpose: d.purpose,
            key_hashes: d.key_hashes,
            rows: if code == Code::Ok { d.rows } else { 0 },
            bytes: if code == Code::Ok { d.bytes } else { 0 },
            outcome: outcome_of(code),
            code: code as i32,
            latency_us: self.start.elapsed().as_micros() as u64,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed {
            let entry = self.entry(Code::Cancelled);
            if !self.audit.submit(entry) {
                tracing::error!("a cancelled call could not be recorded: the audit log failed");
            }
        }
    }
}

impl<S> Service<http::Request<Body>> for Guard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready does the work; a fresh clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_owned();
        if exempt(&path) {
            return Box::pin(inner.call(req));
        }
        let layer = self.layer.clone();
        let time_us = now_us();
        let mut pending = Pending {
            audit: layer.audit.clone(),
            ctx: Arc::new(CallContext::default()),
            method: method_name(&path),
            call_id: call_id(&req, time_us),
            time_us,
            start: Instant::now(),
            armed: true,
            underway: if streams(&path) {
                None
            } else {
                layer.audit.underway()
            },
        };
        if layer.audit.is_failed() {
            pending.armed = false;
            Counters::bump(&layer.counters.unrecorded);
            return Box::pin(async { Ok(unrecorded()) });
        }
        let Ok(permit) = layer.permits.clone().try_acquire_owned() else {
            Counters::bump(&layer.counters.shed);
            tracing::warn!(%path, "call shed at the concurrency limit");
            let mut entry = pending.entry(Code::ResourceExhausted);
            entry.outcome = Outcome::Shed;
            let durable = layer.audit.append(entry);
            return Box::pin(async move {
                Ok(match durable.await {
                    Ok(_) => Status::resource_exhausted(
                        "the hub is at its concurrency limit; retry with backoff",
                    )
                    .into_http(),
                    Err(_) => unrecorded(),
                })
            });
        };
        Counters::bump(&layer.counters.calls);
        req.extensions_mut().insert(pending.ctx.clone());
        Box::pin(async move {
            let call = AssertUnwindSafe(inner.call(req)).catch_unwind();
            let (res, forced) = match tokio::time::timeout(layer.deadline, call).await {
                Ok(Ok(Ok(res))) => (res, None),
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(_panic)) => {
                    Counters::bump(&layer.counters.panics);
                    tracing::error!(%path, "handler panicked; answered INTERNAL");
                    (
                        Status::internal("internal error").into_http(),
                        Some(Code::Internal),
                    )
                }
                Err(_elapsed) => {
                    Counters::bump(&layer.counters.deadline_exceeded);
                    let msg = format!(
                        "the call exceeded the hub's {} ms deadline",
                        layer.deadline.as_millis()
                    );
                    (
                        Status::deadline_exceeded(msg).into_http(),
                        Some(Code::DeadlineExceeded),
                    )
                }
            };
            let code = forced
                .or(pending.ctx.draft().code)
                .or_else(|| status_header(&res))
                .unwrap_or(Code::Ok);
            let entry = pending.entry(code);
            let durable = layer.audit.append(entry);
            drop(pending.underway.take());
            let res = match durable.await {
                Ok(_) => res,
                Err(_) => {
                    Counters::bump(&layer.counters.unrecorded);
                    unrecorded()
                }
            };
            drop(permit);
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_audit::{AuditConfig, Filter};

    fn status_of(res: &http::Response<Body>) -> Code {
        status_header(res).unwrap_or(Code::Ok)
    }

    fn request() -> http::Request<Body> {
        http::Request::builder()
            .uri("/citybrain.v1.CatalogService/GetStats")
            .body(Body::empty())
            .unwrap()
    }

    fn audit() -> (tempfile::TempDir, AuditLog, Arc<citybrain_audit::Faults>) {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let cfg = AuditConfig::new(dir.path(), key, [1u8; 32]);
        let faults = cfg.faults.clone();
        (dir, AuditLog::open(cfg).unwrap(), faults)
    }

    fn outcomes(log: &AuditLog) -> Vec<Outcome> {
        let (page, _) = log.search(&Filter::default(), 100, None).unwrap();
        page.into_iter()
            .rev()
            .filter_map(|s| match s.payload.body {
                citybrain_audit::Body::Call(e) => Some(e.outcome),
                citybrain_audit::Body::Checkpoint(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_panic_is_internal_recorded_and_serving_goes_on() {
        let (_d, log, _) = audit();
        let counters = Arc::new(Counters::default());
        let svc = tower::service_fn(|req: http::Request<Body>| async move {
            if req.headers().contains_key("boom") {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut guard = GuardLayer::new(
            4,
            Duration::from_secs(5),
            counters.clone(),
            Arc::new(log.clone()),
        )
        .layer(svc);
        let mut bad = request();
        bad.headers_mut()
            .insert("boom", http::HeaderValue::from_static("1"));
        let res = guard.call(bad).await.unwrap();
        assert_eq!(status_of(&res), Code::Internal);
        let res = guard.call(request()).await.unwrap();
        assert_eq!(status_of(&res), Code::Ok);
        assert_eq!(counters.panics.load(Ordering::Relaxed), 1);
        assert_eq!(outcomes(&log), vec![Outcome::Error, Outcome::Ok]);
    }

    #[tokio::test]
    async fn calls_answered_in_one_message_count_as_under_way_and_streams_do_not() {
        let (_d, log, _) = audit();
        let seen = log.clone();
        // The handler answers with how many calls the log counts as under way meanwhile.
        let svc = tower::service_fn(move |_req: http::Request<Body>| {
            let n = seen.calls_under_way();
            async move {
                let mut res = http::Response::new(Body::empty());
                res.headers_mut().insert("under-way", n.into());
                Ok::<_, Infallible>(res)
            }
        });
        let mut guard = GuardLayer::new(
            4,
            Duration::from_secs(5),
            Arc::new(Counters::default()),
            Arc::new(log.clone()),
        )
        .layer(svc);
        for (path, counted) in [
            ("/citybrain.v1.DataService/Lookup", "1"),
            ("/citybrain.v1.CatalogService/GetStats", "1"),
            ("/arrow.flight.protocol.FlightService/DoExchange", "0"),
            ("/arrow.flight.protocol.FlightService/DoGet", "0"),
            ("/citybrain.v1.AuditService/TailCalls", "0"),
        ] {
            let req = http::Request::builder()
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let res = guard.call(req).await.unwrap();
            assert_eq!(res.headers()["under-way"], counted, "{path}");
        }
        assert_eq!(log.calls_under_way(), 0, "every mark is dropped");
        assert_eq!(outcomes(&log).len(), 5, "every call is recorded");
    }

    #[tokio::test]
    async fn excess_calls_are_shed_counted_and_recorded() {
        let (_d, log, _) = audit();
        let counters = Arc::new(Counters::default());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let svc = tower::service_fn(move |_req: http::Request<Body>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        });
        let mut guard = GuardLayer::new(
            1,
            Duration::from_secs(5),
            counters.clone(),
            Arc::new(log.clone()),
        )
        .layer(svc);
        let first = tokio::spawn(guard.call(request()));
        tokio::task::yield_now().await;
        let res = guard.call(request()).await.unwrap();
        assert_eq!(status_of(&res), Code::ResourceExhausted);
        assert_eq!(counters.shed.load(Ordering::Relaxed), 1);
        // Health checks still answer at the limit.
        let health = http::Request::builder()
            .uri("/grpc.health.v1.Health/Check")
            .body(Body::empty())
            .unwrap();
        let h = tokio::spawn(guard.call(health));
        tx.send(true).unwrap();
        assert_eq!(status_of(&first.await.unwrap().unwrap()), Code::Ok);
        assert_eq!(status_of(&h.await.unwrap().unwrap()), Code::Ok);
        // The permit came back.
        assert_eq!(status_of(&guard.call(request()).await.unwrap()), Code::Ok);
        assert_eq!(
            outcomes(&log),
            vec![Outcome::Shed, Outcome::Ok, Outcome::Ok]
        );
    }

    #[tokio::test]
    async fn deadlines_and_cancellations_are_recorded() {
        let (_d, log, _) = audit();
        let counters = Arc::new(Counters::default());
        let svc = tower::service_fn(|_req: http::Request<Body>| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut guard = GuardLayer::new(
            4,
            Duration::from_millis(20),
            counters.clone(),
            Arc::new(log.clone()),
        )
        .layer(svc);
        let res = guard.call(request()).await.unwrap();
        assert_eq!(status_of(&res), Code::DeadlineExceeded);
        // A client that goes away: tonic drops the call's future.
        let call = guard.call(request());
        let _ = tokio::time::timeout(Duration::from_millis(5), call).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(outcomes(&log), vec![Outcome::Timeout, Outcome::Cancelled]);
    }

    #[tokio::test]
    async fn no_answer_leaves_unrecorded() {
        let (_d, log, faults) = audit();
        let counters = Arc::new(Counters::default());
        let svc = tower::service_fn(|_req: http::Request<Body>| async move {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut guard = GuardLayer::new(
            4,
            Duration::from_secs(5),
            counters.clone(),
            Arc::new(log.clone()),
        )
        .layer(svc);
        assert_eq!(status_of(&guard.call(request()).await.unwrap()), Code::Ok);
        faults.fail_sync.store(true, Ordering::SeqCst);
        assert_eq!(
            status_of(&guard.call(request()).await.unwrap()),
            Code::Unavailable
        );
        faults.fail_sync.store(false, Ordering::SeqCst);
        assert_eq!(
            status_of(&guard.call(request()).await.unwrap()),
            Code::Unavailable
        );
        assert_eq!(counters.unrecorded.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn method_names() {
        assert_eq!(
            method_name("/citybrain.v1.CatalogService/GetStats"),
            "CatalogService/GetStats"
        );
    }
}
