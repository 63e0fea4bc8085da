//! Sluice's metrics as a real Prometheus server sees them, the exposition's metadata, and the
//! Grafana dashboard in `deploy/grafana` kept in step with the metric names the code exports.
//!
//! The Prometheus test needs the `prometheus` binary (Debian package `prometheus`, at
//! `/usr/bin/prometheus`, or wherever `SLUICE_TEST_PROMETHEUS` points). It fails, never skips,
//! when the binary is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, TestGateway, chat, sse_data};

/// USD per million tokens; large enough that the expected spend is far above the tolerance.
const CHEAP: (f64, f64) = (1000.0, 3000.0);
const PRICEY: (f64, f64) = (5000.0, 15000.0);

fn policy() -> String {
    format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  cheap: {{ provider: up, upstream_model: cheap-up, pricing: {{ input: {}, output: {} }} }}\n  pricey: {{ provider: up, upstream_model: pricey-up, pricing: {{ input: {}, output: {} }} }}\n",
        CHEAP.0, CHEAP.1, PRICEY.0, PRICEY.1
    )
}

fn price(model: &str) -> (f64, f64) {
    if model == "pricey" { PRICEY } else { CHEAP }
}

/// A chat body whose prompt length (and so its token counts) depends on `words`.
fn chat_body(model: &str, stream: bool, words: usize) -> String {
    let mut v: Value = serde_json::from_str(&chat(model, stream)).expect("json");
    let prompt = vec!["word"; words].join(" ");
    v["messages"] = serde_json::json!([{"role": "user", "content": prompt}]);
    if stream {
        v["stream_options"] = serde_json::json!({"include_usage": true});
    }
    v.to_string()
}

/// Token counts the client was told about, per catalog model.
#[derive(Debug, Default, Clone, Copy)]
struct Told {
    input: u64,
    output: u64,
}

fn add_usage(told: &mut BTreeMap<String, Told>, model: &str, usage: &Value) {
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("usage number: {usage}"))
    };
    let t = told.entry(model.to_owned()).or_default();
    t.input += n(&usage["prompt_tokens"]);
    t.output += n(&usage["completion_tokens"]);
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
            == 0,
        "the mock reports no cached tokens: {usage}"
    );
}

fn expected_cost(model: &str, t: Told) -> f64 {
    let (input, output) = price(model);
    (t.input as f64 * input + t.output as f64 * output) / 1_000_000.0
}

/// Sends 3 non-stream and 2 stream chats (with `include_usage`) and one request for a model
/// nobody serves; returns the usage each answer carried, per model.
async fn send_known_traffic(gw: &TestGateway) -> BTreeMap<String, Told> {
    let mut told = BTreeMap::new();
    for (model, words) in [("cheap", 3), ("cheap", 11), ("pricey", 7)] {
        let resp = gw
            .post("/v1/chat/completions", chat_body(model, false, words))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{model}");
        let v: Value = resp.json().await.expect("json");
        assert!(v["usage"].is_object(), "no usage: {v}");
        add_usage(&mut told, model, &v["usage"]);
    }
    for (model, words) in [("cheap", 5), ("pricey", 13)] {
        let resp = gw
            .post("/v1/chat/completions", chat_body(model, true, words))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{model} stream");
        let events = sse_data(resp).await;
        let usage: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|v| v["usage"].is_object())
            .map(|v| v["usage"].clone())
            .collect();
        assert_eq!(usage.len(), 1, "one usage chunk: {events:?}");
        add_usage(&mut told, model, &usage[0]);
    }
    let resp = gw
        .post("/v1/chat/completions", chat_body("no-such-model", false, 2))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    told
}

