//! What is collected from an answer while it is written to the client: the response cache's
//! fill, and the judge's copy of a sampled answer. Both see exactly the bytes the client got,
//! so a cached or judged answer is never one the client did not see.

use bytes::{Bytes, BytesMut};

use crate::cache::Fill;

/// The taps on one request's answer; both empty for most requests.
#[derive(Debug, Default)]
pub struct Taps {
    pub cache: Option<Fill>,
    pub judge: Option<JudgeTap>,
}

impl Taps {
    /// A non-streaming answer (kept by reference count, not copied).
    pub fn set_whole(&mut self, body: &Bytes) {
        if let Some(fill) = &mut self.cache {
            fill.set_whole(body);
        }
        if let Some(judge) = &mut self.judge {
            judge.whole = Some(body.clone());
        }
    }

    /// Bytes of a stream, in the order they were written.
    pub fn push(&mut self, bytes: &[u8]) {
        if let Some(fill) = &mut self.cache {
            fill.push(bytes);
        }
        if let Some(judge) = &mut self.judge {
            judge.push(bytes);
        }
    }

    /// The answer passes through in the Responses API's own shape: what is kept is marked so
    /// (the cache replays it as stored, the judge reads its text from the native events).
    pub fn set_native(&mut self) {
        if let Some(fill) = &mut self.cache {
            fill.set_native();
        }
        if let Some(judge) = &mut self.judge {
            judge.native = true;
        }
    }

    /// The stream ended with the provider's own `[DONE]`.
    pub fn mark_complete(&mut self) {
        if let Some(fill) = &mut self.cache {
            fill.mark_complete();
        }
    }
}

/// A sampled answer as the client got it: the body, or the stream's bytes up to a bound (the
/// judge assembles the answer from them off the request path).
#[derive(Debug)]
pub struct JudgeTap {
    whole: Option<Bytes>,
    streamed: BytesMut,
    limit: usize,
    /// Bytes past the bound were not kept.
    pub truncated: bool,
    /// A passed-through Responses answer, not a chat one.
    pub native: bool,
}

impl JudgeTap {
    /// A tap keeping at most `limit` bytes of a stream.
    pub fn new(limit: usize) -> Self {
        Self {
            whole: None,
            streamed: BytesMut::new(),
            limit,
            truncated: false,
            native: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.streamed.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.streamed
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// What was kept: `(body, is_stream)`.
    pub fn into_bytes(self) -> (Bytes, bool) {
        match self.whole {
            Some(body) => (body, false),
            None => (self.streamed.freeze(), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judge_tap_keeps_a_bounded_prefix_of_a_stream() {
        let mut taps = Taps {
            cache: None,
            judge: Some(JudgeTap::new(8)),
        };
        taps.push(b"data: 1\n\n");
        taps.push(b"data: 2\n\n");
        let tap = taps.judge.take().expect("tap");
        assert!(tap.truncated);
        assert_eq!(tap.into_bytes(), (Bytes::from_static(b"data: 1\n"), true));

        let mut taps = Taps {
            cache: None,
            judge: Some(JudgeTap::new(8)),
        };
        taps.set_whole(&Bytes::from_static(b"{\"a\":\"a whole answer\"}"));
        let (body, stream) = taps.judge.take().expect("tap").into_bytes();
        assert!(!stream);
        assert_eq!(body.len(), 22, "a whole body is kept as is, by reference");
    }
}
