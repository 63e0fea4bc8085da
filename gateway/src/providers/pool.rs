//! Idle HTTP/1 connections to providers, kept for the next request.
//!
//! pingora's pool spawns a task for each connection handed back, to watch it while it is idle
//! (a read with a timer), and at reuse hands the connection over through that task: per
//! request a task, a timer, a lock the taker waits on, and a wake-up that on two cores is a
//! futex and a context switch on the other worker. Here a connection handed back only joins a
//! list. Whether the provider closed it (or wrote on it, which it must not) shows as read
//! readiness, which the reactor records whatever task polls: the connection is checked without
//! waiting when it is taken, and [`Sweep`] closes, once a second on the background runtime,
//! those past their idle timeout and those the provider closed, so a provider's keep-alive
//! running out leaves no socket half-closed for long. A connection that closes in the instant
//! between the check and the request is the stale case `openai::send_prepared` already sends
//! again on a new one.
//!
//! Dialing stays pingora's (`TransportConnector::new_stream`: TCP, TLS, the egress dialer).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Waker};
use std::time::Duration;

use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_observability::service::{Service, Shutdown};
use tokio::io::ReadBuf;
use tokio::time::Instant;

/// How often [`Sweep`] looks at the idle connections.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The pool a gauge counts: `shared`, or the provider with a pool of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

/// The server-wide pool's name in [`PoolLabels`].
pub const SHARED: &str = "shared";

/// Dials providers and keeps their idle HTTP/1 connections.
pub struct Connector {
    dial: TransportConnector,
    idle: IdlePool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("capacity", &self.idle.capacity)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Connector {
    /// Keeps at most `capacity` idle connections; past that the one nearest its idle timeout
    /// (the longest idle, where timeouts are equal) is closed.
    pub fn new(capacity: usize) -> Self {
        Self {
            // pingora's own pool is never handed a connection: one slot is enough.
            dial: TransportConnector::new(Some(ConnectorOptions::new(1))),
            idle: IdlePool {
                capacity: capacity.max(1),
                lists: Mutex::new(Lists::default()),
            },
        }
    }

    /// A new connection to `peer` (TCP, then TLS or the egress dialer as the peer says).
    pub async fn dial<P: Peer + Send + Sync + 'static>(&self, peer: &P) -> pingora::Result<Stream> {
        self.dial.new_stream(peer).await
    }

    /// The most recently idle connection to `peer` that is still open, if any.
    pub fn take<P: Peer>(&self, peer: &P) -> Option<Stream> {
        self.idle.take(peer.reuse_hash(), Instant::now())
    }

    /// Keeps `stream`, a connection whose last answer was read to its end, for the next request
    /// to the same peer (`key`: the peer's reuse hash) for at most `idle_timeout`.
    pub fn release(&self, stream: Stream, key: u64, idle_timeout: Duration) {
        self.idle.put(key, stream, Instant::now() + idle_timeout);
    }

    /// Closes the connections past their idle timeout or closed by the provider; how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.idle.sweep(now)
    }

    /// Idle connections kept now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().total
    }
}

struct IdlePool {
    capacity: usize,
    lists: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    /// Per peer, oldest first: taken from the back (the warmest connection), evicted and
    /// expired from the front.
    by_peer: HashMap<u64, VecDeque<Idle>>,
    total: usize,
}

struct Idle {
    stream: Stream,
    until: Instant,
}

impl IdlePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, key: u64, now: Instant) -> Option<Stream> {
        loop {
            // Checked and closed outside the lock.
            let mut idle = {
                let mut lists = self.lock();
                let list = lists.by_peer.get_mut(&key)?;
                let idle = list.pop_back();
                if list.is_empty() {
                    lists.by_peer.remove(&key);
                }
                let idle = idle?;
                lists.total -= 1;
                idle
            };
            if idle.until > now && open(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    fn put(&self, key: u64, mut stream: Stream, until: Instant) {
        if !open(&mut stream) {
            return;
        }
        let evicted = {
            let mut lists = self.lock();
            lists
                .by_peer
                .entry(key)
                .or_default()
                .push_back(Idle { stream, until });
            lists.total += 1;
            if lists.total > self.capacity {
                lists.evict_first_due()
            } else {
                None
            }
        };
        drop(evicted);
    }

    fn sweep(&self, now: Instant) -> usize {
        let mut closed = Vec::new();
        {
            let mut lists = self.lock();
            lists.by_peer.retain(|_, list| {
                let mut i = 0;
                while i < list.len() {
                    let idle = &mut list[i];
                    if idle.until <= now || !open(&mut idle.stream) {
                        closed.extend(list.remove(i));
                    } else {
                        i += 1;
                    }
                }
                !list.is_empty()
            });
            lists.total -= closed.len();
        }
        closed.len()
    }
}

impl Lists {
    /// Removes the connection nearest its idle timeout, over all peers: each list's front,
    /// since a peer's connections share one timeout.
    fn evict_first_due(&mut self) -> Option<Idle> {
        let key = *self
            .by_peer
            .iter()
            .filter_map(|(key, list)| list.front().map(|idle| (key, idle.until)))
            .min_by_key(|(_, until)| *until)?
            .0;
        let list = self.by_peer.get_mut(&key)?;
        let idle = list.pop_front();
        if list.is_empty() {
            self.by_peer.remove(&key);
        }
        self.total -= usize::from(idle.is_some());
        idle
    }
}

/// Whether an idle connection can carry a request: nothing to read on it. End of stream, an
/// error, or bytes the provider sent unasked all mean it cannot. Never waits: a read the
/// reactor has not seen readiness for returns at once without a system call.
fn open(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    Pin::new(&mut **stream)
        .poll_read(&mut cx, &mut buf)
        .is_pending()
}

type Pools = Box<dyn Fn() -> Vec<(String, Arc<Connector>)> + Send + Sync>;

/// Closes idle provider connections past their timeout or closed by the provider, every
/// [`SWEEP_EVERY`], and sets each pool's gauge of what it keeps. `pools` names the connectors
/// to look at and their pools' names (providers' own pools change with the policy).
pub struct Sweep {
    pools: Pools,
    idle: Family<PoolLabels, Gauge>,
    /// Pools given a gauge, so one that is gone has its gauge removed.
    shown: HashSet<String>,
}

impl Sweep {
    pub fn new(
        pools: impl Fn() -> Vec<(String, Arc<Connector>)> + Send + Sync + 'static,
        idle: Family<PoolLabels, Gauge>,
    ) -> Self {
        Self {
            pools: Box::new(pools),
            idle,
            shown: HashSet::new(),
        }
    }

    fn once(&mut self) -> usize {
        let now = Instant::now();
        let mut closed = 0;
        let mut seen = HashSet::new();
        for (name, pool) in (self.pools)() {
            closed += pool.sweep(now);
            let kept = i64::try_from(pool.idle_count()).unwrap_or(i64::MAX);
            self.idle
                .get_or_create(&PoolLabels { pool: name.clone() })
                .set(kept);
            seen.insert(name);
        }
        for gone in self.shown.difference(&seen) {
            self.idle.remove(&PoolLabels { pool: gone.clone() });
        }
        self.shown = seen;
        closed
    }
}

impl Service for Sweep {
    fn name(&self) -> &'static str {
        "pool-sweep"
    }

    fn run(
        mut self: Box<Self>,
        mut shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    _ = tick.tick() => {
                        let closed = self.once();
                        if closed > 0 {
                            tracing::debug!(closed, "Closed idle provider connections.");
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
