use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A provider that writes `pieces` one by one (each its own segment, as far as loopback
/// allows), then keeps the connection open until the client is done.
async fn respond(pieces: Vec<Vec<u8>>) -> (Result<Response, String>, tokio::task::JoinHandle<()>) {
    serve(pieces, true).await
}

/// A provider that writes `raw` and closes the connection.
async fn respond_then_close(raw: &'static str) -> Response {
    let (r, _server) = serve(vec![raw.as_bytes().to_vec()], false).await;
    r.expect("head")
}

async fn serve(
    pieces: Vec<Vec<u8>>,
    hold_open: bool,
) -> (Result<Response, String>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    #[expect(
        clippy::disallowed_methods,
        reason = "a test's fake provider, not Sluice"
    )]
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.set_nodelay(true).expect("nodelay");
        for p in pieces {
            sock.write_all(&p).await.expect("write");
            sock.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if hold_open {
            // Hold the connection until the client closes it.
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut rest).await;
        }
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
    (
        Response::read_head(stream).await.map_err(|e| e.to_string()),
        server,
    )
}

async fn body(r: &mut Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = r.read_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn bytes_each(s: &str) -> Vec<Vec<u8>> {
    s.bytes().map(|b| vec![b]).collect()
}

#[tokio::test]
async fn content_length_bodies_and_reuse() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    for pieces in [vec![raw.as_bytes().to_vec()], bytes_each(raw)] {
        let (r, _server) = respond(pieces).await;
        let mut r = r.expect("head");
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(r.header("CONTENT-TYPE"), Some(&b"application/json"[..]));
        assert!(!r.is_done());
        assert_eq!(body(&mut r).await.expect("body"), b"{\"ok\":true}");
        assert!(r.is_done());
        assert!(
            r.into_reusable().is_some(),
            "a complete keep-alive answer is reusable"
        );
    }
}

#[tokio::test]
async fn chunked_bodies_split_anywhere() {
    let events = [
        "data: {\"a\":1}\n\n",
        "data: {\"bb\":22}\n\n",
        "data: [DONE]\n\n",
    ];
    let mut raw = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for (i, e) in events.iter().enumerate() {
        // Upper- and lower-case hex, and a chunk extension, are all HTTP.
        let size = if i == 2 {
            format!("{:X}", e.len())
        } else {
            format!("{:x}", e.len())
        };
        let ext = if i == 1 { ";ext=1" } else { "" };
        raw.push_str(&format!("{size}{ext}\r\n{e}\r\n"));
    }
    raw.push_str("0\r\nx-trailer: yes\r\n\r\n");
    let raw = raw.as_str();
    let expected = "data: {\"a\":1}\n\ndata: {\"bb\":22}\n\ndata: [DONE]\n\n";
    for pieces in [vec![raw.as_bytes().to_vec()], bytes_each(raw)] {
        let (r, _server) = respond(pieces).await;
        let mut r = r.expect("head");
        assert_eq!(
            String::from_utf8(body(&mut r).await.expect("body")).expect("utf8"),
            expected
        );
        assert!(r.into_reusable().is_some());
    }
}

#[tokio::test]
async fn buffered_chunks_come_out_without_waiting() {
    let raw = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n1\r\nf\r\n0\r\n\r\n";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    let mut r = r.expect("head");
    let first = r.read_chunk().await.expect("chunk").expect("data");
    let mut rest = Vec::new();
    while let Some(more) = r.read_buffered().expect("buffered") {
        rest.extend_from_slice(&more);
    }
    assert_eq!((&first[..], &rest[..]), (&b"ab"[..], &b"cdef"[..]));
    assert!(r.is_done(), "the terminating chunk was buffered too");
    assert!(r.into_reusable().is_some());
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 2\r\n\r\n{}";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    let mut r = r.expect("head");
    assert_eq!(r.status(), 429);
    assert_eq!(r.header("retry-after"), Some(&b"2"[..]));
    assert_eq!(body(&mut r).await.expect("body"), b"{}");
}

