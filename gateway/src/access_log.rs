//! One JSON line per request on standard output, written by a background thread.
//!
//! The request path only formats the line and hands it over with `try_send`; a full queue
//! drops the line and counts it, so a slow stdout (a full pipe, a stalled log shipper) can
//! never hold a request. The writer does not block on the queue: it wakes every
//! [`FLUSH_EVERY`] and writes what accumulated in one go, so a request never pays for waking
//! another thread, and lines reach stdout within that interval. Lines carry no content and no secret: names from the policy, numbers,
//! ids.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use sluice_observability::RequestRecord;

const QUEUE: usize = 16_384;
/// How often the writer drains the queue.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    dropped: Counter,
    stop: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: f64,
    request_id: &'a str,
    trace_id: String,
    endpoint: &'static str,
    route: Option<&'a str>,
    model: Option<&'a str>,
    tenant: Option<&'a str>,
    stream: bool,
    status: u16,
    outcome: &'static str,
    error_type: Option<&'static str>,
    duration_ms: f64,
    time_to_first_chunk_ms: Option<f64>,
    overhead_ms: f64,
    attempts: usize,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    usage_source: Option<&'static str>,
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limited: Option<&'static str>,
}

impl AccessLog {
    /// Starts the writer thread; `enabled: false` gives a log that writes nothing.
    /// `dropped` counts lines lost to a full queue (`sluice_access_log_dropped_total`).
    pub fn start(enabled: bool, dropped: Counter) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let off = |dropped, stop| Self {
            tx: None,
            dropped,
            stop,
            worker: Mutex::new(None),
        };
        if !enabled {
            return off(dropped, stop);
        }
        let (tx, rx) = sync_channel(QUEUE);
        let stopping = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_lines(&rx, &stopping));
        match spawned {
            Ok(handle) => Self {
                tx: Some(tx),
                dropped,
                stop,
                worker: Mutex::new(Some(handle)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start the access log writer; access log off.");
                off(dropped, stop)
            }
        }
    }

    /// Writes out what is queued and stops the writer; call once the server stopped.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub fn log(&self, r: &RequestRecord) {
        let Some(tx) = &self.tx else { return };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let line = Line {
            ts: r
                .start
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            request_id: &r.request_id,
            trace_id: sluice_observability::spans::trace_id_hex(&r.trace),
            endpoint: r.endpoint.as_str(),
            route: r.route.as_deref(),
            model: r.model.as_deref(),
            tenant: r.tenant.as_deref(),
            stream: r.stream,
            status: r.status,
            outcome: r.outcome.as_str(),
            error_type: r.error_type,
            duration_ms: ms(r.duration),
            time_to_first_chunk_ms: r.time_to_first_chunk.map(ms),
            overhead_ms: ms(r.overhead()),
            attempts: r.attempts.len(),
            input_tokens: r.usage.map(|u| u.input),
            output_tokens: r.usage.map(|u| u.output),
            usage_source: r.usage.map(|u| u.source.as_str()),
            cost_usd: r.cost_usd,
            cache: r.cache,
            rate_limited: r.rate_limited,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(text) {
            self.dropped.inc();
        }
    }
}

fn write_lines(rx: &Receiver<String>, stop: &AtomicBool) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    loop {
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(line.as_bytes());
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if wrote {
            let _ = out.flush();
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}
