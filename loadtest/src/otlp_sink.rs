//! A real OTLP/gRPC trace receiver for tests: the OpenTelemetry protocol's own types behind a
//! tonic server on 127.0.0.1, keeping every span it is sent (or, for the benchmark, only
//! counting them on a thread of its own).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Only count what arrives: a benchmark has no use for the spans, and keeping hundreds of
    /// thousands of them costs the receiver's process memory and copies.
    count_only: bool,
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
        if !self.count_only {
            let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
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
        Self::serve(
            listener,
            Collector::default(),
            &tokio::runtime::Handle::current(),
        )
    }

    /// Starts a receiver that only counts spans, on a runtime and thread of its own. For the
    /// benchmark: a receiver on the load generator's runtime would stall the generator while it
    /// decodes a batch, and the stall would be counted as the exporting proxy's latency.
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
        let collector = Collector {
            count_only: true,
            ..Collector::default()
        };
        let mut sink = Self::serve(listener, collector, rt.handle())?;
        sink.own = Some(OwnRuntime(Some(rt)));
        Ok(sink)
    }

    fn serve(
        listener: TcpListener,
        collector: Collector,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(collector.clone());
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
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        })
    }

    #[tokio::test]
    async fn a_counting_collector_counts_and_keeps_nothing() {
        let counting = Collector {
            count_only: true,
            ..Collector::default()
        };
        let keeping = Collector::default();
        for c in [&counting, &keeping] {
            c.export(batch(3)).await.unwrap();
            c.export(batch(2)).await.unwrap();
        }
        assert_eq!(counting.received.load(Ordering::Relaxed), 5);
        assert!(counting.spans.lock().unwrap().is_empty());
        assert_eq!(keeping.received.load(Ordering::Relaxed), 5);
        assert_eq!(keeping.spans.lock().unwrap().len(), 5);
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
