//! Decision tables for rules on an anomaly condition: each replays an incident tick by tick
//! with hand-written anomaly statuses, through the same hysteresis and caps as burn rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const ROUTE: &str = "chat";
const AVAIL: &str = "availability";
const K: f64 = 4.0;

fn key(provider: &str, model: &str) -> TargetKey {
    TargetKey {
        provider: Arc::from(provider),
        model: Arc::from(model),
    }
}

fn a() -> TargetKey {
    key("openai", "gpt-4o")
}

fn b() -> TargetKey {
    key("anthropic", "claude-sonnet")
}

fn mini() -> TargetKey {
    key("openai", "gpt-4o-mini")
}

fn routes(targets: &[(TargetKey, u32)]) -> Vec<RouteTargets> {
    vec![RouteTargets {
        route: Arc::from(ROUTE),
        targets: targets
            .iter()
            .map(|(t, w)| RouteTarget {
                target: t.clone(),
                weight: *w,
            })
            .collect(),
    }]
}

/// A status of `signal` on the route (`target: None`) or a target, `score` spreads from the
/// centre of a band of half-width `K`.
fn status(
    signal: AnomalySignal,
    target: Option<TargetKey>,
    state: AnomalyState,
    score: Option<f64>,
) -> AnomalyStatus {
    let route: Arc<str> = Arc::from(ROUTE);
    let scope = match target {
        Some(target) => AnomalyScope::Target { route, target },
        None => AnomalyScope::Route { route },
    };
    let learning = state == AnomalyState::Learning;
    AnomalyStatus {
        signal,
        scope,
        state,
        value: score.map(|s| 0.5 * (0.05 * s).exp()),
        score,
        band: (!learning).then_some(AnomalyBand {
            centre: 0.5,
            lower: 0.5 * (-0.05 * K).exp(),
            upper: 0.5 * (0.05 * K).exp(),
            spread: 0.05,
            k: K,
        }),
        events: if score.is_some() { 300 } else { 3 },
        active_for_ms: state.is_active().then_some(60_000),
        peak_score: state.is_active().then_some(score.unwrap_or(0.0).max(K)),
    }
}

fn flagged(signal: AnomalySignal, target: Option<TargetKey>, score: f64) -> AnomalyStatus {
    status(signal, target, AnomalyState::Anomalous, Some(score))
}

fn normal(signal: AnomalySignal, target: Option<TargetKey>, score: f64) -> AnomalyStatus {
    status(signal, target, AnomalyState::Normal, Some(score))
}

fn kinds(ts: &[Transition]) -> Vec<&'static str> {
    ts.iter().map(|t| t.event.as_str()).collect()
}

struct Sim {
    t0: Instant,
    overlay: Overlay,
    rules: Vec<Rule>,
    routes: Vec<RouteTargets>,
    log: Vec<Transition>,
}

impl Sim {
    fn new(rules: Vec<Rule>, routes: Vec<RouteTargets>) -> Self {
        Self {
            t0: Instant::now(),
            overlay: Overlay::default(),
            rules,
            routes,
            log: Vec::new(),
        }
    }

    fn tick(
        &mut self,
        secs: u64,
        slo: &[SloStatus],
        anomalies: &[AnomalyStatus],
    ) -> Vec<Transition> {
        let now = self.t0 + Duration::from_secs(secs);
        let d = decide_with_anomalies(
            now,
            slo,
            anomalies,
            &self.rules,
            &self.routes,
            &self.overlay,
        );
        self.overlay = d.overlay;
        self.log.extend(d.transitions.iter().cloned());
        d.transitions
    }

    fn substitute(&self) -> Option<(Arc<str>, f64)> {
        self.overlay
            .route(ROUTE)
            .and_then(|r| r.substitution.as_ref())
            .map(|s| (Arc::clone(&s.model), s.share))
    }

    fn ejection(&self, t: &TargetKey) -> Option<f64> {
        self.overlay
            .route(ROUTE)
            .and_then(|r| r.ejection(&t.provider, &t.model))
            .map(|e| e.share)
    }
}

fn ttft_downgrade() -> Rule {
    let mut r = Rule::new(
        "ttft-drift",
        ROUTE,
        Trigger::anomaly(AnomalySignal::Ttft, 0.0),
        Action::DowngradeTo(vec![Arc::from("gpt-4o-mini")]),
    );
    r.hold = Duration::from_secs(60);
    r.cooldown = Duration::from_secs(30);
    r
}

