//! The four fault drills end to end against the debug binaries (`sluice-drill`, `mock-llm` and
//! `sluice`), all at once on their own ports: each must meet the goals of issue 9 (detect
//! < 10 s, mitigate < 15 s, client errors < 1 %, unwind < 120 s, no flaps) and leave the
//! incident's steps (opened, action taken, unwound, resolved) in `incidents.jsonl`.
//!
//! Needs the `sluice` binary of the same build next to this package's binaries
//! (`cargo build -p sluice-gateway --bin sluice` first), or all three in `SLUICE_BIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// One drill takes about half a minute; the bound leaves room for a loaded machine.
const DRILL_BOUND: Duration = Duration::from_secs(170);

/// A binary of this build: from `SLUICE_BIN_DIR` when set (as the SDK tests take them), else
/// where cargo put this package's binaries (`sluice` must have been built there too).
fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("SLUICE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_sluice-drill"))
            .parent()
            .expect("a target directory")
            .to_owned(),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p sluice-gateway --bin sluice`",
        path.display()
    );
    path
}

struct Ran {
    scenario: &'static str,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    work: PathBuf,
}

async fn drill(scenario: &'static str, root: &Path) -> Ran {
    let work = root.join(scenario);
    let mut cmd = tokio::process::Command::new(binary("sluice-drill"));
    cmd.arg(scenario)
        .arg("--json")
        .arg("--sluice")
        .arg(binary("sluice"))
        .arg("--mock-llm")
        .arg(binary("mock-llm"))
        .arg("--work-dir")
        .arg(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DRILL_BOUND, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{scenario} ends within {DRILL_BOUND:?}"))
        .expect("sluice-drill runs");
    Ran {
        scenario,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        work,
    }
}

/// The kinds of the rule's events in the incident log, in order.
fn logged(work: &Path, rule: &str) -> Vec<Value> {
    std::fs::read_to_string(work.join("data").join("incidents.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every log line is JSON"))
        .filter(|v| v["rule"] == rule)
        .collect()
}

fn check(ran: &Ran, rule: &str, action: &str) {
    let context = format!(
        "{}: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        ran.scenario, ran.code, ran.stdout, ran.stderr
    );
    let last = ran.stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {context}"));
    assert_eq!(report["scenario"], ran.scenario, "{context}");
    let num = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} measured: {context}"))
    };
    assert!(num("detect_s") < 10.0, "{context}");
    assert!(num("mitigate_s") < 15.0, "{context}");
    assert!(num("mitigate_s") >= num("detect_s"), "{context}");
    assert!(num("client_error_ratio") < 0.01, "{context}");
    let unwind = num("unwind_s");
    assert!((0.0..120.0).contains(&unwind), "{context}");
    assert_eq!(report["flaps"], 0, "{context}");
    assert_eq!(report["pass"], true, "{context}");
    assert_eq!(report["resolved"], true, "{context}");
    assert!(num("requests") > 100.0, "{context}");
    assert_eq!(ran.code, Some(0), "{context}");
    // The human summary comes first.
    assert!(
        ran.stdout.contains(&format!("drill {}: ", ran.scenario)),
        "{context}"
    );

    // The incident log on disk: one incident for the rule, its steps in order, the action the
    // rule names, and the burn behind the opening.
    let events = logged(&ran.work, rule);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let essential: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "probe_result")
        .collect();
    assert_eq!(
        essential,
        ["opened", "action_taken", "unwound", "resolved"],
        "{context}\n{kinds:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["incident"] == events[0]["incident"])
    );
    assert!(events.iter().all(|e| e["action"] == action), "{context}");
    let opened = &events[0];
    assert!(
        !opened["evidence"].as_array().expect("evidence").is_empty(),
        "{context}"
    );
    let taken = events
        .iter()
        .find(|e| e["kind"] == "action_taken")
        .expect("action_taken");
    assert!(taken["applied"].is_object(), "{context}");
    let unwound = events
        .iter()
        .find(|e| e["kind"] == "unwound")
        .expect("unwound");
    assert_eq!(unwound["reason"], "recovered", "{context}");
    let stamps: Vec<u64> = events
        .iter()
        .map(|e| e["at_unix_ms"].as_u64().expect("stamp"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_drills_meet_their_goals_and_log_their_incidents() {
    let root = std::env::temp_dir().join(format!("sluice-drills-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("work dir");
    let (burst, slow, outage, overload) = tokio::join!(
        drill("error-burst", &root),
        drill("slow-ttft", &root),
        drill("outage", &root),
        drill("overload", &root),
    );
    let all = [
        (&burst, "drill-failover", "failover"),
        (&slow, "drill-downgrade", "downgrade_to"),
        (&outage, "drill-stale", "cache_fallback"),
        (&overload, "drill-shed", "shed"),
    ];
    for (ran, rule, action) in all {
        check(ran, rule, action);
    }
    // What each drill's action did, as the clients saw it.
    let report = |ran: &Ran| -> Value {
        serde_json::from_str(ran.stdout.lines().last().unwrap_or_default()).expect("json")
    };
    assert!(
        report(&outage)["stale"].as_u64() > Some(0),
        "{}",
        outage.stdout
    );
    assert!(
        report(&overload)["shed"].as_u64() > Some(0),
        "{}",
        overload.stdout
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn sluice_drill_runs_the_drill_binary_next_to_it() {
    // An unknown drill: `sluice drill` hands over to `sluice-drill`, which names the drills.
    let out = tokio::process::Command::new(binary("sluice"))
        .args(["drill", "flood"])
        .output()
        .await
        .expect("sluice runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error-burst, slow-ttft, outage, overload"),
        "{stderr}"
    );
}
