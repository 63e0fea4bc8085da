//! The edge as a hostile client and a misbehaving provider see it: streams that arrive in one
//! piece, pooled connections closed under a request, slow and oversized heads and bodies,
//! connection floods, JSON bombs, HTTP/1.x corners, shutdown, and errors that name nothing
//! internal.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{self, KEY, TestGateway, eventually};
use crate::rawup::{self, RawUpstream, Reply};

fn raw_policy(url: &str) -> String {
    format!(
        "providers:\n  raw: {{ kind: openai, base_url: \"{url}\" }}\nmodels:\n  m: {{ provider: raw }}\nroutes:\n  - {{ name: chat, match: {{ model: chat }}, targets: [ {{ model: m }} ], retry: {{ max_attempts: 1 }} }}\n"
    )
}

fn request_id_number(head: &str, prefix: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.eq_ignore_ascii_case("x-request-id") {
            return None;
        }
        v.trim().strip_prefix(prefix)?.parse().ok()
    })
}

/// How a streamed answer was framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// `content-length`, equal to the body's length.
    Length,
    Chunked,
    Other(String),
}

/// A streamed answer's framing, its body, and the payloads of its `data:` lines.
async fn read_stream(resp: reqwest::Response) -> (Framing, String, Vec<String>) {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    let (length, coding) = (header("content-length"), header("transfer-encoding"));
    let text = resp.text().await.expect("body");
    let framing = match (length, coding) {
        (Some(l), None) if l == text.len().to_string() => Framing::Length,
        (None, Some(c)) if c == "chunked" => Framing::Chunked,
        other => Framing::Other(format!("{other:?}")),
    };
    let events = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
        .collect();
    (framing, text, events)
}

#[tokio::test]
async fn a_stream_sent_in_one_piece_or_split_anywhere_is_delivered_whole() {
    let whole = rawup::whole_stream("m");
    let len = whole.len();
    let up = RawUpstream::start(move |seen| {
        let k = request_id_number(seen.head, "split-").unwrap_or(0).min(len);
        if k == 0 {
            Reply::Writes(vec![whole.clone()])
        } else if k == len / 2 {
            // Surely after the head is due, however slow the machine: this one is chunked.
            Reply::Paced(
                vec![whole[..k].to_vec(), whole[k..].to_vec()],
                Duration::from_millis(200),
            )
        } else {
            Reply::Writes(vec![whole[..k].to_vec(), whole[k..].to_vec()])
        }
    })
    .await;
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&raw_policy(&up.base_url()), &mock).await;
    let client = reqwest::Client::new();
    for k in 0..len {
        let resp = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", format!("split-{k}"))
            .body(common::chat("chat", true))
            .send()
            .await
            .expect("request");
        let (framing, text, events) = read_stream(resp).await;
        // In one piece, the whole stream is in hand before its head is written: it goes out
        // with its length. Cut mid-stream, it is chunked as it arrives.
        if k == 0 {
            assert_eq!(framing, Framing::Length, "a stream that came whole");
        } else if k == len / 2 {
            assert_eq!(framing, Framing::Chunked);
        }
        assert!(
            text.ends_with("data: [DONE]\n\n") && !text.contains("\"error\""),
            "split at {k} of {len}: {text}"
        );
        assert_eq!(
            common::stream_text(&events),
            "Hello there, how are you?",
            "split at {k}"
        );
    }
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        len,
        "one provider call each, no retries"
    );
    let metrics = gw
        .metrics_when(|m| m.contains(&format!("outcome=\"ok\",status=\"200\"}} {len}")))
        .await;
    assert!(
        metrics.contains(&format!(
            "sluice_requests_total{{endpoint=\"chat_completions\",route=\"chat\",model=\"m\",tenant=\"test\",outcome=\"ok\",status=\"200\"}} {len}"
        )),
        "every one recorded as ok: {metrics}"
    );
}

