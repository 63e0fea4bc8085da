//! Faults set while `mock-llm` runs, over HTTP, so a fault drill can inject a fault and later
//! remove it without restarting anything (the per-request faults of [`super::fault`] need the
//! client's cooperation; these do not).
//!
//! ```text
//! POST   /_mock/faults   {"model":"big","error_ratio":0.5}      set (replace) one scope's fault
//! GET    /_mock/faults                                          {"faults":[…]}
//! DELETE /_mock/faults[?model=NAME]                             clear every scope, or one
//! ```
//!
//! A fault applies to one model (its `model`, matched against the request body's model without
//! any `@fault` suffix) or, without `model`, to every request; a model's own fault wins over the
//! process-wide one. Fields, every one optional:
//!
//! | field | effect |
//! |---|---|
//! | `error_ratio` (0..=1) | that share of requests answered `error_status`, spread evenly (0.5 fails every second request) |
//! | `error_status` | 400..=599, default 503 |
//! | `ttft_multiplier` | the time to first token (and to a non-stream answer) × this, default 1 |
//! | `ttft_add_ms` | added to the time to first token |
//! | `outage` | `status`: every request answered `error_status`; `refuse`: the connection is closed without an answer (process-wide: at accept); `hang`: no answer until the fault changes (at most 120 s), then the connection closes |
//! | `max_concurrent` | at most this many requests in flight (streams until their last byte); the excess answered `over_capacity_status` at once |
//! | `over_capacity_status` | 400..=599, default 429 (with `retry-after: 1`) |
//!
//! Order: outage, then capacity, then the error ratio, then the added latency. Runtime faults
//! combine with a request's own `x-mock` / `model@fault` faults; the request's outcome fault
//! applies only to requests the runtime fault let through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One scope's fault, as `POST /_mock/faults` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFault {
    /// The model it applies to; `None` for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Share of requests failed with `error_status`.
    #[serde(default)]
    pub error_ratio: f64,
    /// Status of failed requests (error ratio and `outage: status`).
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// Factor on the time to first token.
    #[serde(default = "one")]
    pub ttft_multiplier: f64,
    /// Milliseconds added to the time to first token.
    #[serde(default)]
    pub ttft_add_ms: u64,
    /// Every request fails, one of three ways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<Outage>,
    /// Requests in flight at most; the rest are refused at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Status of requests over `max_concurrent`.
    #[serde(default = "default_over_capacity_status")]
    pub over_capacity_status: u16,
}

/// How an outage fails requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outage {
    /// Every request answered `error_status`.
    Status,
    /// The connection closed without an answer.
    Refuse,
    /// No answer until the fault changes (bounded), then the connection closes.
    Hang,
}

/// What the runtime faults make of one request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Serve it, with the time to first token scaled by `scale` plus `add`, holding `permit`
    /// (when capacity is limited) until the answer's last byte.
    Serve {
        scale: f64,
        add: Duration,
        permit: Option<Permit>,
    },
    /// Answer this status with an OpenAI error.
    Fail { status: u16 },
    /// Close the connection without answering.
    Close,
    /// Hold the request until the faults change, then close.
    Hang,
}

/// A slot of a capacity-limited scope, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(Arc<AtomicU32>);

/// Every scope's fault and the state it keeps (requests seen, in flight).
#[derive(Debug)]
pub(crate) struct RuntimeFaults {
    scopes: Mutex<BTreeMap<Option<String>, Arc<Active>>>,
    /// Bumped on every change, so hanging requests can wake up.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct Active {
    fault: RuntimeFault,
    seen: AtomicU64,
    in_flight: Arc<AtomicU32>,
}

fn default_error_status() -> u16 {
    503
}

fn default_over_capacity_status() -> u16 {
    429
}

fn one() -> f64 {
    1.0
}

// === impl RuntimeFault ===

