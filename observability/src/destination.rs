//! Which finished requests a destination gets: its sampling, its filter and its signals, as
//! one pure decision per request.

use sluice_config::{DestinationConfig, DestinationSampling, OtlpConfig};

use crate::record::RequestRecord;

/// The decision part of a destination, compiled from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    pub sampling: DestinationSampling,
    pub routes: Vec<String>,
    pub tenants: Vec<String>,
    pub outcomes: Vec<String>,
    pub traces: bool,
    pub logs: bool,
}

impl Admit {
    pub fn new(d: &DestinationConfig) -> Self {
        Self {
            sampling: d.sampling,
            routes: d.filter.routes.clone(),
            tenants: d.filter.tenants.clone(),
            outcomes: d.filter.outcomes.clone(),
            traces: d.traces,
            logs: d.logs,
        }
    }

    /// Whether the request passes the filter: every non-empty list must name it. A request
    /// with no route (or no tenant) passes only lists that are empty.
    pub fn matches(&self, route: Option<&str>, tenant: Option<&str>, outcome: &str) -> bool {
        let passes = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        };
        passes(&self.routes, route)
            && passes(&self.tenants, tenant)
            && passes(&self.outcomes, Some(outcome))
    }

    /// Whether this destination gets the request's spans, given whether tail sampling kept
    /// them.
    pub fn wants_spans(&self, r: &RequestRecord, kept: bool) -> bool {
        self.traces
            && (kept || self.sampling == DestinationSampling::All)
            && self.matches(r.route.as_deref(), r.tenant.as_deref(), r.outcome.as_str())
    }

    /// Whether it gets the log record of an incident event on `route`. Incidents are not
    /// requests: the outcome filter does not apply, and they have no tenant, so a destination
    /// that names tenants gets none.
    pub fn wants_incident(&self, route: &str) -> bool {
        self.logs
            && self.tenants.is_empty()
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }

    /// Whether it gets the request's access-log record. Logs are not sampled: like the
    /// standard-output log, every request has its record; only the filter applies.
    pub fn wants_log(&self, r: &RequestRecord) -> bool {
        self.logs && self.matches(r.route.as_deref(), r.tenant.as_deref(), r.outcome.as_str())
    }
}

/// `telemetry.otlp` as a destination: named `otlp`, spans only, tail-sampled, no filter.
pub fn legacy(otlp: &OtlpConfig) -> DestinationConfig {
    DestinationConfig {
        name: "otlp".to_owned(),
        otlp: otlp.clone(),
        headers_env: Default::default(),
        sampling: DestinationSampling::Tail,
        filter: Default::default(),
        traces: true,
        logs: false,
    }
}

/// Every destination of a `telemetry` section: `otlp` first, then `destinations` in order.
pub fn all(cfg: &sluice_config::TelemetryConfig) -> Vec<DestinationConfig> {
    cfg.otlp
        .iter()
        .map(legacy)
        .chain(cfg.destinations.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use std::sync::Arc;

    fn admit(
        sampling: DestinationSampling,
        routes: &[&str],
        tenants: &[&str],
        outcomes: &[&str],
    ) -> Admit {
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        Admit {
            sampling,
            routes: v(routes),
            tenants: v(tenants),
            outcomes: v(outcomes),
            traces: true,
            logs: true,
        }
    }

    /// The metrics tests' record, on `route` for `tenant`, not head-sampled.
    fn record(route: Option<&str>, tenant: Option<&str>, outcome: Outcome) -> RequestRecord {
        let mut r = crate::metrics::tests::record(outcome, None);
        r.route = route.map(Arc::from);
        r.tenant = tenant.map(Arc::from);
        r.trace.sampled = false;
        r
    }

    #[test]
    fn sampling_and_filters() {
        use DestinationSampling::{All, Tail};
        let chat_acme_ok = record(Some("chat"), Some("acme"), Outcome::Ok);
        let anon_timeout = record(None, None, Outcome::Timeout);
        let cases = [
            (
                "tail, kept",
                admit(Tail, &[], &[], &[]),
                &chat_acme_ok,
                true,
                true,
            ),
            (
                "tail, not kept",
                admit(Tail, &[], &[], &[]),
                &chat_acme_ok,
                false,
                false,
            ),
            (
                "all, not kept",
                admit(All, &[], &[], &[]),
                &chat_acme_ok,
                false,
                true,
            ),
            (
                "route listed",
                admit(All, &["chat"], &[], &[]),
                &chat_acme_ok,
                false,
                true,
            ),
            (
                "route not listed",
                admit(All, &["embed"], &[], &[]),
                &chat_acme_ok,
                true,
                false,
            ),
            (
                "no route vs a route list",
                admit(All, &["chat"], &[], &[]),
                &anon_timeout,
                true,
                false,
            ),
            (
                "tenant listed",
                admit(Tail, &[], &["acme", "beta"], &[]),
                &chat_acme_ok,
                true,
                true,
            ),
            (
                "tenant not listed",
                admit(Tail, &[], &["beta"], &[]),
                &chat_acme_ok,
                true,
                false,
            ),
            (
                "outcome listed",
                admit(All, &[], &[], &["timeout"]),
                &anon_timeout,
                false,
                true,
            ),
            (
                "outcome not listed",
                admit(All, &[], &[], &["ok"]),
                &anon_timeout,
                true,
                false,
            ),
            (
                "every list must pass",
                admit(All, &["chat"], &["acme"], &["timeout"]),
                &chat_acme_ok,
                true,
                false,
            ),
        ];
        for (name, a, r, kept, want) in cases {
            assert_eq!(a.wants_spans(r, kept), want, "{name}");
        }
        let mut spans_only = admit(All, &[], &[], &[]);
        spans_only.logs = false;
        assert!(!spans_only.wants_log(&chat_acme_ok));
        let mut logs_only = admit(Tail, &["chat"], &[], &[]);
        logs_only.traces = false;
        assert!(!logs_only.wants_spans(&chat_acme_ok, true));
        assert!(logs_only.wants_log(&chat_acme_ok), "logs are not sampled");
        assert!(!logs_only.wants_log(&anon_timeout), "but are filtered");
    }

    #[test]
    fn incidents_pass_route_filters_only_and_never_tenant_filtered_destinations() {
        use DestinationSampling::Tail;
        /// (routes, tenants, outcomes, logs, route of the incident, wanted)
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            bool,
            &'a str,
            bool,
        );
        let cases: [Case<'_>; 7] = [
            (&[], &[], &[], true, "chat", true),
            (&["chat"], &[], &[], true, "chat", true),
            (&["chat"], &[], &[], true, "embed", false),
            (&[], &[], &["upstream_error"], true, "chat", true),
            (&[], &["acme"], &[], true, "chat", false),
            (&[], &[], &[], false, "chat", false),
            (&["a", "chat"], &[], &["ok"], true, "chat", true),
        ];
        for (routes, tenants, outcomes, logs, route, wanted) in cases {
            let a = Admit {
                logs,
                ..admit(Tail, routes, tenants, outcomes)
            };
            assert_eq!(
                a.wants_incident(route),
                wanted,
                "{routes:?} {tenants:?} {outcomes:?} logs={logs} {route}"
            );
        }
    }

    #[test]
    fn the_filter_outcomes_are_the_record_outcomes() {
        let all = [
            Outcome::Ok,
            Outcome::ClientError,
            Outcome::UpstreamError,
            Outcome::Timeout,
            Outcome::Truncated,
            Outcome::Cancelled,
            Outcome::GatewayError,
        ];
        let names: Vec<&str> = all.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, sluice_config::OUTCOMES);
    }
}
