//! Engine tests on scripted traffic: a seeded generator (SplitMix64) with a daily cycle in volume
//! and latency feeds the engine second by second of simulated time (tokio's paused clock; no
//! sleeping), and the engine is evaluated every ten seconds like the SLO evaluator's tick.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_policy::remediation::{
    AnomalyScope, AnomalySignal, AnomalyState, AnomalyStatus, TargetKey,
};
use tokio::time::Instant;

use super::*;
use crate::Error;
use crate::record::{
    AttemptOutcome, AttemptRecord, Endpoint, ErrorKind, Outcome, RequestRecord, TokenUsage,
    TraceContext, UsageSource,
};
use crate::slo::ErrorClass;

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// 2024-01-01 00:00 UTC, a Monday.
const MONDAY: u64 = 1_704_067_200;
/// The evaluator's tick.
const TICK: u64 = 10;

/// SplitMix64 (Steele, Lea and Flood, 2014): a one-line state step and a strong output mix. An
/// xorshift64* generator was tried first: its consecutive outputs are correlated enough that a
/// tenant drawn right after a request's durations got runs of long requests (a 5.8σ window
/// excursion in two simulated days), which is the generator, not the detector.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1_u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }

    /// `median · e^(σ·N(0,1))`.
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Knuth's method; fine for the small rates here.
    fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn key(provider: &str, model: &str) -> TargetKey {
    TargetKey {
        provider: name(provider),
        model: name(model),
    }
}

/// One target's traffic as generated.
#[derive(Clone)]
struct TargetModel {
    route: Arc<str>,
    target: TargetKey,
    /// Requests per second at the daily mean.
    rate: f64,
    ttft: f64,
    tpot: f64,
    input: f64,
    output: f64,
    /// USD per token.
    price_in: f64,
    price_out: f64,
    error_p: f64,
}

impl TargetModel {
    fn new(route: &str, target: TargetKey, rate: f64) -> Self {
        Self {
            route: name(route),
            target,
            rate,
            ttft: 0.4,
            tpot: 0.02,
            input: 400.0,
            output: 200.0,
            price_in: 2.5e-6,
            price_out: 10e-6,
            error_p: 0.002,
        }
    }
}

/// A request as generated, before a scenario bends it.
struct Draft {
    sample: AiopsSample,
}

type Bend<'a> = &'a mut dyn FnMut(u64, &TargetModel, &mut Draft, &mut Rng);
/// Called after each evaluation with the second, the status, and the engine at that moment.
type Tick<'a> = &'a mut dyn FnMut(u64, &AiopsStatus, &AiopsEngine);

/// The world: targets, tenants, a daily cycle, and the engine under test.
struct Sim {
    engine: AiopsEngine,
    rng: Rng,
    targets: Vec<TargetModel>,
    tenants: Vec<(Arc<str>, f64)>,
    /// Instant of simulated second `base`.
    t0: Instant,
    base: u64,
    /// Relative amplitude of the daily cycle in volume, and in latency.
    volume_swing: f64,
    latency_swing: f64,
    statuses: Vec<AnomalyStatus>,
}

