//! The AWS event-stream framing (`application/vnd.amazon.eventstream`) that Bedrock's
//! ConverseStream answers in: a decoder, split-safe at every byte, and an encoder (for the
//! mock provider and round-trip tests).
//!
//! A frame is length-prefixed and checksummed (smithy's `amazon-eventstream` spec):
//!
//! ```text
//! u32 total_length | u32 headers_length | u32 prelude_crc     CRC32 of the 8 bytes before it
//! headers[headers_length] | payload[total_length - headers_length - 16]
//! u32 message_crc                                             CRC32 of every byte before it
//! ```
//!
//! Big-endian; CRC32 is the IEEE polynomial (`crc32("123456789") = 0xCBF43926`). The prelude
//! CRC is checked as soon as 12 bytes are there, so a corrupt length is caught before Sluice
//! waits for (or buffers) a frame that will never come. Both checksums must match, or the
//! stream ends: a bad frame cannot be resynchronised. Each header is `u8 name_len`, the name,
//! `u8 type`, then the value: 0 true and 1 false (no bytes), 2 i8, 3 i16, 4 i32, 5 i64,
//! 6 bytes and 7 string (each with a `u16` length), 8 timestamp (i64 ms), 9 uuid (16 bytes).
//! Every type is decoded by its declared width, so an unused header never desyncs the rest.
//! Frames are cut from the buffer by length, never by looking for JSON braces.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of prelude (two lengths and the prelude CRC).
const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC: the smallest possible frame.
const MIN_FRAME: usize = PRELUDE + 4;
/// The spec's limit on the headers section.
const MAX_HEADERS: usize = 128 * 1024;

/// One header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Bytes(Bytes),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    pub fn string(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: HeaderValue::String(value.to_owned()),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<Header>,
    pub payload: Bytes,
}

impl Frame {
    /// A string header's value.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| match &h.value {
                HeaderValue::String(s) => Some(s.as_str()),
                _ => None,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude checksum mismatch")]
    PreludeChecksum,
    #[error("event-stream message checksum mismatch")]
    MessageChecksum,
    #[error("event-stream frame length {0} is below the 16-byte minimum")]
    TooShort(u32),
    #[error("event-stream frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("event-stream headers length {headers} does not fit a frame of {total} bytes")]
    HeadersLength { headers: u32, total: u32 },
    #[error("malformed event-stream header: {0}")]
    Header(&'static str),
    #[error("unknown event-stream header value type {0}")]
    HeaderType(u8),
}

/// Incremental decoder: [`push`](Self::push) bytes, then [`next_frame`](Self::next_frame)
/// until `Ok(None)`. After an error it keeps returning that error.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered that do not yet make a whole frame.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.decode() {
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = BytesMut::new();
                Err(e)
            }
            ok => ok,
        }
    }

    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let headers_len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        let prelude_crc =
            u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
        if crc32fast::hash(&self.buf[..8]) != prelude_crc {
            return Err(FrameError::PreludeChecksum);
        }
        let total_usize = total as usize;
        if total_usize < MIN_FRAME {
            return Err(FrameError::TooShort(total));
        }
        if total_usize > self.max_frame {
            return Err(FrameError::TooLarge {
                len: total_usize,
                limit: self.max_frame,
            });
        }
        let headers_usize = headers_len as usize;
        if headers_usize > total_usize - MIN_FRAME || headers_usize > MAX_HEADERS {
            return Err(FrameError::HeadersLength {
                headers: headers_len,
                total,
            });
        }
        if self.buf.len() < total_usize {
            return Ok(None);
        }
        let body_end = total_usize - 4;
        let message_crc = u32::from_be_bytes([
            self.buf[body_end],
            self.buf[body_end + 1],
            self.buf[body_end + 2],
            self.buf[body_end + 3],
        ]);
        if crc32fast::hash(&self.buf[..body_end]) != message_crc {
            return Err(FrameError::MessageChecksum);
        }
        let frame = self.buf.split_to(total_usize).freeze();
        let headers = parse_headers(frame.slice(PRELUDE..PRELUDE + headers_usize))?;
        Ok(Some(Frame {
            headers,
            payload: frame.slice(PRELUDE + headers_usize..body_end),
        }))
    }
}

