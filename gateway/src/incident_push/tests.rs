use std::collections::VecDeque;
use std::sync::Mutex;

use sluice_observability::service::feed;
use sluice_policy::remediation::{
    ActionKind, SloStatus, TargetKey, Transition, UnwindReason, WindowStat, WindowStats,
};
use tokio::time::Instant;

use super::*;

#[test]
fn retries_back_off_and_stop() {
    let table = [
        (0, None),
        (1, Some(1)),
        (2, Some(2)),
        (3, Some(4)),
        (4, Some(8)),
        (5, None),
        (6, None),
    ];
    for (attempt, secs) in table {
        assert_eq!(
            retry_delay(attempt),
            secs.map(Duration::from_secs),
            "after try {attempt}"
        );
    }
}

#[test]
fn what_follows_an_attempt() {
    let retry1 = Next::RetryAfter(Duration::from_secs(1));
    let table: [(u32, Result<u16, String>, Next); 10] = [
        (1, Ok(200), Next::Sent),
        (1, Ok(202), Next::Sent),
        (1, Ok(500), retry1),
        (1, Ok(503), retry1),
        (1, Err("connect refused".into()), retry1),
        (1, Ok(429), retry1),
        (1, Ok(408), retry1),
        // The receiver refuses the body or the token: the same body would be refused again.
        (1, Ok(400), Next::GiveUp),
        (1, Ok(401), Next::GiveUp),
        (MAX_ATTEMPTS, Ok(500), Next::GiveUp),
    ];
    for (attempt, result, next) in table {
        assert_eq!(
            after_attempt(attempt, &result),
            next,
            "{attempt} {result:?}"
        );
    }
}

fn status(burn_5m: Option<f64>) -> SloStatus {
    SloStatus {
        slo: Arc::from("availability"),
        route: Arc::from("chat"),
        target: Some(target()),
        objective: 0.995,
        windows: WindowStats {
            m5: WindowStat {
                bad: 40,
                total: 100,
                burn: burn_5m,
            },
            ..WindowStats::default()
        },
        alert: AlertLevel::Page,
        budget_remaining: 0.8712,
    }
}

fn target() -> TargetKey {
    TargetKey {
        provider: Arc::from("up"),
        model: Arc::from("flaky"),
    }
}

fn event(incident: u64, at_unix_ms: u64, event: Event) -> IncidentEvent {
    IncidentEvent {
        at_unix_ms,
        hint: None,
        transition: Transition {
            incident,
            route: Arc::from("chat"),
            rule: Arc::from("fo"),
            action: ActionKind::Failover,
            target: Some(target()),
            dry_run: false,
            slo: Arc::from("availability"),
            condition: BurnCondition::Alert(AlertLevel::Page),
            event,
            evidence: vec![status(Some(80.0))],
            anomalies: Vec::new(),
            runbook_url: Some(Arc::from("https://runbooks.example/fo")),
        },
    }
}

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[test]
fn an_incident_is_one_alert_from_opened_to_resolved() {
    let mut alerts = Alerts::default();
    let opened = alerts.on_event(&event(7, T0, Event::Opened), T0);
    assert_eq!(
        opened["labels"],
        json!({
            "alertname": "SluiceIncident", "route": "chat", "slo": "availability",
            "severity": "page", "rule": "fo", "action": "failover", "incident": "7",
            "target": "up/flaky",
        })
    );
    assert_eq!(opened["startsAt"], "2026-01-01T00:00:00.000Z");
    assert_eq!(opened["endsAt"], "2026-01-01T00:04:00.000Z");
    let a = &opened["annotations"];
    assert_eq!(
        a["summary"],
        "Sluice failover of up/flaky on route chat (rule fo, SLO availability): opened"
    );
    assert_eq!(a["runbook_url"], "https://runbooks.example/fo");
    assert_eq!(a["burn_rates"], "5m=80 30m=- 1h=- 6h=- 1d=- 3d=- slo=-");
    assert_eq!(a["budget_remaining"], "0.87");
    assert_eq!(alerts.len(), 1);

    // Later steps keep the labels and the start, and move the end.
    let taken = alerts.on_event(
        &event(
            7,
            T0 + 1_000,
            Event::Unwound {
                reason: UnwindReason::Recovered,
                held: Duration::from_secs(120),
                healthy_for: Duration::from_secs(60),
            },
        ),
        T0 + 1_000,
    );
    assert_eq!(taken["labels"], opened["labels"]);
    assert_eq!(taken["startsAt"], opened["startsAt"]);
    assert_eq!(taken["endsAt"], "2026-01-01T00:04:01.000Z");
    assert_eq!(taken["annotations"]["event"], "unwound");

    let resend = alerts.resend(T0 + 60_000).expect("one open");
    assert_eq!(resend.as_array().map(Vec::len), Some(1));
    assert_eq!(resend[0]["endsAt"], "2026-01-01T00:05:00.000Z");

    let resolved = alerts.on_event(
        &event(
            7,
            T0 + 300_000,
            Event::Resolved {
                open_for: Duration::from_secs(300),
            },
        ),
        T0 + 300_500,
    );
    assert_eq!(resolved["labels"], opened["labels"]);
    assert_eq!(resolved["startsAt"], opened["startsAt"]);
    assert_eq!(resolved["endsAt"], "2026-01-01T00:05:00.000Z");
    assert!(alerts.is_empty());
    assert!(alerts.resend(T0 + 400_000).is_none());
}

