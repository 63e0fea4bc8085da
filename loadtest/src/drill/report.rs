//! What a drill measured, against the goals of issue 9, from the incident log's events (their
//! wall-clock stamps) and what the clients saw.
//!
//! - `detect_s`: fault start → the rule's incident `opened`.
//! - `mitigate_s`: fault start → its first `action_taken` (the overlay routing reads is
//!   published in the same controller tick).
//! - `client_error_ratio`: requests whose client got neither an answer nor a deliberate
//!   `load_shed` refusal, over every request sent during the drill. Shedding is reported apart
//!   (`shed_ratio`): it is the action under test, and Sluice's own SLOs exclude it too.
//! - `unwind_s`: fault cleared → the first `unwound` after the action (negative when the action
//!   was undone while the fault was still there).
//! - `flaps`: `action_taken` events beyond the first.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::scenario::Plan;
use super::traffic::{Seen, Tally};

/// The goals every drill is held to.
pub const GOAL_DETECT_S: f64 = 10.0;
pub const GOAL_MITIGATE_S: f64 = 15.0;
pub const GOAL_ERROR_RATIO: f64 = 0.01;
pub const GOAL_UNWIND_S: f64 = 120.0;

/// One incident log event of the drill's rule, reduced to what the report needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at_unix_ms: u64,
    pub incident: u64,
    pub kind: String,
}

/// The numbers of one drill.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub detect_s: Option<f64>,
    pub mitigate_s: Option<f64>,
    pub client_error_ratio: f64,
    pub unwind_s: Option<f64>,
    pub flaps: u32,
    pub pass: bool,
    /// The goals missed, in words.
    pub missed: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub shed: u64,
    pub shed_ratio: f64,
    pub stale: u64,
    /// Requests not sent because too many were in flight.
    pub not_sent: u64,
    /// Whether the incident was resolved before the drill ended.
    pub resolved: bool,
    /// Incidents of the rule opened before the fault (false alarms).
    pub false_alarms: u32,
    /// The highest 5-minute (scaled) burn of the trigger SLO seen in `/admin/slo`.
    pub peak_burn_5m: Option<f64>,
    /// Seconds from fault start to fault cleared.
    pub fault_s: f64,
    /// The rule's incident events in order.
    pub events: Vec<Step>,
    /// The commonest client error, if any.
    pub first_error: Option<String>,
}

/// The rule's events in a list of incident log lines (or `/admin/incidents` events), in time
/// order.
pub fn steps_of(lines: &[Value], rule: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = lines
        .iter()
        .filter(|v| v["rule"] == rule && v["dry_run"] != true)
        .filter_map(|v| {
            Some(Step {
                at_unix_ms: v["at_unix_ms"].as_u64()?,
                incident: v["incident"].as_u64()?,
                kind: v["kind"].as_str()?.to_owned(),
            })
        })
        .collect();
    steps.sort_by_key(|s| s.at_unix_ms);
    steps
}

