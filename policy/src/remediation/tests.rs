//! Decision tables: each test replays an incident tick by tick with hand-written SLO statuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;

const ROUTE: &str = "chat";
const AVAIL: &str = "availability";
const TTFT: &str = "ttft";
const QUALITY: &str = "quality";

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

fn c() -> TargetKey {
    key("azure", "gpt-4o")
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

/// A status with the same burn on every window (a steady state), at objective 0.995.
fn steady(slo: &str, target: Option<TargetKey>, burn: Option<f64>) -> SloStatus {
    let mut windows = WindowStats::default();
    for w in Window::ALL {
        let stat = windows.get_mut(w);
        match burn {
            Some(b) => {
                stat.total = 10_000;
                stat.bad = (b * 0.005 * 10_000.0).round() as u64;
                stat.burn = Some(b);
            }
            None => {
                stat.total = 3;
                stat.burn = None;
            }
        }
    }
    SloStatus {
        slo: Arc::from(slo),
        route: Arc::from(ROUTE),
        target,
        objective: 0.995,
        alert: windows.alert(),
        windows,
        budget_remaining: 1.0 - burn.unwrap_or(0.0),
    }
}

/// A status whose long windows still burn at `long` while the short ones are at `short`.
fn recovering(slo: &str, target: Option<TargetKey>, long: f64, short: Option<f64>) -> SloStatus {
    let mut s = steady(slo, target, Some(long));
    s.windows.m5.burn = short;
    s.windows.m30.burn = short;
    s.alert = s.windows.alert();
    s
}

fn failover_rule() -> Rule {
    let mut r = Rule::new(
        "eject",
        ROUTE,
        Trigger::at(AVAIL, AlertLevel::Page),
        Action::Failover,
    );
    r.runbook_url = Some(Arc::from("https://runbooks.example/eject"));
    r
}

fn kinds(ts: &[Transition]) -> Vec<&'static str> {
    ts.iter().map(|t| t.event.as_str()).collect()
}

/// Runs ticks, feeding each the statuses `at(tick)` gives, and collects every transition.
struct Sim {
    t0: Instant,
    overlay: Overlay,
    rules: Vec<Rule>,
    routes: Vec<RouteTargets>,
    log: Vec<(u64, Transition)>,
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

    fn tick(&mut self, secs: u64, statuses: &[SloStatus]) -> Vec<Transition> {
        let now = self.t0 + Duration::from_secs(secs);
        let d = decide(now, statuses, &self.rules, &self.routes, &self.overlay);
        self.overlay = d.overlay;
        self.log
            .extend(d.transitions.iter().cloned().map(|t| (secs, t)));
        d.transitions
    }

    fn count(&self, kind: &str) -> usize {
        self.log
            .iter()
            .filter(|(_, t)| t.event.as_str() == kind)
            .count()
    }

    fn ejection(&self, target: &TargetKey) -> Option<f64> {
        self.overlay
            .route(ROUTE)
            .and_then(|r| r.ejection(&target.provider, &target.model))
            .map(|e| e.share)
    }
}

