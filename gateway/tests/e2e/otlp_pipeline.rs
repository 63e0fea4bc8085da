//! The OTLP pipeline end to end: several destinations at once, each getting what its sampling
//! and filter say, one of them stalled without slowing the others or the requests; resource
//! and tenant enrichment on every span and log record; OTLP logs naming their spans; an agent
//! loop under one caller trace; destinations following a reload.
//!
//! The receivers are plain OTLP/HTTP servers on 127.0.0.1 written here (HTTP/1.1 with
//! keep-alive, protobuf bodies), so the test sees exactly what went over the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, TestGateway, chat};

/// What one receiver got: (resource attributes, span) and (resource attributes, log record).
#[derive(Default)]
struct Got {
    spans: Vec<(Vec<KeyValue>, Span)>,
    logs: Vec<(Vec<KeyValue>, LogRecord)>,
}

/// An OTLP/HTTP receiver. A stalled one reads each request and never answers.
struct Receiver {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Got>>,
    /// Export requests read (answered or not).
    requests: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(stalled: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = Arc::new(Mutex::new(Got::default()));
        let requests = Arc::new(Mutex::new(0));
        let (g, r) = (Arc::clone(&got), Arc::clone(&requests));
        #[expect(clippy::disallowed_methods, reason = "a test server, not gateway work")]
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (g, r) = (Arc::clone(&g), Arc::clone(&r));
                #[expect(clippy::disallowed_methods, reason = "one task per test connection")]
                tokio::spawn(serve(conn, g, r, stalled));
            }
        });
        Self {
            addr,
            got,
            requests,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn servers(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let got = self.got.lock().expect("lock");
        got.spans
            .iter()
            .filter(|(_, s)| s.kind == SpanKind::Server as i32)
            .cloned()
            .collect()
    }

    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        self.got.lock().expect("lock").spans.clone()
    }

    fn logs(&self) -> Vec<(Vec<KeyValue>, LogRecord)> {
        self.got.lock().expect("lock").logs.clone()
    }

    /// Waits (bounded) until `servers` server spans and `logs` log records arrived.
    async fn wait_for(&self, servers: usize, logs: usize) {
        for _ in 0..250 {
            if self.servers().len() >= servers && self.logs().len() >= logs {
                return;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
}

async fn serve(
    mut conn: TcpStream,
    got: Arc<Mutex<Got>>,
    requests: Arc<Mutex<usize>>,
    stalled: bool,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        *requests.lock().expect("lock") += 1;
        if stalled {
            // Accept and never answer: hold the connection until the peer gives up.
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        let reply: Vec<u8> = if path.ends_with("/v1/logs") {
            let req = ExportLogsServiceRequest::decode(body.as_slice()).expect("logs request");
            let mut g = got.lock().expect("lock");
            for rl in req.resource_logs {
                let res = rl.resource.map(|r| r.attributes).unwrap_or_default();
                for sl in rl.scope_logs {
                    for l in sl.log_records {
                        g.logs.push((res.clone(), l));
                    }
                }
            }
            Vec::new()
        } else {
            let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("trace request");
            let mut g = got.lock().expect("lock");
            for rs in req.resource_spans {
                let res = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        g.spans.push((res.clone(), s));
                    }
                }
            }
            Vec::new()
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if conn.write_all(resp.as_bytes()).await.is_err() || conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn text<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const PROVIDER: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n  broken: { provider: up, upstream_model: \"b@500\" }\ntenants:\n  test: { attributes: { cost_center: cc-42 } }\n";

const RESOURCE: &str = "  resource: { environment: e2e, instance_id: gw-e2e, region: test-1, attributes: { team: platform } }\n";

fn metric(metrics: &str, destination: &str, signal: &str, result: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_otlp_export_total{")
                && l.contains(&format!("destination=\"{destination}\""))
                && l.contains(&format!("signal=\"{signal}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn destinations_get_what_their_filters_say_and_a_stalled_one_slows_nothing() {
    let mock = common::mock_llm().await;
    let canary = Receiver::start(false).await;
    let prod = Receiver::start(false).await;
    let stalled = Receiver::start(true).await;
    let policy = format!(
        "telemetry:\n  sample: {{ head_ratio: 0.0 }}\n{RESOURCE}  destinations:\n    - {{ name: canary, endpoint: \"{}\", protocol: http, sampling: all, signals: [traces, logs], export_interval: 100ms, headers_env: {{ x-canary-token: CANARY_TOKEN }} }}\n    - {{ name: prod, endpoint: \"{}\", protocol: http, filter: {{ outcomes: [upstream_error] }}, signals: [traces, logs], export_interval: 100ms }}\n    - {{ name: stalled, endpoint: \"{}\", protocol: http, sampling: all, signals: [traces, logs], queue_size: 4, batch_size: 1, timeout: 5s, export_interval: 100ms }}\n{PROVIDER}",
        canary.endpoint(),
        prod.endpoint(),
        stalled.endpoint()
    );
    let gw = TestGateway::start_with_env(
        &policy,
        &mock,
        "",
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.id=d-7,team=ignored"),
            ("CANARY_TOKEN", "canary-secret-value"),
        ],
    )
    .await;

    const OK: usize = 20;
    const FAILED: usize = 2;
    let mut slowest = Duration::ZERO;
    for i in 0..OK + FAILED {
        let model = if i < OK { "m" } else { "broken" };
        let t = tokio::time::Instant::now();
        let resp = gw
            .post("/v1/chat/completions", chat(model, false))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("request completes");
        let _ = resp.bytes().await.expect("body");
        slowest = slowest.max(t.elapsed());
    }
    // The stalled destination's exporter waits 5s per call: a request that waited on it
    // would take at least that.
    assert!(
        slowest < Duration::from_millis(2500),
        "a request took {slowest:?} with one destination stalled"
    );

    canary.wait_for(OK + FAILED, OK + FAILED).await;
    prod.wait_for(FAILED, FAILED).await;

    // canary: everything (sampling all), spans and logs.
    let servers = canary.servers();
    assert_eq!(servers.len(), OK + FAILED, "canary gets every request");
    assert_eq!(canary.logs().len(), OK + FAILED, "and every access record");
    // prod: the tail-sampled (head_ratio 0: the errors) with outcome upstream_error.
    let prod_servers = prod.servers();
    assert_eq!(
        prod_servers.len(),
        FAILED,
        "prod gets only the failed requests"
    );
    for (_, s) in &prod_servers {
        assert_eq!(
            text(&s.attributes, "sluice.outcome"),
            Some("upstream_error")
        );
    }
    let prod_logs = prod.logs();
    assert_eq!(
        prod_logs.len(),
        FAILED,
        "prod's log filter is its outcome filter"
    );

    // The stalled one slowed neither: it read something, and its drops are counted under
    // its own name only.
    assert!(
        *stalled.requests.lock().expect("lock") >= 1,
        "the stalled receiver was called"
    );
    let metrics = gw
        .metrics_when(|m| metric(m, "stalled", "traces", "dropped") > 0.0)
        .await;
    assert!(
        metric(&metrics, "stalled", "traces", "dropped") > 0.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "canary", "traces", "dropped"), 0.0);
    assert_eq!(metric(&metrics, "prod", "traces", "dropped"), 0.0);
    assert!(metric(&metrics, "canary", "logs", "exported") >= (OK + FAILED) as f64);

    // Enrichment on every span and log record, at both receivers.
    let every_span = canary.spans().into_iter().chain(prod.spans());
    let every_log = canary.logs().into_iter().chain(prod.logs());
    let check_resource = |res: &[KeyValue]| {
        assert_eq!(text(res, "service.name"), Some("sluice"));
        assert_eq!(text(res, "deployment.environment.name"), Some("e2e"));
        assert_eq!(text(res, "service.instance.id"), Some("gw-e2e"));
        assert_eq!(text(res, "cloud.region"), Some("test-1"));
        assert_eq!(
            text(res, "team"),
            Some("platform"),
            "the policy wins over the environment"
        );
        assert_eq!(
            text(res, "deployment.id"),
            Some("d-7"),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
    };
    for (res, span) in every_span {
        check_resource(&res);
        assert_eq!(
            text(&span.attributes, "cost_center"),
            Some("cc-42"),
            "{}",
            span.name
        );
    }
    for (res, log) in every_log {
        check_resource(&res);
        assert_eq!(text(&log.attributes, "cost_center"), Some("cc-42"));
    }

    // Every log record names its request's server span.
    let ids: HashMap<(String, String), String> = servers
        .iter()
        .map(|(_, s)| {
            (
                (hex(&s.trace_id), hex(&s.span_id)),
                text(&s.attributes, "sluice.request_id")
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for (_, log) in canary.logs() {
        let key = (hex(&log.trace_id), hex(&log.span_id));
        let request_id = ids
            .get(&key)
            .unwrap_or_else(|| panic!("log {key:?} names no span"));
        assert_eq!(
            text(&log.attributes, "sluice.request_id"),
            Some(request_id.as_str())
        );
        let Some(Value::StringValue(body)) = log.body.as_ref().and_then(|b| b.value.as_ref())
        else {
            panic!("a log record without a text body");
        };
        let line: serde_json::Value = serde_json::from_str(body).expect("the access-log line");
        assert_eq!(line["request_id"], request_id.as_str());
        assert_eq!(line["trace_id"], key.0.as_str());
    }
    // The header's value is never in the policy view.
    let view = gw.admin_json("/admin/policy").await.to_string();
    assert!(view.contains("CANARY_TOKEN") && !view.contains("canary-secret-value"));
}

#[tokio::test]
async fn an_agent_loop_is_one_trace_with_its_tool_call_ids() {
    let mock = common::mock_llm().await;
    let rx = Receiver::start(false).await;
    // mock-llm's Anthropic dialect answers a request offering tools with calls to them,
    // which Sluice translates into OpenAI `tool_calls`.
    let policy = format!(
        "telemetry:\n  sample: {{ head_ratio: 0.0 }}\n  destinations:\n    - {{ name: all, endpoint: \"{}\", protocol: http, sampling: all, export_interval: 100ms }}\nproviders:\n  claude: {{ kind: anthropic, base_url: \"http://{}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  m: {{ provider: claude, upstream_model: claude-mock }}\n",
        rx.endpoint(),
        mock.addr()
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let agent_span = "00f067aa0ba902b7";
    let tools = serde_json::json!([{
        "type": "function",
        "function": { "name": "search_docs", "parameters": { "type": "object" } }
    }]);
    let mut messages = vec![serde_json::json!({"role": "user", "content": "find the runbook"})];
    let mut returned = Vec::new();
    let mut sent_ids: Vec<Vec<String>> = Vec::new();
    let mut model_calls: Vec<Vec<String>> = Vec::new();
    for step in 0..3 {
        let body = serde_json::json!({ "model": "m", "messages": messages, "tools": tools });
        let resp = gw
            .post("/v1/chat/completions", body.to_string())
            .header("traceparent", format!("00-{trace}-{agent_span}-01"))
            .header("x-conversation-id", "conv-e2e")
            .send()
            .await
            .expect("step");
        assert_eq!(resp.status(), 200);
        returned.push(
            resp.headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .expect("a traceparent back")
                .to_owned(),
        );
        let answer: serde_json::Value = resp.json().await.expect("json");
        // Answer each tool call the model made (or one of our own when it made none), as an
        // agent does before its next step.
        let calls: Vec<String> = answer["choices"][0]["message"]["tool_calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        model_calls.push(calls.clone());
        let calls = if calls.is_empty() {
            vec![format!("call_step{step}")]
        } else {
            calls
        };
        let tool_calls: Vec<serde_json::Value> = calls
            .iter()
            .map(|id| serde_json::json!({"id": id, "type": "function", "function": {"name": "search_docs", "arguments": "{}"}}))
            .collect();
        messages.push(
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
        );
        for id in &calls {
            messages.push(
                serde_json::json!({"role": "tool", "tool_call_id": id, "content": "runbook.md"}),
            );
        }
        sent_ids.push(calls);
    }
    rx.wait_for(3, 0).await;
    let mut servers: Vec<Span> = rx.servers().into_iter().map(|(_, s)| s).collect();
    assert_eq!(servers.len(), 3);
    servers.sort_by_key(|s| s.start_time_unix_nano);
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(hex(&s.trace_id), trace, "one trace");
        assert_eq!(
            hex(&s.parent_span_id),
            agent_span,
            "the agent's span is the parent"
        );
        assert_eq!(
            returned[i],
            format!("00-{trace}-{}-01", hex(&s.span_id)),
            "the returned traceparent names Sluice's server span"
        );
        assert_eq!(
            text(&s.attributes, "gen_ai.conversation.id"),
            Some("conv-e2e")
        );
        let ids: Vec<&str> = s
            .events
            .iter()
            .filter(|e| e.name == "gen_ai.tool.message")
            .filter_map(|e| text(&e.attributes, "gen_ai.tool.call.id"))
            .collect();
        // Step i carries the results of every earlier step's calls.
        let want: Vec<&str> = sent_ids[..i].iter().flatten().map(String::as_str).collect();
        assert_eq!(ids, want, "step {i}");
        // And the tool calls its answer made, with their names.
        let made: Vec<&str> = s
            .events
            .iter()
            .filter(|e| e.name == "gen_ai.tool.call")
            .filter_map(|e| text(&e.attributes, "gen_ai.tool.call.id"))
            .collect();
        assert_eq!(made, model_calls[i], "step {i}: the answer's tool calls");
        for e in s.events.iter().filter(|e| e.name == "gen_ai.tool.call") {
            assert_eq!(text(&e.attributes, "gen_ai.tool.name"), Some("search_docs"));
        }
    }
    assert!(
        model_calls.iter().all(|c| !c.is_empty()),
        "mock-llm answers a request offering tools with tool calls"
    );
    // Each attempt is a child of its server span, in the same trace.
    for (_, c) in rx
        .spans()
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
    {
        assert_eq!(hex(&c.trace_id), trace);
        assert!(servers.iter().any(|s| s.span_id == c.parent_span_id));
    }
}

#[tokio::test]
async fn destinations_follow_a_reload() {
    let mock = common::mock_llm().await;
    let first = Receiver::start(false).await;
    let second = Receiver::start(false).await;
    let section = |rx: &Receiver, name: &str| {
        format!(
            "telemetry:\n  sample: {{ head_ratio: 1.0 }}\n  destinations:\n    - {{ name: {name}, endpoint: \"{}\", protocol: http, export_interval: 100ms }}\n{PROVIDER}",
            rx.endpoint()
        )
    };
    let gw = TestGateway::start(&section(&first, "first"), &mock).await;
    let ok = |r: reqwest::Response| assert_eq!(r.status(), 200);
    ok(gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("req"));
    first.wait_for(1, 0).await;
    assert_eq!(first.servers().len(), 1);

    let text = gw.policy_text(&section(&second, "second"), "", "");
    std::fs::write(&gw.policy_path, text).expect("rewrite policy");
    let applied = common::eventually(async || {
        let m = gw.metrics().await;
        m.lines()
            .any(|l| l.starts_with("sluice_policy_generation ") && !l.ends_with(" 1"))
            .then_some(())
    })
    .await;
    assert!(applied.is_some(), "the reload applied");
    for _ in 0..3 {
        ok(gw
            .post("/v1/chat/completions", chat("m", false))
            .send()
            .await
            .expect("req"));
    }
    second.wait_for(3, 0).await;
    assert_eq!(
        second.servers().len(),
        3,
        "the new destination gets the new requests"
    );
    assert_eq!(first.servers().len(), 1, "the old one gets none of them");
    let m = gw.metrics().await;
    assert!(metric(&m, "second", "traces", "exported") >= 3.0, "{m}");
}

/// Incident events go to the destinations that take logs, as records of their own (event
/// `sluice.incident`, the incident log's line as the body, route, rule, action and step as
/// attributes); a destination filtered to tenants gets none, incidents having no tenant.
#[tokio::test]
async fn incident_events_are_exported_as_log_records() {
    let mock = common::mock_llm().await;
    let ops = Receiver::start(false).await;
    let acme = Receiver::start(false).await;
    let policy = format!(
        "telemetry:\n  sample: {{ head_ratio: 0.0 }}\n  destinations:\n    - {{ name: ops, endpoint: \"{}\", protocol: http, signals: [logs], filter: {{ outcomes: [upstream_error] }}, export_interval: 100ms }}\n    - {{ name: acme, endpoint: \"{}\", protocol: http, signals: [logs], filter: {{ tenants: [acme] }}, export_interval: 100ms }}\nproviders:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  flaky: {{ provider: up, upstream_model: \"flaky@503\" }}\n  steady: {{ provider: up, upstream_model: steady }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: flaky }}, {{ model: steady }} ]\n    retry: {{ max_attempts: 2 }}\n    {}\n    slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 5 }}\n    remediation:\n      - {{ name: fo, when: {{ slo: availability, burn: page }}, do: failover, hold: 1m, probe_share: 0.1 }}\nslo: {{ window_scale: 0.001, evaluate_every: 100ms }}\n",
        ops.endpoint(),
        acme.endpoint(),
        common::NO_EJECTION,
    );
    let gw = TestGateway::start(&policy, &mock).await;
    let incident_logs = |rx: &Receiver| -> Vec<LogRecord> {
        rx.logs()
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| l.event_name == "sluice.incident")
            .collect()
    };
    // Every request to `flaky` fails over to `steady` (clients see 200s) while `flaky` burns.
    let opened = common::eventually(async || {
        for _ in 0..10 {
            let r = gw
                .post("/v1/chat/completions", chat("chat", false))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
        let logs = incident_logs(&ops);
        logs.iter()
            .any(|l| text(&l.attributes, "sluice.incident.event") == Some("action_taken"))
            .then_some(logs)
    })
    .await
    .expect("the incident's records reached the destination that takes logs");
    let first = &opened[0];
    assert_eq!(
        text(&first.attributes, "sluice.incident.event"),
        Some("opened")
    );
    assert_eq!(text(&first.attributes, "sluice.route"), Some("chat"));
    assert_eq!(text(&first.attributes, "sluice.incident.rule"), Some("fo"));
    assert_eq!(
        text(&first.attributes, "sluice.incident.action"),
        Some("failover")
    );
    assert_eq!(first.severity_text, "WARN");
    assert!(
        first.trace_id.is_empty(),
        "an incident belongs to no one trace"
    );
    // The body is the incident log's own line.
    let Some(Value::StringValue(body)) = first.body.as_ref().and_then(|b| b.value.clone()) else {
        panic!("a string body: {first:?}");
    };
    let line: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    let on_disk = std::fs::read_to_string(gw.data_dir.join("incidents.jsonl")).expect("log");
    let disk_first: serde_json::Value =
        serde_json::from_str(on_disk.lines().next().expect("a line")).expect("json");
    assert_eq!(
        line, disk_first,
        "the record carries what the incident log says"
    );
    // The outcome filter is about requests: the ops destination got the incident although no
    // request failed. The tenant-filtered one got no incident.
    assert!(incident_logs(&acme).is_empty());
}
