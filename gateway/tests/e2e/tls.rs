//! TLS and HTTP/2 against the real binary: HTTPS with ALPN `h2` and `http/1.1`, h2c prior
//! knowledge, SSE over HTTP/2 chunk by chunk, the HTTP/2 stream limit, certificate rotation
//! (and a broken certificate keeping the old one), and client certificates on the admin
//! listener. Certificates are made at test time with rcgen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use pingora::tls::{
    CertificateDer, ClientConfig, PrivateKeyDer, RootCertStore, ServerName, TlsConnector,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::common::{
    ADMIN_TOKEN, KEY, PATIENCE, TestGateway, assert_no_canary, chat, eventually, mock_llm,
    sse_data, stream_text,
};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\n  local: { kind: mock, ttft_ms: 0, tokens_per_s: 40 }\nmodels:\n  m: { provider: up, upstream_model: m }\n  paced: { provider: local }\n";

/// A test CA and what it signs.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("self-signed");
        Self { cert, key }
    }

    /// A leaf for `localhost` and 127.0.0.1 named `cn`: (certificate PEM, key PEM).
    fn leaf(&self, cn: &str) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        roots
    }
}

/// Writes a file the way a deployment swaps one: a temporary beside it, renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A server certificate for `cn` from `ca`, written into `dir`: (cert path, key path).
pub(crate) fn write_leaf(ca: &Ca, cn: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf(cn);
    let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
    replace(&c, &cert);
    replace(&k, &key);
    (c, k)
}

pub(crate) fn client_config(
    ca: &Ca,
    alpn: &[&[u8]],
    identity: Option<(String, String)>,
) -> ClientConfig {
    pingora::tls::install_default_crypto_provider();
    let builder = ClientConfig::builder().with_root_certificates(ca.roots());
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = vec![pem_cert(&cert)];
            builder
                .with_client_auth_cert(certs, pem_key(&key))
                .expect("client identity")
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

fn pem_cert(pem: &str) -> CertificateDer<'static> {
    let (_, der) = x509_pem(pem);
    CertificateDer::from(der)
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    let kp = KeyPair::from_pem(pem).expect("key pem");
    PrivateKeyDer::try_from(kp.serialize_der()).expect("key der")
}

/// The DER inside a one-certificate PEM.
fn x509_pem(pem: &str) -> (String, Vec<u8>) {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &body).expect("base64");
    (body, der)
}

fn https_client(cfg: ClientConfig, h2: bool) -> reqwest::Client {
    let b = reqwest::Client::builder().use_preconfigured_tls(cfg);
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().expect("client")
}