/// Measures a drill: `fault_ms` and `clear_ms` are the wall-clock (Unix ms) times the fault
/// was injected and cleared.
pub fn measure(
    plan: &Plan,
    steps: Vec<Step>,
    tally: &Tally,
    fault_ms: u64,
    clear_ms: u64,
    peak_burn_5m: Option<f64>,
) -> Report {
    let secs = |from: u64, to: u64| (to as f64 - from as f64) / 1000.0;
    let after_fault = |kind: &str| {
        steps
            .iter()
            .find(|s| s.kind == kind && s.at_unix_ms >= fault_ms)
    };
    let false_alarms = steps
        .iter()
        .filter(|s| s.kind == "opened" && s.at_unix_ms < fault_ms)
        .count() as u32;
    let opened = after_fault("opened");
    let acted = after_fault("action_taken");
    let unwound = acted.and_then(|a| {
        steps
            .iter()
            .find(|s| s.kind == "unwound" && s.at_unix_ms >= a.at_unix_ms)
    });
    let resolved = unwound.is_some_and(|u| {
        steps
            .iter()
            .any(|s| s.kind == "resolved" && s.at_unix_ms >= u.at_unix_ms)
    });
    let taken = steps.iter().filter(|s| s.kind == "action_taken").count() as u32;

    let requests = tally.samples.len() as u64;
    let mut errors = 0;
    let mut shed = 0;
    let mut stale = 0;
    let mut error_kinds: std::collections::BTreeMap<&str, u64> = Default::default();
    for s in &tally.samples {
        match &s.seen {
            Seen::Ok { stale: true } => stale += 1,
            Seen::Ok { stale: false } => {}
            Seen::Shed => shed += 1,
            Seen::Error(e) => {
                errors += 1;
                *error_kinds.entry(e.as_str()).or_default() += 1;
            }
        }
    }
    let ratio = |n: u64| {
        if requests == 0 {
            0.0
        } else {
            n as f64 / requests as f64
        }
    };
    let mut report = Report {
        scenario: plan.scenario.name().to_owned(),
        detect_s: opened.map(|s| secs(fault_ms, s.at_unix_ms)),
        mitigate_s: acted.map(|s| secs(fault_ms, s.at_unix_ms)),
        client_error_ratio: ratio(errors),
        unwind_s: unwound.map(|s| secs(clear_ms, s.at_unix_ms)),
        flaps: taken.saturating_sub(1),
        pass: false,
        missed: Vec::new(),
        requests,
        errors,
        shed,
        shed_ratio: ratio(shed),
        stale,
        not_sent: tally.not_sent,
        resolved,
        false_alarms,
        peak_burn_5m,
        fault_s: secs(fault_ms, clear_ms),
        events: steps,
        first_error: error_kinds
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(e, n)| format!("{e} ×{n}")),
    };
    report.missed = missed(&report);
    report.pass = report.missed.is_empty();
    report
}

/// Every goal the report misses.
fn missed(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let mut bound = |name: &str, value: Option<f64>, goal: f64| match value {
        None => out.push(format!("{name}: never happened")),
        Some(v) if v >= goal => out.push(format!("{name}: {v:.2} s, goal < {goal} s")),
        Some(_) => {}
    };
    bound("detect", r.detect_s, GOAL_DETECT_S);
    bound("mitigate", r.mitigate_s, GOAL_MITIGATE_S);
    bound("unwind", r.unwind_s, GOAL_UNWIND_S);
    if r.client_error_ratio >= GOAL_ERROR_RATIO {
        out.push(format!(
            "client errors: {:.2} %, goal < {} %",
            r.client_error_ratio * 100.0,
            GOAL_ERROR_RATIO * 100.0
        ));
    }
    if r.flaps > 0 {
        out.push(format!("flaps: {}, goal 0", r.flaps));
    }
    if r.false_alarms > 0 {
        out.push(format!("false alarms before the fault: {}", r.false_alarms));
    }
    if r.requests == 0 {
        out.push("no request was sent".into());
    }
    out
}

