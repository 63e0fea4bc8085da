//! `mock-llm` over real sockets: answers, streams, every fault, auth and counters.
//!
//! The client is a tiny raw HTTP/1.1 reader so the tests see exactly what went over the wire:
//! chunk boundaries, missing terminators, aborted bodies.

// Always true for an integration test; stated so clippy's `allow-unwrap-in-tests` covers the
// client helpers below too.
#![cfg(test)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_gateway::providers::mock::{self, Endpoint, MockRequest, MockStream};
use sluice_loadtest::mock_llm::{MockTiming, echo};
use sluice_loadtest::{MockLlm, MockLlmConfig, Stats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

// === a tiny HTTP/1.1 client ===

struct Client {
    io: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding") == Some("chunked")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Data(Vec<u8>),
    /// The terminating zero-size chunk.
    End,
    /// The connection closed (or broke) before the terminator.
    Eof,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("content-type: application/json\r\n");
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let stream = self.io.get_mut();
        stream.write_all(req.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
    }

    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.io.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        }
    }

    async fn head(&mut self) -> Head {
        let status_line = self.line().await.expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await.expect("a header line");
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Head { status, headers }
    }

    async fn chunk(&mut self) -> Chunk {
        let Some(size_line) = self.line().await else {
            return Chunk::Eof;
        };
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap();
        if size == 0 {
            assert_eq!(self.line().await.as_deref(), Some(""), "no trailers");
            return Chunk::End;
        }
        let mut data = vec![0; size];
        if self.io.read_exact(&mut data).await.is_err() {
            return Chunk::Eof;
        }
        assert_eq!(self.line().await.as_deref(), Some(""));
        Chunk::Data(data)
    }

    /// The whole body: by content-length, by chunks, or to EOF. Panics on a short body.
    async fn body(&mut self, head: &Head) -> Vec<u8> {
        if head.chunked() {
            let mut body = Vec::new();
            loop {
                match self.chunk().await {
                    Chunk::Data(d) => body.extend(d),
                    Chunk::End => return body,
                    Chunk::Eof => panic!("chunked body ended without terminator"),
                }
            }
        }
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        let mut body = vec![0; len];
        self.io.read_exact(&mut body).await.unwrap();
        body
    }

    /// Every chunk up to the terminator (or EOF, reported as the last element).
    async fn chunks(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        loop {
            let c = self.chunk().await;
            let last = !matches!(c, Chunk::Data(_));
            out.push(c);
            if last {
                return out;
            }
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Head, Vec<u8>) {
        self.send(method, path, headers, body).await;
        let head = self.head().await;
        let body = self.body(&head).await;
        (head, body)
    }
}

async fn post(llm: &MockLlm, path: &str, body: &Value) -> (Head, Vec<u8>) {
    post_with(llm, path, &[], body).await
}

async fn post_with(
    llm: &MockLlm,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (Head, Vec<u8>) {
    let mut c = Client::connect(llm.addr()).await;
    c.request("POST", path, headers, body.to_string().as_bytes())
        .await
}

async fn start() -> MockLlm {
    MockLlm::start(MockLlmConfig::default()).await.unwrap()
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "tell me about sluice gates"}
    ]})
}

fn stream_body(model: &str, include_usage: bool) -> Value {
    let mut b = chat_body(model);
    b["stream"] = json!(true);
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))
}

fn data_chunks(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Data(d) => Some(String::from_utf8(d.clone()).unwrap()),
            _ => None,
        })
        .collect()
}