impl Sim {
    fn new(
        engine: AiopsEngine,
        t0: Instant,
        base: u64,
        seed: u64,
        targets: Vec<TargetModel>,
    ) -> Self {
        let tenants = ["search", "support", "ads", "legal", "docs", "batch"]
            .iter()
            .zip([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
            .map(|(t, w)| (name(t), w))
            .collect();
        Self {
            engine,
            rng: Rng::new(seed),
            targets,
            tenants,
            t0,
            base,
            volume_swing: 0.6,
            latency_swing: 0.3,
            statuses: Vec::new(),
        }
    }

    fn at(&self, s: u64) -> Instant {
        self.t0 + Duration::from_secs(s - self.base)
    }

    fn wall(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(MONDAY + s)
    }

    /// The daily cycle at second `s`, peaking at 15:00 UTC.
    fn cycle(s: u64, swing: f64) -> f64 {
        let phase = 2.0 * PI * ((s % DAY) as f64 / DAY as f64 - 0.375);
        1.0 + swing * phase.sin()
    }

    fn tenant(&mut self) -> Arc<str> {
        let mut u = self.rng.unit();
        for (t, w) in &self.tenants {
            if u < *w {
                return Arc::clone(t);
            }
            u -= w;
        }
        Arc::clone(&self.tenants[0].0)
    }

    fn draft(&mut self, s: u64, m: &TargetModel) -> Draft {
        let slow = Self::cycle(s, self.latency_swing);
        let rng = &mut self.rng;
        let failed = rng.unit() < m.error_p;
        let ttft = rng.lognormal(m.ttft * slow, 0.3);
        let output = rng.lognormal(m.output, 0.5).round().max(1.0);
        let input = rng.lognormal(m.input, 0.5).round().max(1.0);
        let tpot = rng.lognormal(m.tpot * slow, 0.2);
        let duration = ttft + output * tpot;
        let tenant = self.tenant();
        let sample = if failed {
            AiopsSample {
                route: Arc::clone(&m.route),
                target: Some(m.target.clone()),
                tenant: Some(tenant),
                endpoint: Endpoint::ChatCompletions,
                class: ErrorClass::Bad,
                error: Some(ErrorCause::Status(503)),
                ttft: None,
                duration: Duration::from_secs_f64(ttft),
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: 0.0,
            }
        } else {
            AiopsSample {
                route: Arc::clone(&m.route),
                target: Some(m.target.clone()),
                tenant: Some(tenant),
                endpoint: Endpoint::ChatCompletions,
                class: ErrorClass::Good,
                error: None,
                ttft: Some(Duration::from_secs_f64(ttft)),
                duration: Duration::from_secs_f64(duration),
                input_tokens: input as u64,
                output_tokens: output as u64,
                cost_usd: input * m.price_in + output * m.price_out,
            }
        };
        Draft { sample }
    }

    /// Runs seconds `from..to`, bending each request with `bend` and calling `tick` after every
    /// evaluation.
    fn run(&mut self, from: u64, to: u64, bend: Bend<'_>, tick: Tick<'_>) {
        let targets = self.targets.clone();
        for s in from..to {
            let volume = Self::cycle(s, self.volume_swing);
            for m in &targets {
                let n = self.rng.poisson(m.rate * volume);
                for k in 0..n {
                    let mut d = self.draft(s, m);
                    bend(s, m, &mut d, &mut self.rng);
                    let at = self.at(s) + Duration::from_millis(u64::from(k) * 1000 / u64::from(n));
                    self.engine.ingest(at, &d.sample);
                }
            }
            if (s + 1) % TICK == 0 {
                let status = self.engine.evaluate(self.at(s + 1), Self::wall(s + 1));
                tick(s + 1, &status, &self.engine);
                self.statuses = status.anomalies;
            }
        }
    }

    fn status(&self, scope: &AnomalyScope, signal: AnomalySignal) -> Option<&AnomalyStatus> {
        self.statuses
            .iter()
            .find(|a| a.scope == *scope && a.signal == signal)
    }
}

fn no_bend() -> impl FnMut(u64, &TargetModel, &mut Draft, &mut Rng) {
    |_, _, _, _| {}
}

fn chat_world() -> Vec<TargetModel> {
    let mut mini = TargetModel::new("summarize", key("openai", "gpt-4o-mini"), 0.5);
    mini.ttft = 0.25;
    mini.price_in = 0.15e-6;
    mini.price_out = 0.6e-6;
    let mut claude = TargetModel::new("chat", key("anthropic", "claude-sonnet"), 1.0);
    claude.ttft = 0.6;
    claude.price_in = 3e-6;
    claude.price_out = 15e-6;
    vec![
        TargetModel::new("chat", key("openai", "gpt-4o"), 1.0),
        claude,
        mini,
    ]
}

fn target_scope(route: &str, provider: &str, model: &str) -> AnomalyScope {
    AnomalyScope::Target {
        route: name(route),
        target: key(provider, model),
    }
}

/// Two days of the chat world, learned once and shared as a snapshot (which is also how a
/// restarted gateway starts).
const WARM_DAYS: u64 = 2;
fn warm_snapshot() -> &'static [u8] {
    static SNAP: OnceLock<Vec<u8>> = OnceLock::new();
    SNAP.get_or_init(|| {
        let t0 = Instant::now();
        let engine = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
        let mut sim = Sim::new(engine, t0, 0, 7, chat_world());
        sim.run(0, WARM_DAYS * DAY, &mut no_bend(), &mut |_, _, _| {});
        sim.engine
            .snapshot(Sim::wall(WARM_DAYS * DAY))
            .expect("snapshot")
    })
}

/// An engine restored from the warm snapshot, to run from the end of the warm-up.
fn warm_sim(seed: u64) -> Sim {
    let t0 = Instant::now();
    let mut engine = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
    let report = engine.restore(warm_snapshot(), t0).expect("restore");
    assert!(report.series >= 10, "{report:?}");
    Sim::new(engine, t0, WARM_DAYS * DAY, seed, chat_world())
}

#[tokio::test(start_paused = true)]
async fn a_normal_day_is_quiet_and_a_ttft_drift_is_flagged_within_minutes() {
    let mut sim = warm_sim(11);
    let day = WARM_DAYS * DAY;

    // Two whole days of normal traffic with their daily cycle: count every anomaly (false
    // positives), every tick a signal was out of band at all (pending), and the largest
    // excursion in the bad direction (the margin left below k).
    let days = 2;
    let mut started: Vec<(u64, String)> = Vec::new();
    let mut ticks = 0_u64;
    let mut pending_ticks = 0_u64;
    let mut known = 0_u64;
    let mut widest: (f64, String) = (f64::NEG_INFINITY, String::new());
    sim.run(day, day + days * DAY, &mut no_bend(), &mut |s, st, _| {
        ticks += 1;
        pending_ticks += u64::from(
            st.anomalies
                .iter()
                .any(|a| a.state == AnomalyState::Pending),
        );
        for a in &st.anomalies {
            if let Some(d) = a.directed_score() {
                known += 1;
                if d > widest.0 {
                    widest = (d, format!("{} {} at {s} s", a.scope, a.signal));
                }
            }
        }
        for e in &st.events {
            if e.event == AnomalyEventKind::Started {
                started.push((s, format!("{} {}", e.status.scope, e.status.signal)));
            }
        }
    });
    let monitored = sim.statuses.len();
    eprintln!(
        "{days} normal days: {} false anomalies over {monitored} signal×scope series \
         ({known} scored readings, {ticks} ticks); ticks with any signal out of band: \
         {pending_ticks}; widest excursion {:.2} spreads ({})",
        started.len(),
        widest.0,
        widest.1
    );
    assert!(started.is_empty(), "false positives: {started:?}");
    assert!(
        monitored >= 50,
        "every scope and signal was watched: {monitored}"
    );
    assert!(known > 50 * ticks / 2, "most readings were scored: {known}");
    let day = day + (days - 1) * DAY;

    // TTFT ×3 on provider openai from 10:00 (both of its models), for 30 minutes.
    let drift_at = day + DAY + 10 * HOUR;
    let drift_end = drift_at + 30 * MIN;
    let mut slower = |s: u64, m: &TargetModel, d: &mut Draft, _: &mut Rng| {
        if (drift_at..drift_end).contains(&s)
            && &*m.target.provider == "openai"
            && let Some(t) = d.sample.ttft.as_mut()
        {
            *t *= 3;
            d.sample.duration += *t * 2 / 3;
        }
    };
    let mut events: Vec<(u64, AnomalyEvent)> = Vec::new();
    sim.run(day + DAY, drift_at, &mut no_bend(), &mut |_, st, _| {
        assert!(
            st.events.is_empty(),
            "quiet before the drift: {:?}",
            st.events
        );
    });
    sim.run(
        drift_at,
        drift_end + 20 * MIN,
        &mut slower,
        &mut |s, st, _| {
            events.extend(st.events.iter().map(|e| (s, e.clone())));
        },
    );
    let first = |scope: &AnomalyScope, signal, kind| {
        events
            .iter()
            .find(|(_, e)| e.status.scope == *scope && e.status.signal == signal && e.event == kind)
            .map(|(s, e)| (*s, e.clone()))
    };
    let openai = target_scope("chat", "openai", "gpt-4o");
    let (flagged_at, e) = first(&openai, AnomalySignal::Ttft, AnomalyEventKind::Started)
        .expect("the drift is flagged");
    let detection = flagged_at - drift_at;
    let score = e.status.score.expect("score");
    let band = e.status.band.expect("band");
    eprintln!(
        "ttft ×3 on openai/gpt-4o flagged after {detection} s (score {score:.1} spreads, \
         value {:.3} s vs band {:.3}–{:.3} s)",
        e.status.value.unwrap_or_default(),
        band.lower,
        band.upper
    );
    // The window sees it within an interval, the hold adds two minutes, the tick ten seconds.
    assert!(detection <= 4 * MIN, "flagged after {detection} s");
    assert!(score > 10.0, "×3 is ln 3 ≈ 1.1, many spreads: {score}");
    // The other openai model too, the route (half its traffic drifted), never anthropic.
    assert!(
        first(
            &target_scope("summarize", "openai", "gpt-4o-mini"),
            AnomalySignal::Ttft,
            AnomalyEventKind::Started
        )
        .is_some()
    );
    assert!(
        first(
            &AnomalyScope::Route {
                route: name("chat")
            },
            AnomalySignal::Ttft,
            AnomalyEventKind::Started
        )
        .is_some()
    );
    let anthropic = target_scope("chat", "anthropic", "claude-sonnet");
    assert!(
        events.iter().all(|(_, e)| e.status.scope != anthropic),
        "anthropic is fine"
    );
    // Only latency signals: errors, tokens and spend did not move.
    for (_, e) in &events {
        assert!(
            matches!(
                e.status.signal,
                AnomalySignal::Ttft | AnomalySignal::Duration | AnomalySignal::TimePerOutputToken
            ),
            "{} {}",
            e.status.scope,
            e.status.signal
        );
    }
    // It clears after the drift (window + clear time), and the baseline did not learn it.
    let (cleared_at, _) = first(&openai, AnomalySignal::Ttft, AnomalyEventKind::Ended)
        .expect("cleared after the drift");
    let clearing = cleared_at - drift_end;
    eprintln!("cleared {clearing} s after the drift ended");
    assert!(clearing <= 10 * MIN, "{clearing}");
    let now = sim.status(&openai, AnomalySignal::Ttft).expect("status");
    assert_eq!(now.state, AnomalyState::Normal);
    let centre = now.band.expect("band").centre;
    assert!(centre < 0.7, "the centre stayed near 0.4–0.5 s: {centre}");
}

#[tokio::test(start_paused = true)]
async fn slow_requests_during_a_drift_point_at_the_provider() {
    let mut sim = warm_sim(12);
    let start = WARM_DAYS * DAY + 14 * HOUR;
    sim.run(start, start + 20 * MIN, &mut no_bend(), &mut |_, _, _| {});
    let mut slower = |_: u64, m: &TargetModel, d: &mut Draft, _: &mut Rng| {
        if &*m.target.provider == "openai"
            && let Some(t) = d.sample.ttft.as_mut()
        {
            *t *= 3;
        }
    };
    sim.run(
        start + 20 * MIN,
        start + 30 * MIN,
        &mut slower,
        &mut |_, _, _| {},
    );
    let hint = sim
        .engine
        .root_cause(sim.at(start + 30 * MIN), Focus::Slow)
        .expect("slow requests to explain");
    eprintln!("hint: {}", hint.text);
    let top = &hint.top[0];
    assert_eq!(
        (top.dimension, &*top.value),
        (Dimension::Provider, "openai")
    );
    assert!(top.share > 0.9, "{top:?}");
    assert!(top.rest_rate.is_some_and(|r| r < 0.05), "{top:?}");
    assert!(hint.text.starts_with(&format!(
        "{:.0} % of slow requests: provider openai",
        100.0 * top.share
    )));
}

#[tokio::test(start_paused = true)]
async fn doubled_output_tokens_raise_a_cost_anomaly_with_no_errors() {
    let mut sim = warm_sim(13);
    let start = WARM_DAYS * DAY + 11 * HOUR;
    sim.run(start, start + 30 * MIN, &mut no_bend(), &mut |_, st, _| {
        assert!(st.events.is_empty(), "{:?}", st.events);
    });
    let doubled_at = start + 30 * MIN;
    // Output tokens ×2 on one target: its spend per request goes ×1.66 (output is two thirds of
    // it at these prices), with no error and no change in time to first token.
    let mut longer = |_: u64, m: &TargetModel, d: &mut Draft, _: &mut Rng| {
        if m.target == key("openai", "gpt-4o") && d.sample.class == ErrorClass::Good {
            let extra = d.sample.output_tokens;
            d.sample.output_tokens += extra;
            d.sample.cost_usd += extra as f64 * m.price_out;
        }
    };
    let mut events: Vec<(u64, AnomalyEvent)> = Vec::new();
    let openai = target_scope("chat", "openai", "gpt-4o");
    let mut hint = None;
    let t0 = sim.t0;
    let base = sim.base;
    sim.run(
        doubled_at,
        doubled_at + 15 * MIN,
        &mut longer,
        &mut |s, st, engine| {
            for e in &st.events {
                let opens = e.event == AnomalyEventKind::Started
                    && e.status.scope == openai
                    && e.status.signal == AnomalySignal::CostPerMinute;
                if opens && hint.is_none() {
                    // The hint an incident gets when it opens.
                    hint = engine.root_cause(t0 + Duration::from_secs(s - base), Focus::Cost);
                }
            }
            events.extend(st.events.iter().map(|e| (s, e.clone())));
        },
    );
    let cost = events
        .iter()
        .find(|(_, e)| e.status.scope == openai && e.status.signal == AnomalySignal::CostPerMinute)
        .expect("a cost anomaly on the target");
    eprintln!(
        "cost ×1.66 on openai/gpt-4o flagged after {} s (score {:.1}); events: {:?}",
        cost.0 - doubled_at,
        cost.1.status.score.unwrap_or_default(),
        events
            .iter()
            .map(|(_, e)| format!("{} {}", e.status.scope, e.status.signal))
            .collect::<Vec<_>>()
    );
    // A shift of size d against a band of half-width b crosses once about b/d of the window
    // is past the change; then the hold. At ×1.66 (ln ≈ 0.51) and b ≈ 0.28: under the window
    // plus the hold.
    let cfg = AiopsConfig::default();
    let bound = u64::from(cfg.window) * MIN + cfg.hold.as_secs();
    assert!(cost.0 - doubled_at <= bound, "{} s", cost.0 - doubled_at);
    assert!(
        events
            .iter()
            .any(|(_, e)| e.status.scope == openai
                && e.status.signal == AnomalySignal::TokensPerRequest),
        "tokens per request too"
    );
    for (_, e) in &events {
        assert_ne!(e.status.signal, AnomalySignal::ErrorRatio, "no errors");
        assert_ne!(e.status.signal, AnomalySignal::Ttft, "not slower to start");
        assert_ne!(
            e.status.scope,
            target_scope("chat", "anthropic", "claude-sonnet")
        );
    }
    let hint = hint.expect("an increase to explain");
    eprintln!("hint: {}", hint.text);
    let top = &hint.top[0];
    assert_eq!((top.dimension, &*top.value), (Dimension::Model, "gpt-4o"));
    assert!(top.rate > 1.5, "{top:?}");
}

/// Three routes, each served half by openai and half by anthropic, at a steady rate.
fn three_routes() -> Vec<TargetModel> {
    let mut out = Vec::new();
    for route in ["chat", "agent", "rag"] {
        out.push(TargetModel::new(route, key("openai", "gpt-4o"), 1.0));
        out.push(TargetModel::new(
            route,
            key("anthropic", "claude-sonnet"),
            1.0,
        ));
    }
    out
}

/// Feeds every anomaly that starts into grouping, with the hint at its start as its cause,
/// and keeps the groups and each group's hint at its opening (what the lead's incident wiring
/// does).
struct Incidents {
    ids: HashMap<(AnomalyScope, AnomalySignal), u64>,
    open: BTreeMap<u64, OpenAlert>,
    groups: Vec<AlertGroup>,
    hints: BTreeMap<u64, RootCauseHint>,
}

impl Incidents {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            open: BTreeMap::new(),
            groups: Vec::new(),
            hints: BTreeMap::new(),
        }
    }

    fn tick(&mut self, engine: &AiopsEngine, now: Instant, status: &AiopsStatus) {
        for e in &status.events {
            let k = (e.status.scope.clone(), e.status.signal);
            let next = self.ids.len() as u64 + 1;
            let id = *self.ids.entry(k).or_insert(next);
            match e.event {
                AnomalyEventKind::Started => {
                    let hint = engine.root_cause(now, Focus::for_signal(e.status.signal));
                    let alert = OpenAlert::anomaly(id, &e.status, now).with_cause(hint.as_ref());
                    self.open.insert(id, alert);
                }
                AnomalyEventKind::Ended => {
                    self.open.remove(&id);
                }
            }
        }
        let open: Vec<OpenAlert> = self.open.values().cloned().collect();
        self.groups = group_alerts(&open, &self.groups, Duration::from_secs(5 * MIN));
        for g in &self.groups {
            if !self.hints.contains_key(&g.id)
                && let Some(first) = self.open.get(&g.id)
                && let AlertKind::Anomaly { signal } = first.kind
                && let Some(h) = engine.root_cause(now, Focus::for_signal(signal))
            {
                self.hints.insert(g.id, h);
            }
        }
    }
}

