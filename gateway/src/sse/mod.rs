//! Incremental, zero-copy decoder for `text/event-stream` (Server-Sent Events).
//!
//! The gateway relays an upstream SSE stream event by event. For each event it needs the
//! exact bytes, so it can forward them unchanged, and the parsed fields (`event`, `data`),
//! so it can look for `finish_reason`, `usage`, errors and `[DONE]`. [`SseDecoder`] accepts
//! byte chunks of any size and returns each event as soon as its terminating blank line
//! arrives. Parsing follows the WHATWG EventSource rules:
//!
//! * a line ends in `\r\n`, `\n` or `\r`. A `\r` that is the last buffered byte may be the
//!   first half of a `\r\n`, so the decoder waits for the next byte (or [`SseDecoder::finish`])
//!   before deciding where that line ends;
//! * an empty line ends the event, and a line starting with `:` is a comment;
//! * `name:value` drops one optional space after the colon. A line with no colon is a field
//!   name with an empty value;
//! * `data` lines are joined with `\n`, `event` keeps its last value, and `id`, `retry` and
//!   unknown fields are ignored;
//! * a UTF-8 BOM at the very start of the stream is ignored when parsing. It stays in the
//!   first event's `raw`, so concatenating every `raw` gives back the input exactly.
//!
//! Parsing works on bytes and only looks at complete lines, so a multi-byte UTF-8 character
//! split across chunks needs no special handling. Events are cut from the internal buffer
//! with `split_to(..).freeze()`. An event with a single `data:` line (the usual case) borrows
//! `data` and `event` from `raw` without copying. Only an event with several `data:` lines
//! allocates its joined `data`.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The UTF-8 byte order mark, ignored at the very start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Initial buffer capacity. When the buffer is later reallocated (because frozen events still
/// share the old allocation), `bytes` reuses at least this capacity, so reallocations happen
/// once per few KiB of stream rather than once per event. Every open stream holds one, so it
/// is kept to about ten typical chunk events.
const INITIAL_CAPACITY: usize = 2 * 1024;

/// One complete (or, from [`SseDecoder::finish`], best-effort) SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The exact bytes of this event, including its terminating blank line. Comment lines,
    /// `id:`/`retry:` lines and any leading BOM are included as received.
    pub raw: Bytes,
    /// The raw value of the last `event:` field, if any (`Some("")` for `event:` with no value).
    pub event: Option<Bytes>,
    /// The `data:` values joined with `"\n"`, with no trailing newline. Empty if there is none.
    pub data: Bytes,
    /// Whether the block had at least one `data` field (an empty `data:` counts). False for
    /// comment-only or field-less blocks such as `": keepalive\n\n"`, which an EventSource
    /// client would not dispatch.
    pub has_data: bool,
}

impl SseEvent {
    /// True for the OpenAI end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.as_ref() == b"[DONE]"
    }
}

/// Errors from [`SseDecoder::next_event`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event (complete, or still incomplete) needed more than the configured limit.
    #[error("an SSE event exceeded {limit} bytes")]
    EventTooLarge {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
}

/// The `data` lines seen so far in the current event.
#[derive(Debug)]
enum Data {
    /// No `data` field yet.
    None,
    /// Exactly one `data` field: its value, as a range of the buffer.
    One(Range<usize>),
    /// Two or more `data` fields, joined with `\n` (no trailing newline).
    Many(BytesMut),
}

/// Incremental SSE decoder: [`push`](Self::push) bytes, then call
/// [`next_event`](Self::next_event) until it returns `Ok(None)`.
///
/// The internal buffer always starts at the first byte of the current (not yet returned)
/// event. The lines of that event already seen are parsed once and remembered as ranges, so
/// every byte is scanned once however the stream is split.
///
/// After [`SseError::EventTooLarge`] the decoder is poisoned: it drops its buffer, ignores
/// further input and keeps returning that error. The stream should be aborted.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    max_event_bytes: usize,
    /// Start of the first line of the current event that has not been parsed yet.
    line_start: usize,
    /// Where the search for that line's end resumes (`>= line_start`).
    scan_pos: usize,
    /// True until the first line of the stream is parsed (the only place a BOM is skipped).
    at_stream_start: bool,
    /// Value range of the last `event` field of the current event.
    event: Option<Range<usize>>,
    data: Data,
    poisoned: bool,
    /// Bytes examined by the line-end search, to test that nothing is scanned twice.
    #[cfg(test)]
    bytes_scanned: usize,
}