/// The JSON payload of one SSE event chunk.
fn event_json(event: &str) -> Value {
    let payload = event
        .strip_prefix("data: ")
        .and_then(|e| e.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one SSE event: {event:?}"));
    parse(payload.as_bytes())
}

/// Sends a stream request on a fresh connection and returns its head and chunks.
async fn stream(llm: &MockLlm, headers: &[(&str, &str)], body: &Value) -> (Head, Vec<Chunk>) {
    let mut c = Client::connect(llm.addr()).await;
    c.send(
        "POST",
        "/v1/chat/completions",
        headers,
        body.to_string().as_bytes(),
    )
    .await;
    let head = c.head().await;
    assert!(head.chunked(), "{head:?}");
    let chunks = c.chunks().await;
    (head, chunks)
}

// === answers ===

#[tokio::test]
async fn non_stream_chat_is_the_shared_synthesis() {
    let llm = start().await;
    let body = chat_body("gpt-mock");
    let (head, bytes) = post(&llm, "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    let sent = body.to_string();
    assert_eq!(
        head.header("x-mock-body-len"),
        Some(sent.len().to_string().as_str())
    );
    let req = MockRequest::from_body(Endpoint::ChatCompletions, sent.as_bytes()).unwrap();
    assert_eq!(bytes, mock::response_json(&req));
    let v = parse(&bytes);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-mock");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        mock::completion_text(&req)
    );
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn non_stream_completions_embeddings_and_models() {
    let llm = start().await;
    let (head, bytes) = post(
        &llm,
        "/v1/completions",
        &json!({"model": "c", "prompt": "once upon a time", "max_tokens": 3}),
    )
    .await;
    assert_eq!(head.status, 200);
    let v = parse(&bytes);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let (head, bytes) = post(
        &llm,
        "/v1/embeddings",
        &json!({"model": "e", "input": ["a b", "c"], "dimensions": 4}),
    )
    .await;
    assert_eq!(head.status, 200);
    let v = parse(&bytes);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    let mut c = Client::connect(llm.addr()).await;
    let (head, bytes) = c.request("GET", "/v1/models", &[], b"").await;
    assert_eq!(head.status, 200);
    let v = parse(&bytes);
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"c") && ids.contains(&"e") && ids.contains(&"mock-chat"));

    // Unknown routes, wrong methods and bad bodies are OpenAI errors.
    let (head, bytes) = c.request("GET", "/v1/nope", &[], b"").await;
    assert_eq!(head.status, 404);
    assert_eq!(parse(&bytes)["error"]["code"], "unknown_url");
    let (head, _) = c.request("GET", "/v1/chat/completions", &[], b"").await;
    assert_eq!(head.status, 405);
    let (head, bytes) = c
        .request("POST", "/v1/chat/completions", &[], br#"{"model":"m"}"#)
        .await;
    assert_eq!(head.status, 400);
    assert_eq!(parse(&bytes)["error"]["message"], "`messages` is required");
    let (head, bytes) = c.request("POST", "/v1/embeddings", &[], b"{oops").await;
    assert_eq!(head.status, 400);
    let msg = parse(&bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("invalid JSON"), "{msg}");
}

#[tokio::test]
async fn stream_without_usage_is_one_chunk_per_event() {
    let llm = start().await;
    let body = stream_body("gpt-mock", false);
    let (head, chunks) = stream(&llm, &[], &body).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(chunks.last(), Some(&Chunk::End));
    let events = data_chunks(&chunks);
    let req =
        MockRequest::from_body(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
    let expected: Vec<String> = MockStream::new(&req)
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(events, expected);
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]\n\n"));
    let jsons: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| event_json(e))
        .collect();
    assert!(jsons.iter().all(|j| j.get("usage").is_none()));
    assert_eq!(jsons.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn stream_with_usage_matches_non_stream_usage() {
    let llm = start().await;
    let (_, chunks) = stream(&llm, &[], &stream_body("gpt-mock", true)).await;
    let events = data_chunks(&chunks);
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]\n\n"));
    let usage_chunk = event_json(&events[events.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]));
    for e in &events[..events.len() - 2] {
        let j = event_json(e);
        assert!(j["usage"].is_null() && j.get("usage").is_some());
    }
    let (_, bytes) = post(&llm, "/v1/chat/completions", &chat_body("gpt-mock")).await;
    assert_eq!(usage_chunk["usage"], parse(&bytes)["usage"]);
}

#[tokio::test]
async fn timing_is_honoured() {
    let llm = MockLlm::start(MockLlmConfig {
        timing: MockTiming {
            ttft: Duration::from_millis(150),
            tokens_per_s: 100.0,
        },
        ..MockLlmConfig::default()
    })
    .await
    .unwrap();
    let mut body = stream_body("m", false);
    body["max_tokens"] = json!(3);
    let t0 = Instant::now();
    let (_, chunks) = stream(&llm, &[], &body).await;
    let took = t0.elapsed();
    // ttft + 3 tokens after the role chunk at 10 ms each.
    assert!(took >= Duration::from_millis(180), "{took:?}");
    assert_eq!(data_chunks(&chunks).len(), 1 + 3 + 1 + 1);
    // Non-stream: the whole generation time before the answer.
    let t0 = Instant::now();
    let mut body = chat_body("m");
    body["max_tokens"] = json!(3);
    post(&llm, "/v1/chat/completions", &body).await;
    assert!(t0.elapsed() >= Duration::from_millis(170));
    // delay:0 and ttft faults override per request.
    let t0 = Instant::now();
    let (_, chunks) = stream(&llm, &[("x-mock", "delay:0")], &stream_body("m", false)).await;
    assert_eq!(data_chunks(&chunks).len(), 1 + 16 + 1 + 1);
    assert!(
        t0.elapsed() < Duration::from_millis(150 + 160),
        "delay:0 removes per-token waits"
    );
}

