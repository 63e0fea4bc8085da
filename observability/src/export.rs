//! OTLP export off the request path, to several destinations at once.
//!
//! Every destination (`telemetry.otlp` is the one named `otlp`, then each of
//! `telemetry.destinations`) has its own exporters (spans, and logs when its `signals` say
//! so), its own bounded queue and its own worker task. [`SpanSink::offer_with`] never
//! blocks: it takes the tail-sampling decision once, builds the spans once (redacting
//! captured content first), and hands a copy to each destination whose sampling and filter
//! admit the request; a destination whose queue is full drops them and counts the drop on its
//! own counter (`sluice_otlp_export_total{destination, signal, result="dropped"}`). A slow or
//! dead destination fills only its own queue: the others and the request path never wait on
//! it. The gateway calls the sink from its recorder, off the request path.
//!
//! The workers batch (up to `batch_size`, or whatever has waited `export_interval`). A batch
//! of spans is written as an OTLP request by [`crate::otlp`] and sent by its client (gRPC via
//! tonic or HTTP/protobuf via hyper); logs go through `opentelemetry-otlp`'s exporters. The
//! SDK's batch processors are not used: they cannot count drops for us.
//!
//! Each queue is bounded in items (`queue_size`), counted with an atomic reservation that is
//! released only when a batch has been exported (or has failed), so a stalled collector costs
//! at most `queue_size` items of memory per destination.
//!
//! Destinations follow the policy: the recorder calls [`SpanSink::follow`] when a new policy
//! generation arrives; a changed set is built, its workers handed to the export service, and
//! the old set dropped, so the old workers export what they hold (one call per batch, with
//! its retries) and stop.
//!
//! Export errors count in `failed` and log a warning at most every [`WARN_EVERY`] per
//! destination and signal. Warnings name the destination and the error, never content.
//! Headers come from environment variables named in the policy (`headers_env`); standard
//! `OTEL_EXPORTER_OTLP_HEADERS` still applies (and `OTEL_EXPORTER_OTLP_TRACES_HEADERS` to
//! spans, `OTEL_EXPORTER_OTLP_LOGS_HEADERS` to logs), replacing a policy header of that name.
//! A collector's partial success counts the spans it rejected as failed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord};
use opentelemetry_sdk::trace::SpanData;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sluice_config::{DestinationConfig, OtlpConfig, OtlpProtocol, ResourceConfig, TelemetryConfig};
use tokio::sync::mpsc;

use crate::destination::{self, Admit};
use crate::enrich::{self, Host};
use crate::metrics::OtlpLabels;
use crate::otlp::{ExportError, TraceClient, TraceEncoder, header_map};
use crate::record::{CapturedContent, RequestRecord};
use crate::redact::Redactor;
use crate::sampler::{Flags, TailSampler};
use crate::semconv as sc;
use crate::service::{Service, Services, Shutdown};
use crate::spans::build_spans;

/// At most one export-failure warning this often (per destination and signal).
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Export counters, registered by the caller (the metrics file owns their names).
#[derive(Clone, Debug, Default)]
pub struct ExportCounters {
    /// Spans a collector accepted (summed over destinations).
    pub exported: Counter,
    /// Spans dropped because a queue was full (or the pipeline had stopped).
    pub dropped: Counter,
    /// Spans in batches an exporter failed to deliver, or that a collector rejected.
    pub failed: Counter,
    /// Per destination, signal and result (`sluice_otlp_export_total`).
    pub by_destination: Family<OtlpLabels, Counter>,
}

/// Why the pipeline (or a destination) could not start.
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
    Log(Box<SdkLogRecord>),
}

/// Counters of one destination and signal.
#[derive(Clone, Debug)]
struct Signal {
    exported: Counter,
    dropped: Counter,
    failed: Counter,
}

impl Signal {
    fn new(
        family: &Family<OtlpLabels, Counter>,
        destination: &Arc<str>,
        signal: &'static str,
    ) -> Self {
        let c = |result| {
            family
                .get_or_create(&OtlpLabels {
                    destination: Arc::clone(destination),
                    signal,
                    result,
                })
                .clone()
        };
        Self {
            exported: c("exported"),
            dropped: c("dropped"),
            failed: c("failed"),
        }
    }
}