#[test]
fn anomaly_conditions_hold_as_documented() {
    use AnomalySignal::{ErrorRatio, TokensPerRequest, Ttft};
    use AnomalyState::{Anomalous, Clearing, Learning, Normal, Pending};
    let cond = |signal, min_score| BurnCondition::Anomaly { signal, min_score };
    type Case = (
        &'static str,
        BurnCondition,
        AnomalyStatus,
        bool,
        Option<f64>,
    );
    let cases: Vec<Case> = vec![
        (
            "flagged, any size",
            cond(Ttft, 0.0),
            status(Ttft, None, Anomalous, Some(6.0)),
            true,
            Some(1.5),
        ),
        (
            "flagged but smaller than asked",
            cond(Ttft, 8.0),
            status(Ttft, None, Anomalous, Some(6.0)),
            false,
            Some(1.5),
        ),
        (
            "clearing still counts while the score is big enough",
            cond(Ttft, 0.0),
            status(Ttft, None, Clearing, Some(2.0)),
            true,
            Some(0.5),
        ),
        (
            "out of band but not yet for long enough",
            cond(Ttft, 0.0),
            status(Ttft, None, Pending, Some(9.0)),
            false,
            Some(2.25),
        ),
        (
            "another signal",
            cond(ErrorRatio, 0.0),
            status(Ttft, None, Anomalous, Some(6.0)),
            false,
            Some(1.5),
        ),
        (
            "normal",
            cond(Ttft, 0.0),
            status(Ttft, None, Normal, Some(1.0)),
            false,
            Some(0.25),
        ),
        (
            "faster than usual is no excess",
            cond(Ttft, 0.0),
            status(Ttft, None, Normal, Some(-6.0)),
            false,
            Some(-1.5),
        ),
        (
            "two-sided signals count either way",
            cond(TokensPerRequest, 5.0),
            status(TokensPerRequest, None, Anomalous, Some(-6.0)),
            true,
            Some(1.5),
        ),
        (
            "learning: no band, nothing known",
            cond(Ttft, 0.0),
            status(Ttft, None, Learning, None),
            false,
            None,
        ),
    ];
    for (name, cond, status, holds, excess) in cases {
        assert_eq!(cond.holds_anomaly(&status), holds, "{name}");
        assert_eq!(status.excess(), excess, "{name}");
    }
    // Burn conditions never read anomalies, and anomaly conditions never read SLO statuses.
    let page = BurnCondition::Alert(AlertLevel::Page);
    assert!(!page.holds_anomaly(&flagged(Ttft, None, 9.0)));
    let slo = SloStatus {
        slo: Arc::from("ttft"),
        route: Arc::from(ROUTE),
        target: None,
        objective: 0.99,
        windows: WindowStats::default(),
        alert: AlertLevel::Page,
        budget_remaining: 0.0,
    };
    assert!(page.holds(&slo));
    assert!(!cond(Ttft, 0.0).holds(&slo));
}

#[test]
fn a_ttft_drift_downgrades_and_unwinds_once_back_in_band() {
    use AnomalySignal::Ttft;
    let mut sim = Sim::new(vec![ttft_downgrade()], routes(&[(a(), 100), (b(), 0)]));
    let drifting = [flagged(Ttft, None, 7.0), flagged(Ttft, Some(a()), 9.0)];

    let ts = sim.tick(0, &[], &drifting);
    assert_eq!(kinds(&ts), ["opened", "action_taken"]);
    assert_eq!(&*ts[0].slo, "ttft");
    assert_eq!(
        ts[0].condition,
        BurnCondition::Anomaly {
            signal: Ttft,
            min_score: 0.0
        }
    );
    assert!(ts[0].evidence.is_empty(), "no SLO status behind it");
    assert_eq!(
        ts[0].anomalies,
        vec![drifting[0].clone()],
        "the route's anomaly"
    );
    assert_eq!(sim.substitute(), Some((Arc::from("gpt-4o-mini"), 0.95)));
    assert!(
        sim.tick(1, &[], &drifting).is_empty(),
        "nothing new while it drifts"
    );

    // The probe reads the original target: back in band at 10 s, but the route's anomaly is
    // still clearing (the trigger holds).
    let back = [
        status(Ttft, None, AnomalyState::Clearing, Some(1.0)),
        normal(Ttft, Some(a()), 0.8),
    ];
    let ts = sim.tick(10, &[], &back);
    assert_eq!(kinds(&ts), ["probe_result"]);
    assert_eq!(
        ts[0].event,
        Event::ProbeResult {
            verdict: Verdict::Healthy,
            burn: Some(0.2)
        }
    );
    assert_eq!(
        ts[0].anomalies,
        vec![back[1].clone()],
        "what the probe read"
    );
    // Healthy for the cooldown (30 s) long before the hold (60 s) is over.
    for t in 11..60 {
        assert!(sim.tick(t, &[], &back).is_empty(), "held at {t}s");
    }
    let ts = sim.tick(60, &[], &back);
    assert_eq!(
        kinds(&ts),
        ["unwound"],
        "the trigger still holds: stays open"
    );
    assert_eq!(sim.substitute(), None);
    // The route's anomaly clears: resolved.
    let clear = [normal(Ttft, None, 0.5), normal(Ttft, Some(a()), 0.5)];
    assert_eq!(kinds(&sim.tick(61, &[], &clear)), ["resolved"]);
    assert!(sim.overlay.incidents().is_empty());
}