// === faults ===

#[tokio::test]
async fn fault_429_with_retry_headers() {
    let llm = start().await;
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@429:7")).await;
    assert_eq!(head.status, 429);
    assert_eq!(head.header("retry-after"), Some("7"));
    assert_eq!(head.header("retry-after-ms"), Some("7000"));
    let e = &parse(&bytes)["error"];
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["code"], "rate_limit_exceeded");
    let (head, _) = post(&llm, "/v1/chat/completions", &chat_body("m@429")).await;
    assert_eq!(head.header("retry-after"), Some("1"));
    assert_eq!(head.header("retry-after-ms"), Some("1000"));
}

#[tokio::test]
async fn fault_5xx_and_html_and_garbage() {
    let llm = start().await;
    for code in [500u16, 502, 503] {
        let (head, bytes) = post(
            &llm,
            "/v1/chat/completions",
            &chat_body(&format!("m@{code}")),
        )
        .await;
        assert_eq!(head.status, code);
        assert_eq!(parse(&bytes)["error"]["type"], "server_error");
        assert_eq!(head.header("retry-after"), None);
    }
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@html502")).await;
    assert_eq!(head.status, 502);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .contains("502 Bad Gateway")
    );

    let (head, bytes) = post(
        &llm,
        "/v1/chat/completions",
        &stream_body("m@html200", true),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(bytes.starts_with(b"<!DOCTYPE html>"));

    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@garbage")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
}

#[tokio::test]
async fn fault_first_error() {
    let llm = start().await;
    let (head, chunks) = stream(&llm, &[], &stream_body("m@first-error", true)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 1);
    assert_eq!(event_json(&events[0])["error"]["code"], "overloaded");
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@first-error")).await;
    assert_eq!(head.status, 200);
    assert_eq!(parse(&bytes)["error"]["message"], "overloaded");
}

#[tokio::test]
async fn fault_stall_sends_k_events_then_nothing() {
    let llm = start().await;
    let mut c = Client::connect(llm.addr()).await;
    let body = stream_body("m@stall:2", false).to_string();
    c.send("POST", "/v1/chat/completions", &[], body.as_bytes())
        .await;
    let head = c.head().await;
    assert_eq!(head.status, 200);
    for _ in 0..2 {
        let Chunk::Data(d) = c.chunk().await else {
            panic!("expected an event")
        };
        event_json(std::str::from_utf8(&d).unwrap());
    }
    let next = timeout(Duration::from_millis(300), c.chunk()).await;
    assert!(next.is_err(), "stalled stream sent {next:?}");

    // Non-stream: no head within the window either.
    let mut c = Client::connect(llm.addr()).await;
    c.send(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body("m@stall:0").to_string().as_bytes(),
    )
    .await;
    assert!(timeout(Duration::from_millis(300), c.head()).await.is_err());
    // Shutdown ends the held connections.
    llm.shutdown().await;
}

#[tokio::test]
async fn fault_cut_ends_without_done() {
    let llm = start().await;
    let (head, chunks) = stream(&llm, &[], &stream_body("m@cut:3", true)).await;
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(chunks.last(), Some(&Chunk::End), "cleanly terminated");
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 3);
    for e in &events {
        assert!(event_json(e)["choices"][0]["finish_reason"].is_null());
    }
    // A huge K still never reaches the finish chunk or [DONE].
    let (_, chunks) = stream(&llm, &[], &stream_body("m@cut:999", true)).await;
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 1 + 16);
    assert!(events.iter().all(|e| !e.contains("[DONE]")));

    // Non-stream: half the announced body, then the connection drops.
    let mut c = Client::connect(llm.addr()).await;
    c.send(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body("m@cut:1").to_string().as_bytes(),
    )
    .await;
    let head = c.head().await;
    let announced: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut got = Vec::new();
    c.io.read_to_end(&mut got).await.ok();
    assert_eq!(got.len(), announced / 2);
}

