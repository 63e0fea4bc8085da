//! The in-process `mock` provider kind: answers synthesized by [`super::mock`], paced by the
//! provider's configured time to first token and tokens per second.

use std::time::Duration;

use bytes::Bytes;

use super::mock::{self, Endpoint, MockRequest, MockStream, MockTiming};

pub struct MockUpstream {
    status: u16,
    content_type: &'static [u8],
    body: Body,
    timing: MockTiming,
    index: usize,
}

enum Body {
    /// A whole JSON answer, sent after the full generation time.
    Whole(Option<(Duration, Bytes)>),
    Stream(MockStream),
}

impl MockUpstream {
    pub fn new(endpoint: Endpoint, body: &[u8], timing: MockTiming) -> Self {
        match MockRequest::from_body(endpoint, body) {
            Ok(req) if req.stream => Self {
                status: 200,
                content_type: b"text/event-stream",
                body: Body::Stream(MockStream::new(&req)),
                timing,
                index: 0,
            },
            Ok(req) => {
                let wait = timing.response_delay(&req);
                Self {
                    status: 200,
                    content_type: b"application/json",
                    body: Body::Whole(Some((wait, mock::response_json(&req)))),
                    timing,
                    index: 0,
                }
            }
            Err(message) => Self {
                status: 400,
                content_type: b"application/json",
                body: Body::Whole(Some((
                    Duration::ZERO,
                    Bytes::from(
                        serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
                            .to_string(),
                    ),
                ))),
                timing,
                index: 0,
            },
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        name.eq_ignore_ascii_case("content-type")
            .then_some(self.content_type)
    }

    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        match &mut self.body {
            Body::Whole(whole) => {
                let (wait, body) = whole.take()?;
                sleep(wait).await;
                Some(body)
            }
            Body::Stream(stream) => {
                let wait = stream.delay_before(&self.timing, self.index);
                let event = stream.next()?;
                sleep(wait).await;
                self.index += 1;
                Some(event)
            }
        }
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