/// The sending side of one destination.
struct Destination {
    admit: Admit,
    tx: mpsc::UnboundedSender<Msg>,
    /// Items offered and not yet exported (or failed).
    queued: Arc<AtomicUsize>,
    queue_size: usize,
    spans: Signal,
    logs: Signal,
    /// The all-destination span counters.
    all: ExportCounters,
}

impl Destination {
    /// Queues `n` items without waiting; `false` (and counted) when the queue is full or the
    /// worker has stopped.
    fn push(&self, msg: Msg, n: usize) -> bool {
        let is_spans = matches!(msg, Msg::Spans(_));
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) <= self.queue_size && self.tx.send(msg).is_ok() {
            return true;
        }
        self.queued.fetch_sub(n, Ordering::AcqRel);
        if is_spans {
            self.spans.dropped.inc_by(n as u64);
            self.all.dropped.inc_by(n as u64);
        } else {
            self.logs.dropped.inc_by(n as u64);
        }
        false
    }
}

/// One generation of destinations, as configured.
struct Set {
    spec: Spec,
    destinations: Vec<Destination>,
}

/// What a set is built from: when it is unchanged by a reload, nothing is rebuilt.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    destinations: Vec<DestinationConfig>,
    resource: ResourceConfig,
}

impl Spec {
    fn of(cfg: &TelemetryConfig) -> Self {
        Self {
            destinations: destination::all(cfg),
            resource: cfg.resource.clone(),
        }
    }
}

struct SinkInner {
    current: RwLock<Arc<Set>>,
    /// Sampling and redaction of the policy the pipeline started with; callers that follow
    /// reloads pass their own [`SpanPolicy`].
    policy: SpanPolicy,
    /// New workers for the export service (a reload's).
    spawn: mpsc::UnboundedSender<Worker>,
    counters: ExportCounters,
    host: Host,
    /// Serialises rebuilds (only the recorder calls `follow`, but the judge holds a sink too).
    rebuild: Mutex<()>,
}

/// Which finished requests' spans are kept, and how captured content is redacted: compiled
/// from a policy's `telemetry` section, so it can follow reloads.
#[derive(Debug)]
pub struct SpanPolicy {
    sampler: TailSampler,
    /// `Some` when `capture_content` is on.
    redactor: Option<Redactor>,
    max_content_bytes: usize,
}

impl SpanPolicy {
    /// Fails only on a custom redaction pattern that does not compile (validation refuses
    /// those before they get here).
    pub fn new(cfg: &TelemetryConfig) -> Result<Self, Error> {
        let redactor = if cfg.capture_content {
            Some(Redactor::new(&cfg.redact).map_err(Error)?)
        } else {
            None
        };
        Ok(Self {
            sampler: TailSampler::new(&cfg.sample),
            redactor,
            max_content_bytes: cfg.max_content_bytes,
        })
    }
}

/// What the gateway knows about a request beyond its record, for the exported copies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extras<'a> {
    /// The tenant's attributes (from its entry in `tenants`).
    pub tenant_attributes: Option<&'a std::collections::BTreeMap<String, String>>,
    /// The access-log line (JSON, no newline), the body of the OTLP log record.
    pub access_line: Option<&'a str>,
}

/// Where the gateway hands finished requests. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct SpanSink {
    inner: Option<Arc<SinkInner>>,
}