#[tokio::test]
async fn fault_nousage() {
    let llm = start().await;
    let (_, chunks) = stream(&llm, &[], &stream_body("m@nousage", true)).await;
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 1 + 16 + 1 + 1);
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@nousage")).await;
    assert_eq!(head.status, 200);
    let v = parse(&bytes);
    assert!(v.get("usage").is_none());
    assert_eq!(v["model"], "m", "the fault suffix is not echoed");
}

#[tokio::test]
async fn header_overrides_model_suffix_and_unknown_faults_are_400() {
    let llm = start().await;
    let (head, _) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("x-mock", "503")],
        &chat_body("m@429"),
    )
    .await;
    assert_eq!(head.status, 503);
    let (head, _) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("x-mock", "anything@429:2")],
        &chat_body("plain"),
    )
    .await;
    assert_eq!((head.status, head.header("retry-after")), (429, Some("2")));
    // An empty header cancels the suffix.
    let (head, _) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("x-mock", "")],
        &chat_body("m@429"),
    )
    .await;
    assert_eq!(head.status, 200);
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@explode")).await;
    assert_eq!(head.status, 400);
    let msg = parse(&bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("`explode`"), "{msg}");
    // Counted before faults: every one of those reached the upstream.
    assert_eq!(llm.requests_for("m@429"), 2);
    assert_eq!(llm.requests_for("m@explode"), 1);
}

// === auth and counters ===

#[tokio::test]
async fn api_key_is_enforced() {
    let llm = MockLlm::start(MockLlmConfig {
        api_key: Some("sk-test".to_owned()),
        ..MockLlmConfig::default()
    })
    .await
    .unwrap();
    let body = chat_body("m");
    let (head, bytes) = post(&llm, "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 401);
    assert_eq!(parse(&bytes)["error"]["code"], "invalid_api_key");
    let (head, _) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-wrong")],
        &body,
    )
    .await;
    assert_eq!(head.status, 401);
    let (head, _) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-test")],
        &body,
    )
    .await;
    assert_eq!(head.status, 200);
    let mut c = Client::connect(llm.addr()).await;
    let (head, _) = c.request("GET", "/v1/models", &[], b"").await;
    assert_eq!(head.status, 401);
    let s = llm.stats();
    assert_eq!((s.requests, s.unauthorized), (4, 3));
}

#[tokio::test]
async fn counters_keep_alive_stats_endpoint_and_reset() {
    let llm = start().await;
    let mut c = Client::connect(llm.addr()).await;
    let a = chat_body("alpha").to_string();
    let b = chat_body("beta@500").to_string();
    for body in [&a, &a, &b] {
        c.request("POST", "/v1/chat/completions", &[], body.as_bytes())
            .await;
    }
    let s = llm.stats();
    assert_eq!(s.requests, 3);
    assert_eq!(s.connections, 1, "keep-alive reuses the connection");
    assert_eq!(s.by_model.get("alpha"), Some(&2));
    assert_eq!(s.by_model.get("beta@500"), Some(&1));
    assert_eq!(llm.requests_for("beta@500"), 1);
    assert_eq!(llm.requests_for("beta"), 0);
    assert_eq!(s.bytes_received, (2 * a.len() + b.len()) as u64);
    assert_eq!(s.last_body_len, b.len() as u64);

    let (head, bytes) = c.request("GET", "/_mock/stats", &[], b"").await;
    assert_eq!(head.status, 200);
    let over_http: Stats = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(over_http, s);
    let (head, _) = c.request("POST", "/_mock/reset", &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(llm.stats(), Stats::default());
}

#[tokio::test]
async fn shutdown_releases_the_port_and_drop_stops_the_server() {
    let llm = start().await;
    let addr = llm.addr();
    assert!(llm.base_url().starts_with("http://127.0.0.1:") && llm.base_url().ends_with("/v1"));
    llm.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());

    let llm = start().await;
    let addr = llm.addr();
    drop(llm);
    // The accept loop notices on its next poll.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
}

// === echo-key: the received API key quoted back ===

