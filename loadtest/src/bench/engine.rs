//! The load engine: open loop (constant rate, latency from the scheduled time) or closed loop
//! (fixed concurrency), over a pool of HTTP/1.1 keep-alive connections.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{Conn, Failure, Headers, Target, Timing};
use super::hist::{Hist, Summary};
use super::scenario::{ModeKind, Scenario};
use super::schedule::{Job, OpenLoop};

/// Histogram shards: workers record under a short lock on shard `worker % SHARDS`.
const SHARDS: usize = 8;

/// The latency histograms of one run.
#[derive(Debug, Clone, Default)]
pub struct Hists {
    /// Non-streaming requests: start to last byte.
    pub latency: Hist,
    /// Streams: start to response head.
    pub ttfb: Hist,
    /// Streams: start to first content event.
    pub ttfc: Hist,
    /// Streams: start to last byte.
    pub ttlb: Hist,
    /// Open loop: how late a request left compared to its schedule (queueing + scheduler).
    pub send_lag: Hist,
}

impl Hists {
    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Hists) {
        self.latency.merge(&other.latency);
        self.ttfb.merge(&other.ttfb);
        self.ttfc.merge(&other.ttfc);
        self.ttlb.merge(&other.ttlb);
        self.send_lag.merge(&other.send_lag);
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Requests started.
    pub sent: u64,
    /// Answered with 200 and read to the end.
    pub ok: u64,
    /// Streams among `ok`.
    pub ok_streams: u64,
    /// Failures by kind (`connect`, `http`, `status_503`, `timeout`, `unfinished`).
    pub errors: BTreeMap<String, u64>,
    /// SSE events of the successful streams.
    pub chunks: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// TCP connections opened.
    pub connections_opened: u64,
}

impl Counts {
    /// Adds `other`.
    pub fn merge(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.ok_streams += other.ok_streams;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.chunks += other.chunks;
        self.bytes += other.bytes;
        self.connections_opened += other.connections_opened;
    }

    /// Sum of all failures.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The outcome of one run against one target.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Wall time of the measured phase (until the last answer or the drain deadline).
    pub elapsed: Duration,
    /// Counts.
    pub counts: Counts,
    /// Latencies.
    pub hists: Hists,
}

/// Serializable figures of a run (or of several merged).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Seconds measured.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Counts.
    pub counts: Counts,
    /// Non-stream latency.
    pub latency: Summary,
    /// Stream time to first byte.
    pub stream_ttfb: Summary,
    /// Stream time to first content chunk.
    pub stream_ttfc: Summary,
    /// Stream time to last byte.
    pub stream_ttlb: Summary,
    /// Open loop: lateness of the send against the schedule.
    pub send_lag: Summary,
    /// Mean SSE events per successful stream.
    pub chunks_per_stream: f64,
}

impl RunResult {
    /// Adds another run (elapsed times add up).
    pub fn merge(&mut self, other: &RunResult) {
        self.elapsed += other.elapsed;
        self.counts.merge(&other.counts);
        self.hists.merge(&other.hists);
    }

    /// The figures.
    pub fn report(&self) -> RunReport {
        let secs = self.elapsed.as_secs_f64();
        RunReport {
            elapsed_s: secs,
            rps: if secs > 0.0 {
                self.counts.ok as f64 / secs
            } else {
                0.0
            },
            counts: self.counts.clone(),
            latency: self.hists.latency.summary(),
            stream_ttfb: self.hists.ttfb.summary(),
            stream_ttfc: self.hists.ttfc.summary(),
            stream_ttlb: self.hists.ttlb.summary(),
            send_lag: self.hists.send_lag.summary(),
            chunks_per_stream: if self.counts.ok_streams > 0 {
                self.counts.chunks as f64 / self.counts.ok_streams as f64
            } else {
                0.0
            },
        }
    }
}

/// The load of one phase (a scenario, possibly with its duration overridden).
#[derive(Debug, Clone)]
pub struct Load {
    /// Open or closed.
    pub mode: ModeKind,
    /// req/s (open).
    pub rate: f64,
    /// In flight (closed).
    pub concurrency: usize,
    /// Pool size (open).
    pub connections: usize,
    /// Phase length.
    pub duration: Duration,
    /// Request cap.
    pub max_requests: u64,
    /// Share of streams.
    pub stream_share: f64,
    /// Prompt sizes.
    pub prompt_bytes: Vec<usize>,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Per-request timeout and drain allowance.
    pub timeout: Duration,
}

impl Load {
    /// The measured load of `s`.
    pub fn from_scenario(s: &Scenario) -> Load {
        Load {
            mode: s.mode,
            rate: s.rate,
            concurrency: s.concurrency,
            connections: s.connections,
            duration: s.duration,
            max_requests: s.max_requests,
            stream_share: s.stream_share,
            prompt_bytes: s.prompt_bytes.clone(),
            max_tokens: s.max_tokens,
            timeout: s.timeout,
        }
    }