#[test]
fn alert_levels_follow_the_workbook_pairs() {
    let page_fast = [(Window::H1, 14.5), (Window::M5, 14.5)];
    let page_slow = [(Window::H6, 6.1), (Window::M30, 6.1)];
    let ticket = [(Window::D3, 1.1), (Window::H6, 1.1)];
    type Case = (&'static str, Vec<(Window, f64)>, AlertLevel);
    let cases: Vec<Case> = vec![
        ("1h and 5m over 14.4", page_fast.to_vec(), AlertLevel::Page),
        ("6h and 30m over 6", page_slow.to_vec(), AlertLevel::Page),
        ("3d and 6h over 1", ticket.to_vec(), AlertLevel::Ticket),
        (
            "exactly 14.4 is not over",
            vec![(Window::H1, 14.4), (Window::M5, 14.4)],
            AlertLevel::None,
        ),
        (
            "long window only",
            vec![(Window::H1, 50.0)],
            AlertLevel::None,
        ),
        (
            "short window only",
            vec![(Window::M5, 50.0)],
            AlertLevel::None,
        ),
        (
            "1h with 30m is no pair",
            vec![(Window::H1, 20.0), (Window::M30, 20.0)],
            AlertLevel::None,
        ),
        (
            "6h at 3 with 3d at 3 is a ticket",
            vec![(Window::H6, 3.0), (Window::D3, 3.0)],
            AlertLevel::Ticket,
        ),
        (
            "3d at exactly 1",
            vec![(Window::H6, 1.0), (Window::D3, 1.0)],
            AlertLevel::None,
        ),
        ("nothing known", vec![], AlertLevel::None),
    ];
    for (name, burns, want) in cases {
        let mut w = WindowStats::default();
        for (win, b) in burns {
            w.get_mut(win).burn = Some(b);
        }
        assert_eq!(w.alert(), want, "{name}");
    }
}

#[test]
fn enter_takes_the_burning_target_out_and_keeps_a_probe() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let burning = [
        steady(AVAIL, Some(a()), Some(20.0)),
        steady(AVAIL, None, Some(20.0)),
    ];
    let ts = sim.tick(0, &burning);
    assert_eq!(kinds(&ts), ["opened", "action_taken"]);
    let taken = &ts[1];
    assert_eq!(taken.target, Some(a()));
    assert_eq!(taken.action, ActionKind::Failover);
    assert!(!taken.dry_run);
    assert_eq!(
        taken.runbook_url.as_deref(),
        Some("https://runbooks.example/eject")
    );
    assert_eq!(
        taken.evidence,
        vec![burning[0].clone()],
        "the numbers that triggered it"
    );
    assert_eq!(
        taken.event,
        Event::ActionTaken {
            applied: Applied::Failover {
                target: a(),
                share: 0.95
            }
        }
    );
    assert_eq!(
        sim.ejection(&a()),
        Some(0.95),
        "5 % still probes the original"
    );
    let set_by = &sim.overlay.route(ROUTE).expect("entry").ejected[0].set_by;
    assert_eq!(&*set_by.rule, "eject");
    assert_eq!(set_by.since, sim.t0);
    assert_eq!(sim.ejection(&b()), None);
    assert_eq!(sim.overlay.incidents().len(), 1);

    // Still burning: nothing new.
    assert!(sim.tick(1, &burning).is_empty());
}

#[test]
fn hold_then_cooldown_then_unwind_then_resolve() {
    let mut rule = failover_rule();
    rule.hold = Duration::from_secs(120);
    rule.cooldown = Duration::from_secs(60);
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);

    // The probe sees the original healthy at once.
    let healthy = [steady(AVAIL, Some(a()), Some(0.2))];
    let ts = sim.tick(1, &healthy);
    assert_eq!(kinds(&ts), ["probe_result"]);
    assert_eq!(
        ts[0].event,
        Event::ProbeResult {
            verdict: Verdict::Healthy,
            burn: Some(0.2)
        }
    );
    // Cooldown done at 61 s, but the hold runs to 120 s.
    for t in 2..120 {
        assert!(sim.tick(t, &healthy).is_empty(), "held at {t}s");
        assert_eq!(sim.ejection(&a()), Some(0.95));
    }
    let ts = sim.tick(120, &healthy);
    assert_eq!(kinds(&ts), ["unwound", "resolved"]);
    assert_eq!(
        ts[0].event,
        Event::Unwound {
            reason: UnwindReason::Recovered,
            held: Duration::from_secs(120),
            healthy_for: Duration::from_secs(119)
        }
    );
    assert_eq!(
        ts[1].event,
        Event::Resolved {
            open_for: Duration::from_secs(120)
        }
    );
    assert!(sim.overlay.is_empty());
    assert!(sim.overlay.incidents().is_empty());
}

