//! The state service: owns the connection to Redis (connects, reconnects with backoff,
//! notices an outage even when no request does) and adds finished requests' tokens and cost
//! to the shared counters. While Redis is down the amounts are summed here, by counter, and
//! added once it is back, so an outage delays spend but does not lose it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use sluice_observability::service::{Intake, Service, Shutdown};

use super::link::backoff;
use super::{SharedState, Usage};

/// How often an idle, working link is checked, so an outage shows without a request.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The longest a connection attempt or a background write may take.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);
/// Usage items taken from the queue per write.
const BATCH: usize = 1024;

pub struct StateService {
    shared: Arc<SharedState>,
    intake: Intake<Usage>,
}

/// Amounts not yet added in Redis, by counter.
#[derive(Debug, Default)]
struct Pending {
    tokens: HashMap<String, u64>,
    usd: HashMap<String, f64>,
}

impl Pending {
    fn add(&mut self, u: &Usage) {
        if u.tokens > 0 {
            let names = &u.subject.names;
            for (base, limited) in [
                (&names[1], u.subject.key.tpm.is_some()),
                (&names[3], u.subject.tenant.tpm.is_some()),
            ] {
                if limited {
                    *self.tokens.entry(base.clone()).or_default() += u.tokens;
                }
            }
        }
        if u.usd > 0.0 {
            for k in u.subject.spend_keys(u.at) {
                *self.usd.entry(k).or_default() += u.usd;
            }
        }
    }

    fn len(&self) -> usize {
        self.tokens.len() + self.usd.len()
    }
}

impl StateService {
    pub fn new(shared: Arc<SharedState>, intake: Intake<Usage>) -> Self {
        Self { shared, intake }
    }

    /// Connects and loads the scripts (so the first `EVALSHA` finds them).
    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let cfg = &self.shared.cfg;
        let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
            .map_err(|e| e.to_string())?;
        if let Some(p) = &cfg.password {
            let settings = info.redis_settings().clone().set_password(p.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(BACKGROUND_TIMEOUT))
            .set_response_timeout(Some(BACKGROUND_TIMEOUT));
        let attempt = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            self.shared
                .admit
                .prepare_invoke()
                .load_async(&mut conn)
                .await?;
            self.shared
                .record
                .prepare_invoke()
                .load_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(BACKGROUND_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {BACKGROUND_TIMEOUT:?}")),
        }
    }

    /// One connection attempt; the link is up after a successful one.
    pub async fn connect_once(&self) -> bool {
        match self.connect().await {
            Ok(conn) => {
                self.shared.link.set_up(conn, self.shared.cfg.fail.as_str());
                true
            }
            Err(e) => {
                self.shared.link.still_down(&e);
                false
            }
        }
    }

    /// Adds everything pending in one script call; on failure it stays pending.
    async fn flush(&self, pending: &mut Pending) {
        let metrics = &self.shared.metrics;
        metrics
            .pending
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        if pending.len() == 0 {
            return;
        }
        let Some(mut conn) = self.shared.link.conn() else {
            return;
        };
        let tokens: Vec<(&String, &u64)> = pending.tokens.iter().collect();
        let usd: Vec<(&String, &f64)> = pending.usd.iter().collect();
        let mut call = self.shared.record.prepare_invoke();
        call.arg(tokens.len());
        for (k, n) in &tokens {
            call.key(k.as_str()).arg(**n);
        }
        for (k, v) in &usd {
            call.key(k.as_str()).arg(v.to_string());
        }
        let fail = self.shared.cfg.fail.as_str();
        match tokio::time::timeout(BACKGROUND_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {
                drop((tokens, usd));
                pending.tokens.clear();
                pending.usd.clear();
                metrics.pending.set(0);
            }
            Ok(Err(e)) => self.shared.link.set_down(&e.to_string(), fail),
            Err(_) => self
                .shared
                .link
                .set_down(&format!("no answer within {BACKGROUND_TIMEOUT:?}"), fail),
        }
    }

    async fn ping(&self) {
        let Some(mut conn) = self.shared.link.conn() else {
            return;
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let fail = self.shared.cfg.fail.as_str();
        match tokio::time::timeout(BACKGROUND_TIMEOUT, ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.shared.link.set_down(&e.to_string(), fail),
            Err(_) => self
                .shared
                .link
                .set_down(&format!("no answer within {BACKGROUND_TIMEOUT:?}"), fail),
        }
    }

    fn take(&mut self, first: Usage, pending: &mut Pending, batch: &mut Vec<Usage>) {
        batch.push(first);
        self.intake.drain_into(batch, BATCH);
        for u in batch.drain(..) {
            pending.add(&u);
        }
    }
}

impl Service for StateService {
    fn name(&self) -> &'static str {
        "shared-state"
    }

    fn run(
        mut self: Box<Self>,
        mut shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut pending = Pending::default();
            let mut batch = Vec::with_capacity(BATCH);
            let mut failures: u32 = 0;
            let mut ever_up = self.shared.link.is_up();
            loop {
                if !self.shared.link.is_up() {
                    if self.connect_once().await {
                        ever_up = true;
                        failures = 0;
                        self.flush(&mut pending).await;
                        continue;
                    }
                    if !ever_up && failures == 0 {
                        // Never connected: say so once (a lost link logs where it broke).
                        tracing::warn!(
                            error = self
                                .shared
                                .link
                                .status()
                                .last_error
                                .as_deref()
                                .unwrap_or(""),
                            fail = self.shared.cfg.fail.as_str(),
                            "Cannot reach Redis; limits and budgets follow the fail mode until it answers."
                        );
                    }
                    let wait = tokio::time::sleep(backoff(failures));
                    failures = failures.saturating_add(1);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            () = &mut wait => break,
                            item = self.intake.recv() => match item {
                                Some(u) => {
                                    self.take(u, &mut pending, &mut batch);
                                    self.shared.metrics.pending.set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
                                }
                                None => return,
                            },
                            () = shutdown.wait() => return,
                        }
                    }
                    continue;
                }
                tokio::select! {
                    item = self.intake.recv() => match item {
                        Some(u) => {
                            self.take(u, &mut pending, &mut batch);
                            self.flush(&mut pending).await;
                        }
                        None => break,
                    },
                    () = self.shared.link.broken.notified() => {}
                    () = tokio::time::sleep(PING_EVERY) => self.ping().await,
                    () = shutdown.wait() => break,
                }
            }
            // The recorder stopped before this: add what it handed over last.
            self.intake.close();
            while self.intake.drain_into(&mut batch, BATCH) > 0 {
                for u in batch.drain(..) {
                    pending.add(&u);
                }
            }
            self.flush(&mut pending).await;
            if pending.len() > 0 {
                tracing::warn!(
                    counters = pending.len(),
                    "Redis did not take the last tokens and spend before shutdown; they are counted only in this replica's spend file."
                );
            }
        })
    }
}
