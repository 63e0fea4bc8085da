//! The four drills: for each, the policy Sluice runs (short SLO windows and the one remediation
//! rule under test), the traffic, and the fault mock-llm is given.
//!
//! Windows are scaled (`slo.window_scale`) so a burn shows in seconds; the rules' `hold`,
//! `cooldown` and `probe_share` are chosen for that scale and the drill's traffic: the probe
//! share must leave enough requests on the original in a scaled 5-minute window for its
//! `min_events`, or the original could never be seen to recover. Passive health is switched
//! off on every route so what the drill measures is remediation, not ejection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::mock_llm::{Outage, RuntimeFault};

/// Passive health that never ejects.
const NO_EJECTION: &str = "health: { consecutive_failures: 1000, min_requests: 1000000 }";
/// Retries as the quickstart has them, with budget room for every failed attempt of the
/// drill's traffic.
const RETRY: &str = "retry: { max_attempts: 3, budget: { ratio: 1.0, min_per_s: 100 } }";
/// Distinct questions of the outage drill, all answered (and cached) before the fault.
pub const TOPICS: usize = 12;

/// A drill, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The primary target answers half its requests with 503: failover.
    ErrorBurst,
    /// The primary model's time to first token ×10: downgrade.
    SlowTtft,
    /// Every target stops answering: cache fallback.
    Outage,
    /// The provider takes less than the traffic: shedding the low-priority key.
    Overload,
}

/// Which virtual key a drill request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Priority 8: never shed.
    Gold,
    /// Priority 2: shed under `shed: { max_priority: 3 }`.
    Bulk,
}

/// One request of the drill's traffic.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub key: Key,
    pub body: Bytes,
    pub stream: bool,
}