fn steady_sim(seed: u64, targets: Vec<TargetModel>) -> Sim {
    let t0 = Instant::now();
    let engine = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
    let mut sim = Sim::new(engine, t0, 0, seed, targets);
    sim.volume_swing = 0.0;
    sim.latency_swing = 0.0;
    sim
}

#[tokio::test(start_paused = true)]
async fn one_provider_failing_across_three_routes_is_one_incident_naming_it() {
    let mut sim = steady_sim(21, three_routes());
    sim.run(0, 3 * HOUR, &mut no_bend(), &mut |_, st, _| {
        assert!(st.events.is_empty(), "{:?}", st.events);
    });
    let outage = 3 * HOUR;
    let mut failing = |s: u64, m: &TargetModel, d: &mut Draft, rng: &mut Rng| {
        if s >= outage && &*m.target.provider == "openai" && rng.unit() < 0.9 {
            let x = &mut d.sample;
            x.class = ErrorClass::Bad;
            x.error = Some(ErrorCause::Status(529));
            x.ttft = None;
            x.output_tokens = 0;
            x.input_tokens = 0;
            x.cost_usd = 0.0;
        }
    };
    let mut incidents = Incidents::new();
    let mut log: Vec<(u64, AiopsStatus)> = Vec::new();
    let t0 = sim.t0;
    sim.run(
        outage,
        outage + 15 * MIN,
        &mut failing,
        &mut |s, st, engine| {
            incidents.tick(engine, t0 + Duration::from_secs(s), st);
            log.push((s, st.clone()));
        },
    );
    let started: Vec<String> = log
        .iter()
        .flat_map(|(_, st)| st.events.iter())
        .filter(|e| e.event == AnomalyEventKind::Started)
        .map(|e| format!("{} {}", e.status.scope, e.status.signal))
        .collect();
    eprintln!("{} anomalies: {started:?}", started.len());
    assert!(
        started.len() >= 6,
        "each openai target and each route at least"
    );
    assert_eq!(
        incidents.groups.len(),
        1,
        "one incident: {:?}",
        incidents.groups
    );
    let g = &incidents.groups[0];
    assert_eq!(
        g.key.as_ref().map(|(d, v)| (*d, &**v)),
        Some((Dimension::Provider, "openai"))
    );
    assert_eq!(g.members.len(), started.len());
    let hint = incidents.hints.get(&g.id).expect("a hint on the incident");
    eprintln!("hint: {}", hint.text);
    let top = &hint.top[0];
    assert_eq!(
        (top.dimension, &*top.value),
        (Dimension::Provider, "openai")
    );
    assert!(top.share > 0.95, "{top:?}");
    let error = hint.error.as_ref().expect("error cause");
    assert_eq!(&*error.value, "529");
    assert!(hint.text.contains("provider openai"), "{}", hint.text);
    assert!(hint.text.contains("error 529"), "{}", hint.text);
}