#[test]
fn cooldown_counts_from_the_last_bad_probe() {
    let mut rule = failover_rule();
    rule.hold = Duration::from_secs(10);
    rule.cooldown = Duration::from_secs(60);
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    let healthy = [steady(AVAIL, Some(a()), Some(0.5))];
    let relapse = [steady(AVAIL, Some(a()), Some(1.5))];
    let no_data = [steady(AVAIL, Some(a()), None)];
    sim.tick(1, &healthy);
    sim.tick(50, &relapse); // resets the cooldown
    sim.tick(51, &healthy);
    sim.tick(80, &no_data); // unknown is not healthy either
    sim.tick(81, &healthy);
    assert!(sim.tick(140, &healthy).is_empty(), "59 s healthy is not 60");
    assert_eq!(kinds(&sim.tick(141, &healthy)), ["unwound", "resolved"]);
    let verdicts: Vec<Verdict> = sim
        .log
        .iter()
        .filter_map(|(_, t)| match t.event {
            Event::ProbeResult { verdict, .. } => Some(verdict),
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Healthy,
            Verdict::Burning,
            Verdict::Healthy,
            Verdict::NoData,
            Verdict::Healthy
        ],
        "a probe result per change of verdict, not per tick"
    );
}

#[test]
fn no_flapping_when_errors_oscillate_around_the_thresholds() {
    let mut rule = failover_rule();
    rule.hold = Duration::from_secs(30);
    rule.cooldown = Duration::from_secs(30);
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    // For ten minutes the 1 h burn stays at 16 while the 5 m burn swings between 16 and 0.8:
    // the page condition and the probe verdict both flip every tick.
    let mut trigger_flips = 0;
    let mut was_page = false;
    for t in 0..600 {
        let short = if t % 2 == 0 { 16.0 } else { 0.8 };
        let s = recovering(AVAIL, Some(a()), 16.0, Some(short));
        trigger_flips += usize::from((s.alert == AlertLevel::Page) != was_page);
        was_page = s.alert == AlertLevel::Page;
        sim.tick(t, &[s]);
        assert_eq!(sim.ejection(&a()), Some(0.95), "still out at {t}s");
    }
    assert!(
        trigger_flips > 500,
        "the trigger itself flapped {trigger_flips} times"
    );
    assert_eq!(sim.count("action_taken"), 1);
    assert_eq!(sim.count("unwound"), 0);
    assert_eq!(sim.count("opened"), 1);

    // Once the short window settles under 1, it unwinds exactly once after the cooldown.
    for t in 600..700 {
        sim.tick(t, &[recovering(AVAIL, Some(a()), 3.0, Some(0.3))]);
    }
    assert_eq!(sim.count("unwound"), 1);
    let (at, _) = sim
        .log
        .iter()
        .find(|(_, t)| t.event.as_str() == "unwound")
        .expect("unwound");
    assert_eq!(
        *at, 629,
        "30 s of cooldown after the first quiet tick (599 was one)"
    );
    assert_eq!(
        sim.count("resolved"),
        1,
        "the page cleared with the short windows"
    );
    assert_eq!(sim.ejection(&a()), None);
}

#[test]
fn unwound_incident_reenters_when_the_original_burns_again() {
    let mut rule = failover_rule();
    rule.hold = Duration::from_secs(5);
    rule.cooldown = Duration::from_secs(5);
    // Trigger on the 1 h window alone, which stays high long after the short one recovers.
    rule.when.burn = BurnCondition::Above {
        window: Window::H1,
        burn: 2.0,
    };
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    for t in 1..=6 {
        sim.tick(t, &[recovering(AVAIL, Some(a()), 10.0, Some(0.1))]);
    }
    assert_eq!(sim.count("unwound"), 1);
    assert_eq!(sim.count("resolved"), 0, "the 1 h trigger still holds");
    assert_eq!(sim.overlay.incidents()[0].phase, Phase::Unwound);
    // Quiet on full traffic: stays unwound.
    assert!(
        sim.tick(7, &[recovering(AVAIL, Some(a()), 10.0, Some(0.4))])
            .is_empty()
    );
    // Burning again while the trigger holds: the same incident acts again.
    let ts = sim.tick(8, &[recovering(AVAIL, Some(a()), 10.0, Some(3.0))]);
    assert_eq!(kinds(&ts), ["action_taken"]);
    assert_eq!(ts[0].incident, sim.log[0].1.incident);
    assert_eq!(sim.ejection(&a()), Some(0.95));
}