/// Everything a drill needs besides the processes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    /// The remediation rule under test.
    pub rule: &'static str,
    /// Its action, as incidents name it.
    pub action: &'static str,
    /// The SLO its trigger reads.
    pub slo: &'static str,
    /// `slo.window_scale`.
    pub window_scale: f64,
    /// mock-llm's time to first token (and to a non-stream answer).
    pub mock_ttft: Duration,
    /// Requests per second, open loop.
    pub rate: f64,
    /// Steady traffic before the fault.
    pub warmup: Duration,
    /// How long the fault stays after the action is in effect.
    pub fault_after_mitigation: Duration,
    /// What mock-llm is told at fault start.
    pub faults: Vec<RuntimeFault>,
    /// The route's part of the policy file (models and routes).
    pub body: String,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::ErrorBurst,
        Scenario::SlowTtft,
        Scenario::Outage,
        Scenario::Overload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ErrorBurst => "error-burst",
            Scenario::SlowTtft => "slow-ttft",
            Scenario::Outage => "outage",
            Scenario::Overload => "overload",
        }
    }

    /// What the drill does, in one line.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::ErrorBurst => {
                "the primary target answers 50 % of requests with 503 → failover"
            }
            Scenario::SlowTtft => "the primary model's time to first token ×10 → downgrade",
            Scenario::Outage => "every target stops answering (connections hang) → cache fallback",
            Scenario::Overload => {
                "the provider takes 3 requests at a time, the traffic needs ~4 → shed priority ≤ 3"
            }
        }
    }

    pub fn plan(self) -> Plan {
        let common = |rule, action, slo, window_scale, mock_ttft_ms, rate| Plan {
            scenario: self,
            rule,
            action,
            slo,
            window_scale,
            mock_ttft: Duration::from_millis(mock_ttft_ms),
            rate,
            warmup: Duration::from_secs(4),
            fault_after_mitigation: Duration::from_secs(4),
            faults: Vec::new(),
            body: String::new(),
        };
        match self {
            Scenario::ErrorBurst => Plan {
                faults: vec![RuntimeFault {
                    error_ratio: 0.5,
                    error_status: 503,
                    ..RuntimeFault::none(Some("primary"))
                }],
                body: format!(
                    "models:\n  primary: {{ provider: mock, upstream_model: primary }}\n  secondary: {{ provider: mock, upstream_model: secondary }}\n\
                     routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: primary, weight: 3 }}, {{ model: secondary, weight: 1 }} ]\n    {RETRY}\n    {NO_EJECTION}\n\
                     \x20   slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 10 }}\n\
                     \x20   remediation:\n      - {{ name: drill-failover, when: {{ slo: availability, burn: page }}, do: failover, hold: 8s, cooldown: 3s, probe_share: 0.2 }}\n"
                ),
                ..common("drill-failover", "failover", "availability", 0.01, 20, 40.0)
            },
            Scenario::SlowTtft => Plan {
                faults: vec![RuntimeFault {
                    ttft_multiplier: 10.0,
                    ..RuntimeFault::none(Some("big"))
                }],
                body: format!(
                    "models:\n  big: {{ provider: mock, upstream_model: big }}\n  small: {{ provider: mock, upstream_model: small }}\n\
                     routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: big }} ]\n    {RETRY}\n    {NO_EJECTION}\n\
                     \x20   slos:\n      - {{ name: fast-start, objective: 95, sli: {{ ttft_below: 150ms }}, min_events: 10 }}\n\
                     \x20   remediation:\n      - {{ name: drill-downgrade, when: {{ slo: fast-start, burn: {{ window: 5m, above: 10 }} }}, do: {{ downgrade_to: [small] }}, hold: 8s, cooldown: 3s, probe_share: 0.2 }}\n"
                ),
                ..common(
                    "drill-downgrade",
                    "downgrade_to",
                    "fast-start",
                    0.01,
                    30,
                    30.0,
                )
            },
            // The cache's ttl is short so that, behind it, the providers still see enough requests
            // (the probe share of those not answered from the cache) for the probe to tell them
            // healthy again once they are back.
            Scenario::Outage => Plan {
                faults: vec![RuntimeFault {
                    outage: Some(Outage::Hang),
                    ..RuntimeFault::none(None)
                }],
                body: format!(
                    "models:\n  primary: {{ provider: mock, upstream_model: primary }}\n  secondary: {{ provider: mock, upstream_model: secondary }}\n\
                     routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: primary }}, {{ model: secondary }} ]\n    {RETRY}\n    {NO_EJECTION}\n\
                     \x20   timeouts: {{ ttft: 250ms }}\n    cache: {{ ttl: 200ms, max_stale: 10m }}\n\
                     \x20   slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 10 }}\n      - {{ name: answers-in-time, objective: 99, sli: {{ duration_below: 200ms }}, min_events: 5 }}\n\
                     \x20   remediation:\n      - {{ name: drill-stale, when: {{ slo: answers-in-time, burn: page, no_healthy_target: true }}, do: cache_fallback, hold: 8s, cooldown: 3s, probe_share: 0.25 }}\n"
                ),
                ..common(
                    "drill-stale",
                    "cache_fallback",
                    "answers-in-time",
                    0.01,
                    20,
                    40.0,
                )
            },
            Scenario::Overload => Plan {
                faults: vec![RuntimeFault {
                    max_concurrent: Some(3),
                    over_capacity_status: 503,
                    ..RuntimeFault::none(None)
                }],
                body: format!(
                    "models:\n  main: {{ provider: mock, upstream_model: main }}\n\
                     routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: main }} ]\n    {RETRY}\n    {NO_EJECTION}\n\
                     \x20   slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 5 }}\n\
                     \x20   remediation:\n      - {{ name: drill-shed, when: {{ slo: availability, burn: {{ window: 5m, above: 10 }} }}, do: {{ shed: {{ max_priority: 3 }} }}, hold: 12s, cooldown: 2s, probe_share: 0.1 }}\n"
                ),
                // Shedding's probe reads the admitted traffic, which is served well while
                // shedding is on: the action lasts its hold, so the overload must end first.
                warmup: Duration::from_secs(6),
                fault_after_mitigation: Duration::from_secs(8),
                ..common("drill-shed", "shed", "availability", 0.002, 100, 40.0)
            },
        }
    }

    /// The `i`th request of the drill's traffic.
    pub fn request(self, i: u64) -> DrillRequest {
        let chat = |content: String, temperature: Option<f64>, stream: bool| {
            let mut body = json!({
                "model": "chat",
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 8,
            });
            if let Some(t) = temperature {
                body["temperature"] = json!(t);
            }
            if stream {
                body["stream"] = json!(true);
            }
            Bytes::from(body.to_string())
        };
        match self {
            Scenario::ErrorBurst => DrillRequest {
                key: Key::Gold,
                body: chat(format!("Drill question {i}."), None, false),
                stream: false,
            },
            Scenario::SlowTtft => DrillRequest {
                key: Key::Gold,
                body: chat(format!("Drill question {i}."), None, true),
                stream: true,
            },
            Scenario::Outage => DrillRequest {
                key: Key::Gold,
                body: chat(
                    format!("Tell me about topic {}.", i % TOPICS as u64),
                    Some(0.0),
                    false,
                ),
                stream: false,
            },
            // One gold request in four; the rest is the bulk key shedding may refuse.
            Scenario::Overload => DrillRequest {
                key: if i.is_multiple_of(4) {
                    Key::Gold
                } else {
                    Key::Bulk
                },
                body: chat(format!("Drill question {i}."), None, false),
                stream: false,
            },
        }
    }
}