/// A whole answer larger than Sluice's first read of it (4 KiB) is still in hand whole before
/// its head is written: the rest waits on the socket and is read without waiting, so the
/// stream leaves with its length in one write instead of a chunked first part, a second part
/// and a terminator.
#[tokio::test]
async fn a_whole_stream_larger_than_one_read_goes_out_with_its_length() {
    let words: Vec<String> = (0..60).map(|i| format!(" word{i}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let whole = rawup::whole_stream_of("m", &words);
    assert!(whole.len() > 2 * 4096, "{} bytes", whole.len());
    let up = RawUpstream::start(move |_| Reply::Writes(vec![whole.clone()])).await;
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&raw_policy(&up.base_url()), &mock).await;
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(common::chat("chat", true))
        .send()
        .await
        .expect("request");
    let (framing, text, events) = read_stream(resp).await;
    assert_eq!(
        framing,
        Framing::Length,
        "a stream that came whole, in more than one read"
    );
    assert_eq!(common::stream_text(&events), words.concat());
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_cached_stream_replayed_by_an_inner_sluice_reaches_the_client_whole() {
    let mock = common::mock_llm().await;
    let inner_policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\nroutes:\n  - { name: chat, match: { model: chat }, targets: [ { model: m } ], cache: { ttl: 10m } }\n";
    let inner = TestGateway::start(inner_policy, &mock).await;
    let outer_policy = format!(
        "providers:\n  inner: {{ kind: openai, base_url: \"http://127.0.0.1:{}/v1\", api_key_env: SLUICE_TEST_INNER_KEY }}\nmodels:\n  chat: {{ provider: inner }}\n",
        inner.port
    );
    let outer =
        TestGateway::start_with_env(&outer_policy, &mock, "", &[("SLUICE_TEST_INNER_KEY", KEY)])
            .await;
    let body = serde_json::json!({
        "model": "chat", "stream": true, "temperature": 0,
        "messages": [{"role": "user", "content": "cache me"}],
    })
    .to_string();
    let mut texts = Vec::new();
    for _ in 0..2 {
        let resp = outer
            .post("/v1/chat/completions", body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        texts.push(resp.text().await.expect("body"));
    }
    assert_eq!(
        mock.stats().requests,
        1,
        "the second answer came from the inner cache"
    );
    for t in &texts {
        assert!(
            t.ends_with("data: [DONE]\n\n") && !t.contains("\"error\""),
            "{t}"
        );
    }
    let strip = |t: &str| {
        let events: Vec<String> = t
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
            .collect();
        common::stream_text(&events)
    };
    assert_eq!(strip(&texts[0]), strip(&texts[1]));

    // The inner Sluice replays a cached stream in one piece, with its length.
    let direct = body.replace("cache me", "cache me directly");
    let first = inner
        .post("/v1/chat/completions", direct.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(first.headers()["x-sluice-cache"], "miss");
    // Stored when it ends.
    let stored = first.text().await.expect("body");
    let resp = inner
        .post("/v1/chat/completions", direct)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["x-sluice-cache"], "hit");
    assert!(resp.headers().get("transfer-encoding").is_none());
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a length");
    let text = resp.text().await.expect("body");
    assert_eq!(len, text.len());
    assert_eq!(strip(&text), strip(&stored));
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_provider_is_retried_without_spending_an_attempt() {
    // Each connection answers its first request and closes on the second without a word, as a
    // provider whose keep-alive ran out just as the request arrived.
    let up = RawUpstream::start(|seen| {
        if seen.on_connection == 0 {
            Reply::Writes(vec![rawup::whole_json()])
        } else {
            Reply::Close
        }
    })
    .await;
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&raw_policy(&up.base_url()), &mock).await;
    for i in 0..4 {
        let resp = gw
            .post("/v1/chat/completions", common::chat("chat", false))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "request {i} (max_attempts 1)");
    }
    assert!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "each retry went on a new connection"
    );
    let metrics = gw
        .metrics_when(|m| m.contains("model=\"m\",outcome=\"ok\"} 4"))
        .await;
    assert!(
        metrics.contains(
            "sluice_upstream_attempts_total{provider=\"raw\",model=\"m\",outcome=\"ok\"} 4"
        ),
        "one attempt each: {metrics}"
    );
}

#[tokio::test]
async fn an_idle_provider_connection_is_reused_then_closed_after_its_idle_timeout() {
    let up = RawUpstream::start(|_| Reply::Writes(vec![rawup::whole_json()])).await;
    let mock = common::mock_llm().await;
    let policy = raw_policy(&up.base_url()).replace(
        "kind: openai, base_url:",
        "kind: openai, idle_timeout: 1s, base_url:",
    );
    let gw = TestGateway::start(&policy, &mock).await;
    for i in 0..3 {
        let resp = gw
            .post("/v1/chat/completions", common::chat("chat", false))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "request {i}");
    }
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one kept-alive connection carried all three"
    );
    let idle = "sluice_upstream_idle_connections{pool=\"shared\"} 1";
    let m = gw.metrics_when(|m| m.contains(idle)).await;
    assert!(m.contains(idle), "{idle}: {m}");
    // Idle past its second, the connection is closed by the gateway's sweep (once a second).
    let closed = || {
        up.closed_by_gateway
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while closed() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(closed(), 1, "the idle connection was closed");
    let idle = "sluice_upstream_idle_connections{pool=\"shared\"} 0";
    let m = gw.metrics_when(|m| m.contains(idle)).await;
    assert!(m.contains(idle), "{idle}: {m}");
    let resp = gw
        .post("/v1/chat/completions", common::chat("chat", false))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_providers_own_4xx_reaches_the_client_in_openais_shape() {
    let up = RawUpstream::start(|_| {
        let page = "<html><body>400 Bad Request: unsupported parameter</body></html>";
        Reply::Writes(vec![
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{page}",
                page.len()
            )
            .into_bytes(),
        ])
    })
    .await;
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(&raw_policy(&up.base_url()), &mock).await;
    let resp = gw
        .post("/v1/chat/completions", common::chat("chat", false))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.expect("OpenAI error JSON");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.contains("unsupported parameter"), "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "provider_error");
}

