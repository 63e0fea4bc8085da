use super::*;

/// A recorded-style OpenAI chat completion stream (LF line ends): role chunk, content chunks
/// with non-ASCII text, two tool-call deltas, finish chunk, usage-only chunk, `[DONE]`.
const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/openai_chat_stream.sse");
const FIXTURE_EVENTS: usize = 12;
const LIMIT: usize = 64 * 1024;

/// Mixed framing, short enough to try every pair of split offsets: BOM, CRLF, LF and CR line
/// ends, a comment-only block, `event:`, multi-line data, `id:`, multi-byte characters.
const MIXED: &str = "\u{FEFF}: keepalive\r\n\r\ndata: {\"c\":\"héllo\"}\n\nevent: error\rdata: \
                     {\"e\":\"日本\"}\r\rdata: a\r\n: note\r\ndata: 🦀\r\nid: 7\r\n\r\ndata: [DONE]\n\n";

fn with_line_ends(input: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

fn drain(dec: &mut SseDecoder, out: &mut Vec<SseEvent>) {
    while let Some(ev) = dec.next_event().expect("no event exceeds the limit") {
        out.push(ev);
    }
}

/// Feeds `chunks` in order, then calls `finish()` (which matters only for a final `\r`).
fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseEvent> {
    let mut dec = SseDecoder::new(LIMIT);
    let mut out = Vec::new();
    for chunk in chunks {
        dec.push(chunk);
        drain(&mut dec, &mut out);
    }
    out.extend(dec.finish());
    assert_eq!(dec.pending_len(), 0);
    out
}

fn concat_raw(events: &[SseEvent]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|ev| ev.raw.iter().copied())
        .collect()
}

fn json(ev: &SseEvent) -> serde_json::Value {
    serde_json::from_slice(&ev.data).expect("data is JSON")
}

fn one(input: &[u8]) -> SseEvent {
    let events = decode([input]);
    assert_eq!(events.len(), 1, "{input:?}");
    events.into_iter().next().expect("one event")
}

