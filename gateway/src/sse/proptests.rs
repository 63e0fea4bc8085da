//! Fuzz target for [`SseDecoder`] (issue 14): random and structured byte streams, pushed whole
//! and in random pieces, against a reference decoder.
//!
//! The reference ([`reference`]) reads the whole input at once, so it never has to wait on a
//! trailing `\r` or keep state across pushes; it is the WHATWG line rules written the plain
//! way. [`check_sse`] asserts that the decoder, fed in one push and in the case's pieces:
//! never panics; returns the reference's events (`raw`, `event`, `data`, `has_data`) in order,
//! the last one from `finish`; returns exactly the events that fit in `max_event_bytes` and
//! then [`SseError::EventTooLarge`] for the first that does not, and stays poisoned after it;
//! never holds more than `max_event_bytes` while waiting; and that the `raw` bytes put back
//! together are the input (or, after the error, a prefix of it). [`data_event`] is checked to
//! decode back to its input on the same bytes.

use super::*;
use crate::fuzz::{self, Budget};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::time::Duration;

const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/openai_chat_stream.sse");
const LIMIT: usize = 64 * 1024;

/// One input: the stream, where it is cut into pushes, and the decoder's event limit.
#[derive(Clone)]
pub(crate) struct SseCase {
    input: Vec<u8>,
    /// Offsets into `input`, ascending; each starts a new push.
    cuts: Vec<usize>,
    limit: usize,
}

impl std::fmt::Debug for SseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseCase")
            .field("input", &Bytes::copy_from_slice(&self.input))
            .field("cuts", &self.cuts)
            .field("limit", &self.limit)
            .finish()
    }
}

/// An event as the reference decoder sees it; compared field by field with [`SseEvent`].
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    raw: Bytes,
    event: Option<Bytes>,
    data: Bytes,
    has_data: bool,
}

impl From<&SseEvent> for Expected {
    fn from(ev: &SseEvent) -> Self {
        Self {
            raw: ev.raw.clone(),
            event: ev.event.clone(),
            data: ev.data.clone(),
            has_data: ev.has_data,
        }
    }
}

/// What feeding a stream to the decoder gave.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Expected>,
    too_large: bool,
}

/// The property. `Err` names the first broken promise.
pub(crate) fn check_sse(case: &SseCase) -> Result<(), String> {
    let input = &case.input[..];
    let all = reference(input);
    let expected = Outcome {
        events: all
            .iter()
            .take_while(|ev| ev.raw.len() <= case.limit)
            .map(|ev| Expected {
                raw: ev.raw.clone(),
                event: ev.event.clone(),
                data: ev.data.clone(),
                has_data: ev.has_data,
            })
            .collect(),
        too_large: all.iter().any(|ev| ev.raw.len() > case.limit),
    };
    let mut bounds = vec![0];
    bounds.extend(case.cuts.iter().copied().filter(|&c| c <= input.len()));
    bounds.push(input.len());
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &input[w[0]..w[1]]).collect();
    for (how, pieces) in [("one push", vec![input]), ("in pieces", pieces)] {
        let got = feed(&pieces, case.limit).map_err(|e| format!("{how}: {e}"))?;
        if got != expected {
            return Err(format!(
                "{how}: decoder gave {got:?}, the reference {expected:?}"
            ));
        }
        let joined: Vec<u8> = got.events.iter().flat_map(|ev| ev.raw.to_vec()).collect();
        let whole = if got.too_large {
            input.starts_with(&joined) && joined.len() < input.len()
        } else {
            joined == input
        };
        if !whole {
            return Err(format!("{how}: the events' raw bytes are not the input"));
        }
    }
    check_data_event(input)
}

/// Pushes `pieces` one by one, draining events after each, then finishes; checks the size
/// bound and the poisoned state on the way.
fn feed(pieces: &[&[u8]], limit: usize) -> Result<Outcome, String> {
    let mut dec = SseDecoder::new(limit);
    let mut events = Vec::new();
    for piece in pieces {
        dec.push(piece);
        loop {
            match dec.next_event() {
                Ok(Some(ev)) if ev.raw.len() > limit => {
                    return Err(format!("an event of {} bytes passed", ev.raw.len()));
                }
                Ok(Some(ev)) => events.push(Expected::from(&ev)),
                Ok(None) if dec.pending_len() > limit => {
                    return Err(format!("{} bytes held back", dec.pending_len()));
                }
                Ok(None) => break,
                Err(SseError::EventTooLarge { limit: l }) if l == limit => {
                    dec.push(b"data: more\n\n");
                    let poisoned = dec.pending_len() == 0
                        && dec.next_event() == Err(SseError::EventTooLarge { limit })
                        && dec.finish().is_none();
                    if !poisoned {
                        return Err("the decoder recovered after EventTooLarge".into());
                    }
                    return Ok(Outcome {
                        events,
                        too_large: true,
                    });
                }
                Err(e) => return Err(format!("unexpected error {e:?}")),
            }
        }
    }
    events.extend(dec.finish().as_ref().map(Expected::from));
    if dec.pending_len() != 0 || dec.finish().is_some() {
        return Err("finish left bytes behind".into());
    }
    Ok(Outcome {
        events,
        too_large: false,
    })
}

