//! The event-stream codec against AWS's binary vectors and at every split.

use bytes::{BufMut, Bytes, BytesMut};

use crate::providers::translate::eventstream::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/providers/eventstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).expect(&path)
}

fn decode_all(bytes: &[u8], split: usize) -> Result<Vec<Frame>, FrameError> {
    let mut d = FrameDecoder::new(1 << 20);
    let mut frames = vec![];
    for chunk in bytes.chunks(split.max(1)) {
        d.push(chunk);
        while let Some(f) = d.next_frame()? {
            frames.push(f);
        }
    }
    assert_eq!(d.pending_len(), 0, "nothing left over");
    Ok(frames)
}

#[test]
fn crc32_is_ieee() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn decodes_aws_vectors_and_re_encodes_them_byte_for_byte() {
    for name in [
        "valid_empty_payload",
        "valid_no_headers",
        "valid_with_all_headers_and_payload",
    ] {
        let bytes = fixture(name);
        let frames = decode_all(&bytes, bytes.len()).expect(name);
        assert_eq!(frames.len(), 1, "{name}");
        assert_eq!(
            &encode(&frames[0].headers, &frames[0].payload)[..],
            &bytes[..],
            "{name}"
        );
    }
    let f = &decode_all(&fixture("valid_no_headers"), 1000).expect("decodes")[0];
    assert!(f.headers.is_empty());
    assert_eq!(&f.payload[..], b"another test payload");
    let f = &decode_all(&fixture("valid_empty_payload"), 1000).expect("decodes")[0];
    assert_eq!(
        f.headers,
        vec![Header {
            name: "some-header".into(),
            value: HeaderValue::Int16(500)
        }]
    );
    assert!(f.payload.is_empty());
    let f = &decode_all(&fixture("valid_with_all_headers_and_payload"), 1000).expect("decodes")[0];
    let types: Vec<&str> = f
        .headers
        .iter()
        .map(|h| match h.value {
            HeaderValue::Bool(_) => "bool",
            HeaderValue::Byte(_) => "byte",
            HeaderValue::Int16(_) => "short",
            HeaderValue::Int32(_) => "int",
            HeaderValue::Int64(_) => "long",
            HeaderValue::Bytes(_) => "bytes",
            HeaderValue::String(_) => "str",
            HeaderValue::Timestamp(_) => "time",
            HeaderValue::Uuid(_) => "uuid",
        })
        .collect();
    assert_eq!(
        types,
        [
            "bool", "bool", "byte", "short", "int", "long", "bytes", "str", "time", "uuid"
        ]
    );
    assert_eq!(f.header_str("str"), Some("some str"));
}

#[test]
fn every_split_point_gives_the_same_frames() {
    let mut stream = fixture("valid_with_all_headers_and_payload");
    stream.extend(fixture("valid_empty_payload"));
    stream.extend(fixture("valid_no_headers"));
    let whole = decode_all(&stream, stream.len()).expect("whole");
    assert_eq!(whole.len(), 3);
    for split in 1..stream.len() {
        // Two pieces at every byte, and fixed-size pieces of every width.
        let mut d = FrameDecoder::new(1 << 20);
        let mut frames = vec![];
        for piece in [&stream[..split], &stream[split..]] {
            d.push(piece);
            while let Some(f) = d.next_frame().expect("valid") {
                frames.push(f);
            }
        }
        assert_eq!(frames, whole, "split at {split}");
        assert_eq!(
            decode_all(&stream, split).expect("chunks"),
            whole,
            "chunks of {split}"
        );
    }
}

#[test]
fn rejects_the_invalid_vectors() {
    for (name, want) in [
        (
            "invalid_prelude_checksum",
            Some(FrameError::PreludeChecksum),
        ),
        (
            "invalid_message_checksum",
            Some(FrameError::MessageChecksum),
        ),
        (
            "invalid_headers_length",
            Some(FrameError::HeadersLength {
                headers: 77,
                total: 89,
            }),
        ),
        ("invalid_header_value_type", None),
        ("invalid_header_string_value_length", None),
        ("invalid_header_string_length_cut_off", None),
        ("invalid_header_name_length", None),
        ("invalid_header_name_length_too_long", None),
    ] {
        let bytes = fixture(name);
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&bytes);
        let got = d.next_frame();
        match &want {
            Some(e) => assert_eq!(got.as_ref().err(), Some(e), "{name}"),
            None => assert!(got.is_err(), "{name}: {got:?}"),
        }
        assert_eq!(d.next_frame().err(), got.err(), "{name}: the error sticks");
    }
}

#[test]
fn limits_and_lengths_are_checked_before_buffering() {
    let big = encode(&[], &[0u8; 64]);
    let mut d = FrameDecoder::new(32);
    d.push(&big[..12]);
    assert_eq!(
        d.next_frame(),
        Err(FrameError::TooLarge { len: 80, limit: 32 })
    );
    // A valid prelude that claims less than the minimum frame.
    let mut short = BytesMut::new();
    short.put_u32(8);
    short.put_u32(0);
    let crc = crc32fast::hash(&short);
    short.put_u32(crc);
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&short);
    assert_eq!(d.next_frame(), Err(FrameError::TooShort(8)));
}

#[test]
fn round_trips_every_header_type() {
    let headers = vec![
        Header::string(":event-type", "contentBlockDelta"),
        Header {
            name: "b".into(),
            value: HeaderValue::Bool(false),
        },
        Header {
            name: "i".into(),
            value: HeaderValue::Int64(-5),
        },
        Header {
            name: "t".into(),
            value: HeaderValue::Timestamp(1_700_000_000_000),
        },
        Header {
            name: "u".into(),
            value: HeaderValue::Uuid([7; 16]),
        },
        Header {
            name: "x".into(),
            value: HeaderValue::Bytes(Bytes::from_static(b"\x00\x01")),
        },
    ];
    let bytes = encode(&headers, br#"{"p":"abc"}"#);
    let frames = decode_all(&bytes, 3).expect("decodes");
    assert_eq!(frames[0].headers, headers);
    assert_eq!(&frames[0].payload[..], br#"{"p":"abc"}"#);
}
