//! The driver of the gateway's fuzz targets (issue 14): the SSE decoder (`sse::proptests`), the
//! upstream HTTP/1.1 response reader (`providers::h1::proptests`) and the OpenAI request parser
//! (`request::proptests`).
//!
//! Each target is a plain `fn check_<target>(&input) -> Result<(), String>`: the property. It is
//! called on a table of hand-picked seeds and, through [`run`], on inputs that proptest
//! generates, so a coverage-guided fuzzer could call the same function later. [`run`] stops at
//! a case count or a wall-clock budget, whichever comes first, so CI time stays bounded on a
//! slow machine, and prints what it did (visible with `--nocapture`):
//!
//! ```text
//! fuzz sse: 4000 cases in 3.1s (budget 4000 cases or 8s, seed 1234…; replay with PROPTEST_RNG_SEED=1234…)
//! ```
//!
//! The seed is random per run, so CI explores new inputs each time; a failure names it, and
//! `PROPTEST_RNG_SEED=<seed>` replays the same inputs. `SLUICE_FUZZ_SECS=<n>` runs every target
//! for `n` seconds with no case cap, for a longer hunt on a developer machine.

use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use tokio::time::Instant;

/// How long one target may run: at most `cases` inputs and about `time` (a case that has
/// started is finished, so one slow case can overrun by its own length).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub cases: u32,
    pub time: Duration,
}

impl Budget {
    fn or_env(self) -> Self {
        match std::env::var("SLUICE_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(secs) => Self {
                cases: u32::MAX,
                time: Duration::from_secs(secs),
            },
            None => self,
        }
    }
}

/// Runs `check` on inputs from `strategy` within `budget`; on a failure, shrinks it and panics
/// with the smallest failing input found. Panics inside `check` count as failures.
pub(crate) fn run<S>(
    name: &str,
    budget: Budget,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<(), String>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let budget = budget.or_env();
    let defaults = Config::default(); // reads PROPTEST_RNG_SEED and the other PROPTEST_* knobs
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        // No `rand` needed for one random number per run: std's hasher keys are random.
        RngSeed::Random => RandomState::new().hash_one(name),
    };
    let config = Config {
        cases: budget.cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // Shrinking is for a human reading a failure; it must not stall CI for long.
        max_shrink_time: 30_000,
        ..defaults
    };
    // Printed first too: a stack overflow or an abort ends the process before any report.
    eprintln!("fuzz {name}: starting with seed {seed}");
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let mut cases = 0u32;
    while cases < budget.cases && started.elapsed() < budget.time {
        let tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("fuzz {name}: no input could be generated: {e}"));
        match runner.run_one(tree, |input| check(&input).map_err(TestCaseError::fail)) {
            Ok(_) => cases += 1,
            Err(TestError::Fail(why, input)) => panic!(
                "fuzz {name}: case {cases} failed (replay with PROPTEST_RNG_SEED={seed}): {why}\n\
                 minimal failing input: {input:?}"
            ),
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.2?} (budget {} cases or {:?}, seed {seed}; \
         replay with PROPTEST_RNG_SEED={seed})",
        started.elapsed(),
        budget.cases,
        budget.time,
    );
}

/// Runs `check` on every seed, failing with the seeds' labels and messages.
pub(crate) fn run_seeds<T>(
    name: &str,
    seeds: &[(&str, T)],
    check: impl Fn(&T) -> Result<(), String>,
) {
    let started = Instant::now();
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|(label, seed)| {
            // A panic in the code under test is a failure of this seed, named like the others.
            match std::panic::catch_unwind(AssertUnwindSafe(|| check(seed))) {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some(format!("{label}: {why}")),
                Err(panic) => Some(format!("{label}: panicked: {}", panic_message(&*panic))),
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "fuzz {name}: {} seed(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "fuzz {name} seeds: {} cases in {:.2?}",
        seeds.len(),
        started.elapsed()
    );
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<not a string>")
}

/// Debug output for a failing input that may be megabytes long: the first [`SHOWN`] items,
/// then how many there were.
pub(crate) struct Shown<'a, T>(pub &'a [T]);

const SHOWN: usize = 512;

impl Debug for Shown<'_, u8> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = bytes::Bytes::copy_from_slice(&self.0[..self.0.len().min(SHOWN)]);
        match self.0.len() {
            n if n > SHOWN => write!(f, "{head:?}… ({n} bytes)"),
            _ => write!(f, "{head:?}"),
        }
    }
}

impl Debug for Shown<'_, usize> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = &self.0[..self.0.len().min(SHOWN / 8)];
        match self.0.len() {
            n if n > head.len() => write!(f, "{head:?}… ({n} items)"),
            _ => write!(f, "{head:?}"),
        }
    }
}
