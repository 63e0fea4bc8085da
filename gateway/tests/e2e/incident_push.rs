//! Incident push through the real binary: a loopback HTTP receiver stands in for both
//! Alertmanager and a webhook; the incident a burning target opens reaches both, the webhook
//! with its bearer token and again after it answered 500, and the token is in no log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{self, TestGateway, eventually};

const HOOK_TOKEN: &str = "hook-tok-5e1b7c93a0d24f68";
const HOOK_TOKEN_ENV: &str = "SLUICE_TEST_HOOK_TOKEN";

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
    status: u16,
}

/// Answers every request with `connection: close`; the first request to `fail_first` gets a
/// 500, every other one a 200.
#[derive(Clone)]
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = Arc::clone(&got);
        #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
                tokio::spawn(async move {
                    let Some((path, headers, body)) = read_request(&mut conn).await else {
                        return;
                    };
                    let status = {
                        let mut got = store.lock().expect("got");
                        let failed_before = got.iter().any(|r| r.path == fail_first);
                        let status = if path == fail_first && !failed_before {
                            500
                        } else {
                            200
                        };
                        got.push(Received {
                            authorization: header(&headers, "authorization"),
                            content_type: header(&headers, "content-type"),
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                            path,
                            status,
                        });
                        status
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { port, got }
    }

    fn to(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .expect("got")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Path, headers and body of one HTTP/1.1 request with a `content-length` body.
async fn read_request(
    conn: &mut tokio::net::TcpStream,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = header(&headers, "content-length")?.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

#[tokio::test]
async fn an_incident_reaches_alertmanager_and_the_webhook_with_retries_and_no_leaked_token() {
    let mock = common::mock_llm().await;
    let rx = Receiver::start("/hooks/sluice").await;
    let policy = format!(
        "providers:\n  up: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }}\nmodels:\n  flaky: {{ provider: up, upstream_model: \"flaky@503\" }}\n  steady: {{ provider: up, upstream_model: steady }}\nroutes:\n  - name: chat\n    match: {{ model: chat }}\n    targets: [ {{ model: flaky }}, {{ model: steady }} ]\n    retry: {{ max_attempts: 2 }}\n    health: {{ consecutive_failures: 1000, min_requests: 1000000 }}\n    slos:\n      - {{ name: availability, objective: 99, sli: errors, min_events: 5 }}\n    remediation:\n      - {{ name: fo, when: {{ slo: availability, burn: page }}, do: failover, hold: 1m, probe_share: 0.1, runbook_url: \"https://runbooks.example/fo\" }}\nslo: {{ window_scale: 0.001, evaluate_every: 100ms }}\nincidents:\n  alertmanager: {{ url: \"http://127.0.0.1:{port}\" }}\n  webhook: {{ url: \"http://127.0.0.1:{port}/hooks/sluice\", bearer_env: {HOOK_TOKEN_ENV} }}\n",
        port = rx.port
    );
    let gw = TestGateway::start_with_env(&policy, &mock, "", &[(HOOK_TOKEN_ENV, HOOK_TOKEN)]).await;

    // `flaky` burns its SLO (clients see no error: `steady` answers) until it is taken out.
    let alerts = eventually(async || {
        for _ in 0..10 {
            let r = gw
                .post("/v1/chat/completions", common::chat("chat", false))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
        let am = rx.to("/api/v2/alerts");
        am.iter()
            .any(|r| r.body[0]["annotations"]["event"] == "action_taken")
            .then_some(am)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the failover did not reach Alertmanager; received {:?}; log:\n{}",
            rx.got.lock().expect("got"),
            gw.log_text()
        )
    });

    // Alertmanager: one alert per incident, the same labels for every step, no token.
    let first = &alerts[0];
    assert_eq!(first.authorization, None);
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    let alert = &first.body[0];
    assert_eq!(alert["labels"]["alertname"], "SluiceIncident");
    assert_eq!(alert["labels"]["route"], "chat");
    assert_eq!(alert["labels"]["slo"], "availability");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["rule"], "fo");
    assert_eq!(alert["labels"]["action"], "failover");
    assert_eq!(alert["labels"]["target"], "up/flaky");
    assert_eq!(alert["annotations"]["event"], "opened");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/fo"
    );
    assert!(
        alert["annotations"]["burn_rates"]
            .as_str()
            .is_some_and(|b| b.starts_with("5m=")),
        "{alert}"
    );
    let starts = alert["startsAt"].as_str().expect("startsAt");
    let ends = alert["endsAt"].as_str().expect("endsAt");
    assert!(
        ends > starts,
        "an open incident ends in the future: {alert}"
    );
    for r in &alerts {
        assert_eq!(r.body[0]["labels"], alert["labels"]);
        assert_eq!(r.body[0]["startsAt"], alert["startsAt"]);
    }

    // The webhook: the incident log's events with the bearer token; the first answer was a
    // 500 and the same event came again (1 s later) until it was taken.
    let hook = eventually(async || {
        let hook = rx.to("/hooks/sluice");
        hook.iter()
            .any(|r| r.body["kind"] == "action_taken" && r.status == 200)
            .then_some(hook)
    })
    .await
    .expect("the webhook got the failover");
    assert_eq!(hook[0].status, 500);
    assert_eq!(hook[1].status, 200);
    assert_eq!(hook[0].body, hook[1].body, "the retry sends the same event");
    assert_eq!(hook[0].body["kind"], "opened");
    assert_eq!(hook[0].body["route"], "chat");
    assert_eq!(hook[0].body["runbook_url"], "https://runbooks.example/fo");
    for r in &hook {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {HOOK_TOKEN}").as_str())
        );
    }
    let on_disk = std::fs::read_to_string(gw.data_dir.join("incidents.jsonl")).expect("log");
    let first_line: serde_json::Value =
        serde_json::from_str(on_disk.lines().next().expect("a line")).expect("json");
    assert_eq!(
        hook[0].body, first_line,
        "the webhook gets the log's own line"
    );

    let m = gw
        .metrics_when(|m| {
            m.contains(r#"sluice_incident_push_total{sink="webhook",result="sent"}"#)
                && m.contains(r#"sluice_incident_push_total{sink="alertmanager",result="sent"}"#)
        })
        .await;
    assert!(
        m.contains(r#"sluice_incident_push_total{sink="alertmanager",result="sent"}"#),
        "{m}"
    );
    assert!(
        !m.contains(r#"sluice_incident_push_total{sink="webhook",result="failed"}"#),
        "{m}"
    );

    // Debug logging is on: the retry was logged, the token never.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.log_text();
    assert!(log.contains("Incident push failed; retrying."), "{log}");
    assert!(
        !log.contains(HOOK_TOKEN),
        "the webhook token leaked:\n{log}"
    );
    let admin_policy = gw
        .admin(reqwest::Method::GET, "/admin/policy")
        .send()
        .await
        .expect("policy")
        .text()
        .await
        .expect("text");
    assert!(!admin_policy.contains(HOOK_TOKEN), "{admin_policy}");
}
