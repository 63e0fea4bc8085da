//! Reaching providers from inside a company network (issue 20), against the real binary: a
//! CONNECT proxy written here on 127.0.0.1 (it counts connections, records what it was
//! asked, and can refuse), and mock-llm behind a TLS-terminating forwarder whose certificate
//! comes from a test CA, so only a policy with that CA in `ca_file` can reach it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pingora::tls::{CertificateDer, PrivateKeyDer, ServerConfig, TlsAcceptor};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{
    ADMIN_TOKEN, CANARY_ENV, NO_EJECTION, TestGateway, assert_no_canary, chat, eventually,
    free_port, mock_llm, sse_data, stream_text,
};

const CORP_TOKEN: &str = "corp-token-EGRESS-SECRET-7f3a";
const PROXY_CREDS: &str = "alice:EGRESS-PROXY-PW-91c2";

/// A test CA: its PEM, and a leaf for `localhost` / 127.0.0.1 as rustls server parts.
struct TestCa {
    pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().expect("key");
        let ca = p.self_signed(&ca_key).expect("self-signed");
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        leaf.distinguished_name.push(DnType::CommonName, "provider");
        let key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&key, &ca, &ca_key).expect("sign");
        Self {
            pem: ca.pem(),
            chain: vec![cert.der().clone()],
            key,
        }
    }

    fn write(&self, dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write ca");
        path.display().to_string()
    }

    fn acceptor(&self) -> TlsAcceptor {
        pingora::tls::install_default_crypto_provider();
        let key = PrivateKeyDer::try_from(self.key.serialize_der()).expect("key der");
        let cfg = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("server config");
        TlsAcceptor::from(Arc::new(cfg))
    }
}

/// Copies both ways, starting with bytes already read from `a`.
async fn splice<A, B>(mut a: A, mut b: B, first: &[u8])
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if b.write_all(first).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    }
}

/// Reads until a whole HTTP head (`\r\n\r\n`) is in `buf`; false at end of stream.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

/// mock-llm over TLS: terminates TLS with the test CA's leaf and forwards to mock-llm,
/// recording the first request head of every connection.
struct TlsFront {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TlsFront {
    async fn start(ca: &TestCa, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = ca.acceptor();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends the handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    if !read_head(&mut tls, &mut buf).await {
                        return;
                    }
                    seen.lock()
                        .expect("heads")
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    if let Ok(up) = TcpStream::connect(upstream).await {
                        splice(tls, up, &buf).await;
                    }
                });
            }
        });
        Self { port, heads }
    }

    fn heads(&self) -> String {
        self.heads.lock().expect("heads").join("\n---\n")
    }
}

/// A forward proxy: CONNECT tunnels, and absolute-form plain-HTTP requests forwarded as
/// they are. Counts connections and records every request head it is sent.
struct Proxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// `refuse`: answer every CONNECT with 403, as a proxy whose rules do not allow it.
    async fn start(refuse: bool) -> Self {
        Self::start_with(refuse, None).await
    }

    /// An `https://` proxy: TLS with the test CA's leaf first, then the same proxying.
    async fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(false, Some(ca.acceptor())).await
    }

    async fn start_with(refuse: bool, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&heads));
        #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let seen = Arc::clone(&seen);
                let tls = tls.clone();
                #[expect(clippy::disallowed_methods, reason = "a test's stand-in server")]
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            // A client that does not trust the proxy ends the handshake here.
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                proxy_connection(stream, refuse, seen).await;
                            }
                        }
                        None => proxy_connection(tcp, refuse, seen).await,
                    }
                });
            }
        });
        Self {
            port,
            connections,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn heads(&self) -> String {
        self.heads.lock().expect("heads").join("\n---\n")
    }
}

/// One client connection of the proxy: a CONNECT tunnel, or an absolute-form request.
async fn proxy_connection<S>(mut tcp: S, refuse: bool, seen: Arc<Mutex<Vec<String>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    if !read_head(&mut tcp, &mut buf).await {
        return;
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    seen.lock().expect("heads").push(head.clone());
    let line = head.lines().next().unwrap_or_default().to_owned();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        if refuse {
            let _ = tcp.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
            return;
        }
        let Ok(up) = TcpStream::connect(target).await else {
            let _ = tcp.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        if tcp
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok()
        {
            splice(tcp, up, &[]).await;
        }
    } else if let Some(rest) = target.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        if let Ok(up) = TcpStream::connect(authority).await {
            splice(tcp, up, &buf).await;
        }
    }
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("EGRESS_CORP_TOKEN", CORP_TOKEN),
        ("EGRESS_PROXY_CREDS", PROXY_CREDS),
        // The policy's own settings win over a machine-wide proxy.
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ]
}

