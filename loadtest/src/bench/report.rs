//! Markdown renderings of run and compare results.

use std::fmt::Write as _;

use super::compare::{CompareReport, headline_latency};
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
        "{load}; {} × {} per target, interleaved; stream share {}; prompts {:?} B; mock ttft {} ms, {} tokens/s; Sluice threads {}, telemetry {}.  ",
        sc.rounds,
        humantime::format_duration(sc.duration),
        sc.stream_share,
        sc.prompt_bytes,
        sc.mock.ttft_ms,
        sc.mock.tokens_per_s,
        c.sluice_threads,
        if c.sluice_telemetry {
            "on (metrics, OTLP spans at head ratio 0.05, access log)"
        } else {
            "off (metrics only)"
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
        "| target | proxy CPU µs/req (per round) | req/s (per round) | p50 ms | p99 ms | added p50 | added p99 | TTFC p50 ms | added TTFT | mock CPU µs/req | peak RSS MB | ok | errors |"
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
            dash(p99 - d99),
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
