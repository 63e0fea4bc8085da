//! HTTP/2 to providers (`http_version: h2`), against the real binary and mock-llm serving TLS
//! with ALPN `h2`: many concurrent attempts are streams of one connection, and a connection
//! that dies fails over every attempt it carried.

use futures_util::future::join_all;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use sluice_loadtest::mock_llm::MockTls;
use sluice_loadtest::{MockLlm, MockLlmConfig};

use crate::common::{
    CANARY, CANARY_ENV, NO_EJECTION, TestGateway, chat, eventually, mock_llm, sse_data,
};

/// A test CA's PEM, and mock-llm's TLS with a leaf it signed for localhost and 127.0.0.1.
fn test_ca() -> (String, MockTls) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "h2 test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = p.self_signed(&ca_key).expect("self-signed");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca, &ca_key).expect("sign");
    (
        ca.pem(),
        MockTls {
            chain: vec![cert.der().to_vec()],
            key: key.serialize_der(),
        },
    )
}

/// The test CA's PEM in a file, with the directory that must outlive its use.
fn write_ca(pem: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, pem).expect("write ca");
    (dir, file)
}

async fn h2_mock(tls: MockTls) -> MockLlm {
    MockLlm::start(MockLlmConfig {
        api_key: Some(CANARY.to_owned()),
        tls: Some(tls),
        http2: true,
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts")
}

/// mock-llm speaking h2c (HTTP/2 with prior knowledge) on a plain listener.
async fn h2c_mock() -> MockLlm {
    MockLlm::start(MockLlmConfig {
        api_key: Some(CANARY.to_owned()),
        http2: true,
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts")
}

#[tokio::test]
async fn two_hundred_concurrent_streams_share_one_upstream_h2_connection() {
    let plain = mock_llm().await;
    let (ca_pem, tls) = test_ca();
    let up = h2_mock(tls).await;
    let (_dir, ca_file) = write_ca(&ca_pem);
    let body = format!(
        "providers:\n  h2up:\n    kind: openai\n    base_url: \"{base}\"\n    api_key_env: {CANARY_ENV}\n    tls_server_name: localhost\n    ca_file: \"{ca}\"\n    http_version: h2\nmodels:\n  m: {{ provider: h2up, upstream_model: \"m@ttft:300\" }}\n",
        base = up.base_url(),
        ca = ca_file.display(),
    );
    let gw = TestGateway::start_with_env(&body, &plain, "", &[]).await;

    let answers = join_all((0..200).map(|_| async {
        let resp = gw
            .post("/v1/chat/completions", chat("m", true))
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, sse_data(resp).await)
    }))
    .await;
    for (status, events) in &answers {
        assert_eq!(*status, 200, "{events:?}");
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
    }
    let stats = up.stats();
    assert_eq!(stats.requests, 200);
    assert_eq!(
        stats.connections, 1,
        "one HTTP/2 connection carried every stream"
    );

    // The protocol and the connection are visible to an operator.
    let targets = gw.admin_json("/admin/targets").await;
    let conn = targets["connections"]
        .as_array()
        .and_then(|c| c.iter().find(|p| p["provider"] == "h2up"))
        .cloned()
        .unwrap_or_else(|| panic!("{targets}"));
    assert_eq!(conn["http_version"], "h2", "{conn}");
    assert_eq!(conn["h2_connections"], 1, "{conn}");
    let policy = gw.admin_json("/admin/policy").await.to_string();
    assert!(policy.contains("\"http_version\":\"h2\""), "{policy}");
    let opened = "sluice_upstream_h2_connections_opened_total{provider=\"h2up\"} 1";
    let metrics = gw.metrics_when(|m| m.contains(opened)).await;
    assert!(metrics.contains(opened), "{metrics}");
    assert!(
        metrics.contains("sluice_upstream_h2_connections{provider=\"h2up\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_dead_h2_connection_fails_over_every_attempt_it_carried() {
    let backup = mock_llm().await;
    let (ca_pem, tls) = test_ca();
    let up = h2_mock(tls).await;
    let (_dir, ca_file) = write_ca(&ca_pem);
    let body = format!(
        "providers:\n  h2up:\n    kind: openai\n    base_url: \"{base}\"\n    api_key_env: {CANARY_ENV}\n    tls_server_name: localhost\n    ca_file: \"{ca}\"\n    http_version: h2\n  plain: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: {CANARY_ENV} }}\nmodels:\n  slow: {{ provider: h2up, upstream_model: \"slow@ttft:20000\" }}\n  fast: {{ provider: h2up, upstream_model: fast }}\n  b: {{ provider: plain, upstream_model: b }}\nroutes:\n  - {{ name: r, match: {{ model: chat }}, targets: [ {{ model: slow }} ], fallbacks: [ b ], retry: {{ max_attempts: 2, budget: {{ ratio: 1.0, min_per_s: 1000 }} }}, {NO_EJECTION} }}\n",
        base = up.base_url(),
        ca = ca_file.display(),
    );
    let gw = TestGateway::start_with_env(&body, &backup, "", &[]).await;

    const N: u64 = 50;
    let requests = join_all((0..N).map(|i| {
        let stream = i % 2 == 0;
        let gw = &gw;
        async move {
            let resp = gw
                .post("/v1/chat/completions", chat("chat", stream))
                .send()
                .await
                .expect("send");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            (status, text)
        }
    }));
    let sever = async {
        // Every attempt is waiting for its head on the one connection; then it dies.
        eventually(async || (up.stats().requests == N).then_some(()))
            .await
            .expect("every attempt reached the HTTP/2 provider");
        assert_eq!(up.stats().connections, 1);
        up.sever_connections();
    };
    let (answers, ()) = tokio::join!(requests, sever);
    for (status, text) in &answers {
        assert_eq!(*status, 200, "{text}");
        assert!(!text.contains("slow@"), "answered by the backup: {text}");
    }
    assert_eq!(backup.requests_for("b"), N, "every attempt failed over");

    // The next request dials a fresh connection.
    let resp = gw
        .post("/v1/chat/completions", chat("fast", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sse_data(resp).await.last().map(String::as_str),
        Some("[DONE]")
    );
    assert_eq!(up.stats().connections, 2);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_reaches_a_plain_provider() {
    let plain = mock_llm().await;
    let up = h2c_mock().await;
    let body = format!(
        "providers:\n  h2c:\n    kind: openai\n    base_url: \"{base}\"\n    api_key_env: {CANARY_ENV}\n    http_version: h2\nmodels:\n  m: {{ provider: h2c, upstream_model: m }}\n",
        base = up.base_url(),
    );
    let gw = TestGateway::start_with_env(&body, &plain, "", &[]).await;
    for stream in [false, true, false] {
        let resp = gw
            .post("/v1/chat/completions", chat("m", stream))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let _ = resp.text().await.expect("body");
    }
    assert_eq!(up.stats().requests, 3);
    assert_eq!(up.stats().connections, 1);
}

#[tokio::test]
async fn auto_falls_back_to_http1_where_alpn_says_so_and_h2_refuses_it() {
    let plain = mock_llm().await;
    let (ca_pem, tls) = test_ca();
    // TLS offering only http/1.1.
    let up = MockLlm::start(MockLlmConfig {
        api_key: Some(CANARY.to_owned()),
        tls: Some(tls),
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts");
    let (_dir, ca_file) = write_ca(&ca_pem);
    let provider = |name: &str, version: &str| {
        format!(
            "  {name}:\n    kind: openai\n    base_url: \"{base}\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 2s\n    tls_server_name: localhost\n    ca_file: \"{ca}\"\n    http_version: {version}\n",
            base = up.base_url(),
            ca = ca_file.display(),
        )
    };
    let body = format!(
        "providers:\n{}{}models:\n  a: {{ provider: auto, upstream_model: a }}\n  s: {{ provider: strict, upstream_model: s }}\nroutes:\n  - {{ name: r, match: {{ model: s }}, targets: [ {{ model: s }} ], retry: {{ max_attempts: 1 }}, {NO_EJECTION} }}\n",
        provider("auto", "auto"),
        provider("strict", "h2"),
    );
    let gw = TestGateway::start_with_env(&body, &plain, "", &[]).await;
    for stream in [false, true, false] {
        let resp = gw
            .post("/v1/chat/completions", chat("a", stream))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let _ = resp.text().await.expect("body");
    }
    assert_eq!(up.requests_for("a"), 3);
    let targets = gw.admin_json("/admin/targets").await;
    let auto = targets["connections"]
        .as_array()
        .and_then(|c| c.iter().find(|p| p["provider"] == "auto"))
        .cloned()
        .unwrap_or_else(|| panic!("{targets}"));
    assert_eq!(auto["h1_fallback"], true, "{auto}");

    let resp = gw
        .post("/v1/chat/completions", chat("s", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    eventually(async || {
        gw.log_text()
            .lines()
            .any(|l| l.contains(&id) && l.contains("does not accept HTTP/2"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("a log line with {id} saying why:\n{}", gw.log_text()));
    assert_eq!(up.requests_for("s"), 0);
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_the_providers_idle_timeout() {
    let plain = mock_llm().await;
    let up = h2c_mock().await;
    let body = format!(
        "providers:\n  h2c:\n    kind: openai\n    base_url: \"{base}\"\n    api_key_env: {CANARY_ENV}\n    http_version: h2\n    idle_timeout: 300ms\nmodels:\n  m: {{ provider: h2c, upstream_model: m }}\n",
        base = up.base_url(),
    );
    let gw = TestGateway::start_with_env(&body, &plain, "", &[]).await;
    let send = async || {
        let resp = gw
            .post("/v1/chat/completions", chat("m", true))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        sse_data(resp).await
    };
    // Back to back, the connection is reused.
    send().await;
    send().await;
    assert_eq!(up.stats().connections, 1);
    gw.metrics_when(|m| m.contains("sluice_upstream_h2_connections{provider=\"h2c\"} 1"))
        .await;
    // Left idle past 300 ms it is closed (the gauge drops), and the next attempt dials anew.
    gw.metrics_when(|m| m.contains("sluice_upstream_h2_connections{provider=\"h2c\"} 0"))
        .await;
    let events = send().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(up.stats().requests, 3);
    assert_eq!(up.stats().connections, 2);
}
