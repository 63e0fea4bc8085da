//! The only place Sluice defines metrics. Registered once at start-up; handles are cheap to
//! clone and recording is lock-free after a label set's first use.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::record::{Endpoint, Outcome, RequestRecord};

/// Label value for a request that never resolved a route or a model.
const NONE: &str = "none";

/// Buckets for whole-request latency: LLM calls run from milliseconds (cache, errors) to
/// minutes (long generations).
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: Endpoint,
    pub route: Arc<str>,
    pub model: Arc<str>,
    pub outcome: Outcome,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub endpoint: Endpoint,
    pub route: Arc<str>,
    pub stream: bool,
}

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Finished requests. Labels: endpoint, route, model (the catalog model that answered),
    /// outcome, status.
    pub requests: Family<RequestLabels, Counter>,
    /// Whole-request latency, from the request header to the last byte sent.
    /// Labels: endpoint, route, stream.
    pub request_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// Upstream attempts made, successful or not.
    pub upstream_attempts: Counter,
    none: Arc<str>,
}

// === impl Metrics ===

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sluice_requests",
            "Requests Sluice finished answering",
            requests.clone(),
        );
        let request_duration =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS)
            });
        registry.register_with_unit(
            "sluice_request_duration",
            "Time from the request header to the last byte of the answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let upstream_attempts = Counter::default();
        registry.register(
            "sluice_upstream_attempts",
            "Requests Sluice sent to providers, retries and failovers included",
            upstream_attempts.clone(),
        );
        Self {
            requests,
            request_duration,
            upstream_attempts,
            none: Arc::from(NONE),
        }
    }

    /// Records one finished request: the single call site per request.
    pub fn record_request(&self, r: &RequestRecord) {
        let route = r.route.clone().unwrap_or_else(|| Arc::clone(&self.none));
        let model = r.model.clone().unwrap_or_else(|| Arc::clone(&self.none));
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: r.endpoint,
                route: Arc::clone(&route),
                model,
                outcome: r.outcome,
                status: r.status,
            })
            .inc();
        self.request_duration
            .get_or_create(&DurationLabels {
                endpoint: r.endpoint,
                route,
                stream: r.stream,
            })
            .observe(r.duration.as_secs_f64());
        self.upstream_attempts.inc_by(u64::from(r.attempts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_recorded_request_shows_in_the_exposition() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg);
        m.record_request(&RequestRecord {
            endpoint: Endpoint::ChatCompletions,
            route: Some(Arc::from("chat")),
            model: Some(Arc::from("gpt-4o")),
            stream: true,
            status: 200,
            outcome: Outcome::Ok,
            attempts: 2,
            duration: Duration::from_millis(30),
        });
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encodes");
        assert!(out.contains(
            r#"sluice_requests_total{endpoint="chat_completions",route="chat",model="gpt-4o",outcome="ok",status="200"} 1"#
        ), "{out}");
        assert!(out.contains("sluice_upstream_attempts_total 2"), "{out}");
        assert!(
            out.contains("# UNIT sluice_request_duration_seconds seconds"),
            "{out}"
        );
    }
}
