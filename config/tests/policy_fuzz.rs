//! Fuzz target for the policy loader (issue 14): [`load_str_with_env`] on arbitrary text and on
//! the shipped policies (`examples/*.yaml`, `tests/fixtures/invalid/*.yaml`) with lines
//! deleted, duplicated, swapped, re-indented, truncated, or with a scalar or a word replaced by
//! something from a list of troublemakers (types, durations, YAML tags, anchors and aliases,
//! unterminated quotes, flow collections, huge values).
//!
//! [`check_policy`] asserts: loading never panics; it answers the same way twice (equal
//! `Config`, warnings and diagnostics, and an empty `PolicyDiff` between the two configs);
//! every diagnostic, error or warning, names the origin, has a non-empty path and message and a
//! line, if any, inside the text; an error lists at least one; and the provider key the
//! environment hands over appears in no diagnostic and not in the `Debug` of what was loaded.
//! (Not asserted: `Diagnostic` documents messages as lowercase with no trailing period, but a
//! few come verbatim from the YAML parser, such as "Recursive reference not allowed here".)
//!
//! The driver stops at a case count or a wall-clock budget, whichever comes first, and prints
//! what it did (`--nocapture`); `PROPTEST_RNG_SEED=<seed>` replays a run, and
//! `SLUICE_FUZZ_SECS=<n>` runs for `n` seconds with no case cap.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::string::string_regex;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use sluice_config::{Diagnostic, Error, PolicyDiff, load_str_with_env};
use tokio::time::Instant;

const ORIGIN: &str = "fuzz.yaml";
/// The provider key the environment holds; it must never be printed.
const SECRET: &str = "sk-fuzz-0123456789-secret";

fn env(name: &str) -> Option<String> {
    (name == "OPENAI_API_KEY").then(|| SECRET.to_owned())
}

// === the property ===

fn check_diagnostic(d: &Diagnostic, lines: usize) -> Result<(), String> {
    let problem = if d.origin != ORIGIN {
        "the wrong origin"
    } else if d.path.trim().is_empty() {
        "an empty path"
    } else if d.message.trim().is_empty() {
        "an empty message"
    } else if d.line.is_some_and(|l| l == 0 || l > lines + 1) {
        "a line outside the text"
    } else if d.to_string().contains(SECRET) {
        "the provider key in it"
    } else {
        return Ok(());
    };
    Err(format!("{problem}: {d:?}"))
}

fn check_policy(text: &str) -> Result<(), String> {
    let lines = text.lines().count();
    let first = load_str_with_env(text, ORIGIN, &env);
    let second = load_str_with_env(text, ORIGIN, &env);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            for w in &a.warnings {
                check_diagnostic(w, lines).map_err(|e| format!("warning with {e}"))?;
            }
            if a.config != b.config || a.warnings != b.warnings {
                return Err("loading the same text twice gave two policies".into());
            }
            let diff = PolicyDiff::between(&a.config, &b.config);
            if !diff.is_empty() {
                return Err(format!("a policy differs from itself: {}", diff.summary()));
            }
            if format!("{a:?}").contains(SECRET) {
                return Err("the provider key is in the loaded policy's Debug".into());
            }
            Ok(())
        }
        (
            Err(Error::Invalid {
                origin,
                diagnostics,
            }),
            Err(Error::Invalid {
                diagnostics: again, ..
            }),
        ) => {
            if origin != ORIGIN || diagnostics.is_empty() {
                return Err(format!(
                    "an error from {origin:?} with {} diagnostics",
                    diagnostics.len()
                ));
            }
            for d in &diagnostics {
                check_diagnostic(d, lines)?;
            }
            if diagnostics != again {
                return Err("loading the same text twice gave different diagnostics".into());
            }
            Ok(())
        }
        (a, b) => Err(format!(
            "two loads of one text disagree or failed to read: {:?} / {:?}",
            a.map(|_| "ok"),
            b.map(|_| "ok")
        )),
    }
}

// === inputs ===

/// One change to a policy's text; line and byte numbers are taken modulo its size.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Add (positive) or remove (negative) leading spaces.
    Indent(usize, i8),
    /// Replace the leading spaces with a tab.
    Tab(usize),
    /// Replace what follows the line's first `: ` (or `- `).
    Scalar(usize, String),
    /// Replace the line's n-th word.
    Word(usize, Index, String),
    InsertLine(usize, String),
    Truncate(usize),
}

