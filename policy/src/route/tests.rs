use std::time::Duration;

use sluice_config::HealthConfig;
use tokio::time::Instant;

use crate::health::Observation;
use crate::{Policy, RuntimeState};

use super::SkipReason;

const YAML: &str = r#"
providers:
  a: { kind: mock }
  b: { kind: mock }
models:
  m1: { provider: a }
  m2: { provider: a }
  m3: { provider: b }
  m4: { provider: b }
  fb: { provider: b }
routes:
  - name: four
    match: { model: four }
    targets: [ { model: m1 }, { model: m2 }, { model: m3 }, { model: m4 } ]
    fallbacks: [ fb ]
    retry: { max_attempts: 5 }
    health: { consecutive_failures: 1, max_ejected_share: 0.5 }
  - name: two
    match: { model: two }
    targets: [ { model: m1 }, { model: m2 } ]
    retry: { max_attempts: 4 }
    health: { consecutive_failures: 1 }
  - name: one
    match: { model: one }
    targets: [ { model: m1 } ]
    retry: { max_attempts: 2 }
    health: { consecutive_failures: 1 }
  - name: sub
    match: { model: sub }
    targets: [ { model: m1 }, { model: m2 } ]
    health: { consecutive_failures: 1 }
    slos: [ { name: fast, objective: 99, sli: { ttft_below: 1s } } ]
    remediation: [ { when: { slo: fast }, do: { downgrade_to: [m3] } } ]
keys:
  - { name: k, key_sha256: "e24dd2c0e3d1e0a2ff1afb7d9da3a4b2e4b4e0d0a07ab7e5b4e36e1a0a2e1c5f", tenant: t }
"#;

fn policy() -> Policy {
    let cfg = sluice_config::load_str_with_env(YAML, "t.yaml", &|_| None)
        .expect("valid")
        .config;
    Policy::compile(&cfg, &RuntimeState::new()).expect("compiles")
}

fn eject(p: &Policy, model: &str, now: Instant) {
    let cfg = HealthConfig {
        consecutive_failures: 1,
        ..HealthConfig::default()
    };
    p.catalog_model(model)
        .expect("model")
        .state
        .observe(&cfg, Observation::Failure, now);
}