#[test]
fn dry_run_records_every_step_and_changes_nothing() {
    let mut rule = failover_rule();
    rule.dry_run = true;
    rule.hold = Duration::from_secs(10);
    rule.cooldown = Duration::from_secs(10);
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    let ts = sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    assert_eq!(kinds(&ts), ["opened", "action_taken"]);
    assert!(ts.iter().all(|t| t.dry_run));
    assert!(sim.overlay.is_empty(), "routing sees nothing");
    for t in 1..=11 {
        sim.tick(t, &[steady(AVAIL, Some(a()), Some(0.1))]);
        assert!(sim.overlay.is_empty());
    }
    let all: Vec<&str> = sim.log.iter().map(|(_, t)| t.event.as_str()).collect();
    assert_eq!(
        all,
        [
            "opened",
            "action_taken",
            "probe_result",
            "unwound",
            "resolved"
        ]
    );
    assert!(sim.log.iter().all(|(_, t)| t.dry_run));
}

#[test]
fn dry_run_changes_do_not_use_the_routes_one_change() {
    let mut dry = failover_rule();
    dry.name = Arc::from("dry-shed");
    dry.action = Action::Shed { max_priority: 1 };
    dry.dry_run = true;
    let mut sim = Sim::new(vec![dry, failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let ts = sim.tick(
        0,
        &[
            steady(AVAIL, Some(a()), Some(20.0)),
            steady(AVAIL, None, Some(20.0)),
        ],
    );
    let taken: Vec<(&str, bool)> = ts
        .iter()
        .filter(|t| t.event.as_str() == "action_taken")
        .map(|t| (&*t.rule, t.dry_run))
        .collect();
    assert_eq!(taken, [("dry-shed", true), ("eject", false)]);
    assert_eq!(sim.ejection(&a()), Some(0.95));
    assert!(sim.overlay.route(ROUTE).expect("entry").shed.is_none());
}

#[test]
fn max_share_caps_what_one_rule_may_touch() {
    let mut rule = failover_rule();
    rule.max_share = 0.3;
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 50), (c(), 50), (b(), 0)]));
    // A carries half the route: at most 0.3 of the route may move, so 0.6 of A's share.
    sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    assert_eq!(sim.ejection(&a()), Some(0.6));
    // C burns too, but the cap is used up.
    let ts = sim.tick(
        1,
        &[
            steady(AVAIL, Some(a()), Some(20.0)),
            steady(AVAIL, Some(c()), Some(20.0)),
        ],
    );
    assert_eq!(kinds(&ts), ["opened", "blocked"]);
    assert_eq!(
        ts[1].event,
        Event::Blocked {
            reason: BlockReason::MaxShare
        }
    );
    assert_eq!(sim.ejection(&c()), None);

    // A route-wide action is capped the same way.
    let mut down = Rule::new(
        "down",
        ROUTE,
        Trigger::at(TTFT, AlertLevel::Page),
        Action::DowngradeTo(vec![Arc::from("gpt-4o-mini")]),
    );
    down.max_share = 0.5;
    let mut sim = Sim::new(vec![down], routes(&[(a(), 100)]));
    sim.tick(0, &[steady(TTFT, None, Some(20.0))]);
    let sub = sim
        .overlay
        .route(ROUTE)
        .and_then(|r| r.substitution.clone())
        .expect("substituted");
    assert_eq!((&*sub.model, sub.share), ("gpt-4o-mini", 0.5));
}

