//! Markdown renderings of run and compare results.

use std::fmt::Write as _;

use std::path::Path;

use super::compare::{BaselineDelta, CompareReport, TargetReport, headline_latency};
use super::engine::RunReport;

fn errors(r: &RunReport) -> String {
    if r.counts.errors.is_empty() {
        "0".into()
    } else {
        r.counts
            .errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One run as a small markdown table.
pub fn run_markdown(name: &str, r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| target | ok | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | stream TTFB p50 | TTFC p50 | TTFC p99 | TTLB p50 | chunks/stream | send lag p99 ms | errors |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(15));
    let l = &r.latency;
    let _ = writeln!(
        s,
        "| {name} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.3} | {} |",
        r.counts.ok,
        r.rps,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        r.stream_ttfb.p50_ms,
        r.stream_ttfc.p50_ms,
        r.stream_ttfc.p99_ms,
        r.stream_ttlb.p50_ms,
        r.chunks_per_stream,
        r.send_lag.p99_ms,
        errors(r),
    );
    s
}

fn range(values: impl Iterator<Item = f64>, decimals: usize) -> String {
    let v: Vec<f64> = values.collect();
    if v.len() < 2 {
        return String::new();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" ({lo:.decimals$}–{hi:.decimals$})")
}

/// This target's p99 less direct's in the same round, lowest to highest: one bad round (the
/// machine's, not the proxy's, when every target has one) shows here and not in the others.
fn added_per_round(t: &TargetReport, direct: &TargetReport) -> String {
    let added: Vec<f64> = t
        .rounds
        .iter()
        .filter_map(|r| {
            let d = direct.rounds.iter().find(|d| d.round == r.round)?;
            Some(r.p99_ms - d.p99_ms)
        })
        .collect();
    if added.len() < 2 {
        return String::new();
    }
    let lo = added.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = added.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" ({lo:+.3} … {hi:+.3})")
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.1} %"))
}

/// The one line that says how Sluice differs from the baseline build.
pub fn baseline_line(
    d: &BaselineDelta,
    sluice: &TargetReport,
    baseline: &TargetReport,
    binary: Option<&Path>,
) -> String {
    let rounds: Vec<f64> = d
        .cpu_change_pct_per_round
        .iter()
        .flatten()
        .copied()
        .collect();
    let per_round = if rounds.len() < 2 {
        String::new()
    } else {
        let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("; per round {lo:+.1} … {hi:+.1} %")
    };
    format!(
        "Sluice vs baseline{}: CPU per request {} ({:.1} vs {:.1} µs{per_round}), req/s {}, p50 {:+.3} ms, p99 {:+.3} ms, peak RSS {:.1} vs {:.1} MB.",
        binary.map_or_else(String::new, |p| format!(" (`{}`)", p.display())),
        pct(d.cpu_us_per_req_change_pct),
        sluice.proxy_cpu_us_per_req,
        baseline.proxy_cpu_us_per_req,
        pct(d.rps_change_pct),
        d.p50_ms_delta,
        d.p99_ms_delta,
        sluice.peak_rss_mb,
        baseline.peak_rss_mb,
    )
}

