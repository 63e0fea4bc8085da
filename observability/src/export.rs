//! OTLP span export off the request path.
//!
//! [`SpanSink::offer`] runs on the request path and never blocks: it takes the sampling
//! decision, builds the spans (redacting captured content first) and hands them to a bounded
//! queue; when the queue is full the spans are dropped and counted. A background thread
//! ([`SpanPipeline`]) with its own small tokio runtime batches them (up to `batch_size`, or
//! whatever has waited `export_interval`) and calls the OTLP exporter (`opentelemetry-otlp`'s
//! `SpanExporter`, gRPC via tonic or HTTP/protobuf via hyper) directly. The SDK's
//! `BatchSpanProcessor` is not used: it cannot count drops for us and wants the tracer API.
//!
//! The queue is bounded in spans (`queue_size`), counted with an atomic reservation that is
//! released only when a batch has been exported (or has failed), so a stalled or absent
//! collector costs at most `queue_size` spans of memory.
//!
//! Export errors increment `failed` by the batch size and log a warning at most every
//! [`WARN_EVERY`], with the number of failures in between. Warnings name the error, never
//! span content. Standard `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
//! add headers (e.g. a collector's auth token) without putting them in the policy file.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prometheus_client::metrics::counter::Counter;
use sluice_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use tokio::sync::mpsc;

use crate::record::{CapturedContent, RequestRecord};
use crate::redact::Redactor;
use crate::sampler::{Flags, TailSampler};
use crate::semconv as sc;
use crate::spans::build_spans;

/// At most one export-failure warning this often.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Span counters, registered by the caller (the metrics file owns their names).
#[derive(Clone, Debug, Default)]
pub struct ExportCounters {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped because the queue was full (or the pipeline had stopped).
    pub dropped: Counter,
    /// Spans in batches the exporter failed to deliver.
    pub failed: Counter,
}

/// Why the pipeline could not start.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

enum Msg {
    Spans(Vec<SpanData>),
    /// Export what is queued, then stop.
    Shutdown,
}

struct SinkInner {
    tx: mpsc::UnboundedSender<Msg>,
    /// Spans offered and not yet taken by the worker.
    queued: Arc<AtomicUsize>,
    queue_size: usize,
    sampler: TailSampler,
    /// `Some` when `capture_content` is on.
    redactor: Option<Redactor>,
    max_content_bytes: usize,
    counters: ExportCounters,
}

/// Where the gateway hands finished requests. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct SpanSink {
    inner: Option<Arc<SinkInner>>,
}

impl fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanSink")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl SpanSink {
    /// A sink that keeps nothing (no `otlp` configured).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether spans go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Offers a finished request. Never blocks. Returns whether its spans were queued for
    /// export: `false` when sampling dropped them, the queue was full (`dropped` counts
    /// them), or export is off.
    ///
    /// With `capture_content` on, the record's content is redacted and truncated here, after
    /// the sampling decision (so unsampled requests cost nothing) and before anything is
    /// queued; with it off, content is never put on a span even if the record has some.
    pub fn offer(&self, r: &RequestRecord, route_slow: Option<Duration>, flags: Flags) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let Some(reason) = inner.sampler.keep(r, route_slow, flags) else {
            return false;
        };
        let content = match (&inner.redactor, &r.content) {
            (Some(redactor), Some(c)) => Some(CapturedContent {
                input: redactor.redact_json(&c.input, inner.max_content_bytes),
                output: redactor.redact_json(&c.output, inner.max_content_bytes),
            }),
            _ => None,
        };
        let mut spans = build_spans(r, content.as_ref());
        if let Some(server) = spans.first_mut() {
            server
                .attributes
                .push(KeyValue::new(sc::SLUICE_SAMPLED_BY, reason.as_str()));
        }
        let n = spans.len();
        let before = inner.queued.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > inner.queue_size {
            inner.queued.fetch_sub(n, Ordering::AcqRel);
            inner.counters.dropped.inc_by(n as u64);
            return false;
        }
        if inner.tx.send(Msg::Spans(spans)).is_err() {
            inner.queued.fetch_sub(n, Ordering::AcqRel);
            inner.counters.dropped.inc_by(n as u64);
            return false;
        }
        true
    }
}

/// The export thread and the sink that feeds it.
pub struct SpanPipeline {
    sink: SpanSink,
    worker: Option<Worker>,
}

struct Worker {
    tx: mpsc::UnboundedSender<Msg>,
    done: std::sync::mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl fmt::Debug for SpanPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanPipeline")
            .field("enabled", &self.worker.is_some())
            .finish()
    }
}

