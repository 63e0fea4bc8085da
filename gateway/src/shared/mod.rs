//! Limits and budgets shared by every replica through Redis (`state.redis` in the policy).
//!
//! Without `state.redis` none of this exists and each replica counts in-process, as the
//! policy crate's limiters and spend do. With it, a request whose key or tenant has a limit
//! or a budget is admitted by one `EVALSHA` of [`script::ADMIT`] (bounded by
//! `state.redis.timeout`); with `local_allowance` the replica leases that many slots per
//! round trip and admits from the lease until it runs out or ends ([`lease`]). Finished
//! requests' tokens and cost go to Redis off the request path, through the [`service`], which
//! also owns the connection. While Redis cannot be asked, `fail: open` admits under this
//! replica's own in-process limits and `fail: closed` refuses with 503.

pub mod cache;
pub mod lease;
pub mod link;
pub mod metrics;
pub mod script;
pub mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use redis::Script;
use serde::Serialize;
use sluice_config::{Budget, FailMode, Limits, RedisConfig};
use sluice_observability::service::{Feed, Intake};
use sluice_policy::spend::{OverBudget, periods};
use sluice_policy::{Denied, Headroom, KeyEntry, KeyLimiter};
use tokio::time::Instant;

use self::lease::Lease;
use self::link::Link;
use self::metrics::{ModeLabels, StateMetrics};
use self::script::Verdict;

/// Finished requests waiting for the state service; past this many they are dropped (and
/// counted), never waited for.
pub const QUEUE: usize = 16_384;

/// What the shared counters said about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Admitted(Option<Headroom>),
    Denied(Denied),
    OverBudget(OverBudget),
    /// Redis could not be asked: the fail mode decides.
    Unavailable(FailMode),
}

/// The shared side of one key: its Redis key names, the limits they were made for, and the
/// replica's lease of its slots.
#[derive(Debug)]
pub struct Subject {
    key: Limits,
    tenant: Limits,
    budget: Budget,
    /// GCRA and token-window keys of the key and its tenant. A limit's value is part of the
    /// name, so a changed limit starts fresh, as it does in-process.
    names: [String; 4],
    spend_base: String,
    lease: Mutex<Lease>,
    /// A round trip is leasing for this key: concurrent ones ask for their own slot only, so
    /// at most one lease per replica can be left unused.
    leasing: AtomicBool,
}

impl Subject {
    fn new(prefix: &str, entry: &KeyEntry, key: Limits, tenant: Limits) -> Self {
        let k = &entry.name;
        let t = &*entry.tenant;
        let n = |v: Option<u64>| v.unwrap_or(0);
        Self {
            key,
            tenant,
            budget: entry.budget,
            names: [
                format!("{prefix}rpm:key:{k}:{}", n(key.rpm.map(u64::from))),
                format!("{prefix}tpm:key:{k}:{}", n(key.tpm)),
                format!("{prefix}rpm:tenant:{t}:{}", n(tenant.rpm.map(u64::from))),
                format!("{prefix}tpm:tenant:{t}:{}", n(tenant.tpm)),
            ],
            spend_base: format!("{prefix}spend:{t}"),
            lease: Mutex::new(Lease::default()),
            leasing: AtomicBool::new(false),
        }
    }

    /// Whether anything about this key is counted at all.
    fn limited(&self) -> bool {
        self.key != Limits::default()
            || self.tenant != Limits::default()
            || self.budget != Budget::default()
    }

    /// The Redis keys of the spend at `at`: (UTC day, UTC month).
    fn spend_keys(&self, at: SystemTime) -> [String; 2] {
        let (day, month) = periods(at);
        [
            format!("{}:day:{day}", self.spend_base),
            format!("{}:month:{month}", self.spend_base),
        ]
    }
}

/// A finished request's tokens and cost, on their way to Redis.
#[derive(Debug)]
pub struct Usage {
    pub subject: Arc<Subject>,
    pub tokens: u64,
    pub usd: f64,
    pub at: SystemTime,
}

