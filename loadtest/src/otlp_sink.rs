//! A real OTLP/gRPC trace receiver for tests: the OpenTelemetry protocol's own types behind a
//! tonic server on 127.0.0.1, keeping every span it is sent; or, for the benchmark, a receiver
//! on a thread of its own that reads each request only as far as counting its spans.
//!
//! The benchmark's receiver stands in for a collector, which in a deployment runs elsewhere.
//! Here it shares the measured machine's cores with the proxy, the load generator and
//! mock-llm, so whatever it spends is taken from them: decoding a batch of 512 spans into the
//! protocol's types (some 30 attributes a span, each a key and a value allocated apart) took
//! a core for milliseconds at a time and showed in the proxy's p99. Counting spans walks the
//! same bytes, over the same gRPC connection, without building them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::{Body, BoxFuture, Service, StdError};

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    received: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let n: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// `ExportTraceServiceRequest` read only as far as its spans: the same field numbers, with
/// each span left as its encoded bytes and every other field skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<CountedResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountedResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<CountedScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountedScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<bytes::Bytes>,
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The trace service, answering `Export` by counting the spans (what tonic's generated
/// server does, with [`CountedRequest`] for the request type).
#[derive(Clone)]
struct CountingServer(Arc<AtomicU64>);

impl tonic::server::NamedService for CountingServer {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for CountingServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let count = Count(Arc::clone(&self.0));
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                return Ok(tonic::Status::unimplemented(req.uri().path().to_owned()).into_http());
            }
            let codec =
                tonic_prost::ProstCodec::<ExportTraceServiceResponse, CountedRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(count, req).await)
        })
    }
}

struct Count(Arc<AtomicU64>);

impl tonic::server::UnaryService<CountedRequest> for Count {
    type Response = ExportTraceServiceResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<CountedRequest>) -> Self::Future {
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        std::future::ready(Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        })))
    }
}

/// A running receiver; dropping it stops the server.
pub struct OtlpSink {
    addr: SocketAddr,
    collector: Collector,
    _stop: oneshot::Sender<()>,
    /// The receiver's own runtime, when it has one ([`Self::start_counting`]).
    own: Option<OwnRuntime>,
}

/// Shut down without waiting: the sink may be dropped inside the caller's runtime, where a
/// runtime's ordinary drop (which blocks) would panic.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl OtlpSink {
    /// Starts on 127.0.0.1 with a port the OS picks, keeping every span. Needs a tokio runtime
    /// and runs on it.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        Self::serve(
            listener,
            service,
            collector,
            &tokio::runtime::Handle::current(),
        )
    }

    /// Starts a receiver that only counts spans, on a runtime and thread of its own. For the
    /// benchmark: a receiver on the load generator's runtime would stall the generator while it
    /// reads a batch, and the stall would be counted as the exporting proxy's latency.
    pub fn start_counting() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-sink")
            .enable_all()
            .build()?;
        let listener = {
            let _entered = rt.enter();
            let std = std::net::TcpListener::bind("127.0.0.1:0")?;
            std.set_nonblocking(true)?;
            TcpListener::from_std(std)?
        };
        let collector = Collector::default();
        let service = CountingServer(Arc::clone(&collector.received));
        let mut sink = Self::serve(listener, service, collector, rt.handle())?;
        sink.own = Some(OwnRuntime(Some(rt)));
        Ok(sink)
    }

    fn serve<S>(
        listener: TcpListener,
        service: S,
        collector: Collector,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Self>
    where
        S: Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        rt.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            collector,
            _stop: stop,
            own: None,
        })
    }

    /// `http://127.0.0.1:PORT`, for an OTLP/gRPC exporter's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans arrived so far.
    pub fn received(&self) -> u64 {
        self.collector.received.load(Ordering::Relaxed)
    }

    /// Every span received so far (none when only counting).
    pub fn spans(&self) -> Vec<Span> {
        self.collector
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn batch(n: usize) -> tonic::Request<ExportTraceServiceRequest> {
        let spans = (0..n)
            .map(|i| Span {
                name: format!("span {i}"),
                ..Span::default()
            })
            .collect();
        tonic::Request::new(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    // Fields the counting sink skips.
                    schema_url: "https://opentelemetry.io/schemas/1.37.0".to_owned(),
                    ..ScopeSpans::default()
                }],
                schema_url: "https://opentelemetry.io/schemas/1.37.0".to_owned(),
                ..ResourceSpans::default()
            }],
        })
    }

    async fn send(sink: &OtlpSink, sizes: &[usize]) {
        let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
        for &n in sizes {
            client.export(batch(n)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_keeping_sink_keeps_every_span_it_is_sent() {
        let sink = OtlpSink::start().await.unwrap();
        send(&sink, &[3, 2]).await;
        assert_eq!(sink.received(), 5);
        let names: Vec<String> = sink.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["span 0", "span 1", "span 2", "span 0", "span 1"]);
    }

    #[tokio::test]
    async fn a_counting_sink_counts_over_grpc_and_keeps_nothing() {
        let sink = OtlpSink::start_counting().unwrap();
        send(&sink, &[3, 2, 0, 512]).await;
        assert_eq!(sink.received(), 517);
        assert!(sink.spans().is_empty());
    }

    #[tokio::test]
    async fn a_sink_on_its_own_thread_serves_and_drops_inside_a_runtime() {
        let sink = OtlpSink::start_counting().unwrap();
        let addr = sink.endpoint().trim_start_matches("http://").to_owned();
        tokio::net::TcpStream::connect(&addr).await.unwrap();
        // Dropped here, inside the test's runtime: must not panic or block.
        drop(sink);
    }
}
