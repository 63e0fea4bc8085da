//! Routing on the body's `model` for small and large bodies, and the body cap.

use crate::common::{self, TestGateway};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  small: { provider: up, upstream_model: small-up }\n  big: { provider: up, upstream_model: big-up }\n";

fn body_of(model: &str, size: usize) -> String {
    let filler = "x".repeat(size);
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": filler}]})
        .to_string()
}

#[tokio::test]
async fn large_bodies_route_on_model_and_oversize_bodies_never_reach_upstream() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start_with(POLICY, &mock, "  max_body_bytes: 3145728\n").await;

    for (model, size) in [("small", 10 << 10), ("big", 2 << 20)] {
        let body = body_of(model, size);
        let resp = gw
            .post("/v1/chat/completions", body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{model}");
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["model"], format!("{model}-up"));
        assert_eq!(mock.requests_for(&format!("{model}-up")), 1);
        // The upstream got the whole body, rewritten only in `model`.
        assert_eq!(
            mock.stats().last_body_len as usize,
            body.len() + 3,
            "{model}"
        );
    }

    // Over the cap with a Content-Length: refused before one byte of the body is sent.
    let before = mock.stats().requests;
    let head = raw_exchange(
        gw.port,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
            common::KEY,
            4 << 20
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("request_too_large"), "{head}");
    assert!(!head.contains("100 Continue"), "{head}");

    // Over the cap, chunked (no Content-Length): refused once the cap is crossed. One byte
    // over, and no more: the gateway has read all that was sent when it answers, so the
    // answer cannot be lost to a reset, and any transport error is a failure.
    let head = chunked_over_cap(gw.port, 3_145_728).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("request_too_large"), "{head}");
    assert_eq!(
        mock.stats().requests,
        before,
        "nothing over the cap reached the provider"
    );

    // The gateway is still healthy and serving.
    let resp = gw
        .post("/v1/chat/completions", body_of("small", 100))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let metrics = gw.metrics_when(|m| m.contains("status=\"413\"")).await;
    assert!(metrics.contains("status=\"413\""), "{metrics}");
}

/// Sends raw bytes and reads what comes back until the server closes (bounded).
async fn raw_exchange(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    sock.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        sock.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a chunked request whose body is `cap + 1` bytes (the last chunk's closing CRLF and the
/// terminator withheld), reading the answer while writing; returns the answer. Panics on any transport error.
async fn chunked_over_cap(port: u16, cap: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = sock.into_split();
    let write = async move {
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            common::KEY
        );
        wr.write_all(head.as_bytes()).await?;
        let piece = vec![b' '; 512 << 10];
        let mut sent = 0;
        while sent <= cap {
            let n = piece.len().min(cap + 1 - sent);
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&piece[..n]).await?;
            sent += n;
            if sent <= cap {
                wr.write_all(b"\r\n").await?;
            }
        }
        wr.flush().await?;
        // Keep the write half open until the answer is read.
        Ok::<_, std::io::Error>(wr)
    };
    // Up to the end of the answer's body (by its content-length), or until the server closes.
    let read = async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let text = String::from_utf8_lossy(&out);
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return Ok::<_, std::io::Error>(out);
                }
            }
            match rd.read(&mut buf).await? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let (written, answer) =
        tokio::time::timeout(common::PATIENCE, async { tokio::join!(write, read) })
            .await
            .expect("the gateway answered in time");
    let _write_half = written.expect("the whole over-cap body was written without an error");
    let answer = answer.expect("the answer was read without a transport error");
    String::from_utf8_lossy(&answer).into_owned()
}