impl fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanSink")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl SpanSink {
    /// A sink that keeps nothing and follows no policy.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    fn set(&self) -> Option<Arc<Set>> {
        let inner = self.inner.as_ref()?;
        let set = inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Arc::clone(&set))
    }

    /// Whether anything goes anywhere (some destination is configured).
    pub fn is_enabled(&self) -> bool {
        self.set().is_some_and(|s| !s.destinations.is_empty())
    }

    /// Whether some destination takes OTLP logs.
    pub fn wants_logs(&self) -> bool {
        self.set()
            .is_some_and(|s| s.destinations.iter().any(|d| d.admit.logs))
    }

    /// Makes the destinations those of `cfg` (a reloaded policy). Nothing happens when they
    /// are unchanged. A changed set is built and started before the old one is dropped; the
    /// old workers export what they hold (once) and stop. On an error (a header's environment
    /// variable is unset, an exporter cannot be built) the current set stays. Must run inside
    /// the background runtime (the gRPC client is built there). Returns whether it changed.
    pub fn follow(&self, cfg: &TelemetryConfig) -> Result<bool, Error> {
        let Some(inner) = &self.inner else {
            return Ok(false);
        };
        let _one = inner
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let spec = Spec::of(cfg);
        if self.set().is_some_and(|s| s.spec == spec) {
            return Ok(false);
        }
        let (set, workers) = build_set(spec, &inner.counters, &inner.host)?;
        for w in workers {
            if inner.spawn.send(w).is_err() {
                return Err(Error("the export service has stopped".into()));
            }
        }
        *inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        Ok(true)
    }

    /// Offers a finished request under the sampling the pipeline started with.
    pub fn offer(&self, r: &RequestRecord, route_slow: Option<Duration>, flags: Flags) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        self.offer_with(r, route_slow, flags, &inner.policy)
    }

    /// Offers a finished request, with no extras.
    pub fn offer_with(
        &self,
        r: &RequestRecord,
        route_slow: Option<Duration>,
        flags: Flags,
        policy: &SpanPolicy,
    ) -> bool {
        self.offer_enriched(r, route_slow, flags, policy, Extras::default())
    }

    /// Offers a finished request to every destination. Never blocks. Returns whether its
    /// spans were queued for at least one destination: `false` when no destination wanted
    /// them or every queue that did was full (each counts its own drop).
    ///
    /// With `capture_content` on, the record's content is redacted and truncated here, after
    /// the sampling decision (so unsampled requests cost nothing) and before anything is
    /// queued; with it off, content is never put on a span even if the record has some.
    pub fn offer_enriched(
        &self,
        r: &RequestRecord,
        route_slow: Option<Duration>,
        flags: Flags,
        policy: &SpanPolicy,
        extras: Extras<'_>,
    ) -> bool {
        let Some(set) = self.set() else { return false };
        if set.destinations.is_empty() {
            return false;
        }
        let reason = policy.sampler.keep(r, route_slow, flags);
        let tenant = enrich::tenant_attributes(extras.tenant_attributes);
        let mut queued = false;
        if set
            .destinations
            .iter()
            .any(|d| d.admit.wants_spans(r, reason.is_some()))
        {
            let content = match (&policy.redactor, &r.content, reason) {
                (Some(redactor), Some(c), Some(_)) => Some(CapturedContent {
                    input: redactor.redact_json(&c.input, policy.max_content_bytes),
                    output: redactor.redact_json(&c.output, policy.max_content_bytes),
                }),
                _ => None,
            };
            let mut spans = build_spans(r, content.as_ref());
            let by = reason.map_or("destination", |k| k.as_str());
            if let Some(server) = spans.first_mut() {
                server
                    .attributes
                    .push(KeyValue::new(sc::SLUICE_SAMPLED_BY, by));
            }
            if !tenant.is_empty() {
                for s in &mut spans {
                    s.attributes.extend(tenant.iter().cloned());
                }
            }
            let n = spans.len();
            let wanting: Vec<&Destination> = set
                .destinations
                .iter()
                .filter(|d| d.admit.wants_spans(r, reason.is_some()))
                .collect();
            let last = wanting.len().saturating_sub(1);
            let mut spans = Some(spans);
            for (i, d) in wanting.into_iter().enumerate() {
                // The last destination takes the spans themselves; the others a copy.
                let batch = if i == last {
                    spans.take().unwrap_or_default()
                } else {
                    spans.clone().unwrap_or_default()
                };
                queued |= d.push(Msg::Spans(batch), n);
            }
        }
        let mut record: Option<SdkLogRecord> = None;
        for d in set.destinations.iter().filter(|d| d.admit.wants_log(r)) {
            let rec = record
                .get_or_insert_with(|| crate::logs::access_record(r, extras.access_line, &tenant))
                .clone();
            d.push(Msg::Log(Box::new(rec)), 1);
        }
        queued
    }

    /// Offers an incident event's log record to every destination that takes logs of its
    /// route (see [`crate::destination::Admit::wants_incident`]). Never blocks; `false` when
    /// none took it.
    pub fn offer_incident(&self, e: &crate::logs::IncidentLog<'_>) -> bool {
        let Some(set) = self.set() else { return false };
        let mut record: Option<SdkLogRecord> = None;
        let mut queued = false;
        for d in set
            .destinations
            .iter()
            .filter(|d| d.admit.wants_incident(e.route))
        {
            let rec = record
                .get_or_insert_with(|| crate::logs::incident_record(e))
                .clone();
            queued |= d.push(Msg::Log(Box::new(rec)), 1);
        }
        queued
    }

    /// Offers a judge's verdict span (see [`crate::spans::evaluation_span`]) to every
    /// destination that takes spans of its route. Never blocks; `false` when none took it.
    pub fn offer_evaluation(&self, e: &crate::spans::Evaluation) -> bool {
        let Some(set) = self.set() else { return false };
        let span = crate::spans::evaluation_span(e);
        let mut queued = false;
        for d in &set.destinations {
            if d.admit.traces && d.admit.matches(e.route.as_deref(), None, "ok") {
                queued |= d.push(Msg::Spans(vec![span.clone()]), 1);
            }
        }
        queued
    }
}