#[test]
fn one_change_per_route_per_tick() {
    let mut shed = Rule::new(
        "shed",
        ROUTE,
        Trigger::at(AVAIL, AlertLevel::Page),
        Action::Shed { max_priority: 2 },
    );
    shed.probe_share = 0.1;
    let mut sim = Sim::new(
        vec![failover_rule(), shed],
        routes(&[(a(), 50), (c(), 50), (b(), 0)]),
    );
    let burning = [
        steady(AVAIL, Some(a()), Some(20.0)),
        steady(AVAIL, Some(c()), Some(20.0)),
        steady(AVAIL, None, Some(20.0)),
    ];
    let ts = sim.tick(0, &burning);
    let summary: Vec<(&str, &str, Option<TargetKey>)> = ts
        .iter()
        .map(|t| (&*t.rule, t.event.as_str(), t.target.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("eject", "opened", Some(a())),
            ("eject", "action_taken", Some(a())),
            ("eject", "opened", Some(c())),
            ("eject", "blocked", Some(c())),
            ("shed", "opened", None),
            ("shed", "blocked", None),
        ]
    );
    assert!(
        ts.iter()
            .filter(|t| t.event.as_str() == "blocked")
            .all(|t| t.event
                == Event::Blocked {
                    reason: BlockReason::OneChangePerTick
                })
    );
    let ts = sim.tick(1, &burning);
    assert_eq!(kinds(&ts), ["action_taken"], "the second target next tick");
    assert_eq!(sim.ejection(&c()), Some(0.95));
    let ts = sim.tick(2, &burning);
    assert_eq!(kinds(&ts), ["action_taken"], "then the shed");
    let shed = sim
        .overlay
        .route(ROUTE)
        .and_then(|r| r.shed.clone())
        .expect("shed");
    assert_eq!((shed.max_priority, shed.share), (2, 0.9));
    assert!(sim.tick(3, &burning).is_empty());
}

#[test]
fn failover_never_takes_out_the_last_target() {
    // A single-target route.
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100)]));
    let ts = sim.tick(0, &[steady(AVAIL, Some(a()), Some(50.0))]);
    assert_eq!(kinds(&ts), ["opened", "blocked"]);
    assert_eq!(
        ts[1].event,
        Event::Blocked {
            reason: BlockReason::LastTarget
        }
    );
    assert!(sim.overlay.is_empty());
    assert!(
        sim.tick(1, &[steady(AVAIL, Some(a()), Some(50.0))])
            .is_empty(),
        "said once"
    );

    // Two targets, both burning: one goes, the other stays.
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let both = [
        steady(AVAIL, Some(a()), Some(50.0)),
        steady(AVAIL, Some(b()), Some(50.0)),
    ];
    for t in 0..5 {
        sim.tick(t, &both);
    }
    assert_eq!(sim.ejection(&a()), Some(0.95));
    assert_eq!(sim.ejection(&b()), None);
    assert_eq!(sim.count("action_taken"), 1);
    assert!(sim.log.iter().any(|(_, t)| t.event
        == Event::Blocked {
            reason: BlockReason::LastTarget
        }));
}

fn downgrade_rule() -> Rule {
    let mut r = Rule::new(
        "downgrade",
        ROUTE,
        Trigger::at(TTFT, AlertLevel::Page),
        Action::DowngradeTo(vec![Arc::from("gpt-4o-mini"), Arc::from("claude-haiku")]),
    );
    r.guard = Some(Guard {
        slo: Arc::from(QUALITY),
        burn: BurnCondition::Alert(AlertLevel::Page),
    });
    r
}

fn substitute(sim: &Sim) -> Option<Arc<str>> {
    sim.overlay
        .route(ROUTE)
        .and_then(|r| r.substitution.as_ref())
        .map(|s| Arc::clone(&s.model))
}