#[test]
fn severity_follows_the_rule() {
    let mut e = event(1, T0, Event::Opened);
    assert_eq!(severity(&e), "page");
    e.transition.condition = BurnCondition::Alert(AlertLevel::Ticket);
    assert_eq!(severity(&e), "ticket");
    e.transition.condition = BurnCondition::Above {
        window: Window::M5,
        burn: 10.0,
    };
    assert_eq!(severity(&e), "page");
    e.transition.condition = BurnCondition::Above {
        window: Window::H6,
        burn: 2.0,
    };
    assert_eq!(severity(&e), "ticket");
    e.transition.dry_run = true;
    assert_eq!(severity(&e), "info");
}

/// What one sink's posts get, in order.
type Answers = VecDeque<Result<u16, String>>;

/// Records every post, answering from a script per sink (200 once it runs out).
#[derive(Default)]
struct Script {
    answers: Mutex<(Answers, Answers)>,
    posts: Mutex<Vec<Post>>,
}

#[derive(Debug, Clone)]
struct Post {
    sink: Sink,
    path: String,
    bearer: Option<String>,
    body: Value,
    at: Instant,
}

#[async_trait]
impl Transport for Script {
    async fn post(&self, to: &Destination, body: Bytes) -> Result<u16, String> {
        self.posts.lock().expect("posts").push(Post {
            sink: to.sink,
            path: format!("{}{}", to.url.path, to.path),
            bearer: to.bearer.as_ref().map(|s| s.expose().to_owned()),
            body: serde_json::from_slice(&body).expect("JSON body"),
            at: Instant::now(),
        });
        let mut answers = self.answers.lock().expect("answers");
        let queue = match to.sink {
            Sink::Alertmanager => &mut answers.0,
            Sink::Webhook => &mut answers.1,
        };
        queue.pop_front().unwrap_or(Ok(200))
    }
}

fn sinks() -> IncidentsConfig {
    IncidentsConfig {
        alertmanager: Some(PushConfig {
            url: BaseUrl::parse("http://am.example:9093").expect("url"),
            bearer_env: None,
            bearer: None,
        }),
        webhook: Some(PushConfig {
            url: BaseUrl::parse("https://hooks.example/sluice").expect("url"),
            bearer_env: Some("HOOK_TOKEN".into()),
            bearer: Some(Secret::new("tok-123")),
        }),
    }
}

struct Running {
    feed: sluice_observability::service::Feed<IncidentEvent>,
    script: Arc<Script>,
    results: Family<PushLabels, Counter>,
    trigger: sluice_observability::service::ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Script) -> Running {
    let (feed, intake) = feed(QUEUE, Counter::default());
    let script = Arc::new(script);
    let results = Family::<PushLabels, Counter>::default();
    let svc = IncidentPush::new(
        intake,
        Arc::clone(&script) as Arc<dyn Transport>,
        Box::new(sinks),
        results.clone(),
    );
    let (trigger, shutdown) = Shutdown::pair();
    #[expect(clippy::disallowed_methods, reason = "the test stands in for Services")]
    let task = tokio::spawn(Box::new(svc).run(shutdown));
    Running {
        feed,
        script,
        results,
        trigger,
        task,
    }
}

fn result(results: &Family<PushLabels, Counter>, sink: Sink, result: &'static str) -> u64 {
    results
        .get_or_create(&PushLabels {
            sink: sink.as_str(),
            result,
        })
        .get()
}