#[test]
fn fixture_decodes_to_the_expected_events() {
    let events = decode([FIXTURE]);
    assert_eq!(events.len(), FIXTURE_EVENTS);
    assert_eq!(concat_raw(&events), FIXTURE);
    assert!(
        events
            .iter()
            .all(|ev| ev.has_data && ev.event.is_none() && ev.raw.ends_with(b"\n\n"))
    );
    assert_eq!(json(&events[0])["choices"][0]["delta"]["role"], "assistant");
    let text: String = events[1..7]
        .iter()
        .map(|ev| {
            json(ev)["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        text,
        "héllo, wörld! 日本語 のテキスト 🦀🚀 Ça va? Ünïcödé — done."
    );
    let args = &json(&events[8])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"];
    assert_eq!(args, r#"{"city":"Zürich","unit":"°C"}"#);
    assert_eq!(
        json(&events[9])["choices"][0]["finish_reason"],
        "tool_calls"
    );
    let usage = json(&events[10]);
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 46);
    assert!(events[11].is_done() && events.iter().filter(|ev| ev.is_done()).count() == 1);
}

/// The fixture with LF, CRLF and CR line ends.
fn fixture_variants() -> [Vec<u8>; 3] {
    [
        FIXTURE.to_vec(),
        with_line_ends(FIXTURE, b"\r\n"),
        with_line_ends(FIXTURE, b"\r"),
    ]
}

#[test]
fn every_split_offset_gives_the_same_events_and_bytes() {
    for input in fixture_variants() {
        let whole = decode([&input[..]]);
        assert_eq!(whole.len(), FIXTURE_EVENTS);
        assert_eq!(concat_raw(&whole), input);
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(decode([a, b]), whole, "split at {at}");
        }
    }
}

#[test]
fn every_pair_of_split_offsets_on_a_mixed_stream() {
    let input = MIXED.as_bytes();
    let whole = decode([input]);
    let data: Vec<&[u8]> = whole.iter().map(|ev| &ev.data[..]).collect();
    let expected = ["", r#"{"c":"héllo"}"#, r#"{"e":"日本"}"#, "a\n🦀"].map(str::as_bytes);
    assert_eq!(data[..4], expected);
    assert!(whole[4].is_done() && whole.len() == 5);
    assert_eq!(whole[2].event.as_deref(), Some(&b"error"[..]));
    assert!(!whole[0].has_data && whole[0].raw.starts_with("\u{FEFF}".as_bytes()));
    assert_eq!(concat_raw(&whole), input);
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let got = decode([&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(got, whole, "splits at {i} and {j}");
        }
    }
}

#[test]
fn one_byte_at_a_time_yields_each_event_on_its_last_byte() {
    for input in fixture_variants() {
        let whole = decode([&input[..]]);
        let mut dec = SseDecoder::new(LIMIT);
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (i, byte) in input.iter().enumerate() {
            dec.push(std::slice::from_ref(byte));
            drain(&mut dec, &mut out);
            ends.resize(out.len(), i + 1);
        }
        out.extend(dec.finish());
        assert_eq!(out, whole);
        // No added latency: with LF or CRLF, an event comes out when its last byte arrives.
        // With bare CR the final `\r` waits for the next byte (the last event, for finish()).
        let mut expected_end = 0;
        for (ev, &end) in whole.iter().zip(&ends) {
            expected_end += ev.raw.len();
            let lag = usize::from(input.ends_with(b"\r"));
            assert_eq!(end, expected_end + lag);
        }
        assert_eq!(
            ends.len(),
            FIXTURE_EVENTS - usize::from(input.ends_with(b"\r"))
        );
    }
}

#[test]
fn crlf_and_cr_streams_give_the_same_data() {
    let [lf, crlf, cr] = fixture_variants().map(|input| {
        decode([&input[..]])
            .into_iter()
            .map(|ev| (ev.event, ev.data))
            .collect::<Vec<_>>()
    });
    assert_eq!(lf, crlf);
    assert_eq!(lf, cr);
}

#[test]
fn crlf_split_across_pushes_is_one_line_end() {
    let mut dec = SseDecoder::new(LIMIT);
    for part in [&b"data: a\r"[..], b"\n", b"\r"] {
        dec.push(part);
        assert_eq!(dec.next_event(), Ok(None), "after {part:?}");
    }
    assert_eq!(dec.pending_len(), 10);
    dec.push(b"\ndata: b\r");
    let ev = dec.next_event().expect("ok").expect("event");
    assert_eq!(
        (&ev.raw[..], &ev.data[..]),
        (&b"data: a\r\n\r\n"[..], &b"a"[..])
    );
    assert_eq!(dec.next_event(), Ok(None));
    // A bare CR then a different byte: both CRs were line ends.
    dec.push(b"\rdata: c\n\n");
    let ev = dec.next_event().expect("ok").expect("event");
    assert_eq!(
        (&ev.raw[..], &ev.data[..]),
        (&b"data: b\r\r"[..], &b"b"[..])
    );
    assert_eq!(dec.next_event().expect("ok").expect("event").data, "c");
}

#[test]
fn comments_and_field_parsing() {
    let keepalive = one(b": keepalive\n\n");
    assert!(!keepalive.has_data && keepalive.data.is_empty() && keepalive.event.is_none());
    assert!(!one(b"\n").has_data);
    let cases: [(&[u8], &[u8]); 10] = [
        (b"data: a\n: ping\ndata: b\n:\n\n", b"a\nb"),
        (b"data: a\ndata: b\n\n", b"a\nb"),
        (b"data:x\n\n", b"x"),
        (b"data\n\n", b""),
        (b"data:\n\n", b""),
        (b"data:  two spaces\n\n", b" two spaces"),
        (b"data: a\ndata\ndata: b\n\n", b"a\n\nb"),
        (b"data: k:v\n\n", b"k:v"),
        (b"id: 7\nretry: 100\nfoo: bar\nid\ndata: x\n\n", b"x"),
        (b"data: a\r\n\n", b"a"),
    ];
    for (input, data) in cases {
        let ev = one(input);
        assert!(ev.has_data, "{input:?}");
        assert_eq!(&ev.data[..], data, "{input:?}");
        assert_eq!(&ev.raw[..], input);
    }
    for input in [&b"DATA: x\n\n"[..], b" data: x\n\n", b"event: ping\n\n"] {
        assert!(!one(input).has_data, "{input:?}");
    }
    let ev = one(b"event: ping\nevent: error\ndata: {\"error\":{}}\n\n");
    assert_eq!(ev.event.as_deref(), Some(&b"error"[..]));
    assert_eq!(one(b"event\ndata: x\n\n").event.as_deref(), Some(&b""[..]));
}

#[test]
fn bom_is_skipped_only_at_stream_start() {
    let bom = "\u{FEFF}".as_bytes();
    let input = [bom, b"data: x\n\n", bom, b"data: y\n\n"].concat();
    for at in 0..=input.len() {
        let events = decode([&input[..at], &input[at..]]);
        assert_eq!(events.len(), 2);
        assert_eq!(concat_raw(&events), input);
        assert_eq!(events[0].data, "x");
        // A BOM later in the stream is part of the field name, so the field is unknown.
        assert!(!events[1].has_data);
    }
}

#[test]
fn utf8_split_across_pushes() {
    let mut dec = SseDecoder::new(LIMIT);
    let input = "data: 日🦀\n\n".as_bytes();
    dec.push(&input[..7]); // the first byte of 日
    assert_eq!(dec.next_event(), Ok(None));
    dec.push(&input[7..12]); // the rest of 日 and half of 🦀
    assert_eq!(dec.next_event(), Ok(None));
    dec.push(&input[12..]);
    let ev = dec.next_event().expect("ok").expect("event");
    assert_eq!(std::str::from_utf8(&ev.data), Ok("日🦀"));
}

#[test]
fn event_too_large() {
    let err = || Err(SseError::EventTooLarge { limit: 10 });
    // Exactly at the limit is fine, one byte over is not.
    let mut dec = SseDecoder::new(10);
    dec.push(b"data: ab\n\ndata: abc\n\n");
    assert_eq!(dec.next_event().expect("ok").expect("event").raw.len(), 10);
    assert_eq!(dec.next_event(), err());
    // Poisoned: memory released, input ignored, the error repeats, finish() gives nothing.
    dec.push(b"data: x\n\n");
    assert_eq!((dec.pending_len(), dec.next_event()), (0, err()));
    assert_eq!(dec.finish(), None);

    // Arriving in small chunks, it fails as soon as more than `limit` bytes are held.
    let mut dec = SseDecoder::new(10);
    for (i, byte) in b"data: 0123456789\n\n".iter().enumerate() {
        dec.push(std::slice::from_ref(byte));
        let expected = if i < 10 { Ok(None) } else { err() };
        assert_eq!(dec.next_event(), expected, "after byte {i}");
    }
    let error = SseError::EventTooLarge { limit: 10 };
    assert_eq!(error.to_string(), "an SSE event exceeded 10 bytes");

    // A stream whose events are all within the limit never errors, however it is split.
    let input = with_line_ends(FIXTURE, b"\r\n");
    let largest = decode([&input[..]])
        .iter()
        .map(|ev| ev.raw.len())
        .max()
        .unwrap_or(0);
    let mut dec = SseDecoder::new(largest);
    let mut out = Vec::new();
    for chunk in input.chunks(7) {
        dec.push(chunk);
        drain(&mut dec, &mut out);
    }
    assert_eq!(out.len(), FIXTURE_EVENTS);
}

#[test]
fn finish_on_a_stream_cut_mid_event() {
    let cut: [(&[u8], &[u8]); 5] = [
        (b"data: {\"a\":1}\n", b"{\"a\":1}"),
        (b"data: {\"a\":1}\ndata: [DO", b"{\"a\":1}\n[DO"),
        (b"data: [DONE]\n", b"[DONE]"),
        (b"data: [DONE]", b"[DONE]"),
        (b"event: error\ndata: x\r", b"x"),
    ];
    for (tail, data) in cut {
        let mut dec = SseDecoder::new(LIMIT);
        dec.push(b"data: ok\n\n");
        dec.push(tail);
        assert_eq!(dec.next_event().expect("ok").expect("event").data, "ok");
        assert_eq!(dec.next_event(), Ok(None));
        assert_eq!(dec.pending_len(), tail.len());
        let ev = dec.finish().expect("best-effort event");
        assert_eq!((&ev.raw[..], &ev.data[..], ev.has_data), (tail, data, true));
        assert_eq!((dec.pending_len(), dec.finish()), (0, None));
    }
    let mut dec = SseDecoder::new(LIMIT);
    dec.push(b": ping");
    assert_eq!(dec.next_event(), Ok(None));
    assert!(!dec.finish().expect("best-effort event").has_data);
    // A clean end on an event boundary leaves nothing.
    let mut dec = SseDecoder::new(LIMIT);
    dec.push(b"data: x\n\n");
    assert!(dec.next_event().expect("ok").is_some());
    assert_eq!(dec.finish(), None);
    // A final bare `\r` can only be resolved at EOF; here it completes a valid event.
    dec.push(b"data: y\r\r");
    assert_eq!(dec.next_event(), Ok(None));
    assert_eq!(dec.finish().expect("event").data, "y");
}

fn within(part: &Bytes, whole: &Bytes) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    !part.is_empty() && start <= p && p + part.len() <= end
}

#[test]
fn single_data_line_borrows_from_raw() {
    let mut dec = SseDecoder::new(LIMIT);
    dec.push(b"event: message\ndata: {\"x\":1}\n\ndata: a\ndata: b\n\n");
    let ev = dec.next_event().expect("ok").expect("event");
    assert!(within(&ev.data, &ev.raw));
    assert!(within(ev.event.as_ref().expect("event field"), &ev.raw));
    let multi = dec.next_event().expect("ok").expect("event");
    assert_eq!(multi.data, "a\nb");
    assert!(!within(&multi.data, &multi.raw));
}

#[test]
fn each_byte_is_scanned_once() {
    // A long line in tiny chunks must not be rescanned from its start on every push.
    let line = vec![b'x'; 64 * 1024];
    let mut dec = SseDecoder::new(LIMIT * 2);
    dec.push(b"data: ");
    for byte in &line {
        dec.push(std::slice::from_ref(byte));
        assert_eq!(dec.next_event(), Ok(None));
    }
    dec.push(b"\n\n");
    assert_eq!(dec.next_event().expect("ok").expect("event").data, line);
    assert_eq!(dec.bytes_scanned, line.len() + 8);
    // Whole streams, one byte at a time: only a `\r` waiting for its next byte is seen again.
    for input in fixture_variants() {
        let mut dec = SseDecoder::new(LIMIT);
        let mut out = Vec::new();
        for byte in &input {
            dec.push(std::slice::from_ref(byte));
            drain(&mut dec, &mut out);
        }
        let waits = input.iter().filter(|&&b| b == b'\r').count();
        assert!(
            dec.bytes_scanned <= input.len() + waits,
            "{}",
            dec.bytes_scanned
        );
    }
}

#[test]
fn data_event_round_trips() {
    assert_eq!(data_event(br#"{"a":1}"#), "data: {\"a\":1}\n\n");
    assert_eq!(data_event(b"[DONE]"), "data: [DONE]\n\n");
    assert!(one(&data_event(b"[DONE]")).is_done());
    assert!(!one(b"data: [DONE] \n\n").is_done());
    let pretty = b"{\n  \"a\": 1,\r\n  \"b\": \"\xC3\xA9\"\r}";
    let ev = one(&data_event(pretty));
    assert_eq!(ev.data, "{\n  \"a\": 1,\n  \"b\": \"é\"\n}");
    assert_eq!(data_event(b""), "data: \n\n");
}