#[test]
fn guard_moves_to_the_next_candidate_then_reverts() {
    let mut sim = Sim::new(vec![downgrade_rule()], routes(&[(a(), 100)]));
    let slow = steady(TTFT, None, Some(20.0));
    let mini = key("openai", "gpt-4o-mini");
    let haiku = key("anthropic", "claude-haiku");

    sim.tick(0, std::slice::from_ref(&slow));
    assert_eq!(substitute(&sim).as_deref(), Some("gpt-4o-mini"));

    // The judge says gpt-4o-mini's answers are not good enough.
    let bad_mini = steady(QUALITY, Some(mini.clone()), Some(30.0));
    let ts = sim.tick(1, &[slow.clone(), bad_mini.clone()]);
    assert_eq!(kinds(&ts), ["reverted"]);
    assert_eq!(
        ts[0].event,
        Event::Reverted {
            from: Arc::from("gpt-4o-mini"),
            to: Some(Arc::from("claude-haiku")),
            guard_slo: Arc::from(QUALITY)
        }
    );
    assert_eq!(
        ts[0].evidence,
        vec![bad_mini.clone()],
        "the guard's numbers"
    );
    assert_eq!(substitute(&sim).as_deref(), Some("claude-haiku"));

    // Then claude-haiku's too: no candidate left, back to the original.
    let bad_haiku = steady(QUALITY, Some(haiku), Some(30.0));
    let ts = sim.tick(2, &[slow.clone(), bad_mini.clone(), bad_haiku.clone()]);
    assert_eq!(
        ts[0].event,
        Event::Reverted {
            from: Arc::from("claude-haiku"),
            to: None,
            guard_slo: Arc::from(QUALITY)
        }
    );
    assert_eq!(substitute(&sim), None);
    assert_eq!(sim.overlay.incidents()[0].phase, Phase::Exhausted);
    // While the trigger holds nothing is retried, even after the quality recovers.
    for t in 3..20 {
        assert!(sim.tick(t, std::slice::from_ref(&slow)).is_empty());
    }
    let ts = sim.tick(20, &[steady(TTFT, None, Some(0.5))]);
    assert_eq!(kinds(&ts), ["resolved"]);
}

#[test]
fn downgrade_skips_a_candidate_whose_guard_already_burns() {
    let mut sim = Sim::new(vec![downgrade_rule()], routes(&[(a(), 100)]));
    let ts = sim.tick(
        0,
        &[
            steady(TTFT, None, Some(20.0)),
            steady(QUALITY, Some(key("openai", "gpt-4o-mini")), Some(30.0)),
        ],
    );
    assert_eq!(kinds(&ts), ["opened", "action_taken"]);
    assert_eq!(substitute(&sim).as_deref(), Some("claude-haiku"));
}

#[test]
fn downgrade_unwinds_on_the_originals_probe() {
    let mut rule = downgrade_rule();
    rule.hold = Duration::from_secs(5);
    rule.cooldown = Duration::from_secs(5);
    let mut sim = Sim::new(vec![rule], routes(&[(a(), 100), (b(), 0)]));
    sim.tick(0, &[steady(TTFT, None, Some(20.0))]);
    // The route as a whole is fine now (mostly the substitute); what counts is gpt-4o's probe.
    let route_ok = steady(TTFT, None, Some(0.2));
    let sub_ok = steady(TTFT, Some(key("openai", "gpt-4o-mini")), Some(0.1));
    let orig_slow = steady(TTFT, Some(a()), Some(4.0));
    for t in 1..30 {
        sim.tick(t, &[route_ok.clone(), sub_ok.clone(), orig_slow.clone()]);
    }
    assert_eq!(sim.count("unwound"), 0, "the original is still slow");
    let orig_ok = steady(TTFT, Some(a()), Some(0.5));
    for t in 30..36 {
        sim.tick(t, &[route_ok.clone(), sub_ok.clone(), orig_ok.clone()]);
    }
    assert_eq!(sim.count("unwound"), 1);
    assert_eq!(substitute(&sim), None);
}