impl Report {
    /// The human-readable summary.
    pub fn summary(&self, plan: &Plan) -> String {
        let s = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2} s"));
        let mark = |ok: bool| if ok { "ok  " } else { "MISS" };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "drill {}: {}\n  rule {} ({}), SLO {}, windows ×{}, fault for {:.1} s",
            self.scenario,
            plan.scenario.describe(),
            plan.rule,
            plan.action,
            plan.slo,
            plan.window_scale,
            self.fault_s,
        );
        let _ = writeln!(
            out,
            "  {} detect        {:>9}   goal < {GOAL_DETECT_S} s",
            mark(self.detect_s.is_some_and(|v| v < GOAL_DETECT_S)),
            s(self.detect_s)
        );
        let _ = writeln!(
            out,
            "  {} mitigate      {:>9}   goal < {GOAL_MITIGATE_S} s",
            mark(self.mitigate_s.is_some_and(|v| v < GOAL_MITIGATE_S)),
            s(self.mitigate_s)
        );
        let _ = writeln!(
            out,
            "  {} client errors {:>8.2} %   goal < {} %   ({} of {} requests; {} shed, {} stale)",
            mark(self.client_error_ratio < GOAL_ERROR_RATIO),
            self.client_error_ratio * 100.0,
            GOAL_ERROR_RATIO * 100.0,
            self.errors,
            self.requests,
            self.shed,
            self.stale,
        );
        let _ = writeln!(
            out,
            "  {} unwind        {:>9}   goal < {GOAL_UNWIND_S} s",
            mark(self.unwind_s.is_some_and(|v| v < GOAL_UNWIND_S)),
            s(self.unwind_s)
        );
        let _ = writeln!(
            out,
            "  {} flaps         {:>9}   goal 0",
            mark(self.flaps == 0),
            self.flaps
        );
        let kinds: Vec<&str> = self.events.iter().map(|e| e.kind.as_str()).collect();
        let _ = writeln!(out, "  timeline: {}", kinds.join(" → "));
        if let Some(b) = self.peak_burn_5m {
            let _ = writeln!(out, "  peak 5m burn of {}: {b:.1}", plan.slo);
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(out, "  commonest client error: {e}");
        }
        let _ = write!(
            out,
            "  {}",
            if self.pass {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", self.missed.join("; "))
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::super::scenario::{Key, Scenario};
    use super::super::traffic::Sample;
    use super::*;

    fn step(at: u64, kind: &str) -> Value {
        serde_json::json!({"at_unix_ms": at, "incident": 1, "rule": "drill-failover", "kind": kind, "dry_run": false})
    }

    fn tally(ok: usize, errors: usize, shed: usize) -> Tally {
        let now = Instant::now();
        let sample = |seen: Seen| Sample {
            sent: now,
            key: Key::Gold,
            seen,
        };
        let mut samples = Vec::new();
        samples.extend((0..ok).map(|_| sample(Seen::Ok { stale: false })));
        samples.extend((0..errors).map(|_| sample(Seen::Error("HTTP 502".into()))));
        samples.extend((0..shed).map(|_| sample(Seen::Shed)));
        Tally {
            samples,
            not_sent: 0,
        }
    }

    #[test]
    fn a_clean_drill_passes_with_its_numbers() {
        let plan = Scenario::ErrorBurst.plan();
        let lines = vec![
            step(12_000, "resolved"),
            step(3_500, "action_taken"),
            step(3_400, "opened"),
            step(11_000, "unwound"),
            serde_json::json!({"at_unix_ms": 3_000, "incident": 9, "rule": "other", "kind": "opened"}),
        ];
        let steps = steps_of(&lines, "drill-failover");
        assert_eq!(steps.len(), 4);
        let r = measure(&plan, steps, &tally(995, 4, 10), 1_000, 7_000, Some(50.0));
        assert_eq!(r.detect_s, Some(2.4));
        assert_eq!(r.mitigate_s, Some(2.5));
        assert_eq!(r.unwind_s, Some(4.0));
        assert_eq!(r.flaps, 0);
        assert!(r.resolved);
        assert_eq!((r.requests, r.errors, r.shed), (1009, 4, 10));
        assert!(r.client_error_ratio < 0.01);
        assert!(r.pass, "{:?}", r.missed);
        let text = r.summary(&plan);
        assert!(
            text.contains("opened → action_taken → unwound → resolved"),
            "{text}"
        );
        assert!(text.ends_with("PASS"), "{text}");
    }

    #[test]
    fn missed_goals_are_named() {
        let plan = Scenario::Overload.plan();
        let lines = vec![
            step(500, "opened"),
            step(2_000, "opened"),
            step(20_000, "action_taken"),
            step(21_000, "unwound"),
            step(22_000, "action_taken"),
        ];
        let r = measure(
            &plan,
            steps_of(&lines, "drill-failover"),
            &tally(90, 10, 0),
            1_000,
            30_000,
            None,
        );
        assert!(!r.pass);
        let missed = r.missed.join("; ");
        for says in ["mitigate", "client errors", "flaps: 1", "false alarms"] {
            assert!(missed.contains(says), "{says}: {missed}");
        }
        // Undone while the fault was still there: a negative unwind.
        assert_eq!(r.unwind_s, Some(-9.0));
        assert!(!r.resolved);
        let r = measure(&plan, Vec::new(), &tally(10, 0, 0), 1_000, 2_000, None);
        assert!(r.missed.iter().any(|m| m == "detect: never happened"));
    }
}