pub struct SharedState {
    cfg: RedisConfig,
    pub(crate) link: Link,
    subjects: RwLock<HashMap<String, Arc<Subject>>>,
    usage: Feed<Usage>,
    /// Answers to write to the shared cache; `None` unless `share_cache`.
    cache_puts: Option<Feed<cache::CachePut>>,
    metrics: StateMetrics,
    admit: Script,
    record: Script,
}

impl SharedState {
    pub fn new(
        cfg: RedisConfig,
        metrics: StateMetrics,
        usage: Feed<Usage>,
        cache_puts: Option<Feed<cache::CachePut>>,
    ) -> Self {
        Self {
            link: Link::new(metrics.clone()),
            cfg,
            subjects: RwLock::new(HashMap::new()),
            usage,
            cache_puts,
            metrics,
            admit: Script::new(script::ADMIT),
            record: Script::new(script::RECORD),
        }
    }

    /// A feed of finished requests' usage and the intake the state service drains.
    pub fn feed(
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> (Feed<Usage>, Intake<Usage>) {
        sluice_observability::service::feed(QUEUE, dropped)
    }

    pub fn fail_mode(&self) -> FailMode {
        self.cfg.fail
    }

    /// The shared side of `entry`, whose key and tenant limiters are `limiters`.
    pub fn subject(
        &self,
        entry: &KeyEntry,
        limiters: &[Option<Arc<KeyLimiter>>; 2],
    ) -> Arc<Subject> {
        let limits =
            |l: &Option<Arc<KeyLimiter>>| l.as_ref().map(|l| l.limits()).unwrap_or_default();
        let (key, tenant) = (limits(&limiters[0]), limits(&limiters[1]));
        let same = |s: &Subject| s.key == key && s.tenant == tenant && s.budget == entry.budget;
        if let Some(s) = self
            .subjects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&entry.name)
            .filter(|s| same(s))
        {
            return Arc::clone(s);
        }
        let s = Arc::new(Subject::new(&self.cfg.key_prefix, entry, key, tenant));
        self.subjects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.name.clone(), Arc::clone(&s));
        s
    }

    /// One of `subject`'s leased slots, when its lease has one left.
    fn admit_leased(&self, subject: &Subject) -> Option<Admission> {
        let taken = subject
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        taken.map(|h| {
            self.metrics.admitted_lease.inc();
            Admission::Admitted(Some(h))
        })
    }

    /// Admits one request of `subject` against the shared counters: from the lease when one
    /// is running, otherwise with one bounded round trip.
    pub async fn admit(&self, subject: &Subject) -> Admission {
        if !subject.limited() {
            return Admission::Admitted(None);
        }
        let allowance = self.cfg.local_allowance;
        if allowance > 0
            && let Some(admitted) = self.admit_leased(subject)
        {
            return admitted;
        }
        let Some(mut conn) = self.link.conn() else {
            return self.fallback();
        };
        let leasing = (allowance > 1)
            .then(|| Leasing::claim(&subject.leasing))
            .flatten();
        // A lease granted between the look above and the claim serves this request: leasing
        // again would add slots to a lease that still has some, and what is left when a lease
        // ends is lost (the claim is held until a grant lands, so this look sees it).
        if leasing.is_some()
            && let Some(admitted) = self.admit_leased(subject)
        {
            return admitted;
        }
        let want = if leasing.is_some() { allowance } else { 1 };
        let [day, month] = subject.spend_keys(SystemTime::now());
        let mut call = self.admit.prepare_invoke();
        for k in &subject.names {
            call.key(k.as_str());
        }
        call.key(day).key(month);
        let rpm = |l: Limits| l.rpm.unwrap_or(0);
        let tpm = |l: Limits| l.tpm.unwrap_or(0);
        let usd = |v: Option<f64>| v.unwrap_or(-1.0);
        call.arg(rpm(subject.key))
            .arg(tpm(subject.key))
            .arg(rpm(subject.tenant))
            .arg(tpm(subject.tenant))
            .arg(usd(subject.budget.usd_per_day))
            .arg(usd(subject.budget.usd_per_month))
            .arg(want);
        let started = Instant::now();
        let reply = match tokio::time::timeout(
            self.cfg.timeout,
            call.invoke_async::<Vec<String>>(&mut conn),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.link.set_down(&e.to_string(), self.cfg.fail.as_str());
                return self.fallback();
            }
            Err(_) => {
                self.link.set_down(
                    &format!("no answer within {:?}", self.cfg.timeout),
                    self.cfg.fail.as_str(),
                );
                return self.fallback();
            }
        };
        self.metrics
            .round_trip
            .observe(started.elapsed().as_secs_f64());
        match script::verdict(&reply, subject.key, subject.tenant, &subject.budget) {
            Ok(Verdict::Admitted { granted, headroom }) => {
                if granted > 1 {
                    subject
                        .lease
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .grant(granted - 1, headroom, Instant::now());
                }
                self.metrics.admitted_redis.inc();
                let some = headroom.requests.is_some() || headroom.tokens.is_some();
                Admission::Admitted(some.then_some(headroom))
            }
            Ok(Verdict::Denied(d)) => Admission::Denied(d),
            Ok(Verdict::OverBudget(o)) => Admission::OverBudget(o),
            Err(e) => {
                // Another program's keys under our prefix, or a script from another version.
                self.link.set_down(&e, self.cfg.fail.as_str());
                self.fallback()
            }
        }
    }

    /// Hands a finished request's tokens and cost to the state service; never waits.
    pub fn record(&self, subject: &Arc<Subject>, tokens: u64, usd: f64, at: SystemTime) {
        let counted = subject.key.tpm.is_some() || subject.tenant.tpm.is_some();
        let tokens = if counted { tokens } else { 0 };
        let usd = if usd.is_finite() && usd > 0.0 {
            usd
        } else {
            0.0
        };
        if tokens == 0 && usd == 0.0 {
            return;
        }
        self.usage.offer(Usage {
            subject: Arc::clone(subject),
            tokens,
            usd,
            at,
        });
    }

    fn fallback(&self) -> Admission {
        let mode = self.cfg.fail;
        self.metrics
            .fallback
            .get_or_create(&ModeLabels {
                mode: mode.as_str(),
            })
            .inc();
        Admission::Unavailable(mode)
    }

    /// `/admin/state`.
    pub fn view(&self) -> StateView {
        let s = self.link.status();
        StateView {
            backend: "redis",
            redis: Some(RedisView {
                url: self.cfg.url.clone(),
                up: self.link.is_up(),
                since: s
                    .since
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                last_error: s.last_error,
                fail: self.cfg.fail.as_str(),
                timeout_ms: u64::try_from(self.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
                local_allowance: self.cfg.local_allowance,
                share_cache: self.cfg.share_cache,
                key_prefix: self.cfg.key_prefix.clone(),
                pending_writes: self.metrics.pending.get(),
                dropped_writes: self.usage.dropped(),
            }),
        }
    }
}

/// The one lease request in flight for a key; released when dropped, whatever the outcome.
struct Leasing<'a>(&'a AtomicBool);

impl<'a> Leasing<'a> {
    fn claim(flag: &'a AtomicBool) -> Option<Self> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(Self(flag))
    }
}

impl Drop for Leasing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Where limits and budgets are counted, for `/admin/state`.
#[derive(Debug, Serialize)]
pub struct StateView {
    /// `memory` (each replica on its own) or `redis`.
    pub backend: &'static str,
    pub redis: Option<RedisView>,
}

impl StateView {
    pub fn in_memory() -> Self {
        Self {
            backend: "memory",
            redis: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RedisView {
    pub url: String,
    pub up: bool,
    /// When `up` last changed (RFC 3339).
    pub since: Option<String>,
    pub last_error: Option<String>,
    pub fail: &'static str,
    pub timeout_ms: u64,
    pub local_allowance: u32,
    pub share_cache: bool,
    pub key_prefix: String,
    pub pending_writes: i64,
    pub dropped_writes: u64,
}