fn assert_no_egress_secret(place: &str, text: &str) {
    assert!(
        !text.contains(CORP_TOKEN),
        "the env header value leaked into {place}"
    );
    assert!(
        !text.contains("EGRESS-PROXY-PW"),
        "the proxy password leaked into {place}"
    );
}

#[tokio::test]
async fn plain_and_streamed_requests_go_through_a_connect_proxy_to_a_tls_provider() {
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let proxy = Proxy::start(false).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(dir.path(), "corp-ca.pem");
    let body = format!(
        "providers:\n  corp:\n    kind: openai\n    base_url: \"https://127.0.0.1:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    tls_server_name: localhost\n    ca_file: \"{ca_file}\"\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\", credentials_env: EGRESS_PROXY_CREDS }}\n    headers: {{ OpenAI-Organization: org-test, X-Corp-Token: {{ env: EGRESS_CORP_TOKEN }} }}\n    pool_size: 4\n    idle_timeout: 30s\n    tcp_keepalive: 15s\nmodels:\n  m: {{ provider: corp, upstream_model: m }}\n",
        front = front.port,
        proxy = proxy.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;

    let resp = gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.expect("json");
    assert!(
        json["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{json}"
    );

    let resp = gw
        .post("/v1/chat/completions", chat("m", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert!(!stream_text(&events).is_empty(), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Both went through the proxy, as CONNECT to the provider, with the proxy's credentials.
    assert!(proxy.connections() >= 1);
    let asked = proxy.heads();
    assert!(
        asked.starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1", front.port)),
        "{asked}"
    );
    // base64("alice:EGRESS-PROXY-PW-91c2")
    assert!(
        asked.contains("proxy-authorization: Basic YWxpY2U6RUdSRVNTLVBST1hZLVBXLTkxYzI="),
        "{asked}"
    );
    // The extra headers reached mock-llm, the env-read one with its value.
    let sent = front.heads();
    assert!(
        sent.contains("\r\nopenai-organization: org-test\r\n"),
        "{sent}"
    );
    assert!(
        sent.contains(&format!("\r\nx-corp-token: {CORP_TOKEN}\r\n")),
        "{sent}"
    );
    assert!(!sent.contains("proxy-authorization"), "{sent}");

    // …and never appear where the policy or the traffic is shown.
    let policy = gw
        .admin(reqwest::Method::GET, "/admin/policy")
        .send()
        .await
        .expect("policy")
        .text()
        .await
        .expect("text");
    assert_no_egress_secret("/admin/policy", &policy);
    assert!(policy.contains("EGRESS_CORP_TOKEN"), "{policy}");
    assert!(policy.contains("***"), "{policy}");
    let log = gw.log_text();
    assert_no_egress_secret("the log", &log);
    assert_no_canary(&log);
    let _ = ADMIN_TOKEN;
}

#[tokio::test]
async fn a_certificate_the_bundle_does_not_trust_fails_with_a_clear_log_line() {
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let other = TestCa::new("some other CA");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let proxy = Proxy::start(false).await;
    let dir = tempfile::tempdir().expect("dir");
    let wrong = other.write(dir.path(), "other-ca.pem");
    let body = format!(
        "providers:\n  corp:\n    kind: openai\n    base_url: \"https://localhost:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 2s\n    ca_file: \"{wrong}\"\n    ca_replaces_roots: true\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\" }}\n  sysroots:\n    kind: openai\n    base_url: \"https://localhost:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 2s\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\" }}\nmodels:\n  m: {{ provider: corp, upstream_model: m }}\n  s: {{ provider: sysroots, upstream_model: s }}\n",
        front = front.port,
        proxy = proxy.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;

    for (model, hint) in [
        ("m", "not trusted by ca_file"),
        ("s", "not trusted by the system roots"),
    ] {
        let resp = gw
            .post("/v1/chat/completions", chat(model, false))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 502, "{model}");
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let text = resp.text().await.expect("body");
        let json: serde_json::Value = serde_json::from_str(&text).expect("OpenAI error JSON");
        assert!(json["error"]["message"].is_string(), "{text}");
        // No internal address reaches the client.
        assert!(!text.contains("127.0.0.1"), "{text}");
        assert!(!text.contains(&proxy.port.to_string()), "{text}");
        assert!(!text.contains("ca_file"), "{text}");
        let line = eventually(async || {
            gw.log_text()
                .lines()
                .find(|l| l.contains(&id) && l.contains(hint))
                .map(str::to_owned)
        })
        .await
        .unwrap_or_else(|| panic!("a log line with {id} saying {hint}:\n{}", gw.log_text()));
        assert!(line.contains("via proxy 127.0.0.1:"), "{line}");
    }
    assert!(front.heads().is_empty(), "no request reached the provider");
}

#[tokio::test]
async fn a_down_or_refusing_proxy_fails_over_to_a_provider_reached_directly() {
    let mock = mock_llm().await;
    let refusing = Proxy::start(true).await;
    // Nothing listens here: the proxy is down.
    let down = free_port();
    let body = format!(
        "providers:\n  viadown:\n    kind: openai\n    base_url: \"https://api.example.com/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 1s\n    proxy: {{ url: \"http://127.0.0.1:{down}\" }}\n  viarefusing:\n    kind: openai\n    base_url: \"https://api.example.com/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 1s\n    proxy: {{ url: \"http://127.0.0.1:{refusing}\" }}\n  direct:\n    kind: openai\n    base_url: \"{{mock}}\"\n    api_key_env: {CANARY_ENV}\n    proxy: {{ no_proxy: [\"*\"] }}\nmodels:\n  a: {{ provider: viadown, upstream_model: a }}\n  b: {{ provider: viarefusing, upstream_model: b }}\n  backup: {{ provider: direct, upstream_model: backup }}\nroutes:\n  - {{ name: down, match: {{ model: t-down }}, targets: [ {{ model: a }} ], fallbacks: [ backup ] }}\n  - {{ name: refused, match: {{ model: t-refused }}, targets: [ {{ model: b }} ], fallbacks: [ backup ] }}\n",
        refusing = refusing.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;

    for (model, says) in [
        ("t-down", "refused the connection"),
        (
            "t-refused",
            "answered CONNECT api.example.com:443 with 403 Forbidden",
        ),
    ] {
        let resp = gw
            .post("/v1/chat/completions", chat(model, false))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "{model} fails over");
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let json: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(json["model"], "backup", "{json}");
        eventually(async || {
            gw.log_text()
                .lines()
                .any(|l| l.contains(&id) && l.contains(says))
                .then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("a log line with {id} saying {says}:\n{}", gw.log_text()));
    }
    assert_eq!(refusing.connections(), 1);
    assert!(
        refusing.heads().contains("CONNECT api.example.com:443"),
        "the provider's name goes to the proxy unresolved"
    );
}

#[tokio::test]
async fn a_plain_http_provider_behind_a_proxy_gets_absolute_form_requests() {
    let mock = mock_llm().await;
    let proxy = Proxy::start(false).await;
    let port = mock.addr().port();
    let body = format!(
        "providers:\n  up:\n    kind: openai\n    base_url: \"http://127.0.0.1:{port}/v1\"\n    api_key_env: {CANARY_ENV}\n    headers: {{ X-Team: search }}\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\", credentials_env: EGRESS_PROXY_CREDS }}\nmodels:\n  m: {{ provider: up, upstream_model: m }}\n",
        proxy = proxy.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;
    let resp = gw
        .post("/v1/chat/completions", chat("m", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(!stream_text(&sse_data(resp).await).is_empty());
    let asked = proxy.heads();
    assert!(
        asked.starts_with(&format!(
            "POST http://127.0.0.1:{port}/v1/chat/completions HTTP/1.1\r\n"
        )),
        "{asked}"
    );
    assert!(asked.contains("\r\nx-team: search\r\n"), "{asked}");
    assert!(asked.contains("\r\nproxy-authorization: Basic "), "{asked}");
}

#[tokio::test]
async fn a_ca_file_added_to_the_system_roots_works_directly_and_a_broken_one_refuses_the_reload() {
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let dir = tempfile::tempdir().expect("dir");
    let good = ca.write(dir.path(), "corp-ca.pem");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let policy = |ca_file: &str| {
        format!(
            "providers:\n  corp:\n    kind: openai\n    base_url: \"https://localhost:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    ca_file: \"{ca_file}\"\nmodels:\n  m: {{ provider: corp, upstream_model: m }}\n",
            front = front.port,
        )
    };
    // No proxy anywhere: the machine-wide variable is not set for this one.
    let gw = TestGateway::start_with_env(&policy(&good), &mock, "", &[]).await;
    let resp = gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);

    std::fs::write(
        &gw.policy_path,
        gw.policy_text(&policy(&broken.display().to_string()), "", ""),
    )
    .expect("rewrite policy");
    let resp = gw
        .admin(reqwest::Method::POST, "/admin/reload")
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 422);
    let report: serde_json::Value = resp.json().await.expect("json");
    let problems = report["problems"].to_string();
    assert!(problems.contains("provider `corp`"), "{report}");
    assert!(problems.contains("cannot be parsed"), "{report}");
    // The serving policy, and its trust, are unchanged.
    let resp = gw
        .post("/v1/chat/completions", chat("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_translated_kind_goes_through_the_proxy_with_its_extra_headers() {
    // mock-llm answers `/v1/messages` in Anthropic's dialect; the gateway translates back.
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let proxy = Proxy::start(false).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(dir.path(), "corp-ca.pem");
    let port = mock.addr().port();
    let body = format!(
        "providers:\n  claude:\n    kind: anthropic\n    base_url: \"https://127.0.0.1:{front}\"\n    api_key_env: {CANARY_ENV}\n    tls_server_name: localhost\n    ca_file: \"{ca_file}\"\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\", credentials_env: EGRESS_PROXY_CREDS }}\n    headers: {{ X-Corp-Token: {{ env: EGRESS_CORP_TOKEN }} }}\n  claude-plain:\n    kind: anthropic\n    base_url: \"http://127.0.0.1:{port}\"\n    api_key_env: {CANARY_ENV}\n    proxy: {{ url: \"http://127.0.0.1:{proxy}\" }}\n    headers: {{ X-Team: search }}\nmodels:\n  c: {{ provider: claude, upstream_model: m-anthropic }}\n  c-plain: {{ provider: claude-plain, upstream_model: m-anthropic }}\n",
        front = front.port,
        proxy = proxy.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;

    let resp = gw
        .post("/v1/chat/completions", chat("c", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.expect("json");
    assert!(
        json["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{json}"
    );
    let resp = gw
        .post("/v1/chat/completions", chat("c", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert!(!stream_text(&events).is_empty(), "{events:?}");

    // CONNECT to the provider's name as configured; Anthropic's path and credential inside
    // the tunnel, with the extra header beside them.
    let asked = proxy.heads();
    assert!(
        asked.starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1", front.port)),
        "{asked}"
    );
    let sent = front.heads();
    assert!(sent.starts_with("POST /v1/messages HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("\r\nx-api-key: "), "{sent}");
    assert!(
        sent.contains(&format!("\r\nx-corp-token: {CORP_TOKEN}\r\n")),
        "{sent}"
    );

    // A plain-HTTP Anthropic provider behind the proxy: absolute-form request line.
    let resp = gw
        .post("/v1/chat/completions", chat("c-plain", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let asked = proxy.heads();
    assert!(
        asked.contains(&format!(
            "POST http://127.0.0.1:{port}/v1/messages HTTP/1.1\r\n"
        )),
        "{asked}"
    );
    assert!(asked.contains("\r\nx-team: search\r\n"), "{asked}");
    assert_eq!(mock.requests_for("m-anthropic"), 3);

    let log = gw.log_text();
    assert_no_egress_secret("the log", &log);
    assert_no_canary(&log);
}

#[tokio::test]
async fn an_https_proxy_carries_a_translated_kind_and_its_certificate_is_checked() {
    // The proxy's certificate and the provider's come from the same corporate CA, as with a
    // TLS-inspecting proxy: one ca_file trusts both hops.
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let proxy = Proxy::start_tls(&ca).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(dir.path(), "corp-ca.pem");
    let body = format!(
        "providers:\n  gem:\n    kind: gemini\n    base_url: \"https://127.0.0.1:{front}\"\n    api_key_env: {CANARY_ENV}\n    tls_server_name: localhost\n    ca_file: \"{ca_file}\"\n    proxy: {{ url: \"https://127.0.0.1:{proxy}\", credentials_env: EGRESS_PROXY_CREDS }}\n    headers: {{ X-Corp-Token: {{ env: EGRESS_CORP_TOKEN }} }}\n  untrusted:\n    kind: openai\n    base_url: \"https://127.0.0.1:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 2s\n    tls_server_name: localhost\n    proxy: {{ url: \"https://127.0.0.1:{proxy}\" }}\nmodels:\n  g: {{ provider: gem, upstream_model: m-gemini }}\n  u: {{ provider: untrusted, upstream_model: u }}\n",
        front = front.port,
        proxy = proxy.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &env()).await;

    for stream in [false, true] {
        let resp = gw
            .post("/v1/chat/completions", chat("g", stream))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "stream={stream}");
        if stream {
            let events = sse_data(resp).await;
            assert!(!stream_text(&events).is_empty(), "{events:?}");
        } else {
            let json: serde_json::Value = resp.json().await.expect("json");
            assert!(
                json["choices"][0]["message"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
                "{json}"
            );
        }
    }
    // CONNECT inside TLS to the proxy, with its credentials; Gemini's path, key and the
    // extra header inside the tunnel's own TLS.
    let asked = proxy.heads();
    assert!(
        asked.starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1", front.port)),
        "{asked}"
    );
    assert!(asked.contains("proxy-authorization: Basic "), "{asked}");
    let sent = front.heads();
    assert!(
        sent.starts_with("POST /v1beta/models/m-gemini:generateContent HTTP/1.1\r\n"),
        "{sent}"
    );
    assert!(sent.contains("\r\nx-goog-api-key: "), "{sent}");
    assert!(
        sent.contains(&format!("\r\nx-corp-token: {CORP_TOKEN}\r\n")),
        "{sent}"
    );

    // Without the CA, the proxy's own certificate is what fails, and the log says so.
    let reached = proxy.heads().len();
    let resp = gw
        .post("/v1/chat/completions", chat("u", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let text = resp.text().await.expect("body");
    assert!(!text.contains("127.0.0.1"), "{text}");
    eventually(async || {
        gw.log_text()
            .lines()
            .any(|l| l.contains(&id) && l.contains("TLS to proxy 127.0.0.1:"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "a log line with {id} naming the proxy's TLS:\n{}",
            gw.log_text()
        )
    });
    assert_eq!(
        proxy.heads().len(),
        reached,
        "no CONNECT after a failed handshake"
    );
    let log = gw.log_text();
    assert_no_egress_secret("the log", &log);
    assert_no_canary(&log);
}

#[tokio::test]
async fn a_ca_file_rotated_on_disk_is_trusted_without_a_policy_edit_and_a_broken_one_keeps_the_old()
{
    let mock = mock_llm().await;
    let ca = TestCa::new("egress test CA");
    let other = TestCa::new("the CA before rotation");
    let front = TlsFront::start(&ca, mock.addr()).await;
    let dir = tempfile::tempdir().expect("dir");
    // The bundle first holds a CA that did not sign the provider's certificate.
    let ca_file = other.write(dir.path(), "corp-ca.pem");
    let body = format!(
        "providers:\n  corp:\n    kind: openai\n    base_url: \"https://localhost:{front}/v1\"\n    api_key_env: {CANARY_ENV}\n    connect_timeout: 2s\n    ca_file: \"{ca_file}\"\n    ca_replaces_roots: true\nmodels:\n  m: {{ provider: corp, upstream_model: m }}\nroutes:\n  - {{ name: r, match: {{ model: m }}, targets: [ {{ model: m }} ], retry: {{ max_attempts: 1 }}, {NO_EJECTION} }}\n",
        front = front.port,
    );
    let gw = TestGateway::start_with_env(&body, &mock, "", &[]).await;
    let generation = gw.admin_json("/admin/targets").await["generation"].clone();
    let status = async || {
        gw.post("/v1/chat/completions", chat("m", false))
            .send()
            .await
            .expect("send")
            .status()
    };
    assert_eq!(
        status().await,
        502,
        "the old bundle does not trust the provider"
    );

    // Rotated in place, as a secret mount or configuration management does it.
    let staged = dir.path().join("staged.pem");
    std::fs::write(&staged, &ca.pem).expect("write");
    std::fs::rename(&staged, &ca_file).expect("rotate");
    eventually(async || (status().await == 200).then_some(()))
        .await
        .expect("the rotated bundle is trusted without a policy edit");
    let metrics = gw
        .metrics_when(|m| {
            m.contains("sluice_egress_ca_reloads_total{provider=\"corp\",result=\"applied\"} 1")
        })
        .await;
    assert!(
        metrics.contains("sluice_egress_ca_reloads_total{provider=\"corp\",result=\"applied\"} 1"),
        "{metrics}"
    );

    // A broken bundle: counted and logged, and the trust in force stays.
    std::fs::write(
        &staged,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::rename(&staged, &ca_file).expect("break");
    let rejected = "sluice_egress_ca_reloads_total{provider=\"corp\",result=\"rejected\"} 1";
    let metrics = gw.metrics_when(|m| m.contains(rejected)).await;
    assert!(metrics.contains(rejected), "{metrics}");
    assert_eq!(
        status().await,
        200,
        "the previous trust store keeps serving"
    );
    assert!(
        gw.log_text()
            .lines()
            .any(|l| l.contains("previous trust store stays") && l.contains("cannot be parsed")),
        "{}",
        gw.log_text()
    );
    // No policy reload happened: the same generation serves.
    assert_eq!(
        gw.admin_json("/admin/targets").await["generation"],
        generation
    );
}
