//! The serving guard: one tower layer around every call.
//!
//! It refuses calls beyond the global concurrency limit with RESOURCE_EXHAUSTED (and counts
//! them: shed calls never reach the handlers), applies the default deadline, and turns a panic
//! inside a handler into INTERNAL for that call while the server keeps serving.

use futures::FutureExt;
use futures::future::BoxFuture;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
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
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Builds [`Guard`] services.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    permits: Arc<Semaphore>,
    deadline: Duration,
    counters: Arc<Counters>,
}

impl GuardLayer {
    pub(crate) fn new(max_concurrent: usize, deadline: Duration, counters: Arc<Counters>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            deadline,
            counters,
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

/// Health checks and reflection must answer even when the API is saturated.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
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

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready does the work; a fresh clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let counters = self.layer.counters.clone();
        let path = req.uri().path().to_owned();
        let permit = if exempt(&path) {
            None
        } else {
            match self.layer.permits.clone().try_acquire_owned() {
                Ok(p) => {
                    Counters::bump(&counters.calls);
                    Some(p)
                }
                Err(_) => {
                    Counters::bump(&counters.shed);
                    tracing::warn!(%path, "call shed at the concurrency limit");
                    let status = Status::resource_exhausted(
                        "the hub is at its concurrency limit; retry with backoff",
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        };
        let deadline = self.layer.deadline;
        Box::pin(async move {
            let call = AssertUnwindSafe(inner.call(req)).catch_unwind();
            let res = match tokio::time::timeout(deadline, call).await {
                Ok(Ok(res)) => res,
                Ok(Err(_panic)) => {
                    Counters::bump(&counters.panics);
                    tracing::error!(%path, "handler panicked; answered INTERNAL");
                    Ok(Status::internal("internal error").into_http())
                }
                Err(_elapsed) => {
                    Counters::bump(&counters.deadline_exceeded);
                    Ok(Status::deadline_exceeded(format!(
                        "the call exceeded the hub's {} ms deadline",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
            };
            drop(permit);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn status_of(res: &http::Response<Body>) -> Code {
        res.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(Code::from)
            .unwrap_or(Code::Ok)
    }

    fn request() -> http::Request<Body> {
        http::Request::builder()
            .uri("/citybrain.v1.CatalogService/GetStats")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_panic_is_internal_and_serving_goes_on() {
        let counters = Arc::new(Counters::default());
        let svc = tower::service_fn(|req: http::Request<Body>| async move {
            if req.headers().contains_key("boom") {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut guard = GuardLayer::new(4, Duration::from_secs(5), counters.clone()).layer(svc);
        let mut bad = request();
        bad.headers_mut()
            .insert("boom", http::HeaderValue::from_static("1"));
        let res = guard.call(bad).await.unwrap();
        assert_eq!(status_of(&res), Code::Internal);
        let res = guard.call(request()).await.unwrap();
        assert_eq!(status_of(&res), Code::Ok);
        assert_eq!(counters.panics.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn excess_calls_are_shed_and_counted() {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let svc = tower::service_fn(move |_req: http::Request<Body>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        });
        let mut guard = GuardLayer::new(1, Duration::from_secs(5), counters.clone()).layer(svc);
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
    }

    #[tokio::test]
    async fn the_default_deadline_applies() {
        let counters = Arc::new(Counters::default());
        let svc = tower::service_fn(|_req: http::Request<Body>| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let mut guard = GuardLayer::new(1, Duration::from_millis(20), counters.clone()).layer(svc);
        let res = guard.call(request()).await.unwrap();
        assert_eq!(status_of(&res), Code::DeadlineExceeded);
        assert_eq!(
            status_of(&guard.call(request()).await.unwrap()),
            Code::DeadlineExceeded
        );
    }
}