/// A scrape once all 6 requests of [`send_known_traffic`] are counted: the gateway records a
/// request after its response went out, a moment after the client saw it end.
async fn settled_scrape(gw: &TestGateway) -> String {
    let total = |scrape: &str| -> f64 {
        scrape
            .lines()
            .filter(|l| l.starts_with("sluice_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let scrape = gw.metrics_when(|m| total(m) == 6.0).await;
    assert_eq!(
        total(&scrape),
        6.0,
        "sluice_requests_total never reached 6:\n{scrape}"
    );
    scrape
}

// === a Prometheus server ===

struct Prometheus {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("SLUICE_TEST_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    assert!(
        path.is_file(),
        "the Prometheus server binary is missing at {}: this test needs a real Prometheus. \
         Install it with `apt-get install -y prometheus` (Debian/Ubuntu; do not start the \
         service) or point SLUICE_TEST_PROMETHEUS at a `prometheus` binary",
        path.display()
    );
    path
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second.
    fn start(target: &str) -> Self {
        let binary = prometheus_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = common::free_port();
        let config = dir.path().join("prom.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prom.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Self {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /api/v1/...`; `None` while Prometheus is not answering yet.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let resp = reqwest::Client::new()
            .get(self.url(path))
            .query(params)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// An instant query's result as (labels, value) pairs.
    async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let v = self
            .api("/api/v1/query", &[("query", promql)])
            .await
            .unwrap_or_else(|| panic!("query {promql}: no answer; log:\n{}", self.log_text()));
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {promql}: {v}"))
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("query {promql}: sample {s}"));
                (labels, value)
            })
            .collect()
    }

    /// The single value of a query that aggregates to one series.
    async fn scalar(&self, promql: &str) -> f64 {
        let r = self.query(promql).await;
        assert_eq!(r.len(), 1, "{promql}: expected one series, got {r:?}");
        r[0].1
    }

    /// `sum by (label) (...)` as a map.
    async fn by(&self, label: &str, promql: &str) -> BTreeMap<String, f64> {
        self.query(&format!("sum by ({label}) ({promql})"))
            .await
            .into_iter()
            .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v))
            .collect()
    }

    /// Waits until the target is up and `ready` (a query) returns `want`.
    async fn wait_for(&self, ready: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        loop {
            if let Some(t) = self.api("/api/v1/targets", &[]).await {
                let up = t["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t["health"] == "up"));
                last = t.to_string();
                if up && let Some(v) = self.api("/api/v1/query", &[("query", ready)]).await {
                    last = v.to_string();
                    let got = v["data"]["result"][0]["value"][1]
                        .as_str()
                        .and_then(|x| x.parse::<f64>().ok());
                    if got == Some(want) {
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not scrape the gateway within 20 s (waiting for {ready} == {want}); \
                 last answer: {last}\nprometheus log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..500 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            #[expect(clippy::disallowed_methods, reason = "Drop cannot await")]
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9,
        "{what}: Prometheus has {got}, expected {want}"
    );
}

#[tokio::test]
async fn a_real_prometheus_scrapes_exact_counts_tokens_and_cost() {
    let binary = prometheus_binary();
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy(), &mock).await;
    let told = send_known_traffic(&gw).await;

    let mut prom = Prometheus::start(&format!("127.0.0.1:{}", gw.admin_port));
    prom.wait_for("sum(sluice_requests_total)", 6.0).await;
    let version = prom
        .api("/api/v1/status/buildinfo", &[])
        .await
        .map(|v| v["data"]["version"].to_string())
        .unwrap_or_default();
    eprintln!("Prometheus {version} at {}", binary.display());

    assert_eq!(prom.scalar(r#"up{job="sluice"}"#).await, 1.0);

    // Every request once, by outcome.
    let outcomes = prom.by("outcome", "sluice_requests_total").await;
    assert_eq!(
        outcomes,
        BTreeMap::from([("client_error".to_owned(), 1.0), ("ok".to_owned(), 5.0)]),
    );
    let models = prom
        .by("model", r#"sluice_requests_total{outcome="ok"}"#)
        .await;
    assert_eq!(
        models,
        BTreeMap::from([("cheap".to_owned(), 3.0), ("pricey".to_owned(), 2.0)]),
    );
    assert_eq!(
        prom.by("tenant", r#"sluice_requests_total{outcome="ok"}"#)
            .await,
        BTreeMap::from([("test".to_owned(), 5.0)]),
    );

    // Tokens: exactly what the answers told the client, per model and in total.
    let input = prom
        .by("model", r#"sluice_usage_tokens_total{token_type="input"}"#)
        .await;
    let output = prom
        .by("model", r#"sluice_usage_tokens_total{token_type="output"}"#)
        .await;
    for (model, t) in &told {
        assert_eq!(input.get(model), Some(&(t.input as f64)), "{model} input");
        assert_eq!(
            output.get(model),
            Some(&(t.output as f64)),
            "{model} output"
        );
    }
    let told_input: u64 = told.values().map(|t| t.input).sum();
    let told_output: u64 = told.values().map(|t| t.output).sum();
    assert!(told_input > 0 && told_output > 0, "{told:?}");
    assert_eq!(
        prom.scalar(r#"sum(sluice_usage_tokens_total{token_type="input"})"#)
            .await,
        told_input as f64
    );
    assert_eq!(
        prom.scalar(r#"sum(sluice_usage_tokens_total{token_type="output"})"#)
            .await,
        told_output as f64
    );
    assert_eq!(
        prom.by("usage_source", "sluice_usage_tokens_total")
            .await
            .len(),
        1,
        "the mock reports usage: every count is the provider's"
    );

    // Spend from the configured prices.
    let cost = prom.by("model", "sluice_cost_usd_total").await;
    let mut total = 0.0;
    for (model, t) in &told {
        let want = expected_cost(model, *t);
        total += want;
        close(
            cost.get(model).copied().unwrap_or(f64::NAN),
            want,
            &format!("{model} cost"),
        );
    }
    assert!(total > 0.01, "expected spend {total}");
    close(
        prom.scalar("sum(sluice_cost_usd_total)").await,
        total,
        "total cost",
    );

    // Histograms: every routed chat request once; time to first chunk for the streams.
    assert_eq!(
        prom.scalar("sum(gen_ai_client_operation_duration_seconds_count)")
            .await,
        5.0
    );
    assert_eq!(
        prom.scalar("sum(gen_ai_client_operation_time_to_first_chunk_seconds_count)")
            .await,
        2.0
    );
    assert_eq!(prom.scalar("sum(sluice_overhead_seconds_count)").await, 5.0);
    assert_eq!(
        prom.scalar(r#"sum(gen_ai_client_token_usage_tokens_count{gen_ai_token_type="input"})"#)
            .await,
        5.0
    );
    assert_eq!(
        prom.scalar(r#"sum(gen_ai_client_token_usage_tokens_sum{gen_ai_token_type="input"})"#)
            .await,
        told_input as f64
    );
    assert_eq!(
        prom.by("outcome", "sluice_upstream_attempts_total").await,
        BTreeMap::from([("ok".to_owned(), 5.0)]),
    );

    // Every dashboard expression parses and evaluates on this Prometheus.
    for expr in dashboard_exprs() {
        let concrete = expr
            .replace("$__rate_interval", "1m")
            .replace("$route", ".*")
            .replace("$model", ".*")
            .replace("$tenant", ".*");
        let v = prom
            .api("/api/v1/query", &[("query", &concrete)])
            .await
            .expect("query");
        assert_eq!(
            v["status"], "success",
            "dashboard expression rejected by Prometheus: {expr}\n{v}"
        );
    }

    prom.stop();
    // Prometheus logs a line when it shuts down cleanly.
    assert!(
        prom.log_text().contains("See you next time"),
        "Prometheus did not shut down on SIGTERM:\n{}",
        prom.log_text()
    );
}

// === the exposition itself ===

/// Families (`# TYPE` names) with their type, help and unit.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: Option<String>,
    unit: Option<String>,
}

fn families(scrape: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in scrape.lines() {
        let mut parts = line.splitn(4, ' ');
        if parts.next() != Some("#") {
            continue;
        }
        let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let rest = parts.next().unwrap_or_default().to_owned();
        let f = out.entry(name.to_owned()).or_default();
        match what {
            "TYPE" => f.kind = rest,
            "HELP" => f.help = Some(rest),
            "UNIT" => f.unit = Some(rest),
            _ => {}
        }
    }
    out
}

/// The metric name of a sample line.
fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

/// The sample names a family of this type produces.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total"), format!("{family}_created")],
        "histogram" => ["_bucket", "_count", "_sum", "_created"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

#[tokio::test]
async fn every_family_has_help_and_every_unit_is_declared() {
    // Counts of things with no unit to declare (requests, attempts, spans).
    const UNITLESS: [&str; 0] = [];
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&policy(), &mock).await;
    send_known_traffic(&gw).await;
    let scrape = settled_scrape(&gw).await;
    assert!(
        scrape.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let fams = families(&scrape);
    assert!(!fams.is_empty(), "no families:\n{scrape}");
    for (name, f) in &fams {
        assert!(!f.kind.is_empty(), "{name}: no # TYPE line");
        assert!(
            f.help.as_deref().is_some_and(|h| !h.trim().is_empty()),
            "{name}: no (or an empty) # HELP line"
        );
        // A declared unit must end the name, and a name that ends in a unit must declare it.
        if let Some(unit) = &f.unit {
            assert!(
                name.ends_with(&format!("_{unit}")),
                "{name}: # UNIT {unit} is not the name's suffix"
            );
        }
        let suffix_unit = ["seconds", "bytes", "usd", "tokens", "ratio"]
            .into_iter()
            .find(|u| name.ends_with(&format!("_{u}")));
        if f.unit.is_none() && !UNITLESS.contains(&name.as_str()) {
            assert_eq!(
                suffix_unit, None,
                "{name}: the name ends in a unit but there is no # UNIT line"
            );
        }
    }
    // The families the code defines with units.
    for (name, unit) in [
        ("gen_ai_client_operation_duration_seconds", "seconds"),
        ("gen_ai_client_token_usage_tokens", "tokens"),
        (
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "seconds",
        ),
        (
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "seconds",
        ),
        ("sluice_cost_usd", "usd"),
        ("sluice_overhead_seconds", "seconds"),
    ] {
        let f = fams
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{scrape}"));
        assert_eq!(f.unit.as_deref(), Some(unit), "{name}");
    }
    // Every sample belongs to a declared family.
    let known: BTreeSet<String> = fams
        .iter()
        .flat_map(|(n, f)| sample_names(n, &f.kind))
        .collect();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            known.contains(sample_name(line)),
            "sample of an undeclared family: {line}"
        );
    }
}

// === the Grafana dashboard ===

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/sluice.json")
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `expr` of every panel target (rows' nested panels included).
fn dashboard_exprs() -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_owned());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard()["panels"], &mut out);
    out
}

/// The metric selectors of the templating variables' `label_values(metric{...}, label)`.
fn dashboard_variable_metrics() -> Vec<String> {
    dashboard()["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["definition"].as_str())
        .filter_map(|q| q.strip_prefix("label_values("))
        .map(|q| {
            q.split(['{', ',', ')'])
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

/// The metric names a PromQL expression selects: identifiers left after dropping strings,
/// label matchers, ranges, grouping clauses, function calls and keywords.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    // Operators and aggregations (which may be followed by `by (...)` instead of `(`).
    const KEYWORDS: [&str; 20] = [
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "group_left",
        "group_right",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: [&str; 4] = ["by", "without", "on", "ignoring"];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // Skips a bracketed block opening at `i`, strings inside included.
    let skip_block = |i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut j = i;
        let mut in_str = false;
        while j < chars.len() {
            let c = chars[j];
            if in_str {
                if c == '\\' {
                    j += 1;
                } else if c == '"' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_block(i, '{', '}');
        } else if c == '[' {
            i = skip_block(i, '[', ']');
        } else if c == '"' {
            i = skip_block(i, '"', '"');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            let followed_by_paren = chars.get(next) == Some(&'(');
            if GROUPING.contains(&ident.as_str()) && followed_by_paren {
                i = skip_block(next, '(', ')');
            } else if followed_by_paren || KEYWORDS.contains(&ident.as_str()) {
                // A function or aggregation, or an operator keyword.
            } else {
                out.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn promql_metric_extraction() {
    assert_eq!(
        promql_metrics(
            r#"histogram_quantile(0.95, sum by (le, route) (rate(a_b_bucket{route=~"$route", x="{y}"}[$__rate_interval]))) / on (route) sum(c_total) * 3600"#
        ),
        BTreeSet::from(["a_b_bucket".to_owned(), "c_total".to_owned()])
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_exists_in_a_live_scrape() {
    let mock = common::mock_llm().await;
    // A caching route and a key limit, so their families have samples too.
    let body = format!(
        "{}routes:\n  - name: cached\n    match: {{ model: c }}\n    targets: [ {{ model: cheap }} ]\n    cache: {{ ttl: 1m }}\n",
        policy()
    );
    let gw = TestGateway::start_full(&body, &mock, "", ", limits: { rpm: 6 }").await;
    send_known_traffic(&gw).await;
    settled_scrape(&gw).await;
    for status in [200, 429] {
        let resp = gw
            .post("/v1/chat/completions", chat_body("c", false, 2))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), status);
    }
    let scrape = gw
        .metrics_when(|m| {
            m.contains("sluice_ratelimited_total{") && m.contains("sluice_cache_requests_total{")
        })
        .await;

    let declared: BTreeSet<String> = families(&scrape)
        .iter()
        .flat_map(|(n, f)| sample_names(n, &f.kind))
        .collect();
    let present: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(sample_name)
        .collect();

    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = promql_metrics(expr);
        assert!(!names.is_empty(), "no metric found in `{expr}`");
        for n in &names {
            assert!(
                n.starts_with("sluice_") || n.starts_with("gen_ai_"),
                "`{n}` in `{expr}` is not a Sluice metric"
            );
        }
        used.extend(names);
    }
    used.extend(dashboard_variable_metrics());

    for name in &used {
        assert!(
            declared.contains(name),
            "the dashboard queries `{name}`, which the gateway does not export; exported \
             sample names: {declared:?}"
        );
        assert!(
            present.contains(name.as_str()),
            "the dashboard queries `{name}`, which has no series after traffic:\n{scrape}"
        );
    }
    // Each panel the brief promises is there.
    for metric in [
        "sluice_requests_total",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "sluice_usage_tokens_total",
        "sluice_cost_usd_total",
        "sluice_overhead_seconds_bucket",
        "sluice_upstream_attempts_total",
        "sluice_spans_total",
    ] {
        assert!(used.contains(metric), "no dashboard panel uses {metric}");
    }
}