#[test]
fn cache_fallback_waits_for_no_healthy_target() {
    let mut cache = Rule::new(
        "stale",
        ROUTE,
        Trigger {
            slo: Arc::from(AVAIL),
            burn: BurnCondition::Alert(AlertLevel::Page),
            no_healthy_target: true,
        },
        Action::CacheFallback,
    );
    cache.hold = Duration::from_secs(5);
    cache.cooldown = Duration::from_secs(5);
    let mut sim = Sim::new(
        vec![failover_rule(), cache],
        routes(&[(a(), 100), (b(), 0)]),
    );
    let route_burn = steady(AVAIL, None, Some(20.0));
    let a_burn = steady(AVAIL, Some(a()), Some(20.0));
    sim.tick(0, &[route_burn.clone(), a_burn.clone()]);
    assert_eq!(sim.ejection(&a()), Some(0.95));
    assert!(
        sim.overlay
            .route(ROUTE)
            .expect("entry")
            .cache_fallback
            .is_none(),
        "B is fine"
    );

    // The fallback burns too: A is out, B burning, no healthy target is left.
    let b_burn = steady(AVAIL, Some(b()), Some(20.0));
    let ts = sim.tick(1, &[route_burn.clone(), a_burn.clone(), b_burn.clone()]);
    let last_target = Event::Blocked {
        reason: BlockReason::LastTarget,
    };
    assert!(
        ts.iter()
            .any(|t| &*t.rule == "eject" && t.event == last_target)
    );
    assert!(
        ts.iter()
            .any(|t| &*t.rule == "stale" && t.event.as_str() == "action_taken")
    );
    let entry = sim.overlay.route(ROUTE).expect("entry");
    assert_eq!(entry.cache_fallback.as_ref().map(|c| c.share), Some(0.95));

    // B recovers: the cache fallback unwinds after its cooldown even though A is still out.
    let b_ok = steady(AVAIL, Some(b()), Some(0.1));
    for t in 2..=7 {
        sim.tick(t, &[route_burn.clone(), a_burn.clone(), b_ok.clone()]);
    }
    let entry = sim.overlay.route(ROUTE).expect("entry");
    assert!(entry.cache_fallback.is_none());
    assert_eq!(sim.ejection(&a()), Some(0.95));
}

#[test]
fn a_removed_rule_is_unwound_at_once() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let burning = [steady(AVAIL, Some(a()), Some(20.0))];
    sim.tick(0, &burning);
    assert_eq!(sim.ejection(&a()), Some(0.95));
    sim.rules.clear();
    let ts = sim.tick(1, &burning);
    assert_eq!(kinds(&ts), ["unwound", "resolved"]);
    assert!(matches!(
        ts[0].event,
        Event::Unwound {
            reason: UnwindReason::RuleChanged,
            ..
        }
    ));
    assert!(sim.overlay.is_empty());

    // A change that keeps the meaning (a longer hold) keeps the incident and takes the setting.
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    sim.tick(0, &burning);
    sim.rules[0].hold = Duration::from_secs(999);
    assert!(sim.tick(1, &burning).is_empty());
    assert_eq!(
        sim.overlay.incidents()[0].rule.hold,
        Duration::from_secs(999)
    );
}

#[test]
fn incident_ids_continue_from_the_overlay() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    sim.overlay = Overlay::new(41);
    let ts = sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    assert!(ts.iter().all(|t| t.incident == 41));
    assert_eq!(sim.overlay.next_incident(), 42);
}

#[test]
fn incident_events_serialise_as_one_flat_json_object() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let ts = sim.tick(0, &[steady(AVAIL, Some(a()), Some(20.0))]);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let event = IncidentEvent::new(ts[1].clone(), wall);
    let json = serde_json::to_value(&event).expect("serialises");
    assert_eq!(json["at_unix_ms"], 1_700_000_000_123_u64);
    assert_eq!(json["kind"], "action_taken");
    assert_eq!(json["action"], "failover");
    assert_eq!(json["rule"], "eject");
    assert_eq!(json["route"], "chat");
    assert_eq!(json["target"]["model"], "gpt-4o");
    assert_eq!(json["applied"]["action"], "failover");
    assert_eq!(json["applied"]["share"], 0.95);
    assert_eq!(json["condition"]["alert"], "page");
    assert_eq!(json["evidence"][0]["windows"]["5m"]["burn"], 20.0);
    assert_eq!(json["evidence"][0]["alert"], "page");
    assert_eq!(json["runbook_url"], "https://runbooks.example/eject");
    let back: IncidentEvent = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, event);

    let unwound = Transition {
        event: Event::Unwound {
            reason: UnwindReason::Recovered,
            held: Duration::from_millis(1500),
            healthy_for: Duration::from_secs(2),
        },
        ..ts[1].clone()
    };
    let json = serde_json::to_value(IncidentEvent::new(unwound, wall)).expect("serialises");
    assert_eq!(json["kind"], "unwound");
    assert_eq!(json["reason"], "recovered");
    assert_eq!(json["held"], 1500);
    assert_eq!(json["healthy_for"], 2000);
}