const KEY: &str = "sk-live-Zq81_secret";

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The error message of an echo body, after checking the rest of the object.
fn echo_message(bytes: &[u8]) -> String {
    let v = parse(bytes);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

#[tokio::test]
async fn echo_key_status_quotes_the_key_for_either_kind_of_request() {
    let llm = start().await;
    let auth = bearer(KEY);
    for code in [400u16, 401, 403, 404, 422, 499] {
        for body in [
            chat_body(&format!("m@echo-key:{code}")),
            stream_body(&format!("m@echo-key:{code}"), true),
        ] {
            let (head, bytes) = post_with(
                &llm,
                "/v1/chat/completions",
                &[("authorization", &auth)],
                &body,
            )
            .await;
            assert_eq!(head.status, code);
            assert_eq!(head.header("content-type"), Some("application/json"));
            assert_eq!(bytes, echo::error_json(KEY, 0, false).into_bytes());
            assert_eq!(
                echo_message(&bytes),
                format!("Incorrect API key provided: {KEY}")
            );
        }
    }
    // The scheme is matched in any case, as HTTP says; the key is trimmed.
    let (_, bytes) = post_with(
        &llm,
        "/v1/embeddings",
        &[("authorization", &format!("bearer   {KEY} "))],
        &json!({"model": "e@echo-key:401", "input": "x"}),
    )
    .await;
    assert_eq!(
        echo_message(&bytes),
        format!("Incorrect API key provided: {KEY}")
    );
}

#[tokio::test]
async fn echo_key_200_is_json_even_for_a_stream() {
    let llm = start().await;
    let auth = bearer(KEY);
    for body in [
        chat_body("m@echo-key:200"),
        stream_body("m@echo-key:200", false),
    ] {
        let (head, bytes) = post_with(
            &llm,
            "/v1/chat/completions",
            &[("authorization", &auth)],
            &body,
        )
        .await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("application/json"));
        assert!(!head.chunked());
        assert_eq!(
            echo_message(&bytes),
            format!("Incorrect API key provided: {KEY}")
        );
    }
}

#[tokio::test]
async fn echo_key_first_event_and_mid_stream() {
    let llm = start().await;
    let auth = bearer(KEY);
    let headers = [("authorization", auth.as_str())];
    let echoed = echo::event(&echo::error_json(KEY, 0, false));

    let (head, chunks) = stream(&llm, &headers, &stream_body("m@echo-key:first-event", true)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        chunks,
        vec![Chunk::Data(echoed.clone().into_bytes()), Chunk::End]
    );

    // K normal events, then the error event, then the end: no finish chunk, no [DONE].
    let (head, chunks) = stream(
        &llm,
        &headers,
        &stream_body("m@echo-key:mid-stream:3", true),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(chunks.last(), Some(&Chunk::End));
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 3 + 1);
    for e in &events[..3] {
        let j = event_json(e);
        assert_eq!(j["object"], "chat.completion.chunk");
        assert!(j["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(events[3], echoed);
    assert_eq!(
        echo_message(event_json(&events[3]).to_string().as_bytes()),
        format!("Incorrect API key provided: {KEY}")
    );
    // K is capped at the content events.
    let (_, chunks) = stream(
        &llm,
        &headers,
        &stream_body("m@echo-key:mid-stream:999", true),
    )
    .await;
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 1 + 16 + 1);
    assert_eq!(events.last(), Some(&echoed));
    assert!(events.iter().all(|e| !e.contains("[DONE]")));

    // Non-stream requests get the JSON with 200.
    for fault in ["first-event", "mid-stream:2"] {
        let (head, bytes) = post_with(
            &llm,
            "/v1/chat/completions",
            &headers,
            &chat_body(&format!("m@echo-key:{fault}")),
        )
        .await;
        assert_eq!((head.status, head.chunked()), (200, false), "{fault}");
        assert_eq!(
            echo_message(&bytes),
            format!("Incorrect API key provided: {KEY}")
        );
    }
}

#[tokio::test]
async fn echo_key_escaped_and_padded() {
    let llm = start().await;
    let auth = bearer(KEY);
    let headers = [("authorization", auth.as_str())];
    let (head, bytes) = post_with(
        &llm,
        "/v1/chat/completions",
        &headers,
        &chat_body("m@echo-key:401,key-escaped"),
    )
    .await;
    assert_eq!(head.status, 401);
    let text = String::from_utf8(bytes.clone()).expect("UTF-8");
    assert!(!text.contains(KEY), "{text}");
    // Not even one character of the key is written raw: each is a \uXXXX escape.
    let written = &text[echo::KEY_OFFSET..echo::KEY_OFFSET + 6 * KEY.len()];
    assert_eq!(written, echo::escape_every_char(KEY));
    assert_eq!(written.matches("\\u").count(), KEY.chars().count());
    // Still valid JSON that decodes back to the key.
    assert_eq!(
        echo_message(&bytes),
        format!("Incorrect API key provided: {KEY}")
    );

    // key-pad:N puts N fillers before the key: here the key straddles character 200.
    let pad = 200 - echo::KEY_OFFSET - 5;
    let (_, bytes) = post_with(
        &llm,
        "/v1/chat/completions",
        &headers,
        &chat_body(&format!("m@echo-key:400,key-pad:{pad}")),
    )
    .await;
    let text = String::from_utf8(bytes.clone()).expect("UTF-8");
    assert_eq!(text.find(KEY), Some(200 - 5));
    assert_eq!(
        echo_message(&bytes),
        format!("Incorrect API key provided: {}{KEY}", "x".repeat(pad))
    );

    // Both at once, in a stream's first event, chosen by the header.
    let (_, chunks) = stream(
        &llm,
        &[
            ("authorization", auth.as_str()),
            ("x-mock", "echo-key:first-event,key-pad:7,key-escaped"),
        ],
        &stream_body("m", false),
    )
    .await;
    let events = data_chunks(&chunks);
    assert_eq!(events.len(), 1);
    let data = events[0]
        .strip_prefix("data: ")
        .and_then(|e| e.strip_suffix("\n\n"))
        .expect("one SSE event");
    assert!(!data.contains(KEY));
    assert_eq!(
        &data[echo::KEY_OFFSET + 7..echo::KEY_OFFSET + 7 + 6 * KEY.len()],
        echo::escape_every_char(KEY)
    );
    assert_eq!(
        echo_message(data.as_bytes()),
        format!("Incorrect API key provided: xxxxxxx{KEY}")
    );
}

#[tokio::test]
async fn echo_key_without_a_key_and_behind_auth() {
    // Nothing received: the echo quotes the empty string.
    let llm = start().await;
    let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body("m@echo-key:401")).await;
    assert_eq!(head.status, 401);
    assert_eq!(echo_message(&bytes), "Incorrect API key provided: ");
    // Another scheme is not a bearer key either.
    let (_, bytes) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("authorization", "Basic c2stbGl2ZQ==")],
        &chat_body("m@echo-key:200"),
    )
    .await;
    assert_eq!(echo_message(&bytes), "Incorrect API key provided: ");

    // When the server requires a key, the right one is echoed and a wrong one is refused first.
    let llm = MockLlm::start(MockLlmConfig {
        api_key: Some(KEY.to_owned()),
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts");
    let (head, bytes) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("authorization", &bearer(KEY))],
        &chat_body("m@echo-key:403"),
    )
    .await;
    assert_eq!(head.status, 403);
    assert_eq!(
        echo_message(&bytes),
        format!("Incorrect API key provided: {KEY}")
    );
    let (head, bytes) = post_with(
        &llm,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-wrong")],
        &chat_body("m@echo-key:403"),
    )
    .await;
    assert_eq!(head.status, 401);
    assert!(!String::from_utf8_lossy(&bytes).contains("sk-wrong"));
}