#[test]
fn a_relapse_resets_the_cooldown_and_no_data_is_not_healthy() {
    use AnomalySignal::Ttft;
    let mut sim = Sim::new(vec![ttft_downgrade()], routes(&[(a(), 100)]));
    let drifting = [flagged(Ttft, None, 7.0), flagged(Ttft, Some(a()), 9.0)];
    sim.tick(0, &[], &drifting);
    let healthy = [flagged(Ttft, None, 5.0), normal(Ttft, Some(a()), 1.0)];
    let relapse = [flagged(Ttft, None, 5.0), flagged(Ttft, Some(a()), 5.0)];
    let no_data = [
        flagged(Ttft, None, 5.0),
        status(Ttft, Some(a()), AnomalyState::Normal, None),
    ];
    sim.tick(5, &[], &healthy);
    sim.tick(40, &[], &relapse);
    sim.tick(41, &[], &healthy);
    sim.tick(50, &[], &no_data);
    sim.tick(51, &[], &healthy);
    assert!(
        sim.tick(80, &[], &healthy).is_empty(),
        "29 s healthy is not 30"
    );
    assert_eq!(kinds(&sim.tick(81, &[], &healthy)), ["unwound"]);
    let verdicts: Vec<(Verdict, Option<f64>)> = sim
        .log
        .iter()
        .filter_map(|t| match t.event {
            Event::ProbeResult { verdict, burn } => Some((verdict, burn)),
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::Healthy, Some(0.25)),
            (Verdict::Burning, Some(1.25)),
            (Verdict::Healthy, Some(0.25)),
            (Verdict::NoData, None),
            (Verdict::Healthy, Some(0.25)),
        ]
    );
}

#[test]
fn error_anomalies_fail_over_per_target_within_the_caps() {
    use AnomalySignal::ErrorRatio;
    let eject = Rule::new(
        "eject-on-errors",
        ROUTE,
        Trigger::anomaly(ErrorRatio, 4.0),
        Action::Failover,
    );
    let mut sim = Sim::new(vec![eject.clone()], routes(&[(a(), 100), (b(), 0)]));
    let ts = sim.tick(
        0,
        &[],
        &[
            flagged(ErrorRatio, Some(a()), 30.0),
            normal(ErrorRatio, Some(b()), 0.0),
            // The route scope is not what a failover reads.
            flagged(ErrorRatio, None, 30.0),
        ],
    );
    assert_eq!(kinds(&ts), ["opened", "action_taken"]);
    assert_eq!(ts[0].target, Some(a()));
    assert_eq!(sim.ejection(&a()), Some(0.95));
    assert_eq!(sim.ejection(&b()), None);

    // Never the last target.
    let mut sim = Sim::new(vec![eject], routes(&[(a(), 100)]));
    let ts = sim.tick(0, &[], &[flagged(ErrorRatio, Some(a()), 30.0)]);
    assert_eq!(kinds(&ts), ["opened", "blocked"]);
    assert_eq!(
        ts[1].event,
        Event::Blocked {
            reason: BlockReason::LastTarget
        }
    );
}

#[test]
fn anomaly_rules_and_burn_rules_read_only_their_own_statuses() {
    use AnomalySignal::Ttft;
    let burn = Rule::new(
        "on-burn",
        ROUTE,
        Trigger::at(AVAIL, AlertLevel::Page),
        Action::CacheFallback,
    );
    let mut sim = Sim::new(vec![ttft_downgrade(), burn], routes(&[(a(), 100)]));
    // An SLO status paging under the anomaly rule's name does not fire it.
    let ttft_slo_pages = SloStatus {
        slo: Arc::from("ttft"),
        route: Arc::from(ROUTE),
        target: None,
        objective: 0.99,
        windows: WindowStats::default(),
        alert: AlertLevel::Page,
        budget_remaining: 0.0,
    };
    assert!(sim.tick(0, &[ttft_slo_pages], &[]).is_empty());
    // A flagged anomaly fires only the anomaly rule.
    let ts = sim.tick(1, &[], &[flagged(Ttft, None, 9.0)]);
    assert_eq!(
        ts.iter().map(|t| &*t.rule).collect::<Vec<_>>(),
        ["ttft-drift", "ttft-drift"]
    );

    // Plain `decide` passes no anomalies: anomaly rules never fire through it.
    let rules = [ttft_downgrade()];
    let d = decide(
        Instant::now(),
        &[],
        &rules,
        &routes(&[(a(), 100)]),
        &Overlay::default(),
    );
    assert!(d.transitions.is_empty());
    // Tenant scopes are not read either.
    let tenant = AnomalyStatus {
        scope: AnomalyScope::Tenant {
            tenant: Arc::from(ROUTE),
        },
        ..flagged(Ttft, None, 9.0)
    };
    let d = decide_with_anomalies(
        Instant::now(),
        &[],
        &[tenant],
        &rules,
        &routes(&[(a(), 100)]),
        &Overlay::default(),
    );
    assert!(d.transitions.is_empty());
}

