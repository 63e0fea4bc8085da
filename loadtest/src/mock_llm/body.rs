//! A response body played from a script of waits, data frames and an optional abort.
//!
//! Every answer of `mock-llm` is one of these: a non-stream answer is a single data step with an
//! exact length (so hyper writes `content-length`); a stream is `wait, event, wait, event, …`
//! with no length (so hyper uses chunked encoding, one chunk per event). No task is spawned: the
//! connection polls the body, so a closed connection drops the script and its timers with it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// One step of a [`ScriptBody`].
#[derive(Debug)]
pub(crate) enum Step {
    /// Sleep before the next step.
    Wait(Duration),
    /// Send one data frame (one chunk when chunked).
    Data(Bytes),
    /// Fail the body: hyper aborts the connection without terminating the message.
    Abort(&'static str),
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct ScriptBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    exact_len: Option<u64>,
    /// Counts this body being dropped with steps left, i.e. the reader went away.
    on_abort: Option<Arc<AtomicU64>>,
}

impl ScriptBody {
    /// A whole body of known length.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes: Bytes = bytes.into();
        ScriptBody {
            exact_len: Some(bytes.len() as u64),
            steps: VecDeque::from([Step::Data(bytes)]),
            sleep: None,
            on_abort: None,
        }
    }

    /// A body of unknown length (chunked unless the response sets `content-length` itself).
    pub(crate) fn script(steps: impl IntoIterator<Item = Step>) -> Self {
        ScriptBody {
            steps: steps.into_iter().collect(),
            sleep: None,
            exact_len: None,
            on_abort: None,
        }
    }

    /// Counts into `counter` if the body is dropped before its script ran out.
    pub(crate) fn counting_aborts(mut self, counter: Arc<AtomicU64>) -> Self {
        self.on_abort = Some(counter);
        self
    }
}

impl Drop for ScriptBody {
    fn drop(&mut self) {
        let unfinished = self.steps.iter().any(|s| matches!(s, Step::Data(_)));
        if unfinished && let Some(counter) = &self.on_abort {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            match this.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Wait(d)) => {
                    if !d.is_zero() {
                        this.sleep = Some(Box::pin(tokio::time::sleep(d)));
                    }
                }
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Abort(why)) => return Poll::Ready(Some(Err(io::Error::other(why)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