#[tokio::test(start_paused = true)]
async fn one_tenants_burst_is_one_incident_naming_the_tenant() {
    let mut sim = steady_sim(22, three_routes());
    sim.run(0, 3 * HOUR, &mut no_bend(), &mut |_, st, _| {
        assert!(st.events.is_empty(), "{:?}", st.events);
    });
    // Tenant `batch` (10 % of traffic) bursts on route chat: six times its requests there,
    // on both providers, and the providers refuse 70 % of them (429).
    let burst = 3 * HOUR;
    let mut bursting = |s: u64, m: &TargetModel, d: &mut Draft, rng: &mut Rng| {
        if s < burst || &*m.route != "chat" {
            return;
        }
        // Re-draw the tenant: `batch` takes most of chat's traffic during the burst.
        if rng.unit() < 0.6 {
            d.sample.tenant = Some(name("batch"));
        }
        if d.sample.tenant.as_deref() == Some("batch") && rng.unit() < 0.7 {
            let x = &mut d.sample;
            x.class = ErrorClass::Bad;
            x.error = Some(ErrorCause::Status(429));
            x.ttft = None;
            x.output_tokens = 0;
            x.input_tokens = 0;
            x.cost_usd = 0.0;
        }
    };
    let mut incidents = Incidents::new();
    let mut log: Vec<(u64, AiopsStatus)> = Vec::new();
    let t0 = sim.t0;
    sim.run(
        burst,
        burst + 15 * MIN,
        &mut bursting,
        &mut |s, st, engine| {
            incidents.tick(engine, t0 + Duration::from_secs(s), st);
            log.push((s, st.clone()));
        },
    );
    let started: Vec<String> = log
        .iter()
        .flat_map(|(_, st)| st.events.iter())
        .filter(|e| e.event == AnomalyEventKind::Started)
        .map(|e| format!("{} {}", e.status.scope, e.status.signal))
        .collect();
    eprintln!("{} anomalies: {started:?}", started.len());
    assert!(
        started.iter().any(|s| s == "tenant batch error_ratio"),
        "{started:?}"
    );
    let hint = sim
        .engine
        .root_cause(sim.at(burst + 15 * MIN), Focus::Failed)
        .expect("failures to explain");
    eprintln!("hint: {}", hint.text);
    let top = &hint.top[0];
    assert_eq!((top.dimension, &*top.value), (Dimension::Tenant, "batch"));
    assert!(
        hint.top.iter().all(|c| c.dimension != Dimension::Provider),
        "both providers refuse alike: {:?}",
        hint.top
    );
    assert_eq!(hint.error.as_ref().map(|e| &*e.value), Some("429"));
    let error_groups: Vec<&AlertGroup> = incidents
        .groups
        .iter()
        .filter(|g| {
            g.members.iter().any(|id| {
                incidents.open.get(id).is_some_and(|a| {
                    a.kind
                        == AlertKind::Anomaly {
                            signal: AnomalySignal::ErrorRatio,
                        }
                })
            })
        })
        .collect();
    assert_eq!(error_groups.len(), 1, "{:?}", incidents.groups);
    assert_eq!(
        error_groups[0].key.as_ref().map(|(d, v)| (*d, &**v)),
        Some((Dimension::Tenant, "batch"))
    );
}

