//! Engine tests on paused time: window and budget math against hand-computed values, SLI
//! classification, snapshots, and the Prometheus rules (through `promtool` when it is there).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_policy::remediation::{AlertLevel, SloStatus, TargetKey, Window};
use tokio::time::{Instant, advance};

use super::*;
use crate::Error;

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn target(provider: &str, model: &str) -> TargetKey {
    TargetKey {
        provider: Arc::from(provider),
        model: Arc::from(model),
    }
}

fn availability() -> SloSpec {
    SloSpec::new("availability", "chat", Sli::Errors, 0.995, 30 * DAY)
}

fn sample(class: ErrorClass, target: Option<TargetKey>) -> SloSample {
    SloSample {
        route: Arc::from("chat"),
        target,
        class,
        ttft: None,
        duration: Duration::from_millis(800),
    }
}

/// Ingests `total` requests at `at`, the first `bad` of them failed.
fn feed(engine: &mut SloEngine, at: Instant, total: u32, bad: u32, target: Option<TargetKey>) {
    for i in 0..total {
        let class = if i < bad {
            ErrorClass::Bad
        } else {
            ErrorClass::Good
        };
        engine.ingest(at, &sample(class, target.clone()));
    }
}

fn find<'s>(statuses: &'s [SloStatus], slo: &str, t: Option<&TargetKey>) -> &'s SloStatus {
    statuses
        .iter()
        .find(|s| &*s.slo == slo && s.target.as_ref() == t)
        .expect("status present")
}