impl Plan {
    /// The whole policy file.
    pub fn policy(&self, ports: Ports, hashes: &Hashes, data_dir: &str) -> String {
        format!(
            "server:\n  listen: 127.0.0.1:{gw}\n  admin_listen: 127.0.0.1:{admin}\n  threads: 1\n  data_dir: \"{data_dir}\"\n\
             telemetry: {{ access_log: false }}\n\
             slo: {{ window_scale: {scale}, evaluate_every: 100ms, snapshot_every: 30s }}\n\
             providers:\n  mock: {{ kind: openai, base_url: \"http://127.0.0.1:{mock}/v1\", api_key_env: {PROVIDER_KEY_ENV} }}\n\
             {body}\
             keys:\n  - {{ name: gold, key_sha256: \"{gold}\", tenant: drill, priority: 8 }}\n  - {{ name: bulk, key_sha256: \"{bulk}\", tenant: drill, priority: 2 }}\n\
             admin:\n  tokens:\n    - {{ name: drill, token_sha256: \"{admin_hash}\" }}\n",
            gw = ports.gateway,
            admin = ports.admin,
            mock = ports.mock,
            scale = self.window_scale,
            body = self.body,
            gold = hashes.gold,
            bulk = hashes.bulk,
            admin_hash = hashes.admin,
        )
    }
}

/// The environment variable that carries mock-llm's API key to Sluice.
pub const PROVIDER_KEY_ENV: &str = "SLUICE_DRILL_PROVIDER_KEY";

/// The loopback ports of one drill.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub mock: u16,
    pub gateway: u16,
    pub admin: u16,
}

/// SHA-256 (hex) of the drill's keys and admin token, as the policy lists them.
#[derive(Debug, Clone)]
pub struct Hashes {
    pub gold: String,
    pub bulk: String,
    pub admin: String,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown drill `{s}`; the drills are {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        let err = "flood".parse::<Scenario>().unwrap_err();
        assert!(
            err.contains("error-burst, slow-ttft, outage, overload"),
            "{err}"
        );
    }

    #[test]
    fn every_policy_is_valid() {
        let hashes = Hashes {
            gold: "a".repeat(64),
            bulk: "b".repeat(64),
            admin: "c".repeat(64),
        };
        let ports = Ports {
            mock: 1,
            gateway: 2,
            admin: 3,
        };
        for s in Scenario::ALL {
            let plan = s.plan();
            let yaml = plan.policy(ports, &hashes, "/tmp/drill-data");
            let loaded = sluice_config::load_str(&yaml, "drill.yaml");
            assert!(loaded.is_ok(), "{s}: {:?}\n{yaml}", loaded.err());
            assert!(yaml.contains(plan.rule), "{s}");
            for f in &plan.faults {
                f.validate().unwrap();
            }
        }
    }

    #[test]
    fn overload_traffic_is_one_gold_in_four() {
        let gold = (0..100)
            .filter(|&i| Scenario::Overload.request(i).key == Key::Gold)
            .count();
        assert_eq!(gold, 25);
        // The outage drill asks only questions it answered before the fault.
        let distinct: std::collections::HashSet<_> =
            (0..100).map(|i| Scenario::Outage.request(i).body).collect();
        assert_eq!(distinct.len(), TOPICS);
    }
}