impl SpanPipeline {
    /// Starts the export thread; with no `otlp` configured, returns a pipeline whose sink
    /// keeps nothing. Fails when the exporter cannot be built (a bad endpoint, a bad custom
    /// redaction regex) or the thread cannot start.
    pub fn start(cfg: &TelemetryConfig, counters: ExportCounters) -> Result<SpanPipeline, Error> {
        let Some(otlp) = cfg.otlp.clone() else {
            return Ok(SpanPipeline {
                sink: SpanSink::disabled(),
                worker: None,
            });
        };
        let redactor = if cfg.capture_content {
            Some(Redactor::new(&cfg.redact).map_err(Error)?)
        } else {
            None
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker_queued = Arc::clone(&queued);
        let worker_counters = counters.clone();
        let worker_otlp = otlp.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-otlp".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("OTLP export runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let exporter = match build_exporter(&worker_otlp) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    run(exporter, rx, worker_queued, &worker_otlp, worker_counters).await;
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| Error(format!("cannot start the OTLP export thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error(
                    "the OTLP export thread stopped while starting".into(),
                ));
            }
        }
        let sink = SpanSink {
            inner: Some(Arc::new(SinkInner {
                tx: tx.clone(),
                queued,
                queue_size: otlp.queue_size,
                sampler: TailSampler::new(&cfg.sample),
                redactor,
                max_content_bytes: cfg.max_content_bytes,
                counters,
            })),
        };
        Ok(SpanPipeline {
            sink,
            worker: Some(Worker {
                tx,
                done: done_rx,
                thread,
            }),
        })
    }

    /// A handle for the request path.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Exports what is queued (waiting at most `timeout`), then stops the thread. Spans
    /// offered afterwards are dropped and counted.
    pub fn shutdown(self, timeout: Duration) {
        let Some(worker) = self.worker else { return };
        let _ = worker.tx.send(Msg::Shutdown);
        match worker.done.recv_timeout(timeout) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.thread.join();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    target: "sluice::otlp",
                    timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    "OTLP export did not finish in time; queued spans are lost"
                );
            }
        }
    }
}

fn build_exporter(otlp: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match otlp.protocol {
        OtlpProtocol::Grpc => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(otlp.endpoint.clone())
                .with_timeout(otlp.timeout);
            if otlp.endpoint.starts_with("https://") {
                b = b.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(otlp.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(otlp.timeout)
            .build(),
    };
    let mut exporter = built.map_err(|e| format!("OTLP exporter: {e}"))?;
    exporter.set_resource(&resource());
    Ok(exporter)
}

/// `service.name = sluice`, `service.version`.
pub fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("sluice")
        .with_attribute(KeyValue::new(
            sc::SERVICE_VERSION,
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

struct Exporter {
    inner: opentelemetry_otlp::SpanExporter,
    /// The sink's reservation: released when a batch is done with, so `queue_size` bounds
    /// the channel, the batch being filled and the one in flight together.
    queued: Arc<AtomicUsize>,
    timeout: Duration,
    counters: ExportCounters,
    last_warn: Option<Instant>,
    failed_since_warn: u64,
}

impl Exporter {
    async fn export(&mut self, batch: Vec<SpanData>) {
        let len = batch.len();
        let n = len as u64;
        // The exporter has its own timeout; this one guards against one that hangs anyway.
        let result = tokio::time::timeout(self.timeout * 2, self.inner.export(batch)).await;
        self.queued.fetch_sub(len, Ordering::AcqRel);
        let err = match result {
            Ok(Ok(())) => {
                self.counters.exported.inc_by(n);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.counters.failed.inc_by(n);
        self.failed_since_warn += n;
        let due = self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                target: "sluice::otlp",
                spans = self.failed_since_warn,
                error = %err,
                "OTLP span export failed (spans counted in the failed counter; next warning in 30s at the earliest)"
            );
            self.last_warn = Some(Instant::now());
            self.failed_since_warn = 0;
        }
    }
}

async fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicUsize>,
    otlp: &OtlpConfig,
    counters: ExportCounters,
) {
    let mut exporter = Exporter {
        inner: exporter,
        queued,
        timeout: otlp.timeout,
        counters,
        last_warn: None,
        failed_since_warn: 0,
    };
    let batch_size = otlp.batch_size.max(1);
    let mut buf: Vec<SpanData> = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(otlp.export_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Spans(spans)) => {
                    buf.extend(spans);
                    while buf.len() >= batch_size {
                        let rest = buf.split_off(batch_size);
                        let batch = std::mem::replace(&mut buf, rest);
                        exporter.export(batch).await;
                    }
                }
                Some(Msg::Shutdown) | None => {
                    // Refuse new spans (offer counts them as dropped), then export what
                    // was offered before.
                    rx.close();
                    while let Ok(msg) = rx.try_recv() {
                        if let Msg::Spans(spans) = msg {
                            buf.extend(spans);
                        }
                    }
                    while !buf.is_empty() {
                        let rest = buf.split_off(batch_size.min(buf.len()));
                        let batch = std::mem::replace(&mut buf, rest);
                        exporter.export(batch).await;
                    }
                    let _ = exporter.inner.shutdown();
                    return;
                }
            },
            _ = tick.tick() => {
                if !buf.is_empty() {
                    let rest = buf.split_off(batch_size.min(buf.len()));
                    let batch = std::mem::replace(&mut buf, rest);
                    exporter.export(batch).await;
                }
            }
        }
    }
}
