//! The evaluator on paused time: how records count, and a whole incident from the first bad
//! request to the unwind, through the real engine, decision, overlay and incident log.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use sluice_observability::service::{self, Intake};
use sluice_observability::{
    AttemptOutcome, AttemptRecord, ErrorKind, Metrics, Outcome, RequestRecord,
};
use sluice_policy::remediation::IncidentEvent;
use sluice_policy::{Policy, PolicyStore, RuntimeState};
use tokio::time::{Instant, advance};

use super::*;

fn attempt(model: &str, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        provider: Arc::from("local"),
        provider_kind: "mock",
        model: Arc::from(model),
        upstream_model: Arc::from(model),
        server_address: None,
        server_port: None,
        span_id: [0; 8],
        start: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(30),
        outcome,
        status: None,
    }
}

fn record(
    outcome: Outcome,
    error: Option<ErrorKind>,
    attempts: Vec<AttemptRecord>,
) -> RequestRecord {
    RequestRecord {
        route: Some(Arc::from("chat")),
        error_type: error,
        attempts,
        time_to_first_chunk: Some(Duration::from_millis(40)),
        chunks: 3,
        ..sluice_observability::testing::record(outcome)
    }
}

#[test]
fn records_count_as_the_errors_sli_says() {
    use AttemptOutcome as A;
    // (case, outcome, error, attempts, class, target, retried targets)
    type Case<'a> = (
        &'a str,
        Outcome,
        Option<ErrorKind>,
        Vec<AttemptRecord>,
        ErrorClass,
        Option<&'a str>,
        Vec<&'a str>,
    );
    let table: Vec<Case<'_>> = vec![
        (
            "answered",
            Outcome::Ok,
            None,
            vec![attempt("a", A::Ok)],
            ErrorClass::Good,
            Some("a"),
            vec![],
        ),
        (
            "answered after a failover: the failed target burns",
            Outcome::Ok,
            None,
            vec![attempt("a", A::ServerError), attempt("b", A::Ok)],
            ErrorClass::Good,
            Some("b"),
            vec!["a"],
        ),
        (
            "a stale answer stood in for failed attempts: every failed target burns",
            Outcome::Ok,
            None,
            vec![attempt("a", A::Timeout), attempt("b", A::ServerError)],
            ErrorClass::Good,
            None,
            vec!["a", "b"],
        ),
        (
            "a cache hit counts for the route only",
            Outcome::Ok,
            None,
            vec![],
            ErrorClass::Good,
            None,
            vec![],
        ),
        (
            "every attempt failed",
            Outcome::UpstreamError,
            Some(ErrorKind::UpstreamError),
            vec![attempt("a", A::Timeout), attempt("b", A::ServerError)],
            ErrorClass::Bad,
            Some("b"),
            vec!["a"],
        ),
        (
            "a cut stream",
            Outcome::Truncated,
            Some(ErrorKind::StreamInterrupted),
            vec![attempt("a", A::Interrupted)],
            ErrorClass::Bad,
            Some("a"),
            vec![],
        ),
        (
            "the client's own mistake",
            Outcome::ClientError,
            Some(ErrorKind::ProviderClientError),
            vec![attempt("a", A::ClientError)],
            ErrorClass::Excluded,
            Some("a"),
            vec![],
        ),
        (
            "the client left",
            Outcome::Cancelled,
            None,
            vec![attempt("a", A::Cancelled)],
            ErrorClass::Excluded,
            Some("a"),
            vec![],
        ),
        (
            "shed on purpose",
            Outcome::GatewayError,
            Some(ErrorKind::LoadShed),
            vec![],
            ErrorClass::Excluded,
            None,
            vec![],
        ),
        (
            "draining",
            Outcome::GatewayError,
            Some(ErrorKind::Draining),
            vec![],
            ErrorClass::Excluded,
            None,
            vec![],
        ),
        (
            "no key for the provider",
            Outcome::GatewayError,
            Some(ErrorKind::InternalError),
            vec![],
            ErrorClass::Bad,
            None,
            vec![],
        ),
    ];
    for (case, outcome, error, attempts, class, target, retried) in table {
        let Some(SloEvent::Request {
            sample,
            retried: got,
        }) = event_of(&record(outcome, error, attempts))
        else {
            panic!("{case}: no event");
        };
        assert_eq!(sample.class, class, "{case}");
        assert_eq!(sample.target.as_ref().map(|t| &*t.model), target, "{case}");
        let got: Vec<&str> = got
            .iter()
            .filter_map(|s| s.target.as_ref())
            .map(|t| &*t.model)
            .collect();
        assert_eq!(got, retried, "{case}");
    }
    let mut unrouted = record(Outcome::ClientError, None, vec![]);
    unrouted.route = None;
    assert!(event_of(&unrouted).is_none());
}