/// The span sink and the export service behind it.
pub struct SpanPipeline {
    sink: SpanSink,
    /// The background runtime, when this pipeline owns one (see [`Self::start`]).
    own: Option<Services>,
}

impl fmt::Debug for SpanPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanPipeline")
            .field("enabled", &self.sink.is_enabled())
            .finish()
    }
}

impl SpanPipeline {
    /// Starts export on a background runtime of its own (one thread). Fails when an exporter
    /// cannot be built (a bad endpoint, a header's unset environment variable, a bad custom
    /// redaction regex).
    pub fn start(cfg: &TelemetryConfig, counters: ExportCounters) -> Result<SpanPipeline, Error> {
        let mut services = Services::start(1)
            .map_err(|e| Error(format!("cannot start the OTLP export runtime: {e}")))?;
        let handle = services
            .handle()
            .ok_or_else(|| Error("the background runtime has stopped".into()))?;
        let (sink, export) = Self::build(cfg, counters, &handle)?;
        if let Some(export) = export {
            services.spawn(export);
        }
        Ok(SpanPipeline {
            sink,
            own: Some(services),
        })
    }

    /// The sink and the export service to spawn on the background runtime `handle` belongs
    /// to (after whatever feeds the sink, so that it is stopped after them). The service is
    /// there even with no destination, so a reload can add some.
    pub fn build(
        cfg: &TelemetryConfig,
        counters: ExportCounters,
        handle: &tokio::runtime::Handle,
    ) -> Result<(SpanSink, Option<Box<dyn Service>>), Error> {
        let policy = SpanPolicy::new(cfg)?;
        let host = Host::current();
        // tonic builds its channel inside a runtime.
        let (set, workers) =
            handle.block_on(async { build_set(Spec::of(cfg), &counters, &host) })?;
        let (spawn, spawn_rx) = mpsc::unbounded_channel();
        for w in workers {
            let _ = spawn.send(w);
        }
        let sink = SpanSink {
            inner: Some(Arc::new(SinkInner {
                current: RwLock::new(Arc::new(set)),
                policy,
                spawn,
                counters,
                host,
                rebuild: Mutex::new(()),
            })),
        };
        Ok((sink, Some(Box::new(ExportService { spawn: spawn_rx }))))
    }

    /// A handle for the recorder.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// Exports what is queued (waiting at most `timeout`), then stops. Items offered
    /// afterwards are dropped and counted.
    pub fn shutdown(self, timeout: Duration) {
        if let Some(services) = self.own {
            services.stop(timeout);
        }
    }
}

