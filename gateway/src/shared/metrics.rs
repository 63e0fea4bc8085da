//! The shared state's metrics, registered only when `state.redis` is configured.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Round trips are meant to take well under the timeout (default 50ms).
const ROUND_TRIP_BUCKETS: [f64; 10] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// open | closed
    pub mode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmitLabels {
    /// redis (a round trip) | lease (the replica's local allowance)
    pub source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// hit | miss | error (a read that failed or timed out) | stored | dropped (a write not made)
    pub result: &'static str,
}

/// `sluice_shared_cache_total`, each result made once.
#[derive(Debug, Clone)]
pub struct SharedCacheMetrics {
    pub hit: Counter,
    pub miss: Counter,
    pub error: Counter,
    pub stored: Counter,
    pub dropped: Counter,
}

#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// 1 while Redis answers, 0 while the fail mode applies.
    pub backend_up: Gauge,
    /// Requests decided by the fail mode because Redis could not be asked.
    pub fallback: Family<ModeLabels, Counter>,
    /// Requests admitted against shared counters, by where the slot came from.
    pub admitted: Family<AdmitLabels, Counter>,
    /// `admitted{source="lease"}` and `{source="redis"}`, made once: counted on every admission.
    pub admitted_lease: Counter,
    pub admitted_redis: Counter,
    /// Admission round trips to Redis (one EVALSHA), successful ones only.
    pub round_trip: Histogram,
    /// Finished requests' tokens and spend not yet written to Redis (kept while it is down).
    pub pending: Gauge,
    /// The shared response cache's reads and writes (`state.redis.share_cache`).
    pub cache: SharedCacheMetrics,
    cache_family: Family<CacheLabels, Counter>,
}

impl StateMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let admitted = Family::<AdmitLabels, Counter>::default();
        let source = |source| admitted.get_or_create(&AdmitLabels { source }).clone();
        let (admitted_lease, admitted_redis) = (source("lease"), source("redis"));
        let cache_family = Family::<CacheLabels, Counter>::default();
        let result = |result| cache_family.get_or_create(&CacheLabels { result }).clone();
        let cache = SharedCacheMetrics {
            hit: result("hit"),
            miss: result("miss"),
            error: result("error"),
            stored: result("stored"),
            dropped: result("dropped"),
        };
        let m = Self {
            backend_up: Gauge::default(),
            fallback: Family::default(),
            admitted,
            admitted_lease,
            admitted_redis,
            round_trip: Histogram::new(ROUND_TRIP_BUCKETS),
            pending: Gauge::default(),
            cache,
            cache_family,
        };
        registry.register(
            "sluice_state_backend_up",
            "Whether the shared state backend (Redis) answers: 1 yes, 0 no (the fail mode applies)",
            m.backend_up.clone(),
        );
        registry.register(
            "sluice_state_fallback",
            "Requests whose limits and budget were decided by the fail mode because Redis could not be asked",
            m.fallback.clone(),
        );
        registry.register(
            "sluice_state_admitted",
            "Requests admitted against limits and budgets shared through Redis, by source",
            m.admitted.clone(),
        );
        registry.register_with_unit(
            "sluice_state_round_trip",
            "Time of one admission round trip to Redis",
            Unit::Seconds,
            m.round_trip.clone(),
        );
        registry.register(
            "sluice_state_pending_writes",
            "Tokens and spend counters waiting to be added in Redis",
            m.pending.clone(),
        );
        registry.register(
            "sluice_shared_cache",
            "Reads and writes of the response cache shared through Redis, by result",
            m.cache_family.clone(),
        );
        m
    }
}