    /// The same load for another duration (request cap scaled down with it).
    pub fn with_duration(&self, d: Duration) -> Load {
        let scale = d.as_secs_f64() / self.duration.as_secs_f64().max(1e-9);
        Load {
            duration: d,
            max_requests: ((self.max_requests as f64 * scale).ceil() as u64).max(1),
            ..self.clone()
        }
    }
}

/// Request bodies, prepared once: `[prompt size] × [non-stream, stream]`.
#[derive(Debug)]
struct Bodies(Vec<[Bytes; 2]>);

impl Bodies {
    fn new(load: &Load, model: &str) -> Bodies {
        let make = |size: usize, stream: bool| {
            // A prompt of `size` bytes made of short words (the mock counts words as tokens).
            let mut prompt = String::with_capacity(size);
            let words = ["bench", "prompt", "say", "something", "short", "please"];
            let mut i = 0;
            while prompt.len() < size {
                if !prompt.is_empty() {
                    prompt.push(' ');
                }
                prompt.push_str(words[i % words.len()]);
                i += 1;
            }
            prompt.truncate(size.max(1));
            let mut body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
            });
            if stream {
                body["stream"] = true.into();
            }
            if let Some(n) = load.max_tokens {
                body["max_tokens"] = n.into();
            }
            Bytes::from(body.to_string())
        };
        Bodies(
            load.prompt_bytes
                .iter()
                .map(|&n| [make(n, false), make(n, true)])
                .collect(),
        )
    }

    /// Request `index`'s body and whether it streams; deterministic per index.
    fn pick(&self, index: u64, stream_share: f64) -> (Bytes, bool) {
        let r = splitmix(index);
        let stream = ((r >> 11) as f64 / (1u64 << 53) as f64) < stream_share;
        let size = (r % self.0.len() as u64) as usize;
        (self.0[size][usize::from(stream)].clone(), stream)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Live state shared by the workers of one run.
#[derive(Debug)]
struct Shared {
    target: Target,
    headers: Headers,
    bodies: Bodies,
    stream_share: f64,
    timeout: Duration,
    shards: Vec<Mutex<Hists>>,
    counts: Mutex<Counts>,
    sent: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// Runs request `index` on `conn`; latency counts from `start`.
    async fn one(&self, worker: usize, conn: &mut Conn, index: u64, start: Instant) {
        let (body, stream) = self.bodies.pick(index, self.stream_share);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        let outcome = tokio::time::timeout(
            self.timeout,
            conn.send(&self.target, &self.headers, body, stream, start),
        )
        .await;
        let result = match outcome {
            Ok(Ok(t)) if t.status == 200 => Ok(t),
            Ok(Ok(t)) => Err(format!("status_{}", t.status)),
            Ok(Err(Failure::Connect(_))) => Err("connect".to_owned()),
            Ok(Err(Failure::Http(_))) => Err("http".to_owned()),
            Err(_) => {
                // The exchange was cut mid-way: drop the connection.
                *conn = Conn::new(self.target.addr);
                Err("timeout".to_owned())
            }
        };
        match result {
            Ok(t) => self.record_ok(worker, &t, stream, sent_at.saturating_duration_since(start)),
            Err(kind) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
                *c.errors.entry(kind).or_default() += 1;
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn record_ok(&self, worker: usize, t: &Timing, stream: bool, lag: Duration) {
        {
            let mut h = self.shards[worker % SHARDS]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            h.send_lag.record(lag);
            if stream {
                h.ttfb.record(t.ttfb);
                if let Some(c) = t.ttfc {
                    h.ttfc.record(c);
                }
                h.ttlb.record(t.ttlb);
            } else {
                h.latency.record(t.ttlb);
            }
        }
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.ok += 1;
        c.bytes += t.bytes;
        if stream {
            c.ok_streams += 1;
            c.chunks += u64::from(t.chunks);
        }
    }
}

/// Runs `load` against `target`. With `progress`, a live line goes to stderr. Bounded: the
/// phase stops sending after `load.duration` or `load.max_requests`, and whatever is still in
/// flight `load.timeout` later is abandoned (counted as `unfinished`).
pub async fn run(load: &Load, target: &Target, progress: bool) -> Result<RunResult, String> {
    let shared = Arc::new(Shared {
        headers: Headers::new(target)?,
        bodies: Bodies::new(load, &target.model),
        target: target.clone(),
        stream_share: load.stream_share,
        timeout: load.timeout,
        shards: (0..SHARDS).map(|_| Mutex::new(Hists::default())).collect(),
        counts: Mutex::new(Counts::default()),
        sent: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let start = Instant::now();
    let send_until = start + load.duration;
    let hard_deadline = send_until + load.timeout + Duration::from_secs(1);
    let mut workers = JoinSet::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut scheduler = None;

    match load.mode {
        ModeKind::Open => {
            let schedule = OpenLoop::new(start, load.rate, load.duration, load.max_requests);
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for w in 0..load.connections.max(1) {
                let (shared, rx) = (Arc::clone(&shared), Arc::clone(&rx));
                workers.spawn(async move {
                    let mut conn = Conn::new(shared.target.addr);
                    loop {
                        let job = rx.lock().await.recv().await;
                        let Some(job) = job else { break };
                        shared.one(w, &mut conn, job.index, job.due).await;
                    }
                    conn.opened()
                });
            }
            scheduler = Some(
                schedule
                    .spawn(tx, Arc::clone(&stop))
                    .map_err(|e| format!("cannot start the scheduler thread: {e}"))?,
            );
        }
        ModeKind::Closed => {
            let budget = Arc::new(AtomicU64::new(0));
            for w in 0..load.concurrency.max(1) {
                let (shared, budget) = (Arc::clone(&shared), Arc::clone(&budget));
                let max = load.max_requests;
                workers.spawn(async move {
                    let mut conn = Conn::new(shared.target.addr);
                    while Instant::now() < send_until {
                        let index = budget.fetch_add(1, Ordering::Relaxed);
                        if index >= max {
                            break;
                        }
                        shared.one(w, &mut conn, index, Instant::now()).await;
                    }
                    conn.opened()
                });
            }
        }
    }

    let mut opened = 0;
    let ticker = progress.then(|| spawn_progress(Arc::clone(&shared), start, load, target));
    let drained = tokio::time::timeout_at(hard_deadline.into(), async {
        while let Some(r) = workers.join_next().await {
            opened += r.unwrap_or(0);
        }
    })
    .await;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    workers.abort_all();
    if let Some(t) = ticker {
        t.abort();
    }
    let scheduled = match scheduler {
        Some(handle) => tokio::task::spawn_blocking(move || handle.join().unwrap_or(0))
            .await
            .unwrap_or(0),
        None => shared.sent.load(Ordering::Relaxed),
    };
    if progress {
        eprintln!();
    }

    let mut hists = Hists::default();
    for shard in &shared.shards {
        hists.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
    }
    let mut counts = shared
        .counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    counts.sent = scheduled.max(shared.sent.load(Ordering::Relaxed));
    counts.connections_opened = opened;
    let finished = counts.ok + counts.failed();
    if drained.is_err() || finished < counts.sent {
        *counts.errors.entry("unfinished".into()).or_default() +=
            counts.sent.saturating_sub(finished);
    }
    Ok(RunResult {
        elapsed,
        counts,
        hists,
    })
}

fn spawn_progress(
    shared: Arc<Shared>,
    start: Instant,
    load: &Load,
    target: &Target,
) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let total = load.duration.as_secs_f64();
    let name = target.name.clone();
    tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(every).await;
            let now = Instant::now();
            let done = shared.done.load(Ordering::Relaxed);
            let sent = shared.sent.load(Ordering::Relaxed);
            let failed = shared.failed.load(Ordering::Relaxed);
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, done);
            let line = format!(
                "  {name:<8} {:>6.1}/{total:.0}s  done {done:>9}  in flight {:>5}  failed {failed:>6}  {rate:>9.0} req/s",
                start.elapsed().as_secs_f64(),
                sent.saturating_sub(done),
            );
            let mut err = std::io::stderr().lock();
            let _ = if tty {
                write!(err, "\r{line}")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_choice_follows_the_stream_share() {
        let load = Load {
            mode: ModeKind::Closed,
            rate: 0.0,
            concurrency: 1,
            connections: 1,
            duration: Duration::from_secs(1),
            max_requests: 1,
            stream_share: 0.25,
            prompt_bytes: vec![10, 1000],
            max_tokens: Some(4),
            timeout: Duration::from_secs(1),
        };
        let bodies = Bodies::new(&load, "m");
        let streams = (0..10_000).filter(|&i| bodies.pick(i, 0.25).1).count();
        assert!((2300..2700).contains(&streams), "{streams}");
        assert!((0..100).all(|i| !bodies.pick(i, 0.0).1));
        assert!((0..100).all(|i| bodies.pick(i, 1.0).1));
        let (b, s) = bodies.pick(7, 1.0);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(s);
        assert_eq!(v["stream"], true);
        assert_eq!(v["max_tokens"], 4);
        assert_eq!(v["model"], "m");
    }

    #[test]
    fn with_duration_scales_the_cap() {
        let load = Load {
            mode: ModeKind::Open,
            rate: 100.0,
            concurrency: 1,
            connections: 1,
            duration: Duration::from_secs(10),
            max_requests: 1000,
            stream_share: 0.0,
            prompt_bytes: vec![10],
            max_tokens: None,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(load.with_duration(Duration::from_secs(1)).max_requests, 100);
    }
}