/// `service.name = sluice`, `service.version`: the resource with no policy and no
/// environment (see [`crate::enrich`] for the full one).
pub fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("sluice")
        .with_attribute(KeyValue::new(
            sc::SERVICE_VERSION,
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

fn build_set(
    spec: Spec,
    counters: &ExportCounters,
    host: &Host,
) -> Result<(Set, Vec<Worker>), Error> {
    let resource = enrich::resource(&spec.resource, host);
    let mut destinations = Vec::with_capacity(spec.destinations.len());
    let mut workers = Vec::with_capacity(spec.destinations.len());
    for d in &spec.destinations {
        let headers = headers(d, |var| std::env::var(var).ok())?;
        let name: Arc<str> = Arc::from(d.name.as_str());
        let spans = d
            .traces
            .then(|| span_exporter(&d.otlp, &headers, &resource))
            .transpose()
            .map_err(|e| Error(format!("destination `{}`: {e}", d.name)))?;
        let logs = d
            .logs
            .then(|| log_exporter(&d.otlp, &headers, &resource))
            .transpose()
            .map_err(|e| Error(format!("destination `{}`: {e}", d.name)))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let span_counters = Signal::new(&counters.by_destination, &name, "traces");
        let log_counters = Signal::new(&counters.by_destination, &name, "logs");
        workers.push(Worker {
            name: Arc::clone(&name),
            rx,
            queued: Arc::clone(&queued),
            otlp: d.otlp.clone(),
            spans: spans.map(|e| Exporter::new(e, span_counters.clone(), Some(counters.clone()))),
            logs: logs.map(|e| Exporter::new(e, log_counters.clone(), None)),
        });
        destinations.push(Destination {
            admit: Admit::new(d),
            tx,
            queued,
            queue_size: d.otlp.queue_size,
            spans: span_counters,
            logs: log_counters,
            all: counters.clone(),
        });
    }
    Ok((Set { spec, destinations }, workers))
}

/// The destination's headers, values read from the environment. An unset variable is an
/// error naming the variable (never a value).
fn headers(
    d: &DestinationConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, Error> {
    d.headers_env
        .iter()
        .map(|(header, var)| match env(var) {
            Some(v) if !v.is_empty() => Ok((header.clone(), v)),
            _ => Err(Error(format!(
                "destination `{}`: header `{header}` takes its value from the environment variable `{var}`, which is not set",
                d.name
            ))),
        })
        .collect()
}

/// A destination's span exporter: the request written by Sluice's encoder, sent by its
/// client.
#[derive(Debug)]
struct SpanExporter {
    encoder: TraceEncoder,
    client: TraceClient,
}

impl SpanExporter {
    /// `Ok` holds the number of spans the collector rejected.
    async fn export(&mut self, batch: &[SpanData]) -> Result<u64, ExportError> {
        let body = self.encoder.encode(batch);
        self.client.export(body).await
    }
}

fn span_exporter(
    otlp: &OtlpConfig,
    headers: &HashMap<String, String>,
    resource: &Resource,
) -> Result<SpanExporter, String> {
    let client = TraceClient::new(otlp, headers, |var| std::env::var(var).ok())
        .map_err(|e| format!("OTLP span exporter: {e}"))?;
    Ok(SpanExporter {
        encoder: TraceEncoder::new(resource),
        client,
    })
}

/// The logs URL of an OTLP/HTTP endpoint (validation appended `/v1/traces`).
fn logs_endpoint(otlp: &OtlpConfig) -> String {
    match otlp.protocol {
        OtlpProtocol::Grpc => otlp.endpoint.clone(),
        OtlpProtocol::HttpProtobuf => match otlp.endpoint.strip_suffix("/v1/traces") {
            Some(base) => format!("{base}/v1/logs"),
            None => otlp.endpoint.clone(),
        },
    }
}

fn log_exporter(
    otlp: &OtlpConfig,
    headers: &HashMap<String, String>,
    resource: &Resource,
) -> Result<opentelemetry_otlp::LogExporter, String> {
    let endpoint = logs_endpoint(otlp);
    let built = match otlp.protocol {
        OtlpProtocol::Grpc => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(otlp.timeout)
                .with_metadata(MetadataMap::from_headers(header_map(headers)?));
            if endpoint.starts_with("https://") {
                b = b.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(otlp.timeout)
            .with_headers(headers.clone())
            .build(),
    };
    let mut exporter = built.map_err(|e| format!("OTLP log exporter: {e}"))?;
    exporter.set_resource(resource);
    Ok(exporter)
}

/// Runs the destinations' workers, each its own task so that one stalled exporter never
/// holds up another; started and stopped as one background service.
struct ExportService {
    spawn: mpsc::UnboundedReceiver<Worker>,
}

impl Service for ExportService {
    fn name(&self) -> &'static str {
        "otlp-export"
    }

    fn run(self: Box<Self>, mut shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut spawn = self.spawn;
            let mut workers = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    w = spawn.recv() => match w {
                        Some(w) => { workers.spawn(w.run(shutdown.clone())); }
                        None => break,
                    },
                    Some(_) = workers.join_next(), if !workers.is_empty() => {}
                    () = shutdown.wait() => break,
                }
            }
            // Workers handed over at the last moment still export what they were given.
            spawn.close();
            while let Ok(w) = spawn.try_recv() {
                workers.spawn(w.run(shutdown.clone()));
            }
            while workers.join_next().await.is_some() {}
        })
    }
}