impl SseDecoder {
    /// A decoder that rejects any event longer than `max_event_bytes` (counting its `raw`
    /// bytes, terminator included).
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
            max_event_bytes,
            line_start: 0,
            scan_pos: 0,
            at_stream_start: true,
            event: None,
            data: Data::None,
            poisoned: false,
            #[cfg(test)]
            bytes_scanned: 0,
        }
    }

    /// Appends a chunk of the stream, copying it into the internal buffer. It does no parsing;
    /// call [`next_event`](Self::next_event) afterwards. Ignored once the decoder is poisoned.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Returns the next complete event, `Ok(None)` if more input is needed, or
    /// [`SseError::EventTooLarge`] if the current event is, or is bound to be, larger than
    /// `max_event_bytes`.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        if self.poisoned {
            return Err(self.too_large());
        }
        // `buf` starts at the current event, so its length bounds that event from below.
        match self.advance(false) {
            Some(end) if end <= self.max_event_bytes => Ok(Some(self.dispatch(end))),
            None if self.buf.len() <= self.max_event_bytes => Ok(None),
            _ => {
                self.poisoned = true;
                self.buf = BytesMut::new();
                self.reset_event();
                Err(self.too_large())
            }
        }
    }

    /// Bytes pushed but not yet returned as events. Once `next_event` has returned
    /// `Ok(None)`, these are the bytes of the incomplete event held back.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Call at upstream EOF, after `next_event` has returned `Ok(None)`.
    ///
    /// Returns `None` if nothing is buffered (a clean end on an event boundary) or if the
    /// decoder is poisoned. Otherwise it returns the remaining bytes as one event and resets
    /// the decoder:
    ///
    /// * usually the stream was cut mid-event. Per the spec such an event is **discarded**.
    ///   It is returned here as a best-effort event so the caller can decide (for example,
    ///   log it and treat the stream as truncated). Its `raw` lacks the terminating blank line
    ///   and an unterminated last line is parsed as a field (so `data: [DONE]` with a single
    ///   `\n`, or none, still gives `is_done()`);
    /// * the one exception is a final `\r` that `next_event` could not yet classify. If it
    ///   ends the event (`...\r\r` at EOF), the returned event is complete and valid. That is
    ///   the case exactly when `raw` ends in `\r` preceded by `\r`, `\n` or nothing.
    ///
    /// The size limit is not checked here: anything buffered was already accepted by
    /// `next_event` (or never inspected by it).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.poisoned || self.buf.is_empty() {
            return None;
        }
        let event = match self.advance(true) {
            Some(end) => self.dispatch(end),
            None => {
                let end = self.buf.len();
                if self.line_start < end {
                    // The return value (blank line or not) does not matter: we dispatch anyway.
                    self.process_line(self.line_start..end);
                }
                self.dispatch(end)
            }
        };
        if self.buf.is_empty() {
            self.at_stream_start = true;
        }
        Some(event)
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    fn reset_event(&mut self) {
        self.line_start = 0;
        self.scan_pos = 0;
        self.event = None;
        self.data = Data::None;
    }

    /// Parses complete lines from `scan_pos` on. Returns the end offset (terminator included)
    /// of the blank line that ends the current event, or `None` if the buffer runs out first.
    /// With `eof`, a trailing `\r` counts as a line end.
    fn advance(&mut self, eof: bool) -> Option<usize> {
        loop {
            let haystack = &self.buf[self.scan_pos..];
            let found = memchr::memchr2(b'\n', b'\r', haystack);
            #[cfg(test)]
            {
                self.bytes_scanned += found.map_or(haystack.len(), |offset| offset + 1);
            }
            let Some(offset) = found else {
                self.scan_pos = self.buf.len();
                return None;
            };
            let eol = self.scan_pos + offset;
            let terminator_len = if self.buf[eol] == b'\n' {
                1
            } else {
                match self.buf.get(eol + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None if eof => 1,
                    None => {
                        // Maybe the first half of "\r\n": look again when more bytes arrive.
                        self.scan_pos = eol;
                        return None;
                    }
                }
            };
            let line = self.line_start..eol;
            self.line_start = eol + terminator_len;
            self.scan_pos = self.line_start;
            if self.process_line(line) {
                return Some(self.scan_pos);
            }
        }
    }

    /// Parses one line (without its terminator). Returns true if it is blank (ends the event).
    fn process_line(&mut self, mut line: Range<usize>) -> bool {
        if std::mem::take(&mut self.at_stream_start) && self.buf[line.clone()].starts_with(BOM) {
            line.start += BOM.len();
        }
        let bytes = &self.buf[line.clone()];
        let Some(&first) = bytes.first() else {
            return true;
        };
        if first == b':' {
            return false; // comment
        }
        let (name_end, value) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) => {
                let mut value_start = line.start + colon + 1;
                if value_start < line.end && self.buf[value_start] == b' ' {
                    value_start += 1;
                }
                (line.start + colon, value_start..line.end)
            }
            None => (line.end, line.end..line.end),
        };
        match &self.buf[line.start..name_end] {
            b"data" => self.push_data(value),
            b"event" => self.event = Some(value),
            _ => {} // `id`, `retry` and unknown fields do not matter to the gateway.
        }
        false
    }

    fn push_data(&mut self, value: Range<usize>) {
        self.data = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => Data::One(value),
            Data::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                joined.extend_from_slice(&self.buf[first]);
                joined.put_u8(b'\n');
                joined.extend_from_slice(&self.buf[value]);
                Data::Many(joined)
            }
            Data::Many(mut joined) => {
                joined.put_u8(b'\n');
                joined.extend_from_slice(&self.buf[value]);
                Data::Many(joined)
            }
        };
    }

    /// Cuts the first `end` bytes off the buffer as the current event.
    fn dispatch(&mut self, end: usize) -> SseEvent {
        let raw = self.buf.split_to(end).freeze();
        let (data, has_data) = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => (Bytes::new(), false),
            Data::One(range) => (raw.slice(range), true),
            Data::Many(joined) => (joined.freeze(), true),
        };
        let event = self.event.take().map(|range| raw.slice(range));
        self.reset_event();
        SseEvent {
            raw,
            event,
            data,
            has_data,
        }
    }
}

/// Builds a `data:` event: `"data: <json>\n\n"`.
///
/// Input containing line breaks (for example pretty-printed JSON) becomes several `data:`
/// lines, so the output is always one well-formed event. Decoding it gives back `json`, with
/// `\r\n` and `\r` turned into `\n`.
pub fn data_event(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 8);
    let mut rest = json;
    loop {
        out.extend_from_slice(b"data: ");
        let Some(eol) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            out.extend_from_slice(rest);
            out.extend_from_slice(b"\n\n");
            return out.freeze();
        };
        out.extend_from_slice(&rest[..eol]);
        out.put_u8(b'\n');
        let terminator_len = if rest[eol..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[eol + terminator_len..];
    }
}