impl RuntimeFault {
    /// A fault that changes nothing, for `model` (or every request).
    pub fn none(model: Option<&str>) -> Self {
        Self {
            model: model.map(str::to_owned),
            error_ratio: 0.0,
            error_status: default_error_status(),
            ttft_multiplier: 1.0,
            ttft_add_ms: 0,
            outage: None,
            max_concurrent: None,
            over_capacity_status: default_over_capacity_status(),
        }
    }

    /// Every problem with the fault, or `Ok`.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.error_ratio) {
            problems.push(format!(
                "error_ratio must be within 0..=1, got {}",
                self.error_ratio
            ));
        }
        for (name, status) in [
            ("error_status", self.error_status),
            ("over_capacity_status", self.over_capacity_status),
        ] {
            if !(400..=599).contains(&status) {
                problems.push(format!("{name} must be within 400..=599, got {status}"));
            }
        }
        if !(self.ttft_multiplier.is_finite() && self.ttft_multiplier >= 0.0) {
            problems.push(format!(
                "ttft_multiplier must be a finite number ≥ 0, got {}",
                self.ttft_multiplier
            ));
        }
        if self.max_concurrent == Some(0) {
            problems
                .push("max_concurrent must be at least 1 (use outage to refuse everything)".into());
        }
        if self.model.as_deref().is_some_and(str::is_empty) {
            problems.push("model must not be empty (leave it out for every request)".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

// === impl Permit ===

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl RuntimeFaults ===

impl Default for RuntimeFaults {
    fn default() -> Self {
        Self {
            scopes: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl RuntimeFaults {
    /// Sets (replaces) the fault of its scope, after checking it.
    pub(crate) fn set(&self, fault: RuntimeFault) -> Result<(), String> {
        fault.validate()?;
        let active = Arc::new(Active {
            fault: fault.clone(),
            seen: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU32::new(0)),
        });
        self.lock().insert(fault.model, active);
        self.changed.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Clears one scope's fault (`Some(model)`), or every fault (`None`).
    pub(crate) fn clear(&self, model: Option<&str>) {
        {
            let mut scopes = self.lock();
            match model {
                Some(m) => {
                    scopes.remove(&Some(m.to_owned()));
                }
                None => scopes.clear(),
            }
        }
        self.changed.send_modify(|g| *g += 1);
    }

    /// Every fault in force, the process-wide one first.
    pub(crate) fn list(&self) -> Vec<RuntimeFault> {
        self.lock().values().map(|a| a.fault.clone()).collect()
    }

    /// Whether the process-wide fault refuses connections.
    pub(crate) fn refuses_connections(&self) -> bool {
        self.lock()
            .get(&None)
            .is_some_and(|a| a.fault.outage == Some(Outage::Refuse))
    }

    /// The verdict for a request for `model` (its name without any `@fault` suffix).
    pub(crate) fn judge(&self, model: Option<&str>) -> Verdict {
        let active = {
            let scopes = self.lock();
            model
                .and_then(|m| scopes.get(&Some(m.to_owned())))
                .or_else(|| scopes.get(&None))
                .cloned()
        };
        let Some(active) = active else {
            return Verdict::Serve {
                scale: 1.0,
                add: Duration::ZERO,
                permit: None,
            };
        };
        active.judge()
    }

    /// Resolves once the faults change (or after `at_most`).
    pub(crate) async fn wait_change(&self, at_most: Duration) {
        let mut rx = self.changed.subscribe();
        let _ = tokio::time::timeout(at_most, rx.changed()).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Option<String>, Arc<Active>>> {
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Active ===

impl Active {
    fn judge(&self) -> Verdict {
        let f = &self.fault;
        match f.outage {
            Some(Outage::Status) => {
                return Verdict::Fail {
                    status: f.error_status,
                };
            }
            Some(Outage::Refuse) => return Verdict::Close,
            Some(Outage::Hang) => return Verdict::Hang,
            None => {}
        }
        let permit = match f.max_concurrent {
            Some(max) => match acquire(&self.in_flight, max) {
                Some(p) => Some(p),
                None => {
                    return Verdict::Fail {
                        status: f.over_capacity_status,
                    };
                }
            },
            None => None,
        };
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if fails(n, f.error_ratio) {
            return Verdict::Fail {
                status: f.error_status,
            };
        }
        Verdict::Serve {
            scale: f.ttft_multiplier,
            add: Duration::from_millis(f.ttft_add_ms),
            permit,
        }
    }
}

/// A slot of `max`, if one is free.
fn acquire(in_flight: &Arc<AtomicU32>, max: u32) -> Option<Permit> {
    in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Permit(Arc::clone(in_flight)))
}

/// Whether the `n`th request (from 1) of a scope fails at `ratio`: exactly when `n × ratio`
/// crosses an integer, so failures are spread evenly and any prefix fails `⌊n × ratio⌋` times.
fn fails(n: u64, ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let crossed = |k: u64| (k as f64 * ratio).floor();
    crossed(n) > crossed(n - 1)
}

impl Verdict {
    /// The time to first token for a request served under this verdict.
    pub(crate) fn ttft(&self, base: Duration) -> Duration {
        match self {
            Verdict::Serve { scale, add, .. } => base.mul_f64(*scale).saturating_add(*add),
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_spread_evenly() {
        let pattern: Vec<bool> = (1..=6).map(|n| fails(n, 0.5)).collect();
        assert_eq!(pattern, [false, true, false, true, false, true]);
        for ratio in [0.0, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.9, 1.0] {
            let failed = (1..=1000u64).filter(|&n| fails(n, ratio)).count() as f64;
            assert!(
                (failed - (1000.0 * ratio).floor()).abs() < 1.0,
                "{ratio}: {failed}"
            );
        }
    }

    #[test]
    fn model_scope_wins_and_clearing_restores() {
        let faults = RuntimeFaults::default();
        faults
            .set(RuntimeFault {
                outage: Some(Outage::Status),
                ..RuntimeFault::none(None)
            })
            .unwrap();
        faults
            .set(RuntimeFault {
                ttft_multiplier: 10.0,
                ..RuntimeFault::none(Some("big"))
            })
            .unwrap();
        assert!(matches!(
            faults.judge(Some("other")),
            Verdict::Fail { status: 503, .. }
        ));
        let big = faults.judge(Some("big"));
        assert_eq!(
            big.ttft(Duration::from_millis(30)),
            Duration::from_millis(300)
        );
        assert_eq!(faults.list().len(), 2);
        faults.clear(Some("big"));
        assert!(matches!(faults.judge(Some("big")), Verdict::Fail { .. }));
        faults.clear(None);
        assert!(matches!(faults.judge(Some("big")), Verdict::Serve { .. }));
        assert!(faults.list().is_empty());
    }

    #[test]
    fn capacity_is_given_back_when_permits_drop() {
        let faults = RuntimeFaults::default();
        faults
            .set(RuntimeFault {
                max_concurrent: Some(2),
                over_capacity_status: 503,
                ..RuntimeFault::none(None)
            })
            .unwrap();
        let a = faults.judge(None);
        let b = faults.judge(None);
        assert!(matches!(
            a,
            Verdict::Serve {
                permit: Some(_),
                ..
            }
        ));
        assert!(matches!(
            b,
            Verdict::Serve {
                permit: Some(_),
                ..
            }
        ));
        assert!(matches!(faults.judge(None), Verdict::Fail { status: 503 }));
        drop(a);
        assert!(matches!(faults.judge(None), Verdict::Serve { .. }));
    }

    #[test]
    fn bad_faults_are_refused_with_every_problem() {
        let err = RuntimeFault {
            error_ratio: 1.5,
            error_status: 200,
            ttft_multiplier: f64::NAN,
            max_concurrent: Some(0),
            ..RuntimeFault::none(Some(""))
        }
        .validate()
        .unwrap_err();
        for says in [
            "error_ratio",
            "error_status",
            "ttft_multiplier",
            "max_concurrent",
            "model",
        ] {
            assert!(err.contains(says), "{says}: {err}");
        }
        let parsed: Result<RuntimeFault, _> = serde_json::from_str(r#"{"error_rate":0.5}"#);
        assert!(parsed.is_err());
    }
}