/// One destination's export loop.
struct Worker {
    name: Arc<str>,
    rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicUsize>,
    otlp: OtlpConfig,
    spans: Option<Exporter<SpanExporter>>,
    logs: Option<Exporter<opentelemetry_otlp::LogExporter>>,
}

/// One exporter of a destination, with its counters and its warning state.
struct Exporter<E> {
    inner: E,
    counters: Signal,
    /// The all-destination span counters (spans only).
    all: Option<ExportCounters>,
    last_warn: Option<tokio::time::Instant>,
    failed_since_warn: u64,
}

impl<E> Exporter<E> {
    fn new(inner: E, counters: Signal, all: Option<ExportCounters>) -> Self {
        Self {
            inner,
            counters,
            all,
            last_warn: None,
            failed_since_warn: 0,
        }
    }

    /// Counts a finished export call of `n` items; warns (rarely) on failure. `Ok` holds
    /// how many of them the collector rejected (counted as failed). Returns whether the call
    /// worked (a partial success did: the collector is there).
    fn settle(
        &mut self,
        n: u64,
        result: Result<u64, String>,
        destination: &str,
        signal: &str,
    ) -> bool {
        let worked = result.is_ok();
        let (failed, err) = match result {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                self.counters.exported.inc_by(n - rejected);
                if let Some(all) = &self.all {
                    all.exported.inc_by(n - rejected);
                }
                if rejected == 0 {
                    return true;
                }
                (
                    rejected,
                    format!("the collector rejected {rejected} of {n}"),
                )
            }
            Err(e) => (n, e),
        };
        self.counters.failed.inc_by(failed);
        if let Some(all) = &self.all {
            all.failed.inc_by(failed);
        }
        self.failed_since_warn += failed;
        if self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                target: "sluice::otlp",
                destination,
                signal,
                items = self.failed_since_warn,
                error = %err,
                "OTLP export failed (counted in sluice_otlp_export_total{{result=\"failed\"}}; next warning in 30s at the earliest)"
            );
            self.last_warn = Some(tokio::time::Instant::now());
            self.failed_since_warn = 0;
        }
        worked
    }
}

impl Worker {
    /// The exporter has its own timeout; this one guards against one that hangs anyway.
    fn guard(&self) -> Duration {
        self.otlp.timeout * 2
    }

    /// Exports one batch; `false` when the collector is out of reach (a batch it answered
    /// and refused for good says it is there, and the next one may get through).
    async fn export_spans(&mut self, batch: Vec<SpanData>) -> bool {
        let n = batch.len();
        let guard = self.guard();
        let Some(e) = &mut self.spans else {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return true;
        };
        let (result, answered) = match tokio::time::timeout(guard, e.inner.export(&batch)).await {
            Ok(Ok(rejected)) => (Ok(rejected), true),
            Ok(Err(err)) => (Err(err.message), err.answered),
            Err(_) => (Err("timed out".to_owned()), false),
        };
        drop(batch);
        self.queued.fetch_sub(n, Ordering::AcqRel);
        e.settle(n as u64, result, &self.name, "traces") || answered
    }