#[tokio::test]
async fn bad_echo_key_faults_are_400_naming_the_fault() {
    let llm = start().await;
    for (model, names) in [
        ("m@echo-key:500", "`echo-key:500`"),
        ("m@key-escaped", "`key-escaped`"),
        ("m@echo-key:200,key-pad:lots", "`key-pad:lots`"),
    ] {
        let (head, bytes) = post(&llm, "/v1/chat/completions", &chat_body(model)).await;
        assert_eq!(head.status, 400, "{model}");
        let e = &parse(&bytes)["error"];
        assert_eq!(e["code"], "invalid_mock_fault");
        assert!(
            e["message"].as_str().expect("a message").contains(names),
            "{e}"
        );
    }
}

// === burst: a whole stream in one write ===

/// A parsed HTTP/1.1 response that must be complete in `bytes`, with nothing after it.
struct Whole {
    status: u16,
    headers: Vec<(String, String)>,
    /// Chunked bodies: each chunk; content-length bodies: one element.
    chunks: Vec<Vec<u8>>,
}

impl Whole {
    fn parse(bytes: &[u8]) -> Whole {
        let text = bytes;
        let end = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = std::str::from_utf8(&text[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("a header");
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut rest = &text[end + 4..];
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut chunks = Vec::new();
        if get("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let eol = rest
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("a chunk size line");
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..eol]).expect("hex"), 16)
                        .expect("a chunk size");
                rest = &rest[eol + 2..];
                if size == 0 {
                    assert_eq!(rest, b"\r\n", "the terminator, no trailers, nothing after");
                    break;
                }
                assert!(rest.len() >= size + 2, "a whole chunk");
                chunks.push(rest[..size].to_vec());
                assert_eq!(&rest[size..size + 2], b"\r\n");
                rest = &rest[size + 2..];
            }
        } else {
            let len: usize = get("content-length")
                .expect("a length")
                .parse()
                .expect("a number");
            assert_eq!(rest.len(), len, "the whole body and nothing after it");
            chunks.push(rest.to_vec());
        }
        Whole {
            status,
            headers,
            chunks,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn events(&self) -> Vec<String> {
        self.chunks
            .iter()
            .map(|c| String::from_utf8(c.clone()).expect("UTF-8"))
            .collect()
    }
}

