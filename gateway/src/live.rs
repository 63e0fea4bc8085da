//! Live state made visible and durable: gauges of the targets' health and the tenants' spend,
//! refreshed on a tick, and the spend kept in the data directory so a restart does not reset
//! a budget.
//!
//! `spend.json` is written whole ([`crate::datadir::write_atomic`]), so a crash mid-write
//! leaves the previous version, never half of one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_observability::metrics::{SpendLabels, TargetLabels};
use sluice_observability::service::{Service, Shutdown};
use sluice_policy::health::Phase;
use sluice_policy::spend::{self, Period, SpendSnapshot};

use crate::state::AppState;

/// How often gauges are refreshed and spend is saved (when it changed).
const TICK: Duration = Duration::from_secs(1);
const SAVE_EVERY: Duration = Duration::from_secs(5);
const FILE: &str = "spend.json";

/// Refreshes the live-state gauges and saves tenants' spend.
pub struct LiveState {
    state: Arc<AppState>,
    dir: PathBuf,
}

impl LiveState {
    pub fn new(state: Arc<AppState>, dir: PathBuf) -> Self {
        Self { state, dir }
    }

    fn refresh_gauges(&self) {
        let policy = self.state.policy.snapshot();
        let now = tokio::time::Instant::now();
        let metrics = &self.state.metrics;
        for route in policy.routes() {
            for (t, _) in route.all_targets() {
                let out = !matches!(t.state.phase(&route.health, now), Phase::Healthy);
                metrics
                    .target_ejected
                    .get_or_create(&TargetLabels {
                        route: Arc::clone(&route.name),
                        provider: Arc::clone(&t.provider.name),
                        model: Arc::clone(&t.model),
                    })
                    .set(i64::from(out));
            }
        }
        let wall = SystemTime::now();
        for (tenant, raw) in self.state.runtime.spend() {
            let s = spend::current(&raw, wall);
            let tenant: Arc<str> = Arc::from(tenant.as_str());
            for (period, usd) in [(Period::Day, s.day_usd), (Period::Month, s.month_usd)] {
                metrics
                    .tenant_spend
                    .get_or_create(&SpendLabels {
                        tenant: Arc::clone(&tenant),
                        period: period.as_str(),
                    })
                    .set(usd);
            }
        }
    }

    /// Writes the spend when it differs from what was last written.
    fn save(&self, last: &mut Vec<(String, SpendSnapshot)>) {
        let now = self.state.runtime.spend();
        if &now == last {
            return;
        }
        match save_spend(&self.dir, &now) {
            Ok(()) => *last = now,
            Err(e) => tracing::warn!(
                dir = %self.dir.display(),
                error = %e,
                "Cannot save tenant spend; it is kept in memory and saved again shortly."
            ),
        }
    }
}

impl Service for LiveState {
    fn name(&self) -> &'static str {
        "live-state"
    }

    fn run(self: Box<Self>, mut shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = self.state.runtime.spend();
            let mut since_save = Duration::ZERO;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.wait() => break,
                }
                self.refresh_gauges();
                since_save += TICK;
                if since_save >= SAVE_EVERY {
                    since_save = Duration::ZERO;
                    crate::datadir::blocking(|| self.save(&mut last));
                }
            }
            // The recorder (stopped before this) has added the last requests' cost.
            crate::datadir::blocking(|| self.save(&mut last));
        })
    }
}

/// Reads `spend.json` from `dir`; nothing when it does not exist yet.
pub fn load_spend(dir: &Path) -> Result<Vec<(String, SpendSnapshot)>, String> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Vec<(String, SpendSnapshot)>>(&bytes)
            .map_err(|e| format!("{}: not a spend file Sluice wrote: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save_spend(dir: &Path, spend: &[(String, SpendSnapshot)]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(spend).map_err(std::io::Error::other)?;
    crate::datadir::write_atomic(dir, FILE, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_round_trips_through_the_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_spend(dir.path()).expect("empty"), Vec::new());
        let s = vec![(
            "acme".to_owned(),
            SpendSnapshot {
                day: 20_000,
                day_usd: 1.25,
                month: 671,
                month_usd: 9.5,
            },
        )];
        save_spend(dir.path(), &s).expect("saved");
        assert_eq!(load_spend(dir.path()).expect("read back"), s);
        std::fs::write(dir.path().join(FILE), b"{not json").expect("write");
        assert!(load_spend(dir.path()).is_err());
    }
}