#[tokio::test]
async fn json_bombs_and_lone_surrogates_are_refused_before_any_provider_call() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let deep = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}],\"tools\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let lone = r#"{"model":"m","messages":[{"role":"user","content":"\ud800 alone"}]}"#;
    for (body, says) in [(deep, "deeper than"), (lone.to_owned(), "surrogate")] {
        let resp = gw
            .post("/v1/chat/completions", body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 400);
        let v: serde_json::Value = resp.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{v}"
        );
    }
    assert_eq!(mock.stats().requests, 0);
}

/// Reads what the server sends until it closes (or `limit` passes); returns it.
async fn read_until_close(sock: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn chat_request(extra_headers: &str) -> String {
    let body = common::chat("m", false);
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn slow_oversized_and_idle_clients_are_let_go_and_counted() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let limits = "  header_timeout: 1s\n  body_timeout: 1s\n  keepalive_timeout: 1s\n  max_header_bytes: 4096\n";
    let gw = TestGateway::start_with(policy, &mock, limits).await;
    let addr = ("127.0.0.1", gw.port);

    // A head that never finishes: 408, then the connection closes.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_until_close(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close") && closed, "{answer}");

    // A head over the limit: 431.
    let mut big = TcpStream::connect(addr).await.expect("connect");
    let header = format!("x-filler: {}\r\n", "a".repeat(8000));
    big.write_all(chat_request(&header).as_bytes())
        .await
        .expect("write");
    let (answer, closed) = read_until_close(&mut big, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(closed);

    // A body that never finishes: 408.
    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    let req = chat_request("");
    trickle
        .write_all(&req.as_bytes()[..req.len() - 10])
        .await
        .expect("write");
    let (answer, closed) = read_until_close(&mut trickle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed);

    // An idle connection, new or kept alive after an answer, is closed in its time.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let (answer, closed) = read_until_close(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.is_empty() && closed, "closed quietly: {answer}");
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(chat_request("").as_bytes())
        .await
        .expect("write");
    let (answer, closed) = read_until_close(&mut kept, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "closed after the keep-alive timeout");

    let metrics = gw
        .metrics_when(|m| m.contains("reason=\"body_timeout\"} 1"))
        .await;
    for reason in ["header_timeout", "header_too_large", "body_timeout"] {
        assert!(
            metrics.contains(&format!(
                "sluice_downstream_refused_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_cleanly() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let gw = TestGateway::start_with(policy, &mock, "  max_connections: 2\n").await;
    let addr = ("127.0.0.1", gw.port);
    let _a = TcpStream::connect(addr).await.expect("connect");
    let _b = TcpStream::connect(addr).await.expect("connect");
    let counted = gw
        .metrics_when(|m| m.contains("sluice_downstream_connections 2\n"))
        .await;
    assert!(
        counted.contains("sluice_downstream_connections 2\n"),
        "{counted}"
    );
    let answer = eventually(async || {
        let mut c = TcpStream::connect(addr).await.ok()?;
        c.write_all(chat_request("").as_bytes()).await.ok()?;
        let (answer, _) = read_until_close(&mut c, Duration::from_secs(5)).await;
        answer.starts_with("HTTP/1.1 503").then_some(answer)
    })
    .await
    .expect("a third connection is refused");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("max_connections"), "{answer}");
    assert_eq!(mock.stats().requests, 0);
    let metrics = gw
        .metrics_when(|m| m.contains("reason=\"max_connections\"} 1"))
        .await;
    assert!(metrics.contains("sluice_downstream_refused_total{reason=\"max_connections\"} 1"));
}

#[tokio::test]
async fn pipelining_http_1_0_and_ambiguous_framing_are_handled_as_the_rfc_says() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let addr = ("127.0.0.1", gw.port);

    // Two requests in one write: two answers, in order.
    let mut piped = TcpStream::connect(addr).await.expect("connect");
    let two = format!(
        "{}{}",
        chat_request(""),
        chat_request("connection: close\r\n")
    );
    piped.write_all(two.as_bytes()).await.expect("write");
    let (answer, closed) = read_until_close(&mut piped, Duration::from_secs(10)).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(closed);

    // HTTP/1.0 without keep-alive: answered, not promised keep-alive, and closed.
    let mut old = TcpStream::connect(addr).await.expect("connect");
    let req = chat_request("").replacen("HTTP/1.1", "HTTP/1.0", 1);
    old.write_all(req.as_bytes()).await.expect("write");
    let (answer, closed) = read_until_close(&mut old, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("keep-alive"),
        "{answer}"
    );
    assert!(closed, "an HTTP/1.0 client that did not ask is not held");

    // Content-Length and Transfer-Encoding together: never kept alive.
    let body = common::chat("m", false);
    let both = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let mut amb = TcpStream::connect(addr).await.expect("connect");
    amb.write_all(both.as_bytes()).await.expect("write");
    let (_, closed) = read_until_close(&mut amb, Duration::from_secs(10)).await;
    assert!(closed, "a body framed two ways closes the connection");
}

#[tokio::test]
async fn client_facing_errors_name_no_address_provider_or_variable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mock = common::mock_llm().await;
    let policy = format!(
        "providers:\n  secret-cluster: {{ kind: openai, base_url: \"http://{dead}/v1\" }}\n  keyless: {{ kind: openai, base_url: \"{{mock}}\", api_key_env: SLUICE_TEST_UNSET_VARIABLE }}\nmodels:\n  down: {{ provider: secret-cluster }}\n  nokey: {{ provider: keyless }}\n"
    );
    let gw = TestGateway::start(&policy, &mock).await;
    for model in ["down", "nokey"] {
        let resp = gw
            .post("/v1/chat/completions", common::chat(model, false))
            .header("x-request-id", format!("req-{model}"))
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_server_error(), "{model}");
        let text = resp.text().await.expect("body");
        for secret in [
            dead.to_string().as_str(),
            "secret-cluster",
            "keyless",
            "SLUICE_TEST_UNSET_VARIABLE",
            "127.0.0.1",
        ] {
            assert!(!text.contains(secret), "{model}: `{secret}` in {text}");
        }
    }
    // The operator still learns what happened, with the request id.
    let log = eventually(async || {
        let log = gw.log_text();
        log.contains("request_id=req-nokey").then_some(log)
    })
    .await
    .expect("logged");
    assert!(log.contains("SLUICE_TEST_UNSET_VARIABLE"), "{log}");
    assert!(log.contains(&dead.to_string()), "{log}");
}

#[tokio::test]
async fn a_flood_of_requests_without_a_key_is_capped_in_the_access_log() {
    let mock = common::mock_llm().await;
    let policy = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up }\ntelemetry: { access_log_anonymous_per_s: 5 }\n";
    let gw = TestGateway::start(policy, &mock).await;
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    for _ in 0..300 {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("sk-wrong")
            .body(common::chat("m", false))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let metrics = gw
        .metrics_when(|m| m.contains("outcome=\"client_error\",status=\"401\"} 300"))
        .await;
    let suppressed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_access_log_suppressed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("counter");
    let logged = gw
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"status\":401"))
        .count() as u64;
    assert_eq!(logged + suppressed, 300, "every line written or counted");
    assert!(logged <= 5 * (seconds + 1), "{logged} lines in {seconds} s");
    // A key holder's lines are never capped.
    let ok = gw
        .post("/v1/chat/completions", common::chat("m", false))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let line = eventually(async || {
        gw.log_text()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"status\":200"))
            .then_some(())
    })
    .await;
    assert!(line.is_some());
}