const POLICY: &str = r#"
providers:
  local: { kind: mock }
models:
  a: { provider: local }
  b: { provider: local }
routes:
  - name: chat
    match: { model: chat }
    targets: [ { model: a }, { model: b } ]
    slos:
      - { name: availability, objective: 99, sli: errors, min_events: 5 }
    remediation:
      - name: fo
        when: { slo: availability, burn: page }
        do: failover
        hold: 10s
        cooldown: 5s
        probe_share: 0.2
        runbook_url: https://runbooks.example/fo
slo: { window_scale: 0.01, evaluate_every: 100ms }
keys:
  - { name: k, key_sha256: "e24dd2c0e3d1e0a2ff1afb7d9da3a4b2e4b4e0d0a07ab7e5b4e36e1a0a2e1c5f", tenant: t }
"#;

struct Rig {
    state: Arc<AppState>,
    service: SloService,
    pushed: Intake<IncidentEvent>,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let config = sluice_config::load_str_with_env(POLICY, "slo.yaml", &|_| None)
        .expect("valid")
        .config;
    let runtime = Arc::new(RuntimeState::new());
    let policy = Policy::compile(&config, &runtime).expect("compiles");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (records, _) = service::feed(16, metrics.queue_dropped("records"));
    let (judge_jobs, _) = service::feed(16, metrics.queue_dropped("judge"));
    let (events, intake) = service::feed(QUEUE, metrics.queue_dropped("slo"));
    let (push, pushed) = service::feed(1024, metrics.queue_dropped("incident_push"));
    let state = Arc::new(AppState::new(
        PolicyStore::new(policy),
        runtime,
        metrics,
        registry,
        records,
        events,
        judge_jobs,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let service =
        SloService::start(Arc::clone(&state), intake, push, dir.path().to_owned()).expect("starts");
    Rig {
        state,
        service,
        pushed,
        dir,
    }
}

/// `n` requests of which the first `bad` failed on `model` (then answered by the other).
fn feed(state: &AppState, model: &str, n: u32, bad: u32) {
    for i in 0..n {
        let r = if i < bad {
            let other = if model == "a" { "b" } else { "a" };
            record(
                Outcome::Ok,
                None,
                vec![
                    attempt(model, AttemptOutcome::ServerError),
                    attempt(other, AttemptOutcome::Ok),
                ],
            )
        } else {
            record(Outcome::Ok, None, vec![attempt(model, AttemptOutcome::Ok)])
        };
        assert!(state.slo_events.offer(event_of(&r).expect("routed")));
    }
}

fn kinds(r: &mut Rig) -> Vec<&'static str> {
    let mut out = Vec::new();
    r.pushed.drain_into(&mut out, 1024);
    out.iter().map(|e| e.transition.event.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_burning_target_is_taken_out_then_put_back_when_it_recovers() {
    let mut r = rig();
    // Healthy traffic first, on both targets.
    for _ in 0..10 {
        feed(&r.state, "a", 5, 0);
        feed(&r.state, "b", 5, 0);
        advance(Duration::from_millis(100)).await;
        r.service.tick();
    }
    assert!(r.state.runtime.overlay().is_empty());
    assert!(kinds(&mut r).is_empty());

    // `a` fails every request (retries hide it from clients): its own page alert fires.
    let started = Instant::now();
    let mut taken_out = None;
    for _ in 0..50 {
        feed(&r.state, "a", 5, 5);
        advance(Duration::from_millis(100)).await;
        r.service.tick();
        if r.state
            .runtime
            .overlay()
            .route("chat")
            .is_some_and(|o| !o.ejected.is_empty())
        {
            taken_out = Some(started.elapsed());
            break;
        }
    }
    let taken_out = taken_out.expect("a failover within 5 s");
    assert!(taken_out <= Duration::from_secs(2), "{taken_out:?}");
    assert_eq!(kinds(&mut r), ["opened", "action_taken"]);
    let overlay = r.state.runtime.overlay_full();
    let ej = &overlay.route("chat").expect("route entry").ejected[0];
    assert_eq!(&*ej.target.model, "a");
    assert!(
        (ej.share - 0.8).abs() < 1e-9,
        "the probe share keeps 20 % on `a`"
    );

    // The log has both events, synced, with the numbers and the runbook.
    let (logged, unreadable) = crate::incidents::read(r.dir.path()).expect("log");
    assert_eq!(unreadable, 0);
    let kinds_logged: Vec<_> = logged.iter().map(|e| e.transition.event.as_str()).collect();
    assert_eq!(kinds_logged, ["opened", "action_taken"]);
    assert_eq!(
        logged[0].transition.runbook_url.as_deref(),
        Some("https://runbooks.example/fo")
    );
    assert!(!logged[0].transition.evidence.is_empty());

    // The admin views and the gauges see it.
    let view = r.state.slo.incidents(&overlay);
    assert_eq!(view["open"][0]["rule"], "fo");
    assert_eq!(view["open"][0]["phase"], "active");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r.state.registry).expect("encode");
    assert!(
        text.contains(r#"sluice_remediation_active{route="chat",action="failover"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sluice_incident_events_total{action="failover",event="action_taken"} 1"#)
    );
    assert!(
        text.contains(r#"sluice_slo_events_total{slo="availability",route="chat",good="true"}"#)
    );

    // `a` recovers: the probes see it healthy; after the hold and the cooldown it is back.
    let recovered = Instant::now();
    let mut unwound = None;
    for _ in 0..400 {
        feed(&r.state, "a", 2, 0);
        feed(&r.state, "b", 5, 0);
        advance(Duration::from_millis(100)).await;
        r.service.tick();
        if r.state.runtime.overlay().is_empty() {
            unwound = Some(recovered.elapsed());
            break;
        }
    }
    let unwound = unwound.expect("unwound within 40 s");
    // Not before the 10 s hold, and soon after hold + cooldown.
    assert!(unwound >= Duration::from_secs(10), "{unwound:?}");
    assert!(unwound <= Duration::from_secs(20), "{unwound:?}");
    let after = kinds(&mut r);
    assert!(after.contains(&"unwound"), "{after:?}");
    // No flapping: the action was never taken again.
    assert!(!after.contains(&"action_taken"), "{after:?}");
    r.service.tick();
    let text = {
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &r.state.registry).expect("encode");
        t
    };
    assert!(text.contains(r#"sluice_remediation_active{route="chat",action="failover"} 0"#));
}

#[tokio::test(start_paused = true)]
async fn counts_and_incident_numbers_survive_a_restart() {
    let mut r = rig();
    for _ in 0..20 {
        feed(&r.state, "a", 5, 5);
        advance(Duration::from_millis(100)).await;
        r.service.tick();
    }
    let mut first = Vec::new();
    r.pushed.drain_into(&mut first, 1024);
    let ids: Vec<(u64, &str)> = first
        .iter()
        .map(|e| (e.transition.incident, e.transition.event.as_str()))
        .collect();
    assert_eq!(ids, [(1, "opened"), (1, "action_taken")]);
    let before = r.state.slo.statuses();
    let route_bad = |s: &[sluice_policy::remediation::SloStatus]| {
        s.iter()
            .find(|x| x.target.is_none())
            .map(|x| (x.windows.slo.bad, x.windows.slo.total))
    };
    r.service.save();

    // A new process on the same data directory.
    let dir = r.dir;
    let config = sluice_config::load_str_with_env(POLICY, "slo.yaml", &|_| None)
        .expect("valid")
        .config;
    let runtime = Arc::new(RuntimeState::new());
    let policy = Policy::compile(&config, &runtime).expect("compiles");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (records, _) = service::feed(16, metrics.queue_dropped("records"));
    let (judge_jobs, _) = service::feed(16, metrics.queue_dropped("judge"));
    let (events, intake) = service::feed(QUEUE, metrics.queue_dropped("slo"));
    let (push, _pushed) = service::feed(16, metrics.queue_dropped("incident_push"));
    let state = Arc::new(AppState::new(
        PolicyStore::new(policy),
        runtime,
        metrics,
        registry,
        records,
        events,
        judge_jobs,
    ));
    let mut again =
        SloService::start(Arc::clone(&state), intake, push, dir.path().to_owned()).expect("starts");
    again.tick();
    let after = state.slo.statuses();
    assert_eq!(route_bad(&after), route_bad(&before));
    assert_eq!(route_bad(&after).map(|(_, total)| total > 0), Some(true));
    // The restored counts still burn, so the controller acts again at once, and its incident
    // numbers continue the log's; the old incident shows as interrupted.
    let overlay = state.runtime.overlay_full();
    let ids: Vec<u64> = overlay.incidents().iter().map(|i| i.id).collect();
    assert_eq!(ids, [2]);
    let view = state.slo.incidents(&overlay);
    assert_eq!(view["open"][0]["id"], 2);
    assert_eq!(view["recent"][0]["id"], 1);
    assert_eq!(view["recent"][0]["state"], "interrupted");
}
