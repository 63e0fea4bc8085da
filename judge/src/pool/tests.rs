use std::sync::atomic::AtomicUsize;
use std::time::UNIX_EPOCH;

use prometheus_client::metrics::counter::Counter;
use sluice_observability::service::{Feed, ShutdownTrigger, feed};

use super::*;
use crate::Error;
use crate::backend::JudgeReply;
use crate::capture::{Message, Role};
use crate::rubric::mock_verdict;
use crate::settings::Rubric;

/// 2026-03-01T12:00:00Z.
const NOON: u64 = 1_772_366_400;

/// What the fake judge does with a call.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer with the mock's verdict after `delay`, at `cost` USD.
    Mock {
        delay: Duration,
        cost: f64,
    },
    /// Answer with this text.
    Reply(&'static str),
    Fail(Failure),
    Panic,
}

struct FakeJudge {
    behaviour: Behaviour,
    calls: Mutex<Vec<JudgeCall>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

#[async_trait::async_trait]
impl JudgeBackend for FakeJudge {
    async fn judge(&self, call: JudgeCall) -> Result<JudgeReply, Error> {
        let body = call.body.clone();
        self.calls.lock().expect("lock").push(call);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let result = match self.behaviour {
            Behaviour::Mock { delay, cost } => {
                tokio::time::sleep(delay).await;
                Ok(JudgeReply {
                    content: mock_verdict(&body).expect("a judge request"),
                    cost_usd: Some(cost),
                })
            }
            Behaviour::Reply(text) => Ok(JudgeReply {
                content: text.to_owned(),
                cost_usd: Some(0.01),
            }),
            Behaviour::Fail(failure) => Err(Error::Backend {
                failure,
                message: "provider said no".into(),
            }),
            Behaviour::Panic => panic!("the fake judge panics"),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<JudgeOutcome>>);

impl VerdictSink for Collect {
    fn outcome(&self, outcome: &JudgeOutcome) {
        self.0.lock().expect("lock").push(outcome.clone());
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOON)
    }
}

struct Harness {
    feed: Feed<JudgeJob>,
    judge: Arc<FakeJudge>,
    sink: Arc<Collect>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

fn start_pool(behaviour: Behaviour, capacity: usize, options: PoolOptions) -> Harness {
    let (feed, intake) = feed(capacity, Counter::default());
    let judge = Arc::new(FakeJudge {
        behaviour,
        calls: Mutex::new(Vec::new()),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
    });
    let sink = Arc::new(Collect::default());
    let pool = JudgePool::new(
        intake,
        judge.clone(),
        sink.clone(),
        Arc::new(FixedClock),
        options,
    );
    let (trigger, shutdown) = Shutdown::pair();
    #[expect(clippy::disallowed_methods, reason = "the test stands in for Services")]
    let task = tokio::spawn(Box::new(pool).run(shutdown));
    Harness {
        feed,
        judge,
        sink,
        trigger,
        task,
    }
}

fn settings(edit: impl FnOnce(&mut JudgeSettings)) -> Arc<JudgeSettings> {
    let mut s = JudgeSettings::new("judge-mini", Rubric::Helpfulness);
    s.timeout = Duration::from_secs(10);
    edit(&mut s);
    s.validate().expect("valid settings");
    Arc::new(s)
}

fn job(settings: &Arc<JudgeSettings>, n: u8) -> JudgeJob {
    JudgeJob {
        settings: settings.clone(),
        route: "chat".into(),
        judged: JudgedRequest {
            response_id: None,
            request_id: format!("req-{n}").into(),
            trace_id: [n; 16],
            span_id: [n; 8],
            provider: "openai".into(),
            model: "gpt-4o".into(),
        },
        reason: SampleReason::Ratio,
        conversation: Conversation {
            messages: vec![Message {
                role: Role::User,
                content: "When does the museum open?".into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }],
            ..Conversation::default()
        },
        answer: Answer {
            content: "It opens at nine in the morning every day of the week, holidays too.".into(),
            finish_reason: Some("stop".into()),
            ..Answer::default()
        },
    }
}

impl Harness {
    fn outcomes(&self) -> Vec<JudgeOutcome> {
        self.sink.0.lock().expect("lock").clone()
    }