#[tokio::test]
async fn close_delimited_and_connection_close_are_never_reused() {
    // Closing ends the body.
    let mut r =
        respond_then_close("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n<html>").await;
    assert_eq!(body(&mut r).await.expect("body"), b"<html>");
    assert!(r.is_done());
    assert!(r.into_reusable().is_none());

    let raw = "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    let mut r = r.expect("head");
    assert_eq!(body(&mut r).await.expect("body"), b"ok");
    assert!(r.into_reusable().is_none());

    // A half-read answer is never reused.
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    let mut r = r.expect("head");
    assert_eq!(
        r.read_chunk().await.expect("chunk").as_deref(),
        Some(&b"ab"[..])
    );
    assert!(r.into_reusable().is_none());
}

#[tokio::test]
async fn garbage_is_an_error_not_a_hang() {
    for raw in [
        "<html>502 Bad Gateway</html>\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
    ] {
        let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
        let failed = match r {
            Err(_) => true,
            Ok(mut r) => tokio::time::timeout(Duration::from_secs(2), body(&mut r))
                .await
                .expect("bounded")
                .is_err(),
        };
        assert!(failed, "{raw:?}");
    }
}

#[tokio::test]
async fn a_provider_that_closes_mid_body_is_an_error() {
    let mut r = respond_then_close("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
    assert!(body(&mut r).await.is_err());
}

#[tokio::test]
async fn ambiguous_framing_is_refused_or_never_reused() {
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    assert!(r.is_err(), "conflicting lengths");
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    assert!(r.is_err(), "a signed length");
    // Both framings: chunked wins, and the connection is not reused.
    let raw = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let (r, _server) = respond(vec![raw.as_bytes().to_vec()]).await;
    let mut r = r.expect("head");
    assert_eq!(body(&mut r).await.expect("body"), b"ok");
    assert!(r.into_reusable().is_none());
    // A chunk-size line longer than any real one, even when its end arrives later.
    let mut long = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1");
    long.push_str(&";x".repeat(1000));
    let (r, _server) = respond(vec![long.into_bytes(), b"\r\nab\r\n0\r\n\r\n".to_vec()]).await;
    let mut r = r.expect("head");
    assert!(body(&mut r).await.is_err());
}

#[test]
fn chunk_sizes_and_tokens() {
    assert_eq!(parse_chunk_size(b"1A"), Ok(26));
    assert_eq!(parse_chunk_size(b"ff;name=value"), Ok(255));
    assert!(parse_chunk_size(b"").is_err());
    assert!(parse_chunk_size(b"-1").is_err());
    assert!(parse_chunk_size(b"1234567890abcdef0").is_err());
    assert!(last_token_is(b"gzip, chunked", b"chunked"));
    assert!(!last_token_is(b"chunked, gzip", b"chunked"));
    assert!(has_token(b"keep-alive, Close", b"close"));
}

#[tokio::test]
async fn the_head_does_not_hold_the_read_buffer() {
    // Head and first event in one read, then events one by one, as a slow stream sends them.
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let event = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
    let mut pieces = vec![format!("{head}{chunk}").into_bytes()];
    pieces.extend((0..40).map(|_| chunk.clone().into_bytes()));
    pieces.push(b"0\r\n\r\n".to_vec());
    let (r, _server) = respond(pieces).await;
    let mut r = r.expect("head");
    // A view into the first read's buffer would keep that buffer for the answer's life, and
    // every later read would need another beside it.
    assert!(r.head.is_unique(), "the head is a copy of its own");
    let mut events = 0;
    while let Some(data) = r.read_chunk().await.expect("chunk") {
        assert_eq!(&data[..], event.as_bytes());
        drop(data);
        events += 1;
        assert!(
            r.buf.capacity() <= MIN_READ,
            "one read buffer, reused: {} bytes after {events} events",
            r.buf.capacity()
        );
    }
    assert_eq!(events, 41);
}