#[test]
fn in_share_spreads_evenly() {
    for share in [0.05, 0.3, 0.5, 0.95] {
        for start in [0_u64, 1_000, u64::MAX - 2_000] {
            let n = (start..start + 1000)
                .filter(|&s| in_share(share, s))
                .count();
            let want = share * 1000.0;
            assert!((n as f64 - want).abs() <= 3.0, "{share} from {start}: {n}");
            // Any 100 consecutive requests are close to the share too (no bursts).
            let window = (start..start + 100).filter(|&s| in_share(share, s)).count();
            assert!(
                (window as f64 - share * 100.0).abs() <= 3.0,
                "{share}: {window}/100"
            );
        }
    }
    assert!((0..100).all(|s| !in_share(0.0, s)));
    assert!((0..100).all(|s| in_share(1.0, s)));
    assert!(!in_share(f64::NAN, 3));
}

#[test]
fn an_operator_unwind_stays_back_until_the_trigger_clears() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let burning = [steady(AVAIL, Some(a()), Some(20.0))];
    sim.tick(0, &burning);
    assert_eq!(sim.ejection(&a()), Some(0.95));
    let id = sim.overlay.incidents()[0].id;

    let now = sim.t0 + Duration::from_secs(3);
    assert_eq!(
        force_unwind(now, &sim.overlay, id + 7).map(|_| ()),
        Err(NotActive::Unknown)
    );
    let d = force_unwind(now, &sim.overlay, id).expect("active");
    assert_eq!(kinds(&d.transitions), ["unwound"]);
    assert_eq!(
        d.transitions[0].event,
        Event::Unwound {
            reason: UnwindReason::Operator,
            held: Duration::from_secs(3),
            healthy_for: Duration::ZERO,
        }
    );
    sim.overlay = d.overlay;
    assert_eq!(sim.ejection(&a()), None, "out of routing at once");
    assert_eq!(sim.overlay.incidents()[0].phase, Phase::Overridden);
    assert_eq!(
        force_unwind(now, &sim.overlay, id).map(|_| ()),
        Err(NotActive::NothingInPlace)
    );

    // Still burning: the controller does not put it back.
    for t in 4..=8 {
        assert!(sim.tick(t, &burning).is_empty());
        assert_eq!(sim.ejection(&a()), None);
    }
    // The trigger clears: the incident resolves as usual.
    let ts = sim.tick(9, &[steady(AVAIL, Some(a()), Some(0.1))]);
    assert_eq!(kinds(&ts), ["resolved"]);
    assert!(sim.overlay.incidents().is_empty());
}

#[test]
fn pausing_a_rule_into_dry_run_takes_its_live_action_back() {
    let mut sim = Sim::new(vec![failover_rule()], routes(&[(a(), 100), (b(), 0)]));
    let burning = [steady(AVAIL, Some(a()), Some(20.0))];
    sim.tick(0, &burning);
    assert_eq!(sim.ejection(&a()), Some(0.95));
    // What the controller does with a paused rule: the same rule, in dry-run.
    sim.rules[0].dry_run = true;
    let ts = sim.tick(1, &burning);
    assert_eq!(
        kinds(&ts),
        ["unwound", "resolved", "opened", "action_taken"]
    );
    assert!(!ts[0].dry_run && ts[2].dry_run);
    assert_eq!(sim.ejection(&a()), None);
    // Resumed: acts again.
    sim.rules[0].dry_run = false;
    sim.tick(2, &burning);
    assert_eq!(sim.ejection(&a()), Some(0.95));
}

#[test]
fn operator_events_serialise_flat_with_who_and_note() {
    let e = Event::Operator {
        op: OperatorOp::Acknowledged,
        by: Arc::from("oncall (console)"),
        note: Some(Arc::from("looking at provider a")),
    };
    let v = serde_json::to_value(&e).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"kind": "operator", "op": "acknowledged", "by": "oncall (console)", "note": "looking at provider a"})
    );
    let back: Event = serde_json::from_value(v).expect("read back");
    assert_eq!(back, e);
}