fn order(p: &Policy, model: &str) -> (Vec<String>, Vec<(String, &'static str)>, bool) {
    let plan = p.route(model, |_, _| false).expect("routed");
    (
        plan.candidates().map(|t| t.model.to_string()).collect(),
        plan.skipped
            .iter()
            .map(|(t, r)| (t.model.to_string(), r.as_str()))
            .collect(),
        plan.panic,
    )
}

#[tokio::test(start_paused = true)]
async fn ejected_targets_are_left_out_up_to_the_cap_least_bad_first() {
    let p = policy();
    let t0 = Instant::now();
    eject(&p, "m1", t0);
    tokio::time::advance(Duration::from_secs(1)).await;
    eject(&p, "m2", Instant::now());
    tokio::time::advance(Duration::from_secs(1)).await;
    eject(&p, "m3", Instant::now());
    // Five targets, at most half out (2): m1's ejection ends first, so m1 comes back in.
    let (cands, skipped, panic) = order(&p, "four");
    assert!(cands.contains(&"m1".to_owned()), "{cands:?}");
    assert_eq!(
        skipped,
        [("m2".to_owned(), "ejected"), ("m3".to_owned(), "ejected")]
    );
    assert!(!panic);
    assert_eq!(cands.last().map(String::as_str), Some("fb"));
}

#[tokio::test(start_paused = true)]
async fn the_last_target_is_never_ejected_and_all_out_is_panic() {
    let p = policy();
    eject(&p, "m1", Instant::now());
    let (cands, skipped, panic) = order(&p, "one");
    assert_eq!(cands, ["m1"]);
    assert!(skipped.is_empty());
    assert!(panic, "the only target is ejected: it serves in panic mode");
    eject(&p, "m2", Instant::now());
    let (cands, skipped, panic) = order(&p, "two");
    assert_eq!(
        cands.len(),
        1,
        "one of two may be out: {cands:?} {skipped:?}"
    );
    assert_eq!(skipped.len(), 1);
    assert!(panic, "nothing healthy is left");
}

#[tokio::test(start_paused = true)]
async fn after_the_ejection_one_probe_goes_and_others_wait() {
    let p = policy();
    eject(&p, "m1", Instant::now());
    tokio::time::advance(Duration::from_secs(11)).await;
    let plan = p.route("two", |_, _| false).expect("routed");
    let probe = (0..2)
        .filter_map(|i| plan.step(i))
        .find(|s| &*s.target.model == "m1")
        .expect("m1 is back, on probation");
    assert!(probe.probe);
    let guard = probe
        .target
        .state
        .start_attempt(true)
        .expect("the probe slot");
    // While the probe runs, m1 is skipped by everyone else.
    let (cands, skipped, _) = order(&p, "two");
    assert_eq!(cands, ["m2"]);
    assert_eq!(skipped, [("m1".to_owned(), "probing")]);
    assert!(probe.target.state.start_attempt(true).is_none());
    drop(guard);
    let (cands, _, _) = order(&p, "two");
    assert_eq!(cands.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn cooling_targets_go_last() {
    let p = policy();
    let now = Instant::now();
    p.catalog_model("m1")
        .expect("m1")
        .state
        .cool_down(now + Duration::from_secs(3));
    for _ in 0..4 {
        let plan = p.route("two", |_, _| false).expect("routed");
        assert_eq!(&*plan.target(0).expect("first").model, "m2");
        assert!(matches!(plan.skipped[0].1, SkipReason::Cooling { .. }));
    }
}

fn set_by() -> crate::remediation::SetBy {
    crate::remediation::SetBy {
        rule: std::sync::Arc::from("r"),
        incident: 1,
        since: Instant::now(),
    }
}

fn target_key(provider: &str, model: &str) -> crate::remediation::TargetKey {
    crate::remediation::TargetKey {
        provider: std::sync::Arc::from(provider),
        model: std::sync::Arc::from(model),
    }
}

/// A plan as the tests compare it: (candidates, skipped, panic, actions).
type Shape = (
    Vec<String>,
    Vec<(String, &'static str)>,
    bool,
    Vec<&'static str>,
);

/// The plan of `model`'s route under `overlay`.
fn order_under(p: &Policy, model: &str, overlay: &crate::remediation::RouteOverlay) -> Shape {
    let (route, public) = p.find_route(model, |_, _| false).expect("routed");
    let plan = route.plan(public, Instant::now(), [1, 2], Some(overlay));
    (
        plan.candidates().map(|t| t.model.to_string()).collect(),
        plan.skipped
            .iter()
            .map(|(t, r)| (t.model.to_string(), r.as_str()))
            .collect(),
        plan.panic,
        plan.remediation.iter().map(|(a, _)| a.as_str()).collect(),
    )
}

#[tokio::test(start_paused = true)]
async fn remediation_overlays_shape_the_plan() {
    use crate::remediation::{Ejection, RouteOverlay, Substitution};
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let failover_m1 = |share: f64| RouteOverlay {
        ejected: vec![Ejection {
            target: target_key("a", "m1"),
            share,
            set_by: set_by(),
        }],
        ..RouteOverlay::default()
    };
    let downgrade = |share: f64| RouteOverlay {
        substitution: Some(Substitution {
            model: std::sync::Arc::from("m3"),
            share,
            set_by: set_by(),
        }),
        ..RouteOverlay::default()
    };
    // (case, route model, overlay, candidates, skipped, actions)
    type Case<'a> = (
        &'a str,
        &'a str,
        RouteOverlay,
        Vec<String>,
        Vec<(String, &'a str)>,
        Vec<&'a str>,
    );
    let table: Vec<Case<'_>> = vec![
        (
            "no entries: the plain plan",
            "two",
            RouteOverlay::default(),
            s(&["m1", "m2"]),
            vec![],
            vec![],
        ),
        (
            "failover takes the target out",
            "two",
            failover_m1(1.0),
            s(&["m2"]),
            vec![("m1".to_owned(), "remediated")],
            vec!["failover"],
        ),
        (
            "a zero share leaves every request alone",
            "two",
            failover_m1(0.0),
            s(&["m1", "m2"]),
            vec![],
            vec![],
        ),
        (
            "a substitution serves first, the route's own targets follow",
            "sub",
            downgrade(1.0),
            s(&["m3", "m1", "m2"]),
            vec![],
            vec!["downgrade_to"],
        ),
        (
            "a substitute the route does not list is ignored",
            "two",
            downgrade(1.0),
            s(&["m1", "m2"]),
            vec![],
            vec![],
        ),
    ];
    for (case, model, overlay, want, skipped, actions) in table {
        let p = policy();
        let (got, got_skipped, panic, got_actions) = order_under(&p, model, &overlay);
        assert_eq!(got, want, "{case}");
        assert_eq!(got_skipped, skipped, "{case}");
        assert!(!panic, "{case}");
        assert_eq!(got_actions, actions, "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failover_never_leaves_a_request_with_nothing_to_try() {
    use crate::remediation::{Ejection, RouteOverlay};
    let p = policy();
    // Passive health took m2 out; remediation takes m1: m1 still serves, and it is not panic
    // (m1 itself is healthy).
    eject(&p, "m2", Instant::now());
    let overlay = RouteOverlay {
        ejected: vec![Ejection {
            target: target_key("a", "m1"),
            share: 1.0,
            set_by: set_by(),
        }],
        ..RouteOverlay::default()
    };
    let (got, _, panic, _) = order_under(&p, "two", &overlay);
    assert_eq!(got.first().map(String::as_str), Some("m1"));
    assert!(!panic);
}

#[tokio::test(start_paused = true)]
async fn a_share_applies_to_that_share_of_requests() {
    use crate::remediation::{RouteOverlay, Substitution};
    let p = policy();
    let overlay = RouteOverlay {
        substitution: Some(Substitution {
            model: std::sync::Arc::from("m3"),
            share: 0.8,
            set_by: set_by(),
        }),
        ..RouteOverlay::default()
    };
    let substituted = (0..1000)
        .filter(|_| order_under(&p, "sub", &overlay).0[0] == "m3")
        .count();
    assert!((780..=820).contains(&substituted), "{substituted} of 1000");
}
