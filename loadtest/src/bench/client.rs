//! One HTTP/1.1 keep-alive connection and the timing of one request on it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};

use crate::keepalive::KeepAlive;

/// Where requests go and how they authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Report name (`direct`, `nginx`, `sluice`, …).
    pub name: String,
    /// TCP address (127.0.0.1 only, by convention).
    pub addr: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Bearer token.
    pub key: String,
    /// Body `model`.
    pub model: String,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH` (plain HTTP, literal IP address).
    pub fn from_url(name: &str, url: &str, key: &str, model: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/v1/chat/completions"),
        };
        let addr: SocketAddr = hostport
            .parse()
            .map_err(|e| format!("{url}: host must be IP:PORT ({e})"))?;
        Ok(Target {
            name: name.to_owned(),
            addr,
            path: path.to_owned(),
            key: key.to_owned(),
            model: model.to_owned(),
        })
    }
}

/// What one request did, in time from its start (scheduled time in the open loop).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// HTTP status.
    pub status: u16,
    /// Response head received.
    pub ttfb: Duration,
    /// First SSE event with non-empty `content` (streams only).
    pub ttfc: Option<Duration>,
    /// Whole body received.
    pub ttlb: Duration,
    /// SSE events received, `[DONE]` included (streams), or body frames (non-stream).
    pub chunks: u32,
    /// Body bytes.
    pub bytes: u64,
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
    /// TCP connect or HTTP handshake.
    Connect(String),
    /// The exchange broke (reset, malformed response, …).
    Http(String),
}

/// Prepared header values shared by every request to one target.
#[derive(Debug, Clone)]
pub struct Headers {
    host: HeaderValue,
    auth: HeaderValue,
    json: HeaderValue,
}

impl Headers {
    /// For `target`.
    pub fn new(target: &Target) -> Result<Headers, String> {
        let host = HeaderValue::from_str(&target.addr.to_string()).map_err(|e| e.to_string())?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", target.key))
            .map_err(|_| "the key is not a valid header value".to_owned())?;
        Ok(Headers {
            host,
            auth,
            json: HeaderValue::from_static("application/json"),
        })
    }
}

/// A keep-alive HTTP/1.1 connection (reconnects lazily after an error).
#[derive(Debug)]
pub struct Conn {
    link: KeepAlive,
}

impl Conn {
    /// Not connected yet; the first request connects.
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            link: KeepAlive::new(addr),
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.link.opened
    }

    /// Sends one POST and reads the whole answer; times are measured from `start`.
    pub async fn send(
        &mut self,
        target: &Target,
        headers: &Headers,
        body: Bytes,
        stream: bool,
        start: Instant,
    ) -> Result<Timing, Failure> {
        let mut req = Request::post(target.path.as_str())
            .body(Full::new(body))
            .map_err(|e| Failure::Http(e.to_string()))?;
        let h = req.headers_mut();
        h.insert(HOST, headers.host.clone());
        h.insert(CONTENT_TYPE, headers.json.clone());
        h.insert(AUTHORIZATION, headers.auth.clone());
        let result = self.exchange(req, stream, start).await;
        if result.is_err() {
            // Never reuse a connection whose exchange broke half-way.
            self.link.discard();
        }
        result
    }

    async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
        stream: bool,
        start: Instant,
    ) -> Result<Timing, Failure> {
        let tx = self.link.sender().await.map_err(Failure::Connect)?;
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| Failure::Http(e.to_string()))?;
        let ttfb = start.elapsed();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut sse = SseScan::default();
        let mut ttfc = None;
        let mut frames = 0u32;
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Http(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                frames += 1;
                bytes += data.len() as u64;
                if stream && sse.feed(data) && ttfc.is_none() {
                    ttfc = Some(start.elapsed());
                }
            }
        }
        Ok(Timing {
            status,
            ttfb,
            ttfc,
            ttlb: start.elapsed(),
            chunks: if stream { sse.events } else { frames },
            bytes,
        })
    }
}

/// Splits an SSE byte stream into events and spots the first one carrying content.
#[derive(Debug, Default)]
pub struct SseScan {
    pending: Vec<u8>,
    /// Complete events seen.
    pub events: u32,
    /// Whether an event with non-empty `"content"` was seen.
    pub content_seen: bool,
}

impl SseScan {
    /// Feeds bytes; returns true when this call completed the first content event.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        let mut newly = false;
        let mut rest = data;
        loop {
            // An event ends at a blank line. Look for "\n\n" across the pending tail and `rest`.
            let boundary = if self.pending.last() == Some(&b'\n') && rest.first() == Some(&b'\n') {
                Some(0)
            } else {
                rest.windows(2).position(|w| w == b"\n\n").map(|i| i + 1)
            };
            let Some(end) = boundary else {
                self.pending.extend_from_slice(rest);
                return newly;
            };
            let event_tail = &rest[..end];
            let complete = if self.pending.is_empty() {
                has_content(event_tail)
            } else {
                self.pending.extend_from_slice(event_tail);
                let c = has_content(&self.pending);
                self.pending.clear();
                c
            };
            self.events += 1;
            if complete && !self.content_seen {
                self.content_seen = true;
                newly = true;
            }
            rest = &rest[end + 1..];
            if rest.is_empty() {
                return newly;
            }
        }
    }
}

/// `"content":"` followed by anything but the closing quote.
fn has_content(event: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"content\":\"";
    event
        .windows(NEEDLE.len())
        .enumerate()
        .any(|(i, w)| w == NEEDLE && event.get(i + NEEDLE.len()).is_some_and(|&c| c != b'"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n\
data: [DONE]\n\n";

    #[test]
    fn sse_scan_whole_and_split_at_every_byte() {
        let mut s = SseScan::default();
        assert!(s.feed(STREAM));
        assert_eq!(s.events, 4);
        for cut in 1..STREAM.len() {
            let mut s = SseScan::default();
            let first = s.feed(&STREAM[..cut]);
            let second = s.feed(&STREAM[cut..]);
            assert!(first ^ second, "cut {cut}");
            assert_eq!(s.events, 4, "cut {cut}");
        }
    }

    #[test]
    fn role_chunk_is_not_content() {
        let mut s = SseScan::default();
        assert!(!s.feed(b"data: {\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}\n\n"));
        assert_eq!(s.events, 1);
        assert!(!s.content_seen);
    }

    #[test]
    fn target_urls() {
        let t = Target::from_url("x", "http://127.0.0.1:9/v1/chat/completions", "k", "m").unwrap();
        assert_eq!(t.addr.port(), 9);
        assert_eq!(t.path, "/v1/chat/completions");
        assert!(Target::from_url("x", "https://127.0.0.1:9/", "k", "m").is_err());
        assert!(Target::from_url("x", "http://localhost:9/", "k", "m").is_err());
    }
}
