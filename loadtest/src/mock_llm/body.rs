//! A response body played from a script of waits, data frames and an optional abort.
//!
//! Every answer of `mock-llm` is one of these: a non-stream answer is a single data step with an
//! exact length (so hyper writes `content-length`); a stream is `wait, event, wait, event, …`
//! with no length (so hyper uses chunked encoding, one chunk per event). No task is spawned: the
//! connection polls the body, so a closed connection drops the script and its timers with it.
//!
//! hyper only writes to the socket when a body has nothing ready, so every data step that is
//! ready back to back leaves in the same write. The server flattens each connection's output
//! into one buffer (`writev(false)`): with hyper's default queue of at most 16 buffers, a long
//! run of ready chunks was split over several writes. [`burst`] turns a script into one run of
//! data steps, so the head, every chunk and the chunked terminator go out in one `write`.

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

use super::runtime::Permit;

/// One step of a [`ScriptBody`].
#[derive(Debug, PartialEq, Eq)]
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
    /// A capacity slot held until the body is done (or dropped).
    permit: Option<Permit>,
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
            permit: None,
        }
    }

    /// A body of unknown length (chunked unless the response sets `content-length` itself).
    pub(crate) fn script(steps: impl IntoIterator<Item = Step>) -> Self {
        ScriptBody {
            steps: steps.into_iter().collect(),
            sleep: None,
            exact_len: None,
            on_abort: None,
            permit: None,
        }
    }

    /// Counts into `counter` if the body is dropped before its script ran out.
    pub(crate) fn counting_aborts(mut self, counter: Arc<AtomicU64>) -> Self {
        self.on_abort = Some(counter);
        self
    }

    /// Every data step replaced by `f` of it (in order, so `f` may keep state between them),
    /// the exact length following the new data.
    pub(crate) fn map_data(mut self, mut f: impl FnMut(Bytes) -> Bytes) -> Self {
        for step in &mut self.steps {
            if let Step::Data(b) = step {
                *b = f(std::mem::take(b));
            }
        }
        if self.exact_len.is_some() {
            self.exact_len = Some(
                self.steps
                    .iter()
                    .map(|s| match s {
                        Step::Data(b) => b.len() as u64,
                        _ => 0,
                    })
                    .sum(),
            );
        }
        self
    }

    /// Holds a capacity slot until the body is done, so a stream counts as in flight until its
    /// last byte.
    pub(crate) fn holding(mut self, permit: Option<Permit>) -> Self {
        self.permit = permit;
        self
    }
}

/// The script with every wait before its last data step removed, and their sum, which the
/// caller waits before sending the head instead. What follows the last data step (the wait and
/// abort of a stall) is kept as it is.
pub(crate) fn burst(steps: Vec<Step>) -> (Duration, Vec<Step>) {
    let last_data = steps.iter().rposition(|s| matches!(s, Step::Data(_)));
    let mut before_head = Duration::ZERO;
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Wait(d) if last_data.is_some_and(|last| i < last) => {
                before_head = before_head.saturating_add(d);
            }
            other => out.push(other),
        }
    }
    (before_head, out)
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
                None => {
                    this.permit = None;
                    return Poll::Ready(None);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &'static str) -> Step {
        Step::Data(Bytes::from_static(s.as_bytes()))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_moves_every_wait_before_the_last_data_to_the_head() {
        let cases: Vec<(Vec<Step>, Duration, Vec<Step>)> = vec![
            (vec![], ms(0), vec![]),
            (
                vec![
                    Step::Wait(ms(5)),
                    data("a"),
                    Step::Wait(ms(1)),
                    data("b"),
                    data("c"),
                ],
                ms(6),
                vec![data("a"), data("b"), data("c")],
            ),
            // A stall: the events at once, then the same silence and abort.
            (
                vec![
                    Step::Wait(ms(5)),
                    data("a"),
                    Step::Wait(ms(1)),
                    data("b"),
                    Step::Wait(ms(120_000)),
                    Step::Abort("x"),
                ],
                ms(6),
                vec![
                    data("a"),
                    data("b"),
                    Step::Wait(ms(120_000)),
                    Step::Abort("x"),
                ],
            ),
            // No data at all (a stall at event 0): nothing to move.
            (
                vec![Step::Wait(ms(9)), Step::Abort("x")],
                ms(0),
                vec![Step::Wait(ms(9)), Step::Abort("x")],
            ),
        ];
        for (steps, wait, script) in cases {
            assert_eq!(burst(steps), (wait, script));
        }
    }
}