#[test]
fn an_anomaly_guard_reverts_a_downgrade() {
    use AnomalySignal::{ErrorRatio, Ttft};
    let mut rule = ttft_downgrade();
    rule.guard = Some(Guard {
        slo: Arc::from(ErrorRatio.as_str()),
        burn: BurnCondition::Anomaly {
            signal: ErrorRatio,
            min_score: 0.0,
        },
    });
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100)]));
    let drifting = [flagged(Ttft, None, 7.0), flagged(Ttft, Some(a()), 9.0)];
    sim.tick(0, &[], &drifting);
    assert!(sim.substitute().is_some());
    let mut guard_burns = drifting.to_vec();
    guard_burns.push(flagged(ErrorRatio, Some(mini()), 12.0));
    let ts = sim.tick(1, &[], &guard_burns);
    assert_eq!(kinds(&ts), ["reverted"]);
    assert_eq!(
        ts[0].event,
        Event::Reverted {
            from: Arc::from("gpt-4o-mini"),
            to: None,
            guard_slo: Arc::from("error_ratio"),
        }
    );
    assert_eq!(ts[0].anomalies, vec![guard_burns[2].clone()]);
    assert_eq!(sim.substitute(), None);
}

#[test]
fn anomaly_evidence_serialises_beside_the_slo_evidence() {
    use AnomalySignal::Ttft;
    let mut sim = Sim::new(vec![ttft_downgrade()], routes(&[(a(), 100)]));
    let ts = sim.tick(0, &[], &[flagged(Ttft, None, 7.0)]);
    let json = serde_json::to_value(&ts[1]).expect("serialises");
    assert_eq!(json["kind"], "action_taken");
    assert_eq!(json["slo"], "ttft");
    assert_eq!(json["condition"]["anomaly"]["signal"], "ttft");
    assert_eq!(json["condition"]["anomaly"]["min_score"], 0.0);
    assert_eq!(json["anomalies"][0]["signal"], "ttft");
    assert_eq!(json["anomalies"][0]["scope"]["kind"], "route");
    assert_eq!(json["anomalies"][0]["scope"]["route"], "chat");
    assert_eq!(json["anomalies"][0]["state"], "anomalous");
    assert_eq!(json["anomalies"][0]["score"], 7.0);
    assert_eq!(json["anomalies"][0]["band"]["k"], 4.0);
    let back: Transition = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, ts[1]);

    // Burn-rule transitions carry no `anomalies` key, and old log lines read back.
    let mut plain = ts[1].clone();
    plain.anomalies.clear();
    let json = serde_json::to_value(&plain).expect("serialises");
    assert!(json.get("anomalies").is_none());
    let back: Transition = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, plain);
}

#[test]
fn anomaly_conditions_of_the_policy_file_map_to_the_detectors_signals() {
    use sluice_config::{AnomalySignalConfig as C, BurnConfig};
    for (config, signal) in [
        (C::Ttft, AnomalySignal::Ttft),
        (C::TimePerOutputToken, AnomalySignal::TimePerOutputToken),
        (C::Duration, AnomalySignal::Duration),
        (C::ErrorRatio, AnomalySignal::ErrorRatio),
        (C::TokensPerRequest, AnomalySignal::TokensPerRequest),
        (C::CostPerMinute, AnomalySignal::CostPerMinute),
    ] {
        // The policy file and the metric label spell a signal the same way.
        assert_eq!(config.as_str(), signal.as_str());
        assert_eq!(
            BurnCondition::from_config(BurnConfig::Anomaly {
                signal: config,
                min_score: 6.0
            }),
            BurnCondition::Anomaly {
                signal,
                min_score: 6.0
            }
        );
    }
}

#[test]
fn alert_incidents_take_ids_from_the_same_numbering() {
    let mut overlay = Overlay::new(7);
    assert_eq!(overlay.reserve_incident(), 7);
    assert_eq!(overlay.next_incident(), 8);
    assert_eq!(ActionKind::Alert.as_str(), "alert");
}