#[derive(Debug, Clone)]
enum PolicyCase {
    /// `base` indexes [`corpus`], whose first two entries are the examples.
    Mutated {
        base: usize,
        edits: Vec<Edit>,
    },
    Text(String),
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match edit {
        Edit::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) => {
            let line = lines[i % n].clone();
            lines.insert(i % n, line);
        }
        Edit::SwapLines(i, j) => lines.swap(i % n, j % n),
        Edit::Indent(i, by) => {
            let line = &mut lines[i % n];
            let count = usize::from(by.unsigned_abs());
            if *by >= 0 {
                line.insert_str(0, &" ".repeat(count));
            } else {
                let spaces = line.len() - line.trim_start_matches(' ').len();
                line.drain(..spaces.min(count));
            }
        }
        Edit::Tab(i) => {
            let line = &mut lines[i % n];
            let rest = line.trim_start_matches(' ').to_owned();
            *line = format!("\t{rest}");
        }
        Edit::Scalar(i, with) => {
            let line = &mut lines[i % n];
            let at = line
                .find(": ")
                .or_else(|| line.find("- "))
                .map_or(line.len(), |p| p + 2);
            line.truncate(at);
            line.push_str(with);
        }
        Edit::Word(i, k, with) => {
            let line = &mut lines[i % n];
            let words: Vec<(usize, usize)> = word_spans(line);
            if !words.is_empty() {
                let (start, end) = words[k.index(words.len())];
                line.replace_range(start..end, with);
            }
        }
        Edit::InsertLine(i, with) => lines.insert(i % (n + 1), with.clone()),
        Edit::Truncate(at) => {
            let mut joined = lines.join("\n");
            let mut at = at % (joined.len() + 1);
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            joined.truncate(at);
            return joined;
        }
    }
    lines.join("\n") + "\n"
}

/// Byte spans of the runs of word characters on a line.
fn word_spans(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        let word = c.is_alphanumeric() || "_.-".contains(c);
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    spans
}

impl PolicyCase {
    fn text(&self, corpus: &[String]) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Mutated { base, edits } => edits
                .iter()
                .fold(corpus[base % corpus.len()].clone(), |text, e| {
                    apply(&text, e)
                }),
        }
    }
}

/// Values that have tripped YAML loaders: other types, odd numbers and durations, YAML 1.1
/// booleans, tags, anchors and aliases, block scalars, broken quoting and flow collections.
const TROUBLE: &[&str] = &[
    "0",
    "-1",
    "1.5",
    "99999999999999999999999",
    "1e309",
    ".inf",
    "-.inf",
    ".nan",
    "",
    "~",
    "null",
    "true",
    "yes",
    "no",
    "on",
    "\"\"",
    "''",
    "0ms",
    "1h",
    "25h",
    "-5m",
    "10x",
    "1.5s",
    "[]",
    "{}",
    "[a, b]",
    "{ a: 1 }",
    "&a x",
    "*a",
    "*undefined",
    "!!binary aGk=",
    "!!str 1",
    "!!map {}",
    "!custom x",
    "|",
    ">-",
    "'unterminated",
    "\"unterminated",
    "\"\\ud800\"",
    "\"\\x00\"",
    "日本語",
    "key: value",
    "- item",
    "<<: *a",
    "0x10",
    "0o17",
    "+1",
    "127.0.0.1:99999",
    "[::1]:8080",
    "0.0.0.0:0",
    "http://",
    "https://api.openai.com/v1",
    "ftp://x",
    "OPENAI_API_KEY",
    "UNSET_VAR",
    "mock",
    "openai",
    "anthropic",
    "chat",
    "embedding",
    "gpt-4o",
    "mock-chat",
    "# comment",
    "%YAML 1.2",
    "---",
    "...",
    "? complex",
    "\"a\\nb\"",
    "@reserved",
    "`backtick",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => select(TROUBLE).prop_map(str::to_owned),
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
        1 => (1usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0usize..200;
    prop_oneof![
        3 => at.clone().prop_map(Edit::DeleteLine),
        2 => at.clone().prop_map(Edit::DuplicateLine),
        1 => (at.clone(), at.clone()).prop_map(|(i, j)| Edit::SwapLines(i, j)),
        2 => (at.clone(), -4i8..=4).prop_map(|(i, by)| Edit::Indent(i, by)),
        1 => at.clone().prop_map(Edit::Tab),
        4 => (at.clone(), scalar()).prop_map(|(i, s)| Edit::Scalar(i, s)),
        4 => (at.clone(), any::<Index>(), scalar()).prop_map(|(i, k, s)| Edit::Word(i, k, s)),
        1 => (at.clone(), scalar()).prop_map(|(i, s)| Edit::InsertLine(i, s)),
        1 => (0usize..8192).prop_map(Edit::Truncate),
    ]
}

fn case(corpus_len: usize) -> impl Strategy<Value = PolicyCase> {
    let text = string_regex("[a-z_0-9:{}\\[\\],&*!|>'\"#% .-]{0,30}(\n[ \t-]{0,6}[a-z_0-9:{}\\[\\],&*!|>'\"#% .-]{0,30}){0,8}")
        .expect("a valid regex");
    prop_oneof![
        // Half of the mutants start from a valid example, so that some still load.
        8 => (prop_oneof![0..EXAMPLES, 0..corpus_len], vec(edit(), 1..5))
            .prop_map(|(base, edits)| PolicyCase::Mutated { base, edits }),
        1 => text.prop_map(PolicyCase::Text),
    ]
}

/// How many of [`corpus`]'s entries, at its start, are the valid examples.
const EXAMPLES: usize = 2;

/// The shipped policies: the examples (valid) and the invalid fixtures.
fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = ["examples", "tests/fixtures/invalid"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).expect("a policy directory"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    // Sorted by path, so `examples/` comes first.
    files.sort();
    assert!(
        files.len() > EXAMPLES
            && files[..EXAMPLES]
                .iter()
                .all(|p| p.starts_with(dir.join("examples")))
    );
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a policy file"))
        .collect()
}

// === seeds ===

fn seeds() -> Vec<(&'static str, String)> {
    let quickstart = sluice_config::QUICKSTART_YAML;
    let laughs = {
        let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!("a{i}: &a{i} [{}]\n", vec![prev; 9].join(", ")),
            );
        }
        s
    };
    let laughs_in_routes = laughs.replace("a9: &a9", "routes: &a9");
    vec![
        ("quickstart as shipped", quickstart.to_owned()),
        (
            "quickstart with CRLF line ends",
            quickstart.replace('\n', "\r\n"),
        ),
        ("quickstart with a BOM", format!("\u{FEFF}{quickstart}")),
        ("quickstart twice", format!("{quickstart}{quickstart}")),
        (
            "quickstart as two documents",
            format!("{quickstart}---\n{quickstart}"),
        ),
        ("nothing", String::new()),
        ("a lone document marker", "---\n".into()),
        ("only a comment", "# nothing here\n".into()),
        ("a scalar document", "just text\n".into()),
        ("a sequence document", "- a\n- b\n".into()),
        ("billion laughs at the top", laughs),
        ("billion laughs under routes", laughs_in_routes),
        (
            "100k-deep flow sequence",
            format!("server: {}", "[".repeat(100_000)),
        ),
        (
            "100k-deep closed flow sequence",
            format!("routes: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "10k-deep block mappings",
            (0..10_000)
                .map(|i| format!("{}a:\n", " ".repeat(i)))
                .collect(),
        ),
        ("an alias to nothing", "providers: *nothing\n".into()),
        ("a recursive merge", "providers: &p\n  <<: *p\n".into()),
        ("a tab for indentation", "server:\n\tthreads: 2\n".into()),
        (
            "a 1 MiB scalar",
            format!("server:\n  listen: {}\n", "9".repeat(1 << 20)),
        ),
        ("a NUL byte", "server:\n  listen: \"\0\"\n".into()),
        (
            "an unterminated quote",
            "server:\n  listen: \"127.0.0.1:8080\n".into(),
        ),
        ("invalid escape", "server: { listen: \"\\ud800\" }\n".into()),
        (
            "u64 overflow",
            "server: { threads: 18446744073709551616 }\n".into(),
        ),
        (
            "negative body size",
            "server: { max_body_bytes: -1 }\n".into(),
        ),
    ]
}