/// Sends `body` on a fresh connection and returns what ONE read of the socket gives, and when
/// it came. A response written in one write is whole in it; one written in parts is not (the
/// parts are spaced in time in these tests).
async fn one_read(addr: SocketAddr, headers: &[(&str, &str)], body: &Value) -> (Vec<u8>, Duration) {
    let mut c = Client::connect(addr).await;
    let t0 = Instant::now();
    c.send(
        "POST",
        "/v1/chat/completions",
        headers,
        body.to_string().as_bytes(),
    )
    .await;
    let mut tcp = c.io.into_inner();
    let mut buf = vec![0; 256 * 1024];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("a read");
    buf.truncate(n);
    (buf, t0.elapsed())
}

fn expected_events(body: &Value) -> Vec<String> {
    let req = MockRequest::from_body(Endpoint::ChatCompletions, body.to_string().as_bytes())
        .expect("a valid request");
    MockStream::new(&req)
        .map(|b| String::from_utf8(b.to_vec()).expect("UTF-8"))
        .collect()
}

#[tokio::test]
async fn burst_config_writes_the_whole_stream_in_one_write() {
    let llm = MockLlm::start(MockLlmConfig {
        burst: true,
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts");
    for include_usage in [false, true] {
        let body = stream_body("m", include_usage);
        let (bytes, _) = one_read(llm.addr(), &[], &body).await;
        let whole = Whole::parse(&bytes);
        assert_eq!(whole.status, 200);
        assert_eq!(whole.header("content-type"), Some("text/event-stream"));
        // One chunk per event, as a provider frames them, and [DONE] last.
        let events = whole.events();
        assert_eq!(events, expected_events(&body));
        assert_eq!(events.last().map(String::as_str), Some("data: [DONE]\n\n"));
    }
    // Non-stream answers are one write anyway.
    let (bytes, _) = one_read(llm.addr(), &[], &chat_body("m")).await;
    let whole = Whole::parse(&bytes);
    assert_eq!(whole.header("content-type"), Some("application/json"));
    assert_eq!(parse(&whole.chunks[0])["object"], "chat.completion");
    // The connection stays usable: a second request on it is answered normally.
    let mut c = Client::connect(llm.addr()).await;
    for _ in 0..2 {
        let (head, _) = c
            .request(
                "POST",
                "/v1/chat/completions",
                &[],
                stream_body("m", true).to_string().as_bytes(),
            )
            .await;
        assert_eq!(head.status, 200);
    }
}

#[tokio::test]
async fn burst_fault_waits_the_pacing_before_the_head_then_sends_everything() {
    // 100 ms to the first event, then 16 content events at 10 ms: 260 ms of pacing.
    let llm = MockLlm::start(MockLlmConfig {
        timing: MockTiming {
            ttft: Duration::from_millis(100),
            tokens_per_s: 100.0,
        },
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts");
    let body = stream_body("m@burst", true);
    let (bytes, took) = one_read(llm.addr(), &[], &body).await;
    assert!(took >= Duration::from_millis(260), "{took:?}");
    let whole = Whole::parse(&bytes);
    assert_eq!(whole.events(), expected_events(&stream_body("m", true)));

    // Without burst the same server sends the head first and the events as they come: one read
    // is far from the whole answer.
    let (bytes, _) = one_read(llm.addr(), &[], &stream_body("m", true)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 200") && !text.contains("[DONE]"),
        "{text}"
    );
}

#[tokio::test]
async fn burst_combines_with_cut_stall_and_echo_key() {
    let llm = start().await;
    let auth = bearer(KEY);

    let (bytes, _) = one_read(llm.addr(), &[], &stream_body("m@burst,cut:3", true)).await;
    let whole = Whole::parse(&bytes);
    assert_eq!(whole.header("connection"), Some("close"));
    assert_eq!(
        whole.events(),
        expected_events(&stream_body("m", true))[..3]
    );

    let (bytes, _) = one_read(
        llm.addr(),
        &[
            ("authorization", &auth),
            ("x-mock", "burst,echo-key:mid-stream:2,key-escaped"),
        ],
        &stream_body("m", true),
    )
    .await;
    let events = Whole::parse(&bytes).events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[..2], expected_events(&stream_body("m", true))[..2]);
    assert_eq!(events[2], echo::event(&echo::error_json(KEY, 0, true)));

    // A stall: its events in one write, then silence (the read after them waits).
    let mut c = Client::connect(llm.addr()).await;
    c.send(
        "POST",
        "/v1/chat/completions",
        &[],
        stream_body("m@burst,stall:2", false).to_string().as_bytes(),
    )
    .await;
    let head = c.head().await;
    assert!(head.chunked());
    for _ in 0..2 {
        assert!(matches!(c.chunk().await, Chunk::Data(_)));
    }
    assert!(
        timeout(Duration::from_millis(300), c.chunk())
            .await
            .is_err()
    );
}

// === the Responses API ===

/// A Responses stream's events (`event:` name checked against the data's `type`), from a
/// fresh connection.
async fn responses_events(llm: &MockLlm, body: &Value) -> Vec<Value> {
    let mut c = Client::connect(llm.addr()).await;
    c.send("POST", "/v1/responses", &[], body.to_string().as_bytes())
        .await;
    let head = c.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let text: String = data_chunks(&c.chunks().await).concat();
    text.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("a named event: {e:?}"));
            let v = parse(data.as_bytes());
            assert_eq!(v["type"], name);
            v
        })
        .collect()
}