    async fn export_logs(&mut self, batch: Vec<SdkLogRecord>) -> bool {
        let n = batch.len();
        let guard = self.guard();
        let Some(e) = &mut self.logs else {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return true;
        };
        let scope = &*crate::logs::SCOPE;
        let pairs: Vec<(&SdkLogRecord, &opentelemetry::InstrumentationScope)> =
            batch.iter().map(|r| (r, scope)).collect();
        let result = match tokio::time::timeout(guard, e.inner.export(LogBatch::new(&pairs))).await
        {
            Ok(Ok(())) => Ok(0),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        self.queued.fetch_sub(n, Ordering::AcqRel);
        e.settle(n as u64, result, &self.name, "logs")
    }

    /// Exports full batches, or with `all` everything held; stops at the first batch that
    /// finds the collector out of reach when `give_up` (shutdown: what is left is counted as
    /// failed instead of waited on).
    async fn flush(
        &mut self,
        spans: &mut Vec<SpanData>,
        logs: &mut Vec<SdkLogRecord>,
        all: bool,
        give_up: bool,
    ) {
        let size = self.otlp.batch_size.max(1);
        while spans.len() >= size || (all && !spans.is_empty()) {
            let rest = spans.split_off(size.min(spans.len()));
            let batch = std::mem::replace(spans, rest);
            if !self.export_spans(batch).await && give_up {
                let n = spans.len();
                self.queued.fetch_sub(n, Ordering::AcqRel);
                if let Some(e) = &mut self.spans {
                    let _ = e.settle(
                        n as u64,
                        Err("abandoned at shutdown".into()),
                        &self.name,
                        "traces",
                    );
                }
                spans.clear();
            }
        }
        while logs.len() >= size || (all && !logs.is_empty()) {
            let rest = logs.split_off(size.min(logs.len()));
            let batch = std::mem::replace(logs, rest);
            if !self.export_logs(batch).await && give_up {
                let n = logs.len();
                self.queued.fetch_sub(n, Ordering::AcqRel);
                if let Some(e) = &mut self.logs {
                    let _ = e.settle(
                        n as u64,
                        Err("abandoned at shutdown".into()),
                        &self.name,
                        "logs",
                    );
                }
                logs.clear();
            }
        }
    }

    async fn run(mut self, mut shutdown: Shutdown) {
        let mut spans: Vec<SpanData> = Vec::new();
        let mut logs: Vec<SdkLogRecord> = Vec::new();
        let mut tick = tokio::time::interval(self.otlp.export_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::Spans(s)) => {
                        spans.extend(s);
                        self.flush(&mut spans, &mut logs, false, false).await;
                    }
                    Some(Msg::Log(l)) => {
                        logs.push(*l);
                        self.flush(&mut spans, &mut logs, false, false).await;
                    }
                    // The set was replaced by a reload: what is held is exported once.
                    None => break,
                },
                () = shutdown.wait() => break,
                _ = tick.tick() => {
                    self.flush(&mut spans, &mut logs, true, false).await;
                }
            }
        }
        // Refuse new items (offer counts them as dropped), then export what was offered.
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Spans(s) => spans.extend(s),
                Msg::Log(l) => logs.push(*l),
            }
        }
        self.flush(&mut spans, &mut logs, true, true).await;
        if let Some(e) = &self.logs {
            let _ = e.inner.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_the_environment_and_an_unset_one_is_named() {
        let mut d = destination::legacy(&OtlpConfig::new("http://c:4317", OtlpProtocol::Grpc));
        d.name = "vendor".into();
        d.headers_env = [("x-api-key".to_owned(), "VENDOR_KEY".to_owned())].into();
        let got = headers(&d, |v| (v == "VENDOR_KEY").then(|| "s3cret".to_owned())).expect("set");
        assert_eq!(got.get("x-api-key").map(String::as_str), Some("s3cret"));
        let err = headers(&d, |_| None).expect_err("unset").to_string();
        assert!(
            err.contains("VENDOR_KEY") && err.contains("vendor"),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
    }

    #[tokio::test(start_paused = true)]
    async fn spans_a_collector_rejects_count_as_failed() {
        let family = Family::<OtlpLabels, Counter>::default();
        let all = ExportCounters::default();
        let mut e = Exporter::new(
            (),
            Signal::new(&family, &Arc::from("c"), "traces"),
            Some(all.clone()),
        );
        let counts = |e: &Exporter<()>| {
            (
                e.counters.exported.get(),
                e.counters.failed.get(),
                all.exported.get(),
                all.failed.get(),
            )
        };
        assert!(e.settle(10, Ok(0), "c", "traces"));
        assert_eq!(counts(&e), (10, 0, 10, 0));
        // A partial success: the call worked, three spans did not.
        assert!(e.settle(10, Ok(3), "c", "traces"));
        assert_eq!(counts(&e), (17, 3, 17, 3));
        // A collector that says it rejected more than it was sent is held to the batch.
        assert!(e.settle(4, Ok(9), "c", "traces"));
        assert_eq!(counts(&e), (17, 7, 17, 7));
        assert!(!e.settle(5, Err("refused".into()), "c", "traces"));
        assert_eq!(counts(&e), (17, 12, 17, 12));
    }

    #[test]
    fn logs_go_to_v1_logs_over_http() {
        let http = OtlpConfig::new("http://c:4318/v1/traces", OtlpProtocol::HttpProtobuf);
        assert_eq!(logs_endpoint(&http), "http://c:4318/v1/logs");
        let grpc = OtlpConfig::new("http://c:4317", OtlpProtocol::Grpc);
        assert_eq!(logs_endpoint(&grpc), "http://c:4317");
    }
}