fn close(got: Option<f64>, want: f64) {
    let got = got.expect("burn known");
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

#[tokio::test(start_paused = true)]
async fn burn_rates_and_budget_match_hand_computed_values() {
    let t0 = Instant::now();
    let mut engine = SloEngine::new(vec![availability()], WindowScale::ONE, t0).expect("engine");
    let eval = t0 + 6 * HOUR;
    let (x, y) = (target("openai", "gpt-4o"), target("anthropic", "claude"));
    // Four batches, placed well inside the windows they should fall in.
    feed(&mut engine, t0 + 2 * MIN, 500, 5, None); // 1d, 3d, SLO only (before the 6h window)
    feed(&mut engine, eval - 3 * HOUR, 1000, 0, None); // 6h and longer
    feed(&mut engine, eval - 20 * MIN, 200, 20, Some(y.clone())); // 30m and longer
    advance(6 * HOUR - MIN).await;
    feed(&mut engine, Instant::now(), 100, 30, Some(x.clone())); // every window
    advance(MIN).await;
    assert_eq!(Instant::now(), eval);

    let all = engine.status(eval);
    assert_eq!(all.len(), 3, "the route, then two targets");
    let s = find(&all, "availability", None);
    // burn = (bad / total) / 0.005
    let cases = [
        (Window::M5, 30, 100, 60.0),
        (Window::M30, 50, 300, 50.0 / 300.0 / 0.005),
        (Window::H1, 50, 300, 50.0 / 300.0 / 0.005),
        (Window::H6, 50, 1300, 50.0 / 1300.0 / 0.005),
        (Window::D1, 55, 1800, 55.0 / 1800.0 / 0.005),
        (Window::D3, 55, 1800, 55.0 / 1800.0 / 0.005),
        (Window::Slo, 55, 1800, 55.0 / 1800.0 / 0.005),
    ];
    for (w, bad, total, burn) in cases {
        let stat = s.windows.get(w);
        assert_eq!((stat.bad, stat.total), (bad, total), "{}", w.as_str());
        close(stat.burn, burn);
    }
    // 55 bad against a budget of 0.005 · 1800 = 9.
    assert!((s.budget_remaining - (1.0 - 55.0 / 9.0)).abs() < 1e-9);
    assert_eq!(
        s.alert,
        AlertLevel::Page,
        "1h at 33 and 5m at 60 are over 14.4"
    );
    assert_eq!(s.objective, 0.995);

    let sx = find(&all, "availability", Some(&x));
    close(sx.burn(Window::M5), 60.0);
    close(sx.burn(Window::Slo), 60.0);
    assert_eq!(sx.alert, AlertLevel::Page);
    let sy = find(&all, "availability", Some(&y));
    assert_eq!(sy.windows.m5.total, 0);
    assert_eq!(sy.burn(Window::M5), None, "no events is no burn");
    close(sy.burn(Window::M30), 20.0);
    assert_eq!(
        sy.alert,
        AlertLevel::Page,
        "5m unknown, but 30m and 6h burn at 20, over 6"
    );
}

#[tokio::test(start_paused = true)]
async fn the_min_events_guard_hides_thin_windows() {
    let t0 = Instant::now();
    let mut spec = availability();
    spec.min_events = 150;
    let mut engine = SloEngine::new(vec![spec], WindowScale::ONE, t0).expect("engine");
    feed(&mut engine, t0 + 10 * MIN, 200, 100, None);
    feed(&mut engine, t0 + 59 * MIN, 100, 100, None);
    let s = engine.status(t0 + HOUR);
    assert_eq!(s[0].windows.m5.total, 100);
    assert_eq!(
        s[0].burn(Window::M5),
        None,
        "100 events are under the guard of 150"
    );
    close(s[0].burn(Window::H1), 200.0 / 300.0 / 0.005);
    assert_eq!(s[0].burn(Window::M30), None, "the same 100 events");
    assert_eq!(
        s[0].alert,
        AlertLevel::Ticket,
        "no page without a known 5m or 30m burn; 6h and 3d make it a ticket"
    );
    assert!(s[0].budget_remaining < 0.0, "the budget counts every event");
}

#[tokio::test(start_paused = true)]
async fn events_leave_each_window_as_time_passes() {
    let t0 = Instant::now();
    let mut engine = SloEngine::new(vec![availability()], WindowScale::ONE, t0).expect("engine");
    feed(&mut engine, t0, 10, 10, None);
    let total = |e: &SloEngine, w: Window| e.status(Instant::now())[0].windows.get(w).total;
    advance(4 * MIN + Duration::from_secs(50)).await;
    assert_eq!(total(&engine, Window::M5), 10);
    advance(Duration::from_secs(10)).await;
    assert_eq!(total(&engine, Window::M5), 0, "gone after 5m");
    assert_eq!(total(&engine, Window::M30), 10);
    advance(HOUR).await;
    assert_eq!(total(&engine, Window::H1), 0);
    assert_eq!(total(&engine, Window::H6), 10);
    advance(3 * DAY).await;
    assert_eq!(total(&engine, Window::D3), 0);
    assert_eq!(
        total(&engine, Window::Slo),
        10,
        "still in the 30-day budget"
    );
    advance(27 * DAY).await;
    assert_eq!(total(&engine, Window::Slo), 0);
    assert_eq!(engine.status(Instant::now())[0].budget_remaining, 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_window_scale_runs_the_same_windows_in_seconds() {
    let t0 = Instant::now();
    // 1/360: an hour in 10 s, six hours in a minute, 30 days in two hours.
    let scale = WindowScale::new(1.0 / 360.0).expect("scale");
    let mut engine = SloEngine::new(vec![availability()], scale, t0).expect("engine");
    feed(&mut engine, t0, 100, 50, None);
    advance(Duration::from_millis(700)).await;
    let s = engine.status(Instant::now());
    close(s[0].burn(Window::M5), 100.0);
    assert_eq!(s[0].alert, AlertLevel::Page);
    advance(Duration::from_millis(200)).await; // past 5m/360 ≈ 0.83 s
    let s = engine.status(Instant::now());
    assert_eq!(s[0].windows.m5.total, 0);
    assert_eq!(s[0].windows.h1.total, 100);
    assert_eq!(
        s[0].alert,
        AlertLevel::Page,
        "the 30m and 6h pair still pages"
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(engine.status(Instant::now())[0].windows.h1.total, 0);
    assert_eq!(engine.status(Instant::now())[0].windows.h6.total, 100);
    assert!(WindowScale::new(0.0).is_err());
    assert!(WindowScale::new(f64::NAN).is_err());
}

#[test]
fn each_sli_classifies_requests_as_documented() {
    let s = |class, ttft: Option<u64>, ms| SloSample {
        route: Arc::from("chat"),
        target: None,
        class,
        ttft: ttft.map(Duration::from_millis),
        duration: Duration::from_millis(ms),
    };
    let ttft = Sli::TtftBelow(Duration::from_secs(2));
    let dur = Sli::DurationBelow(Duration::from_secs(5));
    use ErrorClass::{Bad, Excluded, Good};
    let cases = [
        ("errors: good", Sli::Errors, s(Good, None, 100), Some(true)),
        ("errors: bad", Sli::Errors, s(Bad, None, 100), Some(false)),
        (
            "errors: excluded",
            Sli::Errors,
            s(Excluded, None, 100),
            None,
        ),
        ("ttft: fast", ttft, s(Good, Some(500), 9000), Some(true)),
        (
            "ttft: at the bound",
            ttft,
            s(Good, Some(2000), 9000),
            Some(true),
        ),
        ("ttft: slow", ttft, s(Good, Some(2001), 9000), Some(false)),
        (
            "ttft: cut after a fast first token",
            ttft,
            s(Bad, Some(300), 9000),
            Some(true),
        ),
        (
            "ttft: failed before any token",
            ttft,
            s(Bad, None, 100),
            Some(false),
        ),
        ("ttft: not a stream", ttft, s(Good, None, 100), None),
        ("ttft: excluded", ttft, s(Excluded, Some(9000), 100), None),
        ("duration: fast", dur, s(Good, None, 4000), Some(true)),
        ("duration: slow", dur, s(Good, None, 6000), Some(false)),
        ("duration: failed fast", dur, s(Bad, None, 10), Some(false)),
        ("duration: excluded", dur, s(Excluded, None, 10), None),
        (
            "judge: requests do not count",
            Sli::JudgeScoreAtLeast(0.7),
            s(Good, None, 1),
            None,
        ),
    ];
    for (name, sli, sample, want) in cases {
        assert_eq!(sli.classify(&sample), want, "{name}");
    }
    let judge = Sli::JudgeScoreAtLeast(0.7);
    assert_eq!(judge.classify_score(0.7), Some(true));
    assert_eq!(judge.classify_score(0.69), Some(false));
    assert_eq!(judge.classify_score(f64::NAN), None);
    assert_eq!(Sli::Errors.classify_score(1.0), None);
}

#[tokio::test(start_paused = true)]
async fn quality_samples_feed_only_judge_slos() {
    let t0 = Instant::now();
    let quality = SloSpec::new("quality", "chat", Sli::JudgeScoreAtLeast(0.7), 0.9, 7 * DAY);
    let mut engine =
        SloEngine::new(vec![availability(), quality], WindowScale::ONE, t0).expect("engine");
    let mini = target("openai", "gpt-4o-mini");
    let mut counted = Vec::new();
    for score in [0.9, 0.8, 0.5, 0.1] {
        let q = QualitySample {
            route: Arc::from("chat"),
            target: Some(mini.clone()),
            score,
        };
        engine.ingest_quality_with(t0, &q, |spec, good| counted.push((spec.name.clone(), good)));
    }
    engine.ingest_with(t0, &sample(ErrorClass::Good, None), |spec, good| {
        counted.push((spec.name.clone(), good));
    });
    let names: Vec<(&str, bool)> = counted.iter().map(|(n, g)| (&**n, *g)).collect();
    assert_eq!(
        names,
        [
            ("quality", true),
            ("quality", true),
            ("quality", false),
            ("quality", false),
            ("availability", true)
        ]
    );
    let all = engine.status(t0 + MIN);
    let q = find(&all, "quality", Some(&mini));
    assert_eq!((q.windows.m5.bad, q.windows.m5.total), (2, 4));
    close(q.burn(Window::M5), 5.0);
    assert_eq!(find(&all, "availability", None).windows.m5.total, 1);
    // A route without SLOs is ignored.
    let mut other = sample(ErrorClass::Bad, None);
    other.route = Arc::from("embed");
    engine.ingest(t0, &other);
    assert_eq!(engine.status(t0).len(), 3);
}

/// The scenarios of `testdata/rules_test.yml`, through the in-process engine: 400 events a
/// minute, `bad` of them failed in each of the first `bad_minutes`.
#[tokio::test(start_paused = true)]
async fn engine_alerts_like_the_rules() {
    struct Case {
        name: &'static str,
        bad: u32,
        bad_minutes: u32,
        eval_minutes: u32,
        page: bool,
        ticket: bool,
    }
    let cases = [
        Case {
            name: "10 % errors",
            bad: 40,
            bad_minutes: 120,
            eval_minutes: 120,
            page: true,
            ticket: true,
        },
        Case {
            name: "4 % errors",
            bad: 16,
            bad_minutes: 120,
            eval_minutes: 120,
            page: true,
            ticket: true,
        },
        Case {
            name: "1 % errors",
            bad: 4,
            bad_minutes: 120,
            eval_minutes: 120,
            page: false,
            ticket: true,
        },
        Case {
            name: "0.25 % errors",
            bad: 1,
            bad_minutes: 120,
            eval_minutes: 120,
            page: false,
            ticket: false,
        },
        Case {
            name: "during a 1 h burn",
            bad: 40,
            bad_minutes: 60,
            eval_minutes: 55,
            page: true,
            ticket: true,
        },
        Case {
            name: "30 min after it",
            bad: 40,
            bad_minutes: 60,
            eval_minutes: 90,
            page: false,
            ticket: true,
        },
    ];
    for case in cases {
        let t0 = Instant::now();
        let mut spec = availability();
        spec.min_events = 100;
        let mut engine = SloEngine::new(vec![spec], WindowScale::ONE, t0).expect("engine");
        for minute in 1..=case.eval_minutes {
            let bad = if minute <= case.bad_minutes {
                case.bad
            } else {
                0
            };
            feed(&mut engine, t0 + MIN * minute, 400, bad, None);
        }
        let s = &engine.status(t0 + MIN * case.eval_minutes)[0];
        let over = |w: Window, t: f64| s.burn(w).is_some_and(|b| b > t);
        assert_eq!(
            over(Window::D3, 1.0) && over(Window::H6, 1.0),
            case.ticket,
            "{}",
            case.name
        );
        let want = if case.page {
            AlertLevel::Page
        } else if case.ticket {
            AlertLevel::Ticket
        } else {
            AlertLevel::None
        };
        assert_eq!(s.alert, want, "{}", case.name);
        if case.bad == 1 {
            assert!((s.budget_remaining - 0.5).abs() < 1e-9, "{}", case.name);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn snapshot_and_restore_keep_the_budget() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut spec = availability();
    spec.min_events = 10;
    let mut before = SloEngine::new(vec![spec.clone()], WindowScale::ONE, t0).expect("engine");
    let x = target("openai", "gpt-4o");
    feed(&mut before, t0 + 30 * MIN, 1000, 3, None);
    feed(
        &mut before,
        t0 + 5 * HOUR + 2 * MIN,
        500,
        40,
        Some(x.clone()),
    );
    feed(&mut before, t0 + 2 * DAY, 800, 8, Some(x.clone()));
    let snap_at = t0 + 2 * DAY + 10 * MIN + Duration::from_secs(2);
    let bytes = before.snapshot(snap_at, wall0).expect("snapshot");

    // The process is down for 20 minutes; the new one has its own clock.
    advance(3 * DAY).await;
    let now = Instant::now();
    let mut after = SloEngine::new(vec![spec], WindowScale::ONE, now).expect("engine");
    let report = after
        .restore(&bytes, now, wall0 + 20 * MIN)
        .expect("restores");
    assert_eq!(report.series, 2);
    assert_eq!(report.skipped, 0);

    // What the old engine would say 20 minutes later, had it kept running.
    let want = before.status(snap_at + 20 * MIN);
    let got = after.status(now);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.target, w.target);
        for win in [Window::H6, Window::D1, Window::D3, Window::Slo] {
            assert_eq!(g.windows.get(win), w.windows.get(win), "{}", win.as_str());
        }
        assert_eq!(
            g.budget_remaining, w.budget_remaining,
            "the budget is not forgotten"
        );
    }
    assert!(got[0].budget_remaining < 1.0);
    assert_eq!(got[0].windows.slo.total, 2300);
    assert_eq!(got[1].windows.slo.total, 1300);

    // Down for 31 days: every bucket has aged out.
    let mut late = SloEngine::new(vec![availability()], WindowScale::ONE, now).expect("engine");
    let report = late
        .restore(&bytes, now, wall0 + 31 * DAY)
        .expect("restores");
    assert!(report.dropped_buckets > 0);
    assert_eq!(late.status(now)[0].windows.slo.total, 0);
    assert_eq!(late.status(now)[0].budget_remaining, 1.0);
}

#[tokio::test(start_paused = true)]
async fn restore_keeps_the_fine_buckets_in_place() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut a = SloEngine::new(vec![availability()], WindowScale::ONE, t0).expect("engine");
    feed(&mut a, t0 + Duration::from_secs(100), 10, 10, None);
    feed(&mut a, t0 + Duration::from_secs(290), 10, 0, None);
    let bytes = a
        .snapshot(t0 + Duration::from_secs(300), wall0)
        .expect("snapshot");
    // Restart at once (a different clock origin, and not on a bucket boundary).
    advance(Duration::from_millis(123_456)).await;
    let now = Instant::now();
    let mut b = SloEngine::new(vec![availability()], WindowScale::ONE, now).expect("engine");
    b.restore(&bytes, now, wall0 + Duration::from_millis(2500))
        .expect("restores");
    // At 302.5 s the 5m window reaches back to 2.5 s + a bucket: both batches are in it.
    let s = &b.status(now)[0];
    assert_eq!((s.windows.m5.bad, s.windows.m5.total), (10, 20));
    // Three minutes on, only the later batch is.
    let s = &b.status(now + 3 * MIN)[0];
    assert_eq!((s.windows.m5.bad, s.windows.m5.total), (0, 10));
}

#[tokio::test(start_paused = true)]
async fn a_bad_snapshot_is_an_error_and_changes_nothing() {
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut engine = SloEngine::new(vec![availability()], WindowScale::ONE, t0).expect("engine");
    feed(&mut engine, t0, 10, 1, None);
    let good = engine.snapshot(t0, wall).expect("snapshot");
    let text = String::from_utf8(good.clone()).expect("utf-8");

    let truncated = &good[..good.len() / 2];
    let wrong_version = text.replacen("\"version\":1", "\"version\":2", 1);
    let wrong_shape = text.replacen("\"buckets\":[", "\"buckets\":{\"x\":[", 1);
    let cases: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("not json", b"\x00\xffgarbage"),
        ("truncated", truncated),
        ("another version", wrong_version.as_bytes()),
        ("wrong shape", wrong_shape.as_bytes()),
    ];
    for (name, bytes) in cases {
        let err = engine.restore(bytes, t0, wall).expect_err(name);
        let msg = err.to_string();
        assert!(msg.starts_with("slo snapshot"), "{name}: {msg}");
        if name == "another version" {
            assert!(matches!(
                err,
                Error::SnapshotVersion {
                    found: 2,
                    supported: 1
                }
            ));
        }
    }
    assert_eq!(
        engine.status(t0)[0].windows.m5.total,
        10,
        "nothing was added"
    );
}

#[tokio::test(start_paused = true)]
async fn restore_skips_slos_that_count_something_else_now() {
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ttft = |bound| SloSpec::new("ttft", "chat", Sli::TtftBelow(bound), 0.95, 30 * DAY);
    let mut a = SloEngine::new(
        vec![ttft(Duration::from_secs(2)), availability()],
        WindowScale::ONE,
        t0,
    )
    .expect("engine");
    let mut s = sample(ErrorClass::Good, None);
    s.ttft = Some(Duration::from_millis(1500));
    a.ingest(t0, &s);
    let bytes = a.snapshot(t0, wall).expect("snapshot");
    // The bound changed: 1.5 s was good under 2 s and would be bad under 1 s.
    let mut b =
        SloEngine::new(vec![ttft(Duration::from_secs(1))], WindowScale::ONE, t0).expect("engine");
    let report = b.restore(&bytes, t0, wall).expect("restores");
    assert_eq!(
        (report.series, report.skipped),
        (0, 2),
        "changed SLI, removed SLO"
    );
    assert_eq!(b.status(t0)[0].windows.slo.total, 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_carries_the_counts_over() {
    let t0 = Instant::now();
    let mut engine = SloEngine::new(vec![availability()], WindowScale::ONE, t0).expect("engine");
    let x = target("openai", "gpt-4o");
    feed(&mut engine, t0, 100, 10, Some(x.clone()));
    advance(MIN).await;
    let mut tighter = availability();
    tighter.objective = 0.999;
    let quality = SloSpec::new("quality", "chat", Sli::JudgeScoreAtLeast(0.5), 0.9, 7 * DAY);
    let report = engine
        .reconfigure(vec![tighter, quality], WindowScale::ONE, Instant::now())
        .expect("reconfigures");
    assert_eq!((report.series, report.skipped), (2, 0));
    let all = engine.status(Instant::now());
    let s = find(&all, "availability", Some(&x));
    assert_eq!((s.windows.m5.bad, s.windows.m5.total), (10, 100));
    close(s.burn(Window::M5), 0.1 / 0.001);
    assert_eq!(find(&all, "quality", None).windows.slo.total, 0);
}

#[tokio::test(start_paused = true)]
async fn silent_targets_are_dropped_and_targets_are_bounded() {
    let t0 = Instant::now();
    let mut spec = availability();
    spec.window = 7 * DAY;
    let mut engine = SloEngine::new(vec![spec], WindowScale::ONE, t0).expect("engine");
    feed(&mut engine, t0, 1, 0, Some(target("openai", "gpt-4o")));
    advance(7 * DAY).await;
    assert_eq!(
        engine.prune(Instant::now()),
        0,
        "still within the 7-day span"
    );
    advance(HOUR + MIN).await;
    assert_eq!(engine.prune(Instant::now()), 1);
    assert_eq!(engine.status(Instant::now()).len(), 1);

    for i in 0..MAX_TARGETS_PER_SLO + 3 {
        let t = target("p", &format!("m{i}"));
        feed(&mut engine, Instant::now(), 1, 0, Some(t));
    }
    assert_eq!(engine.refused_targets(), 3);
    let s = engine.status(Instant::now());
    assert_eq!(s.len(), 1 + MAX_TARGETS_PER_SLO);
    assert_eq!(
        s[0].windows.m5.total,
        (MAX_TARGETS_PER_SLO + 3) as u64,
        "the route counts all"
    );
}

#[test]
fn bad_specs_are_refused() {
    let t0 = Instant::now();
    let mut perfect = availability();
    perfect.objective = 1.0;
    let err = SloEngine::new(vec![perfect], WindowScale::ONE, t0).expect_err("objective 1");
    assert_eq!(
        err.to_string(),
        "slo `availability` of route `chat`: the objective must be strictly between 0 and 1"
    );
    let mut empty = availability();
    empty.window = Duration::ZERO;
    assert!(SloEngine::new(vec![empty], WindowScale::ONE, t0).is_err());
    let err = SloEngine::new(vec![availability(), availability()], WindowScale::ONE, t0)
        .expect_err("twice");
    assert!(matches!(err, Error::SloDuplicate { .. }));
    let mut other_route = availability();
    other_route.route = Arc::from("embed");
    assert!(SloEngine::new(vec![availability(), other_route], WindowScale::ONE, t0).is_ok());
}

fn rule_specs() -> Vec<SloSpec> {
    let mut a = availability();
    a.runbook_url = Some(Arc::from("https://runbooks.example/sluice/availability"));
    let t = SloSpec::new(
        "ttft",
        "chat",
        Sli::TtftBelow(Duration::from_secs(2)),
        0.95,
        30 * DAY,
    );
    vec![a, t]
}

#[test]
fn generated_rules_are_yaml_with_every_recording_and_alert() {
    let yaml = prometheus_rules(&rule_specs(), &MetricNames::default());
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
    let groups = doc["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(
        names,
        ["sluice-slo-chat-availability", "sluice-slo-chat-ttft"]
    );
    let rules = groups[0]["rules"].as_array().expect("rules");
    let records: Vec<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    assert_eq!(
        records,
        [
            "sluice_slo:sli_error:ratio_rate5m",
            "sluice_slo:sli_error:ratio_rate30m",
            "sluice_slo:sli_error:ratio_rate1h",
            "sluice_slo:sli_error:ratio_rate6h",
            "sluice_slo:sli_error:ratio_rate1d",
            "sluice_slo:sli_error:ratio_rate3d",
            "sluice_slo:bad_events:rate5m",
            "sluice_slo:events:rate5m",
            "sluice_slo:sli_error:ratio_rate_period",
            "sluice_slo:objective:ratio",
            "sluice_slo:error_budget:ratio",
            "sluice_slo:period_error_budget_remaining:ratio",
        ]
    );
    assert_eq!(
        rules[0]["expr"],
        "(sum(rate(sluice_slo_events_total{slo=\"availability\",route=\"chat\",good=\"false\"}[5m])) or vector(0))\n/\nsum(rate(sluice_slo_events_total{slo=\"availability\",route=\"chat\"}[5m]))"
    );
    assert_eq!(rules[0]["labels"]["window"], "5m");
    assert_eq!(rules[8]["labels"]["window"], "30d");

    // The alerts come last, after the ratios they read.
    let alerts: Vec<&serde_json::Value> =
        rules.iter().filter(|r| r.get("alert").is_some()).collect();
    assert_eq!(alerts.len(), 2);
    assert!(
        rules[rules.len() - 2..]
            .iter()
            .all(|r| r.get("alert").is_some())
    );
    let page = alerts[0]["expr"].as_str().expect("expr");
    assert!(page.contains("ratio_rate5m{slo=\"availability\",route=\"chat\"} > 0.072)"));
    assert!(page.contains("ratio_rate1h{slo=\"availability\",route=\"chat\"} > 0.072)"));
    assert!(page.contains("ratio_rate30m{slo=\"availability\",route=\"chat\"} > 0.03)"));
    assert!(page.contains("ratio_rate6h{slo=\"availability\",route=\"chat\"} > 0.03)"));
    let ticket = alerts[1]["expr"].as_str().expect("expr");
    assert!(ticket.contains("ratio_rate6h{slo=\"availability\",route=\"chat\"} > 0.005)"));
    assert!(ticket.contains("ratio_rate3d{slo=\"availability\",route=\"chat\"} > 0.005)"));
    assert_eq!(alerts[0]["alert"], ALERT_NAME);
    assert_eq!(alerts[0]["labels"]["severity"], "page");
    assert_eq!(alerts[1]["labels"]["severity"], "ticket");
    assert_eq!(
        alerts[0]["annotations"]["runbook_url"],
        "https://runbooks.example/sluice/availability"
    );
    // ttft: 95 % gives thresholds 0.72, 0.3 and 0.05, and no runbook.
    let ttft_rules = groups[1]["rules"].as_array().expect("rules");
    let ttft_page = &ttft_rules[ttft_rules.len() - 2];
    let expr = ttft_page["expr"].as_str().expect("expr");
    assert!(expr.contains("> 0.72)") && expr.contains("> 0.3)"));
    assert!(ttft_page["annotations"].get("runbook_url").is_none());

    // Awkward names stay one string in YAML and in PromQL.
    let odd = SloSpec::new("a\"b", "r\\n", Sli::Errors, 0.99, DAY);
    let yaml = prometheus_rules(&[odd], &MetricNames::default());
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
    assert_eq!(doc["groups"][0]["rules"][0]["labels"]["slo"], "a\"b");
    assert_eq!(doc["groups"][0]["rules"][0]["labels"]["route"], "r\\n");
    assert!(yaml.contains(r#"{slo="a\"b",route="r\\n"}"#));
    let none: serde_json::Value =
        serde_saphyr::from_str(&prometheus_rules(&[], &MetricNames::default())).expect("YAML");
    assert_eq!(none["groups"], serde_json::json!([]));
}

/// `promtool` from `PROMTOOL` or `PATH`.
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
}

#[test]
fn promtool_accepts_the_generated_rules() {
    let Some(promtool) = promtool() else {
        eprintln!(
            "note: promtool is not on PATH (nor in PROMTOOL); skipping `promtool test rules`. \
             Debian: `apt-get download prometheus && dpkg-deb -x prometheus_*.deb /tmp/prom`, \
             then PROMTOOL=/tmp/prom/usr/bin/promtool."
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("sluice-slo-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("rules.yml"),
        prometheus_rules(&rule_specs(), &MetricNames::default()),
    )
    .expect("write rules");
    std::fs::write(
        dir.join("rules_test.yml"),
        include_str!("testdata/rules_test.yml"),
    )
    .expect("write test");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_retried_attempt_burns_its_target_and_not_the_route() {
    let mut spec = availability();
    spec.min_events = 1;
    let now = Instant::now();
    let mut engine = SloEngine::new(vec![spec], WindowScale::ONE, now).expect("engine");
    let (a, b) = (target("p", "a"), target("p", "b"));
    // Ten requests: each failed on `a`, then `b` answered.
    for _ in 0..10 {
        engine.ingest_attempt(now, &sample(ErrorClass::Bad, Some(a.clone())));
        engine.ingest(now, &sample(ErrorClass::Good, Some(b.clone())));
    }
    // Without a target, an attempt counts nowhere.
    engine.ingest_attempt(now, &sample(ErrorClass::Bad, None));
    let st = engine.status(now);
    let route = find(&st, "availability", None);
    assert_eq!((route.windows.m5.bad, route.windows.m5.total), (0, 10));
    let on_a = find(&st, "availability", Some(&a));
    assert_eq!((on_a.windows.m5.bad, on_a.windows.m5.total), (10, 10));
    // 100 % bad against a 0.5 % budget.
    close(on_a.windows.m5.burn, 200.0);
    let on_b = find(&st, "availability", Some(&b));
    assert_eq!((on_b.windows.m5.bad, on_b.windows.m5.total), (0, 10));
}