#[tokio::test]
async fn responses_api_whole_streamed_tools_and_faults() {
    let llm = start().await;
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "instructions": "be brief", "input": "tell me about sluice gates",
               "stream": stream})
    };
    let (head, bytes) = post(&llm, "/v1/responses", &ask("m", false)).await;
    assert_eq!(head.status, 200);
    let whole = parse(&bytes);
    assert_eq!(whole["object"], "response");
    assert_eq!(whole["status"], "completed");
    assert_eq!(whole["output"][0]["type"], "message");
    assert!(whole["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // Streamed: sequence numbers from 0, usage in `response.completed`, the same text.
    let evs = responses_events(&llm, &ask("m", true)).await;
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["usage"], whole["usage"]);
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["output"][0]["content"][0]["text"]);

    // A function tool is called; a web search tool adds its item, whole and streamed.
    let mut req = ask("m", false);
    req["tools"] = json!([{"type": "function", "name": "lookup"}, {"type": "web_search"}]);
    let v = parse(&post(&llm, "/v1/responses", &req).await.1);
    let types: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["function_call", "web_search_call"], "{v}");
    assert_eq!(v["output"][0]["name"], "lookup");
    req["stream"] = json!(true);
    let evs = responses_events(&llm, &req).await;
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"response.web_search_call.completed"),
        "{kinds:?}"
    );
    assert_eq!(
        evs.last().unwrap()["response"]["output"][1]["type"],
        "web_search_call"
    );

    // Faults keep their meaning: a status, a cut stream with no terminal event, a lone
    // `error` event first.
    let (head, bytes) = post(&llm, "/v1/responses", &ask("m@503", false)).await;
    assert_eq!(head.status, 503);
    assert_eq!(parse(&bytes)["error"]["type"], "server_error");
    let evs = responses_events(&llm, &ask("m@cut:3", true)).await;
    assert!(
        evs.iter()
            .any(|e| e["type"] == "response.output_text.delta")
    );
    assert!(!evs.iter().any(|e| {
        matches!(
            e["type"].as_str(),
            Some("response.completed" | "response.incomplete" | "response.failed")
        )
    }));
    let evs = responses_events(&llm, &ask("m@first-error", true)).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "error");
    assert_eq!(evs[0]["code"], "overloaded");

    // A request the face cannot read is OpenAI's 400; every call was counted by path.
    let (head, _) = post(&llm, "/v1/responses", &json!({"model": "m"})).await;
    assert_eq!(head.status, 400);
    assert_eq!(llm.requests_to("/v1/responses"), 8);
    assert_eq!(llm.requests_to("/v1/chat/completions"), 0);
    assert_eq!(llm.stats().by_path["/v1/responses"], 8);
}
