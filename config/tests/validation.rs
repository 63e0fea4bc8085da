//! Golden tests: every `tests/fixtures/invalid/NAME.yaml` must fail with exactly the diagnostics
//! in `NAME.expected` (one `Display` line each), and the shipped examples must load.
//!
//! To regenerate the `.expected` files after an intended change of wording, run with
//! `SLUICE_BLESS=1` and review the diff; a blessing run always fails, so only a run without the
//! variable can pass. A fixture that loads without errors fails the test whether or not
//! blessing is on, and is never blessed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_config::{
    Diagnostic, Error, KeepRule, ModelKind, OtlpConfig, OtlpProtocol, ProviderKind, RedactRule,
    RetryOn, SampleConfig, TelemetryConfig, load_file, load_str_with_env,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The fixed environment for the golden files: one key is set.
fn fixed_env(name: &str) -> Option<String> {
    (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

#[test]
fn invalid_fixtures_report_exactly_the_expected_diagnostics() {
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "only {} invalid fixtures", names.len());

    let mut failures = Vec::new();
    let mut rewritten = Vec::new();
    for yaml in &names {
        let file_name = yaml
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let src = std::fs::read_to_string(yaml).expect("read fixture");
        let got = match load_str_with_env(&src, file_name, &fixed_env) {
            Ok(_) => {
                // Never blessed: a fixture under invalid/ that loads proves nothing.
                failures.push(format!("{file_name}: loaded without errors"));
                continue;
            }
            Err(Error::Invalid {
                origin,
                diagnostics,
            }) => {
                assert_eq!(origin, file_name);
                render(&diagnostics)
            }
            Err(other) => format!("<unexpected error: {other}>\n"),
        };
        let expected_path = yaml.with_extension("expected");
        if bless {
            // Blessing never passes: only a run without it can, after the diff was read.
            if std::fs::read_to_string(&expected_path).ok().as_deref() != Some(got.as_str()) {
                std::fs::write(&expected_path, &got).expect("write .expected");
                rewritten.push(file_name.to_owned());
            }
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != expected {
            failures.push(format!(
                "{file_name}\n--- expected\n{expected}--- got\n{got}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        !bless,
        "SLUICE_BLESS: rewrote {} .expected file(s) {rewritten:?}; review the diff and run \
         again without SLUICE_BLESS",
        rewritten.len()
    );
}

#[test]
fn several_problems_are_all_reported() {
    let src = std::fs::read_to_string(fixtures().join("many_problems.yaml")).expect("fixture");
    let Err(Error::Invalid { diagnostics, .. }) =
        load_str_with_env(&src, "many_problems.yaml", &fixed_env)
    else {
        panic!("many_problems.yaml must be invalid");
    };
    assert!(diagnostics.len() >= 8, "{}", render(&diagnostics));
    for path in [
        "server.threads",
        "providers.openai.base_url",
        "models.gpt-4o.provider",
        "routes[0].targets[0].model",
        "keys[0].key_sha256",
    ] {
        assert!(
            diagnostics.iter().any(|d| d.path == path),
            "no diagnostic at {path}:\n{}",
            render(&diagnostics)
        );
    }
}

#[test]
fn quickstart_loads_without_warnings() {
    let loaded = load_str_with_env(sluice_config::QUICKSTART_YAML, "quickstart.yaml", &no_env)
        .expect("quickstart is valid");
    assert_eq!(loaded.warnings, vec![]);
    let c = &loaded.config;
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(
        c.models.keys().collect::<Vec<_>>(),
        ["gpt-4o-mini", "mock-chat", "mock-embed", "mock-judge"]
    );
    assert_eq!(c.models["gpt-4o-mini"].upstream_model, "mock-1");
    assert_eq!(c.models["mock-embed"].kind, ModelKind::Embedding);
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].models, ["gpt-4o-mini"]);
    assert_eq!(c.routes[0].targets[0].model, "gpt-4o-mini");
    assert_eq!(c.routes[0].fallbacks, ["mock-chat"]);
    assert_eq!(c.telemetry.otlp, None, "the quickstart exports no spans");
    assert_eq!(c.keys[0].name, "demo");
    assert_eq!(c.keys[0].tenant, "demo");
    // `printf %s sk-sluice-demo | sha256sum`
    assert_eq!(c.keys[0].key_sha256[..4], [0x1c, 0x59, 0x08, 0x39]);
}

#[test]
fn quickstart_file_matches_the_embedded_copy_and_loads_from_disk() {
    let path = examples().join("quickstart.yaml");
    let on_disk = std::fs::read_to_string(&path).expect("read quickstart");
    assert_eq!(on_disk, sluice_config::QUICKSTART_YAML);
    load_file(&path).expect("quickstart loads through load_file");
}

#[test]
fn openai_example_without_the_key_warns_exactly_once() {
    let src = std::fs::read_to_string(examples().join("openai.yaml")).expect("read example");
    let loaded = load_str_with_env(&src, "openai.yaml", &no_env).expect("openai.yaml is valid");
    assert_eq!(
        render(&loaded.warnings),
        "openai.yaml:13: providers.openai.api_key_env: environment variable OPENAI_API_KEY is not \
         set; provider `openai` will answer 503 until it is\n"
    );
    let ProviderKind::OpenAi {
        base_url, api_key, ..
    } = &loaded.config.providers["openai"].kind
    else {
        panic!("openai provider has kind openai");
    };
    assert!(api_key.is_none());
    assert_eq!(base_url.to_string(), "https://api.openai.com/v1");
    assert_eq!(loaded.config.routes[0].fallbacks, ["gpt-4o-mini"]);
    let mini = loaded.config.models["gpt-4o-mini"].pricing.expect("priced");
    assert_eq!(
        (mini.input, mini.output, mini.cached_input),
        (0.15, 0.6, Some(0.075))
    );
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let src = std::fs::read_to_string(examples().join("openai.yaml")).expect("read example");
    let loaded = load_str_with_env(&src, "openai.yaml", &|_| Some(String::new()))
        .expect("openai.yaml is valid");
    assert_eq!(loaded.warnings.len(), 1);
}

#[test]
fn the_secret_never_shows_in_debug_output() {
    const CANARY: &str = "sk-CANARY-7f3a9c1e55d04b2b";
    let src = std::fs::read_to_string(examples().join("openai.yaml")).expect("read example");
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| CANARY.to_owned());
    let loaded = load_str_with_env(&src, "openai.yaml", &env).expect("valid");
    assert_eq!(loaded.warnings, vec![]);
    let ProviderKind::OpenAi { api_key, .. } = &loaded.config.providers["openai"].kind else {
        panic!("openai provider has kind openai");
    };
    assert_eq!(api_key.as_ref().map(|k| k.expose()), Some(CANARY));
    let debug = format!("{:?} {:#?} {:?}", loaded.config, loaded.config, loaded);
    assert!(!debug.contains("CANARY"), "secret leaked into Debug output");
    assert!(debug.contains("***"));
    assert_eq!(
        api_key.as_ref().map(ToString::to_string).as_deref(),
        Some("***")
    );
}

#[test]
fn secrets_never_appear_in_diagnostics() {
    // A key pasted where the variable name or the hash belongs must not be echoed back.
    let src = "\
providers:
  openai: { kind: openai, api_key_env: sk-CANARY-pasted-key }
models:
  m: { provider: openai }
keys:
  - { name: k, key_sha256: sk-CANARY-plaintext, tenant: t }
";
    let Err(err @ Error::Invalid { .. }) = load_str_with_env(src, "s.yaml", &no_env) else {
        panic!("must be invalid");
    };
    let Error::Invalid { diagnostics, .. } = &err else {
        unreachable!()
    };
    let text = render(diagnostics);
    assert_eq!(diagnostics.len(), 2, "{text}");
    assert!(!text.contains("CANARY"), "{text}");
}

#[test]
fn defaults_are_applied() {
    let src = "\
providers:
  up: { kind: openai }
  fake: { kind: mock }
models:
  m: { provider: up }
routes:
  - name: r
    match: { model: m }
    targets: [ { model: m } ]
keys:
  - { name: k, key_sha256: 1c590839AF894CF25F9A5FE06929AF05B377F60EFBE55508EF93D251887B9213, tenant: t }
";
    let loaded = load_str_with_env(src, "d.yaml", &no_env).expect("valid");
    assert_eq!(
        loaded.warnings,
        vec![],
        "no api_key_env means no key and no warning"
    );
    let c = loaded.config;

    let s = &c.server;
    assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(s.max_body_bytes, 33_554_432);
    assert_eq!(s.max_response_bytes, 67_108_864);
    assert_eq!(s.threads, 2);
    assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    assert_eq!(s.upstream_pool_size, 128);

    let ProviderKind::OpenAi {
        base_url,
        api_key_env,
        api_key,
        connect_timeout,
        ..
    } = &c.providers["up"].kind
    else {
        panic!("kind openai");
    };
    assert_eq!(base_url.to_string(), "https://api.openai.com/v1");
    assert_eq!(
        (base_url.tls, base_url.port, base_url.path.as_str()),
        (true, 443, "/v1")
    );
    assert_eq!((api_key_env, api_key), (&None, &None));
    assert_eq!(*connect_timeout, Duration::from_secs(5));
    assert_eq!(
        c.providers["fake"].kind,
        ProviderKind::Mock {
            ttft: Duration::from_millis(50),
            tokens_per_s: 200.0
        }
    );

    let m = &c.models["m"];
    assert_eq!(
        (m.upstream_model.as_str(), m.kind, m.pricing),
        ("m", ModelKind::Chat, None)
    );

    let r = &c.routes[0];
    assert_eq!(r.models, ["m"]);
    assert_eq!(r.targets[0].weight, 1);
    assert!(r.fallbacks.is_empty());
    assert_eq!(r.retry.max_attempts, 3);
    assert_eq!(
        r.retry.on,
        [
            RetryOn::Connect,
            RetryOn::Timeout,
            RetryOn::RateLimited,
            RetryOn::ServerError
        ]
    );
    assert_eq!(r.retry.max_retry_after, Duration::from_secs(2));
    assert_eq!(r.timeouts.ttft, Duration::from_secs(60));
    assert_eq!(r.timeouts.idle, Duration::from_secs(30));
    assert_eq!(r.timeouts.total, Duration::from_secs(600));

    assert_eq!(c.keys[0].key_sha256[0], 0x1c, "upper-case hex is accepted");

    assert_eq!(r.slow, None);
    assert_eq!(c.telemetry, TelemetryConfig::default());
    let t = &c.telemetry;
    assert_eq!(t.otlp, None, "no telemetry section exports no spans");
    assert!(!t.capture_content);
    assert!(t.access_log);
    assert_eq!(t.max_content_bytes, 16384);
    assert_eq!(
        t.redact,
        [RedactRule::Email, RedactRule::Card, RedactRule::ApiKey]
    );
    assert_eq!(
        t.sample,
        SampleConfig {
            head_ratio: 0.05,
            keep: KeepRule::ALL.to_vec(),
            slow: Duration::from_secs(10),
            expensive_usd: 0.1,
        }
    );
}

const TELEMETRY_TAIL: &str = "\
providers: { p: { kind: mock } }
models: { m: { provider: p } }
routes:
  - name: r
    match: { model: m }
    targets: [ { model: m } ]
    telemetry: { slow: 5s }
keys: [ { name: k, key_sha256: 1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213, tenant: t } ]
";

#[test]
fn a_full_telemetry_section_loads() {
    let src = format!(
        "\
telemetry:
  otlp: {{ endpoint: http://127.0.0.1:4317, protocol: grpc, timeout: 3s, queue_size: 100, batch_size: 10, export_interval: 250ms }}
  sample: {{ head_ratio: 0, keep: [error, judged, error], slow: 2s, expensive_usd: 0.5 }}
  capture_content: true
  max_content_bytes: 4096
  redact: [card, {{ regex: \"ACME-[0-9]{{6}}\" }}, card]
  access_log: false
  access_log_anonymous_per_s: 3
{TELEMETRY_TAIL}"
    );
    let c = load_str_with_env(&src, "t.yaml", &no_env)
        .expect("valid")
        .config;
    assert_eq!(c.routes[0].slow, Some(Duration::from_secs(5)));
    assert_eq!(
        c.telemetry,
        TelemetryConfig {
            otlp: Some(OtlpConfig {
                endpoint: "http://127.0.0.1:4317".into(),
                protocol: OtlpProtocol::Grpc,
                timeout: Duration::from_secs(3),
                queue_size: 100,
                batch_size: 10,
                export_interval: Duration::from_millis(250),
            }),
            sample: SampleConfig {
                head_ratio: 0.0,
                keep: vec![KeepRule::Error, KeepRule::Judged],
                slow: Duration::from_secs(2),
                expensive_usd: 0.5,
            },
            capture_content: true,
            max_content_bytes: 4096,
            redact: vec![RedactRule::Card, RedactRule::Regex("ACME-[0-9]{6}".into())],
            access_log: false,
            access_log_anonymous_per_s: 3,
            ..TelemetryConfig::default()
        }
    );
}

#[test]
fn otlp_endpoints_are_normalised_per_protocol() {
    let cases = [
        ("http://127.0.0.1:4317", "grpc", "http://127.0.0.1:4317"),
        ("http://collector/", "grpc", "http://collector:80"),
        (
            "https://collector.example",
            "grpc",
            "https://collector.example:443",
        ),
        ("http://[::1]:4317", "grpc", "http://[::1]:4317"),
        (
            "http://127.0.0.1:4318",
            "http",
            "http://127.0.0.1:4318/v1/traces",
        ),
        (
            "http://127.0.0.1:4318/",
            "http",
            "http://127.0.0.1:4318/v1/traces",
        ),
        (
            "http://127.0.0.1:4318/v1/traces",
            "http",
            "http://127.0.0.1:4318/v1/traces",
        ),
        (
            "http://gw:8080/otlp",
            "http/protobuf",
            "http://gw:8080/otlp/v1/traces",
        ),
    ];
    for (endpoint, protocol, want) in cases {
        let src = format!(
            "telemetry:\n  otlp: {{ endpoint: \"{endpoint}\", protocol: {protocol} }}\n{TELEMETRY_TAIL}"
        );
        let c = load_str_with_env(&src, "e.yaml", &no_env)
            .unwrap_or_else(|e| panic!("{endpoint} {protocol}: {e:?}"))
            .config;
        let otlp = c.telemetry.otlp.expect("otlp");
        assert_eq!(otlp.endpoint, want, "{endpoint} {protocol}");
        let want_protocol = if protocol == "grpc" {
            OtlpProtocol::Grpc
        } else {
            OtlpProtocol::HttpProtobuf
        };
        assert_eq!(otlp.protocol, want_protocol);
        assert_eq!(
            (otlp.queue_size, otlp.batch_size, otlp.timeout),
            (4096, 512, Duration::from_secs(10))
        );
    }
}

#[test]
fn an_empty_redact_list_turns_redaction_off() {
    let src = format!("telemetry: {{ redact: [] }}\n{TELEMETRY_TAIL}");
    let c = load_str_with_env(&src, "r.yaml", &no_env)
        .expect("valid")
        .config;
    assert!(c.telemetry.redact.is_empty());
}

#[test]
fn unquoted_429_and_a_single_match_name_are_accepted() {
    let src = "\
providers: { p: { kind: mock } }
models: { m: { provider: p } }
routes:
  - name: r
    match: { model: m }
    targets: [ { model: m, weight: 7 } ]
    retry: { on: [429, 5xx], max_attempts: 1 }
keys: [ { name: k, key_sha256: 1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213, tenant: t } ]
";
    let c = load_str_with_env(src, "u.yaml", &no_env)
        .expect("valid")
        .config;
    assert_eq!(
        c.routes[0].retry.on,
        [RetryOn::RateLimited, RetryOn::ServerError]
    );
    assert_eq!(c.routes[0].retry.max_attempts, 1);
    assert_eq!(c.routes[0].targets[0].weight, 7);
}

#[test]
fn a_key_that_cannot_be_a_header_value_is_refused_without_being_shown() {
    let src = "providers:\n  openai: { kind: openai, api_key_env: OPENAI_API_KEY }\nmodels:\n  gpt-4o: { provider: openai }\nkeys:\n  - { name: demo, key_sha256: \"1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213\", tenant: demo }\n";
    let newline = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-secret-123\n".to_owned());
    let Err(Error::Invalid { diagnostics, .. }) = load_str_with_env(src, "p.yaml", &newline) else {
        panic!("a key with a line break must be refused");
    };
    let text = render(&diagnostics);
    assert!(text.contains("providers.openai.api_key_env"), "{text}");
    assert!(text.contains("OPENAI_API_KEY"), "{text}");
    assert!(
        !text.contains("sk-secret"),
        "the key is never shown: {text}"
    );
}

#[test]
fn slos_and_remediation_rules_load_with_their_defaults() {
    use sluice_config::{ActionConfig, BurnConfig, BurnWindow, SliConfig};
    let yaml = r#"
providers:
  local: { kind: mock }
models:
  big: { provider: local }
  small: { provider: local }
routes:
  - name: chat
    match: { model: chat }
    targets: [ { model: big } ]
    cache: { ttl: 1m, max_stale: 1h }
    slos:
      - { name: availability, objective: 99.5, sli: errors, runbook_url: "https://runbooks.example/avail" }
      - { name: fast, objective: 95, window: 7d, sli: { ttft_below: 1500ms }, min_events: 50 }
      - { name: quality, objective: 90, sli: { judge_score_at_least: 0.7 } }
    remediation:
      - { when: { slo: availability }, do: failover }
      - name: cheaper
        when: { slo: fast, burn: { window: 5m, above: 10 }, no_healthy_target: true }
        do: { downgrade_to: small }
        guard: { slo: quality, burn: ticket }
        hold: 30s
        probe_share: 0.1
        dry_run: true
      - { when: { slo: availability, burn: ticket }, do: cache_fallback }
      - { when: { slo: availability }, do: { shed: { max_priority: 3 } }, max_share: 0.5 }
slo: { window_scale: 0.01, evaluate_every: 250ms }
incidents:
  webhook: { url: "http://127.0.0.1:9/hook", bearer_env: HOOK_TOKEN }
keys:
  - { name: demo, key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213", tenant: demo }
"#;
    let env = |name: &str| (name == "HOOK_TOKEN").then(|| "hook-secret".to_owned());
    let loaded = load_str_with_env(yaml, "slo.yaml", &env).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    let route = &c.routes[0];
    assert_eq!(route.slos.len(), 3);
    let avail = &route.slos[0];
    assert!((avail.objective - 0.995).abs() < 1e-12);
    assert_eq!(avail.sli, SliConfig::Errors);
    assert_eq!(avail.window, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(avail.min_events, 10);
    assert_eq!(
        route.slos[1].sli,
        SliConfig::TtftBelow(Duration::from_millis(1500))
    );
    assert_eq!(route.slos[1].min_events, 50);
    assert_eq!(route.slos[2].sli, SliConfig::JudgeScoreAtLeast(0.7));

    let rules = &route.remediation;
    assert_eq!(rules.len(), 4);
    assert_eq!(rules[0].name, "chat#0");
    assert_eq!(rules[0].burn, BurnConfig::Page);
    assert_eq!(rules[0].action, ActionConfig::Failover);
    assert_eq!(rules[0].hold, Duration::from_secs(120));
    assert_eq!(rules[0].cooldown, Duration::from_secs(60));
    assert!((rules[0].probe_share - 0.05).abs() < 1e-12);
    let cheaper = &rules[1];
    assert_eq!(cheaper.name, "cheaper");
    assert_eq!(
        cheaper.burn,
        BurnConfig::Above {
            window: BurnWindow::M5,
            burn: 10.0
        }
    );
    assert!(cheaper.no_healthy_target && cheaper.dry_run);
    assert_eq!(
        cheaper.action,
        ActionConfig::DowngradeTo(vec!["small".into()])
    );
    assert_eq!(cheaper.guard, Some(("quality".into(), BurnConfig::Ticket)));
    assert_eq!(cheaper.hold, Duration::from_secs(30));
    assert_eq!(rules[2].action, ActionConfig::CacheFallback);
    assert_eq!(rules[3].action, ActionConfig::Shed { max_priority: 3 });
    assert!((rules[3].max_share - 0.5).abs() < 1e-12);

    assert!((c.slo.window_scale - 0.01).abs() < 1e-12);
    assert_eq!(c.slo.evaluate_every, Duration::from_millis(250));
    let hook = c.incidents.webhook.as_ref().expect("webhook");
    assert_eq!(
        hook.bearer.as_ref().map(|s| s.expose()),
        Some("hook-secret")
    );
    assert!(!format!("{:?}", c.incidents).contains("hook-secret"));
}

#[test]
fn aiops_settings_and_anomaly_rules_load() {
    use sluice_config::{AiopsSettings, AnomalySignalConfig, BurnConfig};
    let yaml = r#"
providers:
  local: { kind: mock }
models:
  big: { provider: local }
  small: { provider: local }
routes:
  - name: chat
    match: { model: chat }
    targets: [ { model: big } ]
    remediation:
      - { name: slow-start, when: { anomaly: ttft, min_score: 6 }, do: { downgrade_to: [small] },
          guard: { anomaly: error_ratio } }
      - { name: failing, when: { anomaly: error_ratio }, do: failover }
aiops: { interval: 10s, window: 3, k: 4, hold: 30s, clear: 1m, min_events: 5, warmup: 12,
         relearn_after: 2h, max_tenants: 20, group_window: 1m }
keys:
  - { name: demo, key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213", tenant: demo }
"#;
    let no_env = |_: &str| None;
    let loaded = load_str_with_env(yaml, "aiops.yaml", &no_env).expect("valid");
    let c = &loaded.config;
    assert_eq!(
        c.aiops,
        AiopsSettings {
            enabled: true,
            interval: Duration::from_secs(10),
            window: 3,
            k: 4.0,
            hold: Duration::from_secs(30),
            clear: Duration::from_secs(60),
            min_events: 5,
            warmup: 12,
            relearn_after: Duration::from_secs(7200),
            max_tenants: 20,
            group_window: Duration::from_secs(60),
        }
    );
    let rules = &c.routes[0].remediation;
    assert_eq!(rules[0].slo, "ttft");
    assert_eq!(
        rules[0].burn,
        BurnConfig::Anomaly {
            signal: AnomalySignalConfig::Ttft,
            min_score: 6.0
        }
    );
    assert_eq!(
        rules[0].guard,
        Some((
            "error_ratio".to_owned(),
            BurnConfig::Anomaly {
                signal: AnomalySignalConfig::ErrorRatio,
                min_score: 0.0
            }
        ))
    );
    assert_eq!(rules[1].slo, "error_ratio");
    // Without the section, AIOps is on with its defaults.
    let bare = yaml.split("aiops:").next().expect("head").to_owned()
        + "keys:\n  - { name: demo, key_sha256: \"1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213\", tenant: demo }\n";
    let loaded = load_str_with_env(&bare, "aiops.yaml", &no_env).expect("valid");
    assert_eq!(loaded.config.aiops, AiopsSettings::default());
}
