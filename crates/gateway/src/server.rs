//! Assembling and running the gRPC server.

use crate::audit_svc::AuditApi;
use crate::catalog_svc::CatalogApi;
use crate::data_svc::DataApi;
use crate::flight_svc::FlightApi;
use crate::guard::GuardLayer;
use crate::hub::Hub;
use crate::identity_svc::IdentityApi;
use crate::sharing_svc::SharingApi;
use crate::{Error, Result};
use arrow_flight::flight_service_server::FlightServiceServer;
use citybrain_proto::FILE_DESCRIPTOR_SET;
use citybrain_proto::v1::audit_service_server::AuditServiceServer;
use citybrain_proto::v1::catalog_service_server::CatalogServiceServer;
use citybrain_proto::v1::data_service_server::DataServiceServer;
use citybrain_proto::v1::identity_service_server::IdentityServiceServer;
use citybrain_proto::v1::sharing_service_server::SharingServiceServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

/// Serving limits. Every one has a default fit for one machine.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request message, bytes.
    pub max_request_bytes: usize,
    /// Largest response message, bytes.
    pub max_response_bytes: usize,
    /// Deadline of a call that does not set a shorter one.
    pub default_deadline: Duration,
    /// API calls in progress at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_calls: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 header list size, bytes.
    pub max_header_list_bytes: u32,
    /// HTTP/2 keep-alive ping interval.
    pub keepalive_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            default_deadline: Duration::from_secs(30),
            max_concurrent_calls: 512,
            max_concurrent_streams: 256,
            max_header_list_bytes: 16 * 1024,
            keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// A server that is accepting calls.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl RunningServer {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets calls in progress finish, and returns when the server is down.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .map_err(|e| Error::Internal(format!("server task failed: {e}")))?
    }
}

/// Binds `listen` and serves the hub's API, health checking and reflection until
/// [`RunningServer::shutdown`].
pub async fn serve(hub: Hub, listen: SocketAddr, limits: Limits) -> Result<RunningServer> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
    let hub = Arc::new(hub);

    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<CatalogServiceServer<CatalogApi>>()
        .await;
    health
        .set_serving::<IdentityServiceServer<IdentityApi>>()
        .await;
    health.set_serving::<AuditServiceServer<AuditApi>>().await;
    health
        .set_serving::<SharingServiceServer<SharingApi>>()
        .await;
    health.set_serving::<DataServiceServer<DataApi>>().await;
    health.set_serving::<FlightServiceServer<FlightApi>>().await;
    // grpcurl still speaks only v1alpha reflection; newer clients use v1.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let catalog = CatalogServiceServer::new(CatalogApi { hub: hub.clone() })
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let identity = IdentityServiceServer::new(IdentityApi { hub: hub.clone() })
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);

    let audit = AuditServiceServer::new(AuditApi { hub: hub.clone() })
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);

    let sharing = SharingServiceServer::new(SharingApi { hub: hub.clone() })
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let data = DataServiceServer::new(DataApi { hub: hub.clone() })
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);

    let flight = FlightServiceServer::new(FlightApi::new(hub.clone())?)
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);

    let guard = GuardLayer::new(
        limits.max_concurrent_calls,
        limits.default_deadline,
        hub.counters.clone(),
        hub.sink.clone(),
    );
    let router = Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_bytes)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_max_pending_accept_reset_streams(Some(64))
        .tcp_nodelay(true)
        .layer(guard)
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(catalog)
        .add_service(identity)
        .add_service(audit)
        .add_service(sharing)
        .add_service(data)
        .add_service(flight);

    // The builder's tcp_nodelay applies only to sockets tonic binds itself; these are ours.
    // Without it, small answers wait for the peer's delayed ACK (~40 ms on Linux).
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| Error::Internal(format!("server failed: {e}")))
    });
    tracing::info!(%addr, "hub listening");
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
    })
}