/// The WHATWG rules applied to a whole stream; the unterminated tail, if any, becomes a last
/// event with its final line parsed as a field, as [`SseDecoder::finish`] promises.
fn reference(input: &[u8]) -> Vec<Expected> {
    #[derive(Default)]
    struct Fields {
        event: Option<Vec<u8>>,
        data: Vec<Vec<u8>>,
    }
    let dispatch = |fields: &mut Fields, raw: &[u8]| {
        let fields = std::mem::take(fields);
        Expected {
            raw: Bytes::copy_from_slice(raw),
            event: fields.event.map(Bytes::from),
            has_data: !fields.data.is_empty(),
            data: Bytes::from(fields.data.join(&b'\n')),
        }
    };
    let mut out = Vec::new();
    let mut fields = Fields::default();
    let (mut event_start, mut pos) = (0, 0);
    while pos < input.len() {
        let (eol, next) = match input[pos..].iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(offset) => {
                let eol = pos + offset;
                let crlf = input[eol] == b'\r' && input.get(eol + 1) == Some(&b'\n');
                (eol, eol + if crlf { 2 } else { 1 })
            }
            None => (input.len(), input.len()),
        };
        let mut line = &input[pos..eol];
        if pos == 0 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        pos = next;
        if line.is_empty() && next > eol {
            out.push(dispatch(&mut fields, &input[event_start..pos]));
            event_start = pos;
            continue;
        }
        if line.first() == Some(&b':') {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => fields.data.push(value.to_vec()),
            b"event" => fields.event = Some(value.to_vec()),
            _ => {}
        }
    }
    if event_start < input.len() {
        out.push(dispatch(&mut fields, &input[event_start..]));
    }
    out
}

/// `data_event(x)` is one event whose data is `x` with `\r\n` and `\r` made `\n`.
fn check_data_event(payload: &[u8]) -> Result<(), String> {
    let encoded = data_event(payload);
    let mut normalized = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        if payload[i] == b'\r' {
            normalized.push(b'\n');
            i += if payload.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        } else {
            normalized.push(payload[i]);
            i += 1;
        }
    }
    let mut dec = SseDecoder::new(encoded.len());
    dec.push(&encoded);
    let first = dec.next_event();
    let rest = (dec.next_event(), dec.finish());
    match (first, rest) {
        (Ok(Some(ev)), (Ok(None), None))
            if ev.has_data && ev.data == normalized && ev.raw == encoded =>
        {
            Ok(())
        }
        (first, rest) => Err(format!(
            "data_event({:?}) = {encoded:?} decodes to {first:?}, then {rest:?}",
            Bytes::copy_from_slice(payload)
        )),
    }
}

// === generators ===

fn value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => select(b"ab :{}\"[DONE]\xC3\xA9".to_vec()),
        1 => any::<u8>().prop_filter("a line break ends the line", |b| !matches!(b, b'\r' | b'\n')),
    ];
    vec(byte, 0..12)
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    let field = |name: &'static [u8]| value().prop_map(move |v| [name, &v].concat());
    prop_oneof![
        6 => field(b"data: "),
        2 => field(b"data:"),
        1 => Just(b"data".to_vec()),
        2 => field(b"event: "),
        1 => Just(b"event".to_vec()),
        2 => field(b": "),
        1 => Just(b":".to_vec()),
        1 => field(b"id: "),
        1 => field(b"retry: "),
        1 => field(b"x-unknown: "),
        1 => field(b"DATA: "),
        1 => field(b" data: "),
        1 => value(),
    ]
}

fn eol() -> impl Strategy<Value = &'static [u8]> {
    select(vec![&b"\n"[..], b"\r\n", b"\r"])
}