fn tls_extra(dir: &Path) -> String {
    format!(
        "  tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    )
}

/// The certificate a new TLS connection to `port` is served, as DER.
async fn served_cert(ca: &Ca, port: u16) -> Vec<u8> {
    let cfg = client_config(ca, &[b"http/1.1"], None);
    let connector = TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().expect("peer certs")[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn https_offers_h2_and_http1_by_alpn_and_streams_over_h2() {
    let mock = mock_llm().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("sluice test CA");
    write_leaf(&ca, "sluice-api", dir.path());
    let gw = TestGateway::start_with(POLICY, &mock, &tls_extra(dir.path())).await;
    let url = |p: &str| format!("https://localhost:{}{p}", gw.port);

    for (alpn, h2, version) in [
        (
            &[&b"h2"[..], b"http/1.1"][..],
            true,
            reqwest::Version::HTTP_2,
        ),
        (&[&b"http/1.1"[..]][..], false, reqwest::Version::HTTP_11),
    ] {
        let client = https_client(client_config(&ca, alpn, None), h2);
        let resp = client
            .post(url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(chat("m", false))
            .send()
            .await
            .expect("https request");
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.expect("body");
        assert_no_canary(&body);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["object"], "chat.completion");

        let resp = client
            .post(url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(chat("m", true))
            .send()
            .await
            .expect("streamed request");
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        let events = sse_data(resp).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        assert!(!stream_text(&events).is_empty());
    }

    // Plain HTTP on the HTTPS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/models", gw.port))
        .bearer_auth(KEY)
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));

    // A paced stream over h2 arrives event by event, not in one piece at the end.
    let client = https_client(client_config(&ca, &[b"h2"], None), true);
    let mut resp = client
        .post(url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat("paced", true))
        .send()
        .await
        .expect("paced stream");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let started = Instant::now();
    let mut arrivals = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        if !chunk.is_empty() {
            arrivals.push(started.elapsed());
        }
    }
    assert!(arrivals.len() >= 3, "{} chunks", arrivals.len());
    let spread = arrivals[arrivals.len() - 1] - arrivals[0];
    assert!(
        spread >= Duration::from_millis(50),
        "the chunks came together ({spread:?} apart): the stream was buffered"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_on_a_plain_listener_with_its_stream_limit() {
    let mock = mock_llm().await;
    let gw = TestGateway::start_with(
        POLICY,
        &mock,
        "  http2: { h2c: true, max_concurrent_streams: 3 }\n",
    )
    .await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat("m", true))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // HTTP/1.1 keeps working on the same listener.
    let resp = gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("h1");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);

    // The stream limit is what the server announces in its SETTINGS.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    #[expect(
        clippy::disallowed_methods,
        reason = "the raw h2 client's connection driver, for this test's one connection"
    )]
    tokio::spawn(conn);
    let mut send = send.ready().await.expect("ready");
    let req = http::Request::get(gw.url("/v1/models"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(())
        .expect("request");
    let (resp, _) = send.send_request(req, true).expect("send");
    let resp = resp.await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(send.current_max_send_streams(), 3);

    // A header list over `max_header_bytes` is refused with 431.
    let big = "x".repeat(70_000);
    let req = http::Request::get(gw.url("/v1/models"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-big", big)
        .body(())
        .expect("request");
    let mut send = send.ready().await.expect("ready");
    let status = match send.send_request(req, true) {
        Ok((resp, _)) => resp.await.map(|r| r.status().as_u16()).unwrap_or(0),
        Err(_) => 0,
    };
    assert!(
        status == 431 || status == 0,
        "an oversized header list was answered {status}"
    );
    assert_ne!(status, 200);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart_and_a_broken_one_keeps_the_old() {
    let mock = mock_llm().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("sluice test CA");
    write_leaf(&ca, "first", dir.path());
    let gw = TestGateway::start_with(POLICY, &mock, &tls_extra(dir.path())).await;
    let first = served_cert(&ca, gw.port).await;

    // Let the watcher see the files as they were before they change (mtime granularity).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cert_path, _) = write_leaf(&ca, "second", dir.path());
    let second = std::fs::read_to_string(&cert_path).expect("read");
    let (_, second_der) = x509_pem(&second);
    let rotated = eventually(async || {
        let now = served_cert(&ca, gw.port).await;
        (now == second_der).then_some(())
    })
    .await;
    assert!(rotated.is_some(), "the rotated certificate was not served");
    assert_ne!(first, second_der);
    let metrics = gw
        .metrics_when(|m| {
            m.contains(
                "sluice_tls_certificate_reloads_total{listener=\"api\",result=\"applied\"} 1",
            )
        })
        .await;
    assert!(
        metrics.contains(
            "sluice_tls_certificate_reloads_total{listener=\"api\",result=\"applied\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_tls_certificate_expiry_timestamp{listener=\"api\"}"));

    // A broken certificate: counted, reported, and the second one keeps serving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace(
        &cert_path,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let metrics = gw
        .metrics_when(|m| {
            m.contains(
                "sluice_tls_certificate_reloads_total{listener=\"api\",result=\"rejected\"} 1",
            )
        })
        .await;
    assert!(
        metrics.contains(
            "sluice_tls_certificate_reloads_total{listener=\"api\",result=\"rejected\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(served_cert(&ca, gw.port).await, second_der);
    let view: serde_json::Value = gw
        .admin(reqwest::Method::GET, "/admin/tls")
        .send()
        .await
        .expect("admin tls")
        .json()
        .await
        .expect("json");
    let api = &view["certificates"][0];
    assert_eq!(api["listener"], "api");
    assert!(
        api["subject"]
            .as_str()
            .is_some_and(|s| s.contains("second")),
        "{view}"
    );
    assert!(
        api["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("server.crt")),
        "{view}"
    );
    // And requests keep working over it.
    let client = https_client(client_config(&ca, &[b"h2"], None), true);
    let resp = client
        .get(format!("https://localhost:{}/v1/models", gw.port))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(gw.log_text().contains("TLS certificate reload rejected"));
    let _ = PATIENCE;
}

#[tokio::test]
async fn the_admin_listener_with_a_client_ca_refuses_clients_without_its_certificate() {
    let mock = mock_llm().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("sluice server CA");
    let clients = Ca::new("ops client CA");
    let strangers = Ca::new("someone else's CA");
    write_leaf(&ca, "sluice-admin", dir.path());
    let client_ca = dir.path().join("clients.pem");
    std::fs::write(&client_ca, clients.cert.pem()).expect("client ca");
    let extra = format!(
        "  admin_tls: {{ cert: \"{}\", key: \"{}\", client_ca: \"{}\" }}\n",
        dir.path().join("server.crt").display(),
        dir.path().join("server.key").display(),
        client_ca.display()
    );
    let gw = TestGateway::start_with(POLICY, &mock, &extra).await;
    let url = |p: &str| format!("https://localhost:{}{p}", gw.admin_port);

    // No client certificate, or one from another CA: refused in the handshake.
    for identity in [None, Some(strangers.leaf("intruder"))] {
        let client = https_client(client_config(&ca, &[b"http/1.1"], identity), false);
        let r = client.get(url("/metrics")).send().await;
        assert!(
            r.is_err(),
            "admin answered without a valid client certificate: {r:?}"
        );
    }

    // A valid one: /metrics answers, and the admin token still guards /admin/*.
    let good = clients.leaf("ops");
    let client = https_client(client_config(&ca, &[b"http/1.1"], Some(good)), false);
    let ready = eventually(async || {
        let r = client.get(url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "admin over mTLS never became ready");
    let m = client.get(url("/metrics")).send().await.expect("metrics");
    assert_eq!(m.status(), 200);
    let no_token = client.get(url("/admin/tls")).send().await.expect("admin");
    assert_eq!(no_token.status(), 401);
    let with_token = client
        .get(url("/admin/tls"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin");
    assert_eq!(with_token.status(), 200);
    let view: serde_json::Value = with_token.json().await.expect("json");
    assert_eq!(view["certificates"][0]["listener"], "admin");

    // The API listener stays plain HTTP.
    let resp = gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_judge_reaches_an_https_listener_through_its_loopback() {
    let mock = mock_llm().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("sluice test CA");
    // A certificate for a public name only: the loopback call cannot verify it by address.
    let (cert, key) = {
        let mut p = CertificateParams::new(vec!["llm.example.com".to_owned()]).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, "llm.example.com");
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    replace(&dir.path().join("server.crt"), &cert);
    replace(&dir.path().join("server.key"), &key);
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n  judge-model: { provider: up }\nroutes:\n  - name: chat\n    match: { model: chat }\n    targets: [ { model: m } ]\n    judge: { model: judge-model, sample: 1.0, rubric: helpfulness }\n";
    let gw = TestGateway::start_with(policy, &mock, &tls_extra(dir.path())).await;
    let mut cfg = client_config(&ca, &[b"h2"], None);
    // The test client checks the name the certificate is for, reaching it on loopback.
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .http2_prior_knowledge()
        .resolve(
            "llm.example.com",
            std::net::SocketAddr::from(([127, 0, 0, 1], gw.port)),
        )
        .build()
        .expect("client");
    let r = client
        .post(format!(
            "https://llm.example.com:{}/v1/chat/completions",
            gw.port
        ))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat("chat", false))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let _ = r.text().await.expect("body");
    let scored = r#"sluice_judge_samples_total{route="chat",outcome="scored"} 1"#;
    let m = gw.metrics_when(|m| m.contains(scored)).await;
    assert!(m.contains(scored), "{m}");
}
