//! A raw HTTP/1.1 upstream for tests that need bytes mock-llm does not send: a whole answer
//! split at a chosen offset, a keep-alive connection closed under a pooled request, a 4xx in
//! a shape of its own. Each request is answered by a script from its head and position.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What a script does with one request.
pub enum Reply {
    /// Write these pieces, each as its own write with a short pause between, then keep the
    /// connection for the next request.
    Writes(Vec<Vec<u8>>),
    /// [`Reply::Writes`] with this pause between the pieces.
    Paced(Vec<Vec<u8>>, Duration),
    /// Close the connection without answering.
    Close,
}

/// One request as the script sees it.
pub struct Seen<'a> {
    /// The request head, as text.
    pub head: &'a str,
    /// Requests on this connection before this one.
    pub on_connection: usize,
}

type Script = dyn Fn(&Seen<'_>) -> Reply + Send + Sync;

pub struct RawUpstream {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    /// Connections the gateway closed while this side waited for a request.
    pub closed_by_gateway: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(script: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let script: Arc<Script> = Arc::new(script);
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let closed_by_gateway = Arc::new(AtomicUsize::new(0));
        let (r, c) = (Arc::clone(&requests), Arc::clone(&connections));
        let closed = Arc::clone(&closed_by_gateway);
        #[expect(
            clippy::disallowed_methods,
            reason = "a test's fake provider, not Sluice"
        )]
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (script, r, closed) =
                    (Arc::clone(&script), Arc::clone(&r), Arc::clone(&closed));
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a test's fake provider, not Sluice"
                )]
                tokio::spawn(async move {
                    if serve(sock, script, r).await == Ended::ByGateway {
                        closed.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            port,
            requests,
            connections,
            closed_by_gateway,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

#[derive(PartialEq)]
enum Ended {
    /// The gateway closed the connection while a request was awaited.
    ByGateway,
    /// The script closed it, or a write failed.
    Here,
}

async fn serve(mut sock: TcpStream, script: Arc<Script>, requests: Arc<AtomicUsize>) -> Ended {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::new();
    let mut on_connection = 0;
    loop {
        // Read one request: head, then a content-length body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ended::ByGateway,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ended::ByGateway,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        requests.fetch_add(1, Ordering::SeqCst);
        let reply = script(&Seen {
            head: &head,
            on_connection,
        });
        on_connection += 1;
        let written = match reply {
            Reply::Close => return Ended::Here,
            Reply::Writes(pieces) => write_paced(&mut sock, pieces, Duration::from_millis(2)).await,
            Reply::Paced(pieces, pause) => write_paced(&mut sock, pieces, pause).await,
        };
        if !written {
            return Ended::Here;
        }
    }
}

/// Writes `pieces` with `pause` between them; `false` when the connection broke.
async fn write_paced(sock: &mut TcpStream, pieces: Vec<Vec<u8>>, pause: Duration) -> bool {
    let n = pieces.len();
    for (i, p) in pieces.into_iter().enumerate() {
        if sock.write_all(&p).await.is_err() {
            return false;
        }
        let _ = sock.flush().await;
        if i + 1 < n {
            tokio::time::sleep(pause).await;
        }
    }
    true
}

/// A whole streamed chat answer: head and chunked body with every event through `[DONE]`
/// and the terminating chunk, as one byte string.
pub fn whole_stream(model: &str) -> Vec<u8> {
    whole_stream_of(model, &["Hello", " there", ", how", " are", " you", "?"])
}

/// [`whole_stream`] with these content deltas.
pub fn whole_stream_of(model: &str, words: &[&str]) -> Vec<u8> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-raw\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut events = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for word in words {
        events.push_str(&chunk(&format!("{{\"content\":\"{word}\"}}"), "null"));
    }
    events.push_str(&chunk("{}", "\"stop\""));
    events.push_str("data: {\"id\":\"chatcmpl-raw\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6,\"total_tokens\":11}}\n\n");
    events.push_str("data: [DONE]\n\n");
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    // Each event its own HTTP chunk, as providers send them.
    for ev in events.split_inclusive("\n\n") {
        out.extend_from_slice(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A whole non-streamed chat answer with a content-length.
pub fn whole_json() -> Vec<u8> {
    let body = r#"{"id":"chatcmpl-raw","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