fn parse_headers(mut b: Bytes) -> Result<Vec<Header>, FrameError> {
    let need = |b: &Bytes, n: usize, what: &'static str| {
        if b.remaining() < n {
            Err(FrameError::Header(what))
        } else {
            Ok(())
        }
    };
    let mut out = vec![];
    while b.has_remaining() {
        let name_len = usize::from(b.get_u8());
        if name_len == 0 {
            return Err(FrameError::Header("empty header name"));
        }
        need(&b, name_len, "header name cut off")?;
        let name = std::str::from_utf8(&b[..name_len])
            .map_err(|_| FrameError::Header("header name is not UTF-8"))?
            .to_owned();
        b.advance(name_len);
        need(&b, 1, "header type missing")?;
        let value = match b.get_u8() {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => {
                need(&b, 1, "byte value cut off")?;
                HeaderValue::Byte(b.get_i8())
            }
            3 => {
                need(&b, 2, "int16 value cut off")?;
                HeaderValue::Int16(b.get_i16())
            }
            4 => {
                need(&b, 4, "int32 value cut off")?;
                HeaderValue::Int32(b.get_i32())
            }
            5 => {
                need(&b, 8, "int64 value cut off")?;
                HeaderValue::Int64(b.get_i64())
            }
            t @ (6 | 7) => {
                need(&b, 2, "value length cut off")?;
                let len = usize::from(b.get_u16());
                need(&b, len, "value cut off")?;
                let v = b.split_to(len);
                if t == 6 {
                    HeaderValue::Bytes(v)
                } else {
                    HeaderValue::String(
                        String::from_utf8(v.to_vec())
                            .map_err(|_| FrameError::Header("string value is not UTF-8"))?,
                    )
                }
            }
            8 => {
                need(&b, 8, "timestamp value cut off")?;
                HeaderValue::Timestamp(b.get_i64())
            }
            9 => {
                need(&b, 16, "uuid value cut off")?;
                let mut u = [0u8; 16];
                b.copy_to_slice(&mut u);
                HeaderValue::Uuid(u)
            }
            other => return Err(FrameError::HeaderType(other)),
        };
        out.push(Header { name, value });
    }
    Ok(out)
}

/// Encodes one frame. Header names and byte/string values longer than the format allows
/// (255 and 65535 bytes) are cut to fit; Sluice only encodes its own short headers.
pub fn encode(headers: &[Header], payload: &[u8]) -> Bytes {
    let mut h = BytesMut::new();
    for header in headers {
        let name = &header.name.as_bytes()[..header.name.len().min(255)];
        h.put_u8(name.len() as u8);
        h.put_slice(name);
        match &header.value {
            HeaderValue::Bool(true) => h.put_u8(0),
            HeaderValue::Bool(false) => h.put_u8(1),
            HeaderValue::Byte(v) => {
                h.put_u8(2);
                h.put_i8(*v);
            }
            HeaderValue::Int16(v) => {
                h.put_u8(3);
                h.put_i16(*v);
            }
            HeaderValue::Int32(v) => {
                h.put_u8(4);
                h.put_i32(*v);
            }
            HeaderValue::Int64(v) => {
                h.put_u8(5);
                h.put_i64(*v);
            }
            HeaderValue::Bytes(v) => {
                let v = &v[..v.len().min(usize::from(u16::MAX))];
                h.put_u8(6);
                h.put_u16(v.len() as u16);
                h.put_slice(v);
            }
            HeaderValue::String(v) => {
                let v = &v.as_bytes()[..v.len().min(usize::from(u16::MAX))];
                h.put_u8(7);
                h.put_u16(v.len() as u16);
                h.put_slice(v);
            }
            HeaderValue::Timestamp(v) => {
                h.put_u8(8);
                h.put_i64(*v);
            }
            HeaderValue::Uuid(v) => {
                h.put_u8(9);
                h.put_slice(v);
            }
        }
    }
    let total = MIN_FRAME + h.len() + payload.len();
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(h.len() as u32);
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    out.put_slice(&h);
    out.put_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    out.freeze()
}