/// A stream built from SSE lines, with any mix of line ends, maybe a BOM, maybe cut short.
fn structured() -> impl Strategy<Value = Vec<u8>> {
    let event = (vec((line(), eol()), 0..5), eol()).prop_map(|(lines, end)| {
        let mut out = Vec::new();
        for (line, eol) in lines {
            out.extend_from_slice(&line);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(end);
        out
    });
    (
        any::<bool>(),
        vec(event, 0..6),
        prop::option::of(vec((line(), eol()), 1..3)),
        prop::option::of(any::<Index>()),
    )
        .prop_map(|(bom, events, tail, cut)| {
            let mut out = if bom { BOM.to_vec() } else { Vec::new() };
            out.extend(events.concat());
            for (line, eol) in tail.unwrap_or_default() {
                out.extend_from_slice(&line);
                out.extend_from_slice(eol);
            }
            if let Some(cut) = cut {
                out.truncate(cut.index(out.len() + 1));
            }
            out
        })
}

/// Bytes weighted towards what the decoder looks at.
fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => select(b"\r\n\r\n::data event \xEF\xBB\xBF".to_vec()),
        1 => any::<u8>(),
    ];
    vec(byte, 0..256)
}

fn case() -> impl Strategy<Value = SseCase> {
    let input = prop_oneof![3 => structured(), 1 => raw_bytes()];
    let limit = prop_oneof![2 => Just(LIMIT), 1 => 1usize..96];
    (input, vec(any::<Index>(), 0..12), limit).prop_map(|(input, cuts, limit)| {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        SseCase { input, cuts, limit }
    })
}

// === seeds and runs ===

fn with_line_ends(input: &[u8], eol: &[u8]) -> Vec<u8> {
    input.iter().fold(Vec::new(), |mut out, &b| {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
        out
    })
}

fn seed(input: impl Into<Vec<u8>>, every: usize, limit: usize) -> SseCase {
    let input = input.into();
    let cuts = (every..input.len()).step_by(every.max(1)).collect();
    SseCase { input, cuts, limit }
}

fn seeds() -> Vec<(&'static str, SseCase)> {
    let mixed = "\u{FEFF}: keepalive\r\n\r\ndata: {\"c\":\"héllo\"}\n\nevent: error\rdata: \
                 {\"e\":\"日本\"}\r\rdata: a\r\n: note\r\ndata: 🦀\r\nid: 7\r\n\r\ndata: [DONE]\n\n";
    let long_line = [&b"data: "[..], &vec![b'x'; 1 << 20], b"\n\n"].concat();
    let many_data = "data: line\n".repeat(100) + "\n";
    vec![
        ("fixture LF, 7-byte pushes", seed(FIXTURE, 7, LIMIT)),
        (
            "fixture CRLF, 5-byte pushes",
            seed(with_line_ends(FIXTURE, b"\r\n"), 5, LIMIT),
        ),
        (
            "fixture CR, 1-byte pushes",
            seed(with_line_ends(FIXTURE, b"\r"), 1, LIMIT),
        ),
        ("mixed framing, 1-byte pushes", seed(mixed, 1, LIMIT)),
        ("mixed framing, tight limit", seed(mixed, 3, 24)),
        ("CR CR at EOF", seed("data: y\r\r", 8, LIMIT)),
        (
            "CRLF split between CR and LF",
            seed("data: a\r\n\r\n", 8, LIMIT),
        ),
        ("done without a line end", seed("data: [DONE]", 1, LIMIT)),
        ("a lone BOM", seed("\u{FEFF}", 1, LIMIT)),
        ("a BOM then a blank line", seed("\u{FEFF}\n", 2, LIMIT)),
        (
            "only the first BOM is skipped",
            seed("\u{FEFF}\u{FEFF}data: x\n\n", 3, LIMIT),
        ),
        ("an empty comment", seed(":\n\n", 1, LIMIT)),
        (
            "field names without a colon",
            seed("data\nevent\n\n", 1, LIMIT),
        ),
        ("a thousand CRs", seed("\r".repeat(1000), 7, LIMIT)),
        ("a thousand LFs", seed("\n".repeat(1000), 7, LIMIT)),
        ("a hundred data lines", seed(many_data.clone(), 13, LIMIT)),
        (
            "a hundred data lines, over the limit",
            seed(many_data, 13, 500),
        ),
        (
            "an event exactly at the limit",
            seed("data: ab\n\ndata: abc\n\n", 1, 10),
        ),
        ("a 1 MiB line against 64 KiB", seed(long_line, 4096, LIMIT)),
        ("nothing", seed("", 1, LIMIT)),
    ]
}

#[test]
fn sse_decoder_seeds() {
    fuzz::run_seeds("sse", &seeds(), check_sse);
}

#[test]
fn sse_decoder_fuzz() {
    let budget = Budget {
        cases: 4000,
        time: Duration::from_secs(8),
    };
    fuzz::run("sse", budget, case(), check_sse);
}
