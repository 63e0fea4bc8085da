//! The one connection to Redis and whether it is usable.
//!
//! Requests never connect: they use the connection the state service made, or, while there is
//! none, go straight to the fail mode without waiting. A request whose round trip fails or
//! times out takes the link down; the service then reconnects with backoff. Each change is
//! logged once and shown in `sluice_state_backend_up` and `/admin/state`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;

use super::metrics::StateMetrics;

/// The first wait before reconnecting, doubled after each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long to wait before connection attempt number `failures + 1`.
pub fn backoff(failures: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

pub struct Link {
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    /// When the current state (up or down) began, and the last error, for the admin view.
    status: Mutex<Status>,
    /// Wakes the service to reconnect as soon as a request found the link broken.
    pub(super) broken: tokio::sync::Notify,
    metrics: StateMetrics,
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub since: Option<SystemTime>,
    pub last_error: Option<String>,
}

impl Link {
    pub fn new(metrics: StateMetrics) -> Self {
        metrics.backend_up.set(0);
        Self {
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            status: Mutex::new(Status {
                since: Some(SystemTime::now()),
                last_error: None,
            }),
            broken: tokio::sync::Notify::new(),
            metrics,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The connection, while the link is up.
    pub fn conn(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.conn.load().as_deref().cloned()
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A working connection: counting is shared again.
    pub(super) fn set_up(&self, conn: MultiplexedConnection, fail: &str) {
        self.conn.store(Some(Arc::new(conn)));
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.backend_up.set(1);
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            s.since = Some(SystemTime::now());
            let was = s.last_error.is_some();
            drop(s);
            if was {
                tracing::warn!(
                    fail,
                    "Redis is reachable again; limits and budgets are shared across replicas again."
                );
            } else {
                tracing::info!(
                    "Connected to Redis; limits and budgets are shared across replicas."
                );
            }
        }
    }

    /// The link broke (`why` has no secrets: Redis's own error or a timeout). Only the first
    /// request to see it logs.
    pub fn set_down(&self, why: &str, fail: &str) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.last_error = Some(why.to_owned());
        if self.up.swap(false, Ordering::AcqRel) {
            s.since = Some(SystemTime::now());
            drop(s);
            self.conn.store(None);
            self.metrics.backend_up.set(0);
            tracing::warn!(
                error = why,
                fail,
                "Redis is unreachable; limits and budgets fall back to the fail mode until it is back."
            );
            self.broken.notify_one();
        }
    }

    /// A failed reconnection: remembered for the admin view, not logged again.
    pub(super) fn still_down(&self, why: &str) {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error = Some(why.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let table = [
            (0, 100),
            (1, 200),
            (2, 400),
            (5, 3200),
            (6, 5000),
            (40, 5000),
            (u32::MAX, 5000),
        ];
        for (failures, ms) in table {
            assert_eq!(
                backoff(failures),
                Duration::from_millis(ms),
                "after {failures} failures"
            );
        }
    }
}