/// A compare report as markdown: figures, ratios, goals.
pub fn compare_markdown(c: &CompareReport) -> String {
    let mut s = String::new();
    let sc = &c.scenario;
    let load = match sc.mode {
        super::scenario::ModeKind::Open => format!(
            "open loop {} req/s over {} connections",
            sc.rate, sc.connections
        ),
        super::scenario::ModeKind::Closed => format!("closed loop, {} in flight", sc.concurrency),
    };
    let _ = writeln!(s, "### `{}` — {}\n", sc.name, sc.description);
    let _ = writeln!(
        s,
        "{load}; {} × {} per target, interleaved; stream share {}; prompts {:?} B; mock ttft {} ms, {} tokens/s{}; Sluice threads {}, telemetry {}{}.  ",
        sc.rounds,
        humantime::format_duration(sc.duration),
        sc.stream_share,
        sc.prompt_bytes,
        sc.mock.ttft_ms,
        sc.mock.tokens_per_s,
        if sc.mock.burst {
            ", each stream in one write"
        } else {
            ""
        },
        c.sluice_threads,
        if c.sluice_telemetry {
            format!(
                "on (metrics, OTLP spans at head ratio 0.05 to a receiver on its own thread — {} received —, access log)",
                c.otlp_spans_received
            )
        } else {
            "off (metrics only)".to_owned()
        },
        match (c.sluice_slos, c.sluice_anthropic) {
            (true, true) =>
                "; sluice's route has SLOs and a remediation rule, and sluice reaches mock-llm in Anthropic's dialect (the baseline: neither)",
            (true, false) =>
                "; sluice's route has SLOs and a remediation rule (the baseline's has none)",
            (false, true) =>
                "; sluice reaches mock-llm in Anthropic's dialect (translated), the baseline in OpenAI's",
            (false, false) => "",
        }
    );
    let m = &c.machine;
    let _ = writeln!(
        s,
        "Machine: {} CPUs ({}), {} MB, Linux {}, load average at start {}.\n",
        m.cpus, m.cpu_model, m.mem_mb, m.kernel, m.loadavg_at_start
    );
    let direct = c.targets.iter().find(|t| t.name == "direct");
    let (d50, d99) = direct.map_or((0.0, 0.0), |d| headline_latency(&d.run));
    let dttfc = direct.map_or(0.0, |d| d.run.stream_ttfc.p50_ms);
    let _ = writeln!(
        s,
        "| target | proxy CPU µs/req (per round) | req/s (per round) | p50 ms | p99 ms | added p50 | added p99 (per round) | TTFC p50 ms | added TTFT | mock CPU µs/req | peak RSS MB | ok | errors |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(13));
    for t in &c.targets {
        let (p50, p99) = headline_latency(&t.run);
        let is_direct = t.name == "direct";
        // "Added" needs a direct baseline in the same run.
        let dash = |v: f64| {
            if is_direct || direct.is_none() {
                "—".to_owned()
            } else {
                format!("{v:+.3}")
            }
        };
        let added_p99 = match direct {
            Some(d) if !is_direct => format!("{:+.3}{}", p99 - d99, added_per_round(t, d)),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} | {}{} | {:.0}{} | {:.3} | {:.3} | {} | {} | {:.3} | {} | {:.1} | {} | {} | {} |",
            t.name,
            if is_direct {
                "—".to_owned()
            } else {
                format!("{:.1}", t.proxy_cpu_us_per_req)
            },
            if is_direct {
                String::new()
            } else {
                range(t.rounds.iter().map(|r| r.cpu_us_per_req), 1)
            },
            t.run.rps,
            range(t.rounds.iter().map(|r| r.rps), 0),
            p50,
            p99,
            dash(p50 - d50),
            added_p99,
            t.run.stream_ttfc.p50_ms,
            if t.run.stream_ttfc.count == 0 {
                "—".to_owned()
            } else {
                dash(t.run.stream_ttfc.p50_ms - dttfc)
            },
            t.mock_cpu_us_per_req,
            if is_direct {
                "—".to_owned()
            } else {
                format!("{:.1}", t.peak_rss_mb)
            },
            t.run.counts.ok,
            errors(&t.run),
        );
    }
    let nginx = c.targets.iter().find(|t| t.name == "nginx");
    let sluice = c.targets.iter().find(|t| t.name == "sluice");
    if let (Some(n), Some(sl)) = (nginx, sluice) {
        let _ = writeln!(
            s,
            "\nSluice / nginx: CPU per request {:.2}×, req/s {:.2}×, peak RSS {:.1} vs {:.1} MB.",
            sl.proxy_cpu_us_per_req / n.proxy_cpu_us_per_req.max(1e-9),
            sl.run.rps / n.run.rps.max(1e-9),
            sl.peak_rss_mb,
            n.peak_rss_mb
        );
    }
    if let (Some(d), Some(sl), Some(b)) = (
        &c.vs_baseline,
        sluice,
        c.targets.iter().find(|t| t.name == "baseline"),
    ) {
        s.push('\n');
        s.push_str(&baseline_line(d, sl, b, c.baseline_binary.as_deref()));
        s.push('\n');
    }
    if !c.goals.is_empty() {
        let _ = writeln!(s, "\n| goal | bound | measured | |\n|---|---|---|---|");
        for g in &c.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.goal,
                g.bound,
                g.measured,
                if g.met { "met" } else { "**not met**" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::bench::compare::{Machine, RoundFigure, vs_baseline};
    use crate::bench::engine::RunResult;
    use crate::bench::scenario::Scenario;

    /// A target whose rounds had these CPU figures (µs/request), 1000 requests each at `ms`.
    fn target(name: &str, cpu_per_round: &[f64], ms: u64, rss_mb: f64) -> TargetReport {
        let mut r = RunResult {
            elapsed: Duration::from_secs(cpu_per_round.len() as u64),
            ..RunResult::default()
        };
        let n = 1000 * cpu_per_round.len() as u64;
        r.counts.sent = n;
        r.counts.ok = n;
        for _ in 0..n {
            r.hists.latency.record(Duration::from_millis(ms));
        }
        let mean = cpu_per_round.iter().sum::<f64>() / cpu_per_round.len() as f64;
        TargetReport {
            name: name.to_owned(),
            run: r.report(),
            proxy_cpu_s: mean * n as f64 / 1e6,
            proxy_cpu_us_per_req: mean,
            mock_cpu_us_per_req: 5.0,
            peak_rss_mb: rss_mb,
            rounds: cpu_per_round
                .iter()
                .enumerate()
                .map(|(i, &cpu)| RoundFigure {
                    round: i as u32 + 1,
                    rps: 1000.0,
                    cpu_us_per_req: cpu,
                    p50_ms: ms as f64,
                    p99_ms: ms as f64,
                })
                .collect(),
        }
    }

    fn report(targets: Vec<TargetReport>, baseline: Option<&str>) -> CompareReport {
        let scenario = Scenario::parse(
            "name: t\ndescription: d\nmode: closed\nduration: 1s\nmax_requests: 9\nrounds: 3\nmock: { burst: true }\n",
        )
        .unwrap();
        let get = |name: &str| targets.iter().find(|t| t.name == name);
        let vs = match (get("sluice"), get("baseline")) {
            (Some(s), Some(b)) => Some(vs_baseline(s, b)),
            _ => None,
        };
        CompareReport {
            scenario,
            machine: Machine {
                cpus: 2,
                cpu_model: "test cpu".into(),
                mem_mb: 1024,
                kernel: "6.1".into(),
                loadavg_at_start: "0.00 0.00 0.00".into(),
            },
            started_unix: 0,
            sluice_threads: 2,
            sluice_telemetry: false,
            otlp_spans_received: 0,
            sluice_slos: false,
            sluice_anthropic: false,
            targets,
            goals: Vec::new(),
            rss_series: Vec::new(),
            baseline_binary: baseline.map(PathBuf::from),
            vs_baseline: vs,
        }
    }

    #[test]
    fn compare_markdown_with_a_baseline_has_its_row_and_the_change_line() {
        let c = report(
            vec![
                target("direct", &[0.0, 0.0, 0.0], 1, 0.0),
                target("sluice", &[44.0, 42.0, 46.0], 3, 20.0),
                target("baseline", &[40.0, 40.0, 40.0], 2, 18.5),
            ],
            Some("/tmp/sluice-main"),
        );
        let md = compare_markdown(&c);
        // HDR buckets make 2 ms and 3 ms read back a hair off: take the figures as recorded.
        let p50 = |name: &str| {
            headline_latency(&c.targets.iter().find(|t| t.name == name).unwrap().run).0
        };
        let row = md
            .lines()
            .find(|l| l.starts_with("| baseline |"))
            .expect("a baseline row");
        // Its CPU with the per-round range, its added latency over direct, its RSS.
        assert!(
            row.starts_with("| baseline | 40.0 (40.0–40.0) | 1000 (1000–1000) |"),
            "{row}"
        );
        assert!(
            row.contains(&format!("{:+.3}", p50("baseline") - p50("direct"))),
            "{row}"
        );
        assert!(row.contains("| 18.5 |"), "{row}");
        // Its added p99 per round: each of its rounds less direct's same round.
        assert!(row.contains(" (+1.000 … +1.000) |"), "{row}");
        let line = md
            .lines()
            .find(|l| l.starts_with("Sluice vs baseline"))
            .expect("the change line");
        let dp50 = p50("sluice") - p50("baseline");
        assert_eq!(
            line,
            format!(
                "Sluice vs baseline (`/tmp/sluice-main`): CPU per request +10.0 % (44.0 vs 40.0 \
                 µs; per round +5.0 … +15.0 %), req/s +0.0 %, p50 {dp50:+.3} ms, p99 {dp50:+.3} \
                 ms, peak RSS 20.0 vs 18.5 MB."
            )
        );
        assert!(md.contains("each stream in one write"));
        // And in the JSON.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["baseline_binary"], "/tmp/sluice-main");
        let cpu = json["vs_baseline"]["cpu_us_per_req_change_pct"]
            .as_f64()
            .unwrap();
        assert!((cpu - 10.0).abs() < 1e-9, "{cpu}");
        assert_eq!(json["targets"][2]["name"], "baseline");
        assert_eq!(json["targets"][2]["proxy_cpu_us_per_req"], 40.0);
    }

    #[test]
    fn compare_markdown_without_a_baseline_is_unchanged() {
        let c = report(
            vec![
                target("direct", &[0.0, 0.0, 0.0], 1, 0.0),
                target("sluice", &[44.0, 42.0, 46.0], 3, 20.0),
            ],
            None,
        );
        let md = compare_markdown(&c);
        assert!(!md.contains("baseline"), "{md}");
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("baseline_binary").is_none());
        assert!(json.get("vs_baseline").is_none());
    }

    #[test]
    fn a_baseline_without_cpu_ticks_says_so() {
        let sluice = target("sluice", &[10.0], 1, 1.0);
        let baseline = target("baseline", &[0.0], 1, 1.0);
        let d = vs_baseline(&sluice, &baseline);
        assert_eq!(d.cpu_us_per_req_change_pct, None);
        let line = baseline_line(&d, &sluice, &baseline, None);
        assert!(
            line.starts_with(
                "Sluice vs baseline: CPU per request n/a (10.0 vs 0.0 µs), req/s +0.0 %"
            ),
            "{line}"
        );
    }
}
