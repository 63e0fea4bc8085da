//! One JSON line per request on standard output, written by a background thread.
//!
//! The request path only formats the line and hands it over with `try_send`; a full queue
//! drops the line and counts it, so a slow stdout (a full pipe, a stalled log shipper) can
//! never hold a request. Lines carry no content and no secret: names from the policy, numbers,
//! ids.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use sluice_observability::RequestRecord;

const QUEUE: usize = 16_384;

#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
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
}

impl AccessLog {
    /// Starts the writer thread; `enabled: false` gives a log that writes nothing.
    pub fn start(enabled: bool) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        if !enabled {
            return Self { tx: None, dropped };
        }
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_lines(&rx));
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                dropped,
            },
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start the access log writer; access log off.");
                Self { tx: None, dropped }
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(text) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_lines(rx: &Receiver<String>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Drain what is already queued, then flush once: lines appear promptly, cheaply.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
    }
}