fn posts(script: &Script, sink: Sink) -> Vec<Post> {
    script
        .posts
        .lock()
        .expect("posts")
        .iter()
        .filter(|p| p.sink == sink)
        .cloned()
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_on_the_schedule_and_the_other_is_not_held_up() {
    let script = Script::default();
    {
        let mut a = script.answers.lock().expect("answers");
        a.1 = VecDeque::from([Ok(500), Err("connection refused".into()), Ok(503)]);
    }
    let run = start(script);
    let t0 = Instant::now();
    assert!(run.feed.offer(event(1, T0, Event::Opened)));
    tokio::time::sleep(Duration::from_secs(30)).await;

    let hook = posts(&run.script, Sink::Webhook);
    let waits: Vec<Duration> = hook.iter().map(|p| p.at - t0).collect();
    assert_eq!(
        waits,
        [0, 1, 3, 7].map(Duration::from_secs),
        "1 s, 2 s, 4 s between tries"
    );
    assert_eq!(hook[0].path, "/sluice");
    assert_eq!(hook[0].bearer.as_deref(), Some("tok-123"));
    assert_eq!(hook[0].body["kind"], "opened");
    assert_eq!(hook[0].body["incident"], 1);
    assert_eq!(hook[0].body["runbook_url"], "https://runbooks.example/fo");
    assert_eq!(result(&run.results, Sink::Webhook, "sent"), 1);

    let am = posts(&run.script, Sink::Alertmanager);
    assert_eq!(am.len(), 1, "sent at once while the webhook was failing");
    assert_eq!(am[0].at, t0);
    assert_eq!(am[0].path, "/api/v2/alerts");
    assert_eq!(am[0].bearer, None);
    assert_eq!(am[0].body[0]["labels"]["incident"], "1");
    assert_eq!(result(&run.results, Sink::Alertmanager, "sent"), 1);

    // An open incident is sent again each minute; a resolved one is not.
    tokio::time::sleep(RESEND_EVERY).await;
    let am = posts(&run.script, Sink::Alertmanager);
    assert_eq!(am.len(), 2);
    assert_eq!(am[1].body[0]["labels"], am[0].body[0]["labels"]);
    assert!(run.feed.offer(event(
        1,
        T0 + 90_000,
        Event::Resolved {
            open_for: Duration::from_secs(90)
        }
    )));
    tokio::time::sleep(RESEND_EVERY * 3).await;
    let am = posts(&run.script, Sink::Alertmanager);
    assert_eq!(am.len(), 3, "resolved, then nothing more");
    assert_eq!(am[2].body[0]["endsAt"], "2026-01-01T00:01:30.000Z");
    assert_eq!(posts(&run.script, Sink::Webhook).len(), 5);

    run.trigger.fire();
    run.task.await.expect("drained");
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_never_answers_well_is_given_up_and_counted() {
    let script = Script::default();
    {
        let mut a = script.answers.lock().expect("answers");
        a.0 = VecDeque::from(vec![Ok(500); 10]);
        a.1 = VecDeque::from([Ok(401)]);
    }
    let run = start(script);
    assert!(run.feed.offer(event(1, T0, Event::Opened)));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(
        posts(&run.script, Sink::Alertmanager).len(),
        MAX_ATTEMPTS as usize
    );
    assert_eq!(result(&run.results, Sink::Alertmanager, "failed"), 1);
    assert_eq!(posts(&run.script, Sink::Webhook).len(), 1, "a 401 is final");
    assert_eq!(result(&run.results, Sink::Webhook, "failed"), 1);
    assert_eq!(result(&run.results, Sink::Webhook, "sent"), 0);
    run.trigger.fire();
    run.task.await.expect("drained");
}

#[tokio::test(start_paused = true)]
async fn a_full_sink_queue_drops_and_shutdown_sends_what_is_left_once() {
    let script = Script::default();
    {
        let mut a = script.answers.lock().expect("answers");
        // The webhook keeps failing: its queue fills while the first event waits to retry.
        a.1 = VecDeque::from(vec![Ok(503); 2 * SINK_QUEUE]);
    }
    let run = start(script);
    for i in 0..(SINK_QUEUE as u64 + 10) {
        assert!(run.feed.offer(event(i, T0, Event::Opened)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One in flight, SINK_QUEUE queued (the first may leave the queue before it is full, making
    // room for one more), the rest dropped.
    let dropped = result(&run.results, Sink::Webhook, "dropped");
    assert!((9..=10).contains(&dropped), "{dropped} dropped");
    let queued = SINK_QUEUE as u64 + 9 - dropped;

    run.trigger.fire();
    run.task.await.expect("drained");
    // On shutdown the waiting retry and each queued event get one try, without waiting.
    let hook = posts(&run.script, Sink::Webhook);
    assert_eq!(hook.len() as u64, 2 + queued);
    assert_eq!(result(&run.results, Sink::Webhook, "failed"), 1 + queued);
    assert_eq!(result(&run.results, Sink::Webhook, "sent"), 0);
}

#[test]
fn the_root_cause_hint_of_opened_stays_on_the_alert_until_resolved() {
    let mut alerts = Alerts::default();
    let mut opened = event(9, T0, Event::Opened);
    opened.hint = Some(sluice_policy::remediation::IncidentHint {
        focus: Arc::from("failed"),
        text: "82 % of failed requests: provider openai".to_owned(),
        top: Vec::new(),
        error: None,
    });
    let first = alerts.on_event(&opened, T0);
    assert_eq!(
        first["annotations"]["root_cause"],
        "82 % of failed requests: provider openai"
    );
    let resolved = alerts.on_event(
        &event(
            9,
            T0 + 60_000,
            Event::Resolved {
                open_for: Duration::from_secs(60),
            },
        ),
        T0 + 60_000,
    );
    assert_eq!(
        resolved["annotations"]["root_cause"],
        "82 % of failed requests: provider openai"
    );
}