#[tokio::test(start_paused = true)]
async fn baselines_survive_snapshot_and_restore() {
    let snap = warm_snapshot();
    let t0 = Instant::now();
    let mut engine = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
    let report = engine.restore(snap, t0).expect("restore");
    // 2 routes + 3 targets + 6 tenants, every signal.
    assert_eq!(report.series, 11, "{report:?}");
    assert_eq!(report.skipped, 0);
    assert!(!report.interval_changed);
    // Every level: the recent one, 24 hours of the day, 48 hours of the week (two days), per
    // signal; ttft and tpot everywhere, so 6 signals × 73 levels × 11 scopes.
    assert_eq!(report.levels, 11 * 6 * (1 + 24 + 48), "{report:?}");
    let wall = Sim::wall(WARM_DAYS * DAY);
    assert_eq!(
        engine.snapshot(wall).expect("snapshot"),
        snap,
        "the same baselines"
    );
    eprintln!(
        "snapshot after {WARM_DAYS} days: {} bytes for {} scopes ({} levels)",
        snap.len(),
        report.series,
        report.levels
    );

    // The restored bands are live at once: the first evaluation with traffic scores against
    // them.
    let mut sim = Sim::new(engine, t0, WARM_DAYS * DAY, 3, chat_world());
    sim.run(
        WARM_DAYS * DAY,
        WARM_DAYS * DAY + 10 * MIN,
        &mut no_bend(),
        &mut |_, _, _| {},
    );
    let ttft = sim
        .status(
            &target_scope("chat", "openai", "gpt-4o"),
            AnomalySignal::Ttft,
        )
        .expect("status");
    assert_eq!(ttft.state, AnomalyState::Normal);
    let band = ttft.band.expect("band from the snapshot");
    assert!((0.2..0.6).contains(&band.centre), "{band:?}");
    assert!(ttft.score.is_some_and(|s| s.abs() < 4.0), "{ttft:?}");

    // A corrupt or foreign snapshot is an error and changes nothing.
    let before = sim.engine.snapshot(wall).expect("snapshot");
    assert!(matches!(
        sim.engine.restore(b"{not json", t0),
        Err(Error::AiopsSnapshotDecode(_))
    ));
    assert!(matches!(
        sim.engine.restore(br#"{"version":99}"#, t0),
        Err(Error::AiopsSnapshotVersion {
            found: 99,
            supported: AIOPS_SNAPSHOT_VERSION
        })
    ));
    assert_eq!(sim.engine.snapshot(wall).expect("snapshot"), before);

    // Another interval width: nothing restored.
    let cfg = AiopsConfig {
        interval: Duration::from_secs(10),
        ..AiopsConfig::default()
    };
    let mut other = AiopsEngine::new(cfg, t0).expect("engine");
    let report = other.restore(snap, t0).expect("readable");
    assert!(report.interval_changed);
    assert_eq!((report.series, report.skipped), (0, 11));
    assert_eq!(other.footprint().series, 0);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_with_ten_thousand_tenants() {
    let t0 = Instant::now();
    let cfg = AiopsConfig::default();
    let (max_tenants, max_hint) = (cfg.max_tenants, cfg.max_hint_tenants);
    let mut engine = AiopsEngine::new(cfg, t0).expect("engine");
    let mut rng = Rng::new(5);
    let tenants: Vec<Arc<str>> = (0..10_000).map(|i| name(&format!("tenant-{i}"))).collect();
    let targets = [key("openai", "gpt-4o"), key("anthropic", "claude-sonnet")];
    let sample = |tenant: &Arc<str>, target: &TargetKey, rng: &mut Rng| AiopsSample {
        route: name("chat"),
        target: Some(target.clone()),
        tenant: Some(Arc::clone(tenant)),
        endpoint: Endpoint::ChatCompletions,
        class: ErrorClass::Good,
        error: None,
        ttft: Some(Duration::from_secs_f64(rng.lognormal(0.4, 0.3))),
        duration: Duration::from_secs(3),
        input_tokens: 300,
        output_tokens: 200,
        cost_usd: 0.003,
    };
    // Every tenant sends a few requests, over two hours, with ticks.
    let mut measure = |engine: &mut AiopsEngine, from: u64| {
        for s in from..from + 2 * HOUR {
            let at = t0 + Duration::from_secs(s);
            for _ in 0..3 {
                let i = (rng.next() % 10_000) as usize;
                let t = &targets[i % 2];
                engine.ingest(at, &sample(&tenants[i], t, &mut rng));
            }
            if s % TICK == 0 {
                engine.evaluate(at, Sim::wall(s));
            }
        }
        engine.footprint()
    };
    let f = measure(&mut engine, 0);
    let series_bytes = {
        let mut one = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
        one.ingest(
            t0,
            &AiopsSample {
                tenant: None,
                target: None,
                ..sample(&tenants[0], &targets[0], &mut Rng::new(1))
            },
        );
        let f1 = one.footprint();
        assert_eq!(f1.series, 1);
        f1.bytes
    };
    eprintln!(
        "10k tenants: {} series ({} tenants with their own, + other), {} hint tenants, \
         {} bytes ({} KB per series, engine with one route: {} B)",
        f.series,
        f.tenants,
        f.hint_tenants,
        f.bytes,
        f.bytes / f.series / 1024,
        series_bytes
    );
    assert_eq!(f.routes, 1);
    assert_eq!(f.targets, 2);
    assert_eq!(f.tenants, max_tenants);
    assert_eq!(f.series, 1 + 2 + max_tenants + 1, "the tail shares `other`");
    assert!(f.hint_tenants <= max_hint);
    assert!(engine.refused().tenants_folded > 0);
    // 6 signals × 193 levels × 12 B of baselines per series, plus its window ring and the
    // maps: under 15 KB a series; the root-cause counts add under 200 KB.
    let bound = f.series * 15 * 1024 + 200 * 1024;
    assert!(f.bytes <= bound, "{} > {bound}", f.bytes);
    assert!(
        f.bytes >= f.series * 6 * 193 * 12,
        "the levels are all there"
    );
    // Two more hours with the same 10k tenants: nothing grows.
    let g = measure(&mut engine, 2 * HOUR);
    assert_eq!(g.series, f.series);
    assert!(g.bytes <= f.bytes + 64 * 1024, "{} → {}", f.bytes, g.bytes);

    // Idle series go after their time to live, `other` included.
    let later = t0
        + Duration::from_secs(4 * HOUR)
        + AiopsConfig::default().idle_ttl
        + Duration::from_secs(1);
    let gone = engine.prune(later);
    assert_eq!(gone, f.series);
    assert_eq!(engine.footprint().series, 0);
}

#[tokio::test(start_paused = true)]
async fn a_heavy_new_tenant_gets_named_even_when_the_table_is_full() {
    let t0 = Instant::now();
    let cfg = AiopsConfig {
        max_hint_tenants: 16,
        ..AiopsConfig::default()
    };
    let mut engine = AiopsEngine::new(cfg, t0).expect("engine");
    let mut rng = Rng::new(9);
    let tenants: Vec<Arc<str>> = (0..1000).map(|i| name(&format!("t{i}"))).collect();
    let mk = |tenant: Arc<str>, provider: &str, failed: bool| AiopsSample {
        route: name("chat"),
        target: Some(key(provider, "gpt-4o")),
        tenant: Some(tenant),
        endpoint: Endpoint::ChatCompletions,
        class: if failed {
            ErrorClass::Bad
        } else {
            ErrorClass::Good
        },
        error: failed.then_some(ErrorCause::Kind(ErrorKind::RateLimitExceeded)),
        ttft: (!failed).then_some(Duration::from_millis(400)),
        duration: Duration::from_secs(2),
        input_tokens: 100,
        output_tokens: 100,
        cost_usd: 0.001,
    };
    for s in 0..30 * MIN {
        let at = t0 + Duration::from_secs(s);
        for k in 0..4 {
            let t = Arc::clone(&tenants[(rng.next() % 1000) as usize]);
            engine.ingest(
                at,
                &mk(t, if k % 2 == 0 { "openai" } else { "azure" }, false),
            );
        }
        // From minute 20 a newcomer sends 4 requests a second, most refused.
        if s >= 20 * MIN {
            for k in 0..4 {
                let failed = rng.unit() < 0.8;
                let provider = if k % 2 == 0 { "openai" } else { "azure" };
                engine.ingest(at, &mk(name("newcomer"), provider, failed));
            }
        }
        if s % TICK == 0 {
            engine.evaluate(at, Sim::wall(s));
        }
    }
    let now = t0 + Duration::from_secs(30 * MIN);
    let hint = engine.root_cause(now, Focus::Failed).expect("failures");
    eprintln!("hint among 1000 tenants: {}", hint.text);
    assert_eq!(
        hint.top.first().map(|c| (c.dimension, &*c.value)),
        Some((Dimension::Tenant, "newcomer"))
    );
    assert_eq!(
        hint.error.as_ref().map(|e| &*e.value),
        Some("rate_limit_exceeded")
    );
    assert!(engine.footprint().hint_tenants <= 16);
}

#[test]
fn ingest_costs_little_per_sample() {
    // Real time (no paused clock here): a micro-benchmark over pre-built samples.
    let t0 = Instant::now();
    let mut engine = AiopsEngine::new(AiopsConfig::default(), t0).expect("engine");
    let mut rng = Rng::new(77);
    let routes = ["chat", "agent", "rag"];
    let targets = [key("openai", "gpt-4o"), key("anthropic", "claude-sonnet")];
    let tenants: Vec<Arc<str>> = (0..50).map(|i| name(&format!("tenant-{i}"))).collect();
    let samples: Vec<AiopsSample> = (0..20_000)
        .map(|i| AiopsSample {
            route: name(routes[i % 3]),
            target: Some(targets[i % 2].clone()),
            tenant: Some(Arc::clone(&tenants[i % 50])),
            endpoint: Endpoint::ChatCompletions,
            class: if i % 100 == 0 {
                ErrorClass::Bad
            } else {
                ErrorClass::Good
            },
            error: (i % 100 == 0).then_some(ErrorCause::Status(503)),
            ttft: Some(Duration::from_secs_f64(rng.lognormal(0.4, 0.3))),
            duration: Duration::from_secs_f64(rng.lognormal(3.0, 0.3)),
            input_tokens: 300,
            output_tokens: 150,
            cost_usd: 0.002,
        })
        .collect();
    // Warm: every series and value exists.
    for s in &samples {
        engine.ingest(t0, s);
    }
    let rounds = 10;
    let started = Instant::now();
    for r in 0..rounds {
        let at = t0 + Duration::from_secs(r);
        for s in &samples {
            engine.ingest(at, s);
        }
    }
    let elapsed = started.elapsed();
    let per = elapsed / u32::try_from(rounds as usize * samples.len()).expect("fits");
    let eval_started = Instant::now();
    let status = engine.evaluate(t0 + Duration::from_secs(rounds), SystemTime::now());
    let eval = eval_started.elapsed();
    eprintln!(
        "ingest: {per:?} per sample ({} samples, {} series, {} statuses; one evaluate {eval:?}) \
         — {} build",
        rounds as usize * samples.len(),
        engine.footprint().series,
        status.anomalies.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    // Loose: a debug build on a shared machine; the point is the order of magnitude.
    assert!(per < Duration::from_micros(100), "{per:?}");
}

/// A finished request as the gateway records it, with the fields the sample reads.
fn request(outcome: Outcome, error: Option<ErrorKind>, status: Option<u16>) -> RequestRecord {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(MONDAY);
    let plain = crate::testing::record(outcome);
    RequestRecord {
        trace: TraceContext {
            sampled: true,
            ..plain.trace
        },
        start,
        duration: Duration::from_millis(2500),
        route: Some(name("chat")),
        model: Some(name("gpt-4o")),
        request_model: Some("gpt-4o".into()),
        request_model_label: Some(name("gpt-4o")),
        tenant: Some(name("search")),
        error_type: error,
        attempts: vec![AttemptRecord {
            provider: name("openai"),
            provider_kind: "openai",
            model: name("gpt-4o"),
            upstream_model: name("gpt-4o-2024-08-06"),
            server_address: None,
            server_port: None,
            span_id: [3; 8],
            start,
            duration: Duration::from_millis(2400),
            outcome: AttemptOutcome::Ok,
            status,
        }],
        usage: Some(TokenUsage {
            input: 300,
            output: 120,
            cached_input: 0,
            cache_write_input: 0,
            reasoning: 0,
            source: UsageSource::Provider,
        }),
        cost_usd: Some(0.002),
        time_to_first_chunk: Some(Duration::from_millis(350)),
        chunks: 40,
        ..plain
    }
}

#[test]
fn samples_are_built_from_records() {
    let ok = request(Outcome::Ok, None, Some(200));
    let s = AiopsSample::from_record(&ok, ErrorClass::Good).expect("routed");
    assert_eq!(&*s.route, "chat");
    assert_eq!(s.target, Some(key("openai", "gpt-4o")));
    assert_eq!(s.tenant.as_deref(), Some("search"));
    assert_eq!(s.endpoint, Endpoint::ChatCompletions);
    assert_eq!(s.ttft, Some(Duration::from_millis(350)));
    assert_eq!((s.input_tokens, s.output_tokens), (300, 120));
    assert_eq!(s.cost_usd, 0.002);
    assert_eq!(s.error, None);

    // Failed: the provider's status when there was one, else Sluice's error kind.
    let overloaded = request(
        Outcome::UpstreamError,
        Some(ErrorKind::ProviderUnavailable),
        Some(529),
    );
    let s = AiopsSample::from_record(&overloaded, ErrorClass::Bad).expect("routed");
    assert_eq!(s.error, Some(ErrorCause::Status(529)));
    assert_eq!(s.error.map(|e| e.to_string()).as_deref(), Some("529"));
    let timeout = request(Outcome::Timeout, Some(ErrorKind::UpstreamTimeout), None);
    let s = AiopsSample::from_record(&timeout, ErrorClass::Bad).expect("routed");
    assert_eq!(s.error, Some(ErrorCause::Kind(ErrorKind::UpstreamTimeout)));
    assert_eq!(
        serde_json::to_value(s.error).expect("serialises"),
        "upstream_timeout"
    );
    // A client error is excluded: no cause is recorded for it.
    let client = request(
        Outcome::ClientError,
        Some(ErrorKind::ProviderClientError),
        Some(400),
    );
    let s = AiopsSample::from_record(&client, ErrorClass::Excluded).expect("routed");
    assert_eq!(s.error, None);
    // No route, no sample.
    let mut unrouted = request(Outcome::ClientError, Some(ErrorKind::ModelNotFound), None);
    unrouted.route = None;
    assert_eq!(
        AiopsSample::from_record(&unrouted, ErrorClass::Excluded),
        None
    );
}

#[test]
fn bad_settings_are_refused() {
    let t0 = Instant::now();
    for (name, cfg) in [
        (
            "k",
            AiopsConfig {
                k: 0.0,
                ..AiopsConfig::default()
            },
        ),
        (
            "window",
            AiopsConfig {
                window: 0,
                ..AiopsConfig::default()
            },
        ),
        (
            "interval",
            AiopsConfig {
                interval: Duration::ZERO,
                ..AiopsConfig::default()
            },
        ),
    ] {
        assert!(
            matches!(AiopsEngine::new(cfg, t0), Err(Error::AiopsConfig { .. })),
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn statuses_serialise_for_the_admin_view() {
    let mut sim = steady_sim(31, three_routes());
    // Before any baseline: learning, no band, nothing flagged.
    sim.run(0, 5 * MIN, &mut no_bend(), &mut |_, _, _| {});
    let learning = sim
        .status(
            &target_scope("chat", "openai", "gpt-4o"),
            AnomalySignal::Ttft,
        )
        .expect("status");
    assert_eq!(learning.state, AnomalyState::Learning);
    assert_eq!(learning.band, None);
    assert_eq!(learning.score, None);
    assert!(
        learning.value.is_some(),
        "the value is shown while learning"
    );

    sim.run(5 * MIN, 2 * HOUR, &mut no_bend(), &mut |_, _, _| {});
    let mut failing = |_: u64, m: &TargetModel, d: &mut Draft, _: &mut Rng| {
        if &*m.route == "rag" && &*m.target.provider == "openai" {
            d.sample.class = ErrorClass::Bad;
            d.sample.error = Some(ErrorCause::Status(500));
        }
    };
    let mut started = None;
    sim.run(
        2 * HOUR,
        2 * HOUR + 10 * MIN,
        &mut failing,
        &mut |_, st, _| {
            if started.is_none() {
                started = st.events.first().cloned();
            }
        },
    );
    let e = started.expect("an anomaly started");
    let json = serde_json::to_value(&e).expect("serialises");
    assert_eq!(json["event"], "started");
    assert_eq!(json["at_unix_ms"], e.at_unix_ms);
    assert_eq!(json["signal"], "error_ratio");
    assert_eq!(json["state"], "anomalous");
    assert!(json["scope"]["kind"] == "target" || json["scope"]["kind"] == "route");
    assert_eq!(json["scope"]["route"], "rag");
    assert_eq!(json["band"]["k"], 5.0);
    let band = e.status.band.expect("band");
    assert!(
        band.lower <= band.centre && band.centre < band.upper,
        "{band:?}"
    );
    assert!(e.status.value.is_some_and(|v| v > band.upper));
    assert!(json["active_for_ms"].is_u64());

    let status = sim
        .engine
        .evaluate(sim.at(2 * HOUR + 10 * MIN), Sim::wall(2 * HOUR + 10 * MIN));
    let json = serde_json::to_value(&status).expect("serialises");
    let all = json["anomalies"].as_array().expect("a list");
    // 3 routes + 6 targets + 6 tenants, six signals each.
    assert_eq!(all.len(), 15 * 6);
    assert!(status.active().all(|a| a.is_active()));
    assert!(
        status
            .active()
            .any(|a| a.scope.route().is_some_and(|r| &**r == "rag"))
    );
    let ttft = all
        .iter()
        .find(|a| a["signal"] == "ttft" && a["scope"]["kind"] == "target")
        .expect("a target's ttft");
    assert_eq!(ttft["state"], "normal");
    assert!(ttft["band"]["lower"].as_f64() < ttft["band"]["upper"].as_f64());
    assert_eq!(ttft["scope"]["target"]["provider"], "anthropic");
}

#[tokio::test(start_paused = true)]
async fn a_ttft_drift_drives_a_downgrade_through_remediation() {
    use sluice_policy::remediation::{
        Action, Event, Overlay, RouteTarget, RouteTargets, Rule, Trigger, decide_with_anomalies,
    };
    let mut sim = warm_sim(41);
    let start = WARM_DAYS * DAY + 9 * HOUR;
    let drift_at = start + 20 * MIN;
    let drift_end = drift_at + 20 * MIN;
    let rules = [Rule::new(
        "ttft-drift",
        "chat",
        Trigger::anomaly(AnomalySignal::Ttft, 0.0),
        Action::DowngradeTo(vec![name("gpt-4o-mini")]),
    )];
    let routes = [RouteTargets {
        route: name("chat"),
        targets: vec![
            RouteTarget {
                target: key("openai", "gpt-4o"),
                weight: 50,
            },
            RouteTarget {
                target: key("anthropic", "claude-sonnet"),
                weight: 50,
            },
        ],
    }];
    let mut overlay = Overlay::default();
    let mut log: Vec<(u64, &'static str)> = Vec::new();
    let mut slower = |s: u64, m: &TargetModel, d: &mut Draft, _: &mut Rng| {
        if (drift_at..drift_end).contains(&s)
            && &*m.target.provider == "openai"
            && let Some(t) = d.sample.ttft.as_mut()
        {
            *t *= 3;
        }
    };
    let (t0, base) = (sim.t0, sim.base);
    sim.run(start, drift_end + 30 * MIN, &mut slower, &mut |s, st, _| {
        let now = t0 + Duration::from_secs(s - base);
        let d = decide_with_anomalies(now, &[], &st.anomalies, &rules, &routes, &overlay);
        for t in &d.transitions {
            if let Event::ActionTaken { .. } = t.event {
                assert_eq!(t.anomalies.len(), 1, "the route's ttft anomaly as evidence");
                assert_eq!(
                    t.anomalies[0].scope,
                    AnomalyScope::Route {
                        route: name("chat")
                    }
                );
            }
            log.push((s, t.event.as_str()));
        }
        overlay = d.overlay;
    });
    eprintln!(
        "remediation: {:?}",
        log.iter()
            .map(|(s, e)| format!("{e} at +{} s", s.saturating_sub(drift_at)))
            .collect::<Vec<_>>()
    );
    let at = |kind: &str| log.iter().find(|(_, e)| *e == kind).map(|(s, _)| *s);
    let taken = at("action_taken").expect("downgraded");
    assert!(taken > drift_at && taken - drift_at <= 4 * MIN, "{taken}");
    assert_eq!(at("opened"), Some(taken));
    // The probe sees the original recover only after the drift; the hold and the cooldown
    // then unwind it, and the incident resolves once the route's anomaly clears.
    let unwound = at("unwound").expect("unwound");
    assert!(unwound > drift_end, "held while openai was slow");
    assert!(at("resolved").is_some_and(|r| r >= unwound));
    assert!(overlay.is_empty() && overlay.incidents().is_empty());
    assert_eq!(
        log.iter().filter(|(_, e)| *e == "action_taken").count(),
        1,
        "no flapping"
    );
}