// === runs ===

#[test]
fn policy_loader_seeds() {
    let started = Instant::now();
    let seeds = seeds();
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|(label, text)| check_policy(text).err().map(|e| format!("{label}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The shipped examples must keep loading, not only load consistently.
    for example in corpus().iter().take(EXAMPLES) {
        load_str_with_env(example, ORIGIN, &env).expect("an example loads");
    }
    eprintln!(
        "fuzz policy seeds: {} cases in {:.2?}",
        seeds.len(),
        started.elapsed()
    );
}

#[test]
fn policy_loader_fuzz() {
    let corpus = corpus();
    let (mut cases_cap, mut budget) = (3000u32, Duration::from_secs(10));
    if let Some(secs) = std::env::var("SLUICE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        (cases_cap, budget) = (u32::MAX, Duration::from_secs(secs));
    }
    let defaults = Config::default();
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => RandomState::new().hash_one("policy"),
    };
    eprintln!("fuzz policy: starting with seed {seed}");
    let mut runner = TestRunner::new(Config {
        cases: cases_cap,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..defaults
    });
    let strategy = case(corpus.len());
    let started = Instant::now();
    let mut cases = 0u32;
    while cases < cases_cap && started.elapsed() < budget {
        let tree = strategy.new_tree(&mut runner).expect("an input");
        let result = runner.run_one(tree, |case| {
            check_policy(&case.text(&corpus)).map_err(TestCaseError::fail)
        });
        match result {
            Ok(_) => cases += 1,
            Err(TestError::Fail(why, case)) => panic!(
                "fuzz policy: case {cases} failed (replay with PROPTEST_RNG_SEED={seed}): {why}\n\
                 minimal failing input: {case:?}\ntext:\n{}",
                case.text(&corpus)
            ),
            Err(TestError::Abort(why)) => panic!("fuzz policy: aborted: {why}"),
        }
    }
    eprintln!(
        "fuzz policy: {cases} cases in {:.2?} (budget {cases_cap} cases or {budget:?}, seed {seed}; \
         replay with PROPTEST_RNG_SEED={seed})",
        started.elapsed()
    );
}