    fn count(&self, outcome: SampleOutcome, detail: Option<OutcomeDetail>) -> usize {
        self.outcomes()
            .iter()
            .filter(|o| o.outcome == outcome && o.detail == detail)
            .count()
    }

    fn calls(&self) -> usize {
        self.judge.calls.lock().expect("lock").len()
    }

    async fn stop(&mut self) {
        self.trigger.fire();
        (&mut self.task).await.expect("the pool drains and returns");
    }
}

const MOCK: Behaviour = Behaviour::Mock {
    delay: Duration::from_millis(200),
    cost: 0.002,
};

#[tokio::test(start_paused = true)]
async fn a_sampled_answer_is_scored_and_reported_with_its_ids() {
    let mut h = start_pool(MOCK, 8, PoolOptions::default());
    let s = settings(|_| {});
    assert!(h.feed.offer(job(&s, 7)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert_eq!(o.outcome, SampleOutcome::Scored);
    assert_eq!(o.detail, None);
    assert!(o.score().is_some_and(|s| s >= 0.9), "{:?}", o.verdict);
    assert_eq!(
        o.verdict.as_ref().map(|v| v.label.as_str()),
        Some("helpful")
    );
    assert_eq!(&*o.route, "chat");
    assert_eq!(o.rubric(), "helpfulness");
    assert_eq!(o.judge_model(), "judge-mini");
    assert_eq!(&*o.judged.request_id, "req-7");
    assert_eq!(o.judged.trace_id, [7; 16]);
    assert_eq!(o.cost_usd, Some(0.002));
    assert_eq!(o.duration, Duration::from_millis(200));
    assert_eq!(o.at, UNIX_EPOCH + Duration::from_secs(NOON));
    assert_eq!(o.content.answer.finish_reason.as_deref(), Some("stop"));

    let calls = h.judge.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(&*calls[0].model, "judge-mini");
    assert_eq!(&*calls[0].route, "chat");
    assert_eq!(calls[0].timeout, Duration::from_secs(10));
    assert_eq!(calls[0].judged.span_id, [7; 8]);
    assert!(
        crate::rubric::judge_request_rubric(&calls[0].body).is_some(),
        "the body carries the marker"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_garbage_verdict_is_counted_invalid_never_guessed() {
    let mut h = start_pool(
        Behaviour::Reply(
            "Sure! ```json\n{\"score\": 0.9, \"label\": \"helpful\", \"explanation\": \"ok\"}\n```",
        ),
        8,
        PoolOptions::default(),
    );
    let s = settings(|_| {});
    assert!(h.feed.offer(job(&s, 1)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, SampleOutcome::Invalid);
    assert_eq!(
        outcomes[0].detail,
        Some(OutcomeDetail::Invalid(InvalidReason::NotJson))
    );
    assert_eq!(outcomes[0].verdict, None);
    assert_eq!(
        outcomes[0].cost_usd,
        Some(0.01),
        "an invalid verdict still cost money"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn over_budget_stops_judging_without_calling_the_judge() {
    let mut h = start_pool(MOCK, 16, PoolOptions::default());
    // Two calls a minute.
    let rpm = settings(|s| s.rpm = Some(2));
    for n in 0..5 {
        assert!(h.feed.offer(job(&rpm, n)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.calls(), 2);
    assert_eq!(h.count(SampleOutcome::Scored, None), 2);
    let over_rpm = Some(OutcomeDetail::OverBudget(BudgetLimit::Rpm));
    assert_eq!(h.count(SampleOutcome::OverBudget, over_rpm), 3);
    // A minute later the window has room again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(h.feed.offer(job(&rpm, 9)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.calls(), 3);
    h.stop().await;

    // 0.002 USD a call against 0.005 a day: three calls, then over budget.
    let mut h = start_pool(MOCK, 16, PoolOptions::default());
    let usd = settings(|s| {
        s.usd_per_day = Some(0.005);
        s.concurrency = 1;
    });
    for n in 0..5 {
        assert!(h.feed.offer(job(&usd, n)));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.calls(), 3);
    assert_eq!(h.count(SampleOutcome::Scored, None), 3);
    let over_usd = Some(OutcomeDetail::OverBudget(BudgetLimit::UsdPerDay));
    assert_eq!(h.count(SampleOutcome::OverBudget, over_usd), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_judge_never_slows_the_producer_and_drops_are_counted() {
    let slow = Behaviour::Mock {
        delay: Duration::from_secs(3600),
        cost: 0.0,
    };
    let options = PoolOptions {
        tick: Duration::from_millis(50),
        max_held: 1024,
        route_backlog: 2,
    };
    let mut h = start_pool(slow, 4, options);
    // Neither the judge's hour nor the timeout passes while the producer runs.
    let s = settings(|s| {
        s.concurrency = 1;
        s.timeout = Duration::from_secs(600);
    });
    let before = Instant::now();
    let mut accepted = 0;
    for round in 0..10u8 {
        // A burst between two ticks: the queue holds 4, the rest is refused at once.
        for n in 0..10 {
            if h.feed.offer(job(&s, round * 10 + n)) {
                accepted += 1;
            }
        }
        assert_eq!(
            Instant::now(),
            before + Duration::from_millis(60) * u32::from(round)
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(accepted, 40, "4 per burst");
    assert_eq!(h.feed.dropped(), 60, "every refusal is counted on the feed");
    // The pool took 40: one running, two waiting for the slot, the rest dropped by the
    // route's backlog bound.
    assert_eq!(h.calls(), 1);
    assert_eq!(h.judge.most_running.load(Ordering::SeqCst), 1);
    let backlog = Some(OutcomeDetail::Dropped(DropReason::RouteBacklog));
    assert_eq!(h.count(SampleOutcome::Dropped, backlog), 37);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_per_route() {
    let mut h = start_pool(MOCK, 16, PoolOptions::default());
    let s = settings(|s| s.concurrency = 2);
    for n in 0..6 {
        assert!(h.feed.offer(job(&s, n)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.count(SampleOutcome::Scored, None), 6);
    assert_eq!(h.judge.most_running.load(Ordering::SeqCst), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_timeout_fails() {
    let slow = Behaviour::Mock {
        delay: Duration::from_secs(30),
        cost: 0.0,
    };
    let mut h = start_pool(slow, 8, PoolOptions::default());
    let s = settings(|s| s.timeout = Duration::from_secs(2));
    assert!(h.feed.offer(job(&s, 1)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, SampleOutcome::Failed);
    assert_eq!(
        outcomes[0].detail,
        Some(OutcomeDetail::Failed(Failure::Timeout))
    );
    assert_eq!(outcomes[0].duration, Duration::from_secs(2));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backend_errors_and_panics_are_failures() {
    for (behaviour, failure) in [
        (Behaviour::Fail(Failure::Upstream), Failure::Upstream),
        (Behaviour::Fail(Failure::Limited), Failure::Limited),
        (Behaviour::Panic, Failure::Panicked),
    ] {
        let mut h = start_pool(behaviour, 8, PoolOptions::default());
        let s = settings(|_| {});
        assert!(h.feed.offer(job(&s, 1)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let outcomes = h.outcomes();
        assert_eq!(outcomes.len(), 1, "{failure:?}");
        assert_eq!(outcomes[0].outcome, SampleOutcome::Failed);
        assert_eq!(outcomes[0].detail, Some(OutcomeDetail::Failed(failure)));
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_running_calls_and_counts_the_rest_as_dropped() {
    let slow = Behaviour::Mock {
        delay: Duration::from_secs(5),
        cost: 0.0,
    };
    let mut h = start_pool(slow, 8, PoolOptions::default());
    let s = settings(|s| s.concurrency = 1);
    for n in 0..3 {
        assert!(h.feed.offer(job(&s, n)));
    }
    // One tick: job 0 is running, jobs 1 and 2 wait for the route's only slot.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.calls(), 1);
    // Two more are queued but not yet taken when shutdown fires.
    assert!(h.feed.offer(job(&s, 3)));
    assert!(h.feed.offer(job(&s, 4)));
    let fired = Instant::now();
    h.stop().await;
    assert_eq!(
        Instant::now() - fired,
        Duration::from_millis(4990),
        "stop waited for the running call and no longer"
    );
    assert_eq!(h.calls(), 1, "nothing new started after shutdown");
    assert_eq!(h.count(SampleOutcome::Scored, None), 1);
    let shutdown = Some(OutcomeDetail::Dropped(DropReason::Shutdown));
    assert_eq!(h.count(SampleOutcome::Dropped, shutdown), 4);
    assert!(!h.feed.offer(job(&s, 5)), "a stopped pool takes nothing");
    assert_eq!(h.feed.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reload_with_other_limits_applies_to_new_jobs() {
    let mut h = start_pool(MOCK, 16, PoolOptions::default());
    let one = settings(|s| s.concurrency = 1);
    let three = settings(|s| s.concurrency = 3);
    for n in 0..3 {
        assert!(h.feed.offer(job(&one, n)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.judge.most_running.load(Ordering::SeqCst), 1);
    for n in 3..6 {
        assert!(h.feed.offer(job(&three, n)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.judge.most_running.load(Ordering::SeqCst), 3);
    assert_eq!(h.count(SampleOutcome::Scored, None), 6);
    h.stop().await;
}

#[test]
fn outcome_labels() {
    let table = [
        (SampleOutcome::Sampled, "sampled"),
        (SampleOutcome::Dropped, "dropped"),
        (SampleOutcome::Scored, "scored"),
        (SampleOutcome::Invalid, "invalid"),
        (SampleOutcome::Failed, "failed"),
        (SampleOutcome::OverBudget, "over_budget"),
    ];
    for (o, label) in table {
        assert_eq!(o.as_str(), label);
        assert_eq!(
            serde_json::to_value(o).expect("serializes"),
            serde_json::Value::String(label.into())
        );
    }
    assert_eq!(
        OutcomeDetail::Dropped(DropReason::RouteBacklog).as_str(),
        "route_backlog"
    );
    assert_eq!(
        OutcomeDetail::OverBudget(BudgetLimit::UsdPerDay).as_str(),
        "usd_per_day"
    );
    assert_eq!(
        OutcomeDetail::Invalid(InvalidReason::DuplicateKey).as_str(),
        "duplicate_key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fanout_hands_every_outcome_to_each_sink() {
    let first = Arc::new(Collect::default());
    let recent = Arc::new(crate::recent::RecentVerdicts::new(
        8,
        crate::recent::ContentCapture::Off,
    ));
    let sink = Fanout(vec![first.clone(), recent.clone()]);
    let (feed, intake) = feed(8, Counter::default());
    let judge = Arc::new(FakeJudge {
        behaviour: MOCK,
        calls: Mutex::new(Vec::new()),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
    });
    let pool = JudgePool::new(
        intake,
        judge,
        Arc::new(sink),
        Arc::new(FixedClock),
        PoolOptions::default(),
    );
    let (trigger, shutdown) = Shutdown::pair();
    #[expect(clippy::disallowed_methods, reason = "the test stands in for Services")]
    let task = tokio::spawn(Box::new(pool).run(shutdown));
    let s = settings(|_| {});
    for n in 0..3 {
        assert!(feed.offer(job(&s, n)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.fire();
    task.await.expect("the pool drains and returns");
    assert_eq!(first.0.lock().expect("lock").len(), 3);
    let shown = recent.snapshot();
    assert_eq!(shown.len(), 3);
    assert!(shown.iter().all(|e| e.outcome == SampleOutcome::Scored));
}
