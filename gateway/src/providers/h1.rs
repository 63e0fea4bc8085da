//! The HTTP/1.1 response side of an upstream exchange: head, body framing, and whether the
//! connection may go back to the pool.
//!
//! pingora's H1 client session allocates a 64 KiB body buffer for every response it reads, and
//! keeps it for as long as the response is open. With a thousand streams open that alone was
//! most of Sluice's memory, so responses are read here into a buffer that starts at 4 KiB and
//! grows only while a provider really sends more per read. Heads are parsed with `httparse`,
//! the parser pingora itself uses.

use std::ops::Range;

use bytes::{Buf as _, Bytes, BytesMut};
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

/// Bytes a head may take before the answer is refused.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// The read buffer starts here and returns here once a large answer is over.
const MIN_READ: usize = 4 * 1024;
/// Reads never ask for more than this at once.
const MAX_READ: usize = 64 * 1024;
/// A chunk-size line longer than this is not HTTP.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `remaining` bytes of a `content-length` body.
    Length(u64),
    Chunked(Chunk),
    /// No length and not chunked: the body ends when the provider closes.
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
}

/// An upstream response whose head has been read.
pub struct Response {
    stream: Stream,
    buf: BytesMut,
    head: Bytes,
    headers: Vec<(Range<usize>, Range<usize>)>,
    status: u16,
    framing: Framing,
    keepalive: bool,
    /// The last read filled all the room the buffer had: more may already be waiting.
    filled: bool,
    /// A read without waiting failed: the next [`Response::read_chunk`] reports it.
    failed: Option<String>,
}

/// Why no response head could be read.
#[derive(Debug)]
pub struct HeadError {
    pub message: String,
    /// Not one byte of an answer arrived: on a pooled connection this is the provider having
    /// closed it while it sat idle, and the request can go again on a fresh one.
    pub nothing_received: bool,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Response {
    /// Reads the response head, skipping `1xx` interim answers.
    pub async fn read_head(mut stream: Stream) -> Result<Self, HeadError> {
        let mut buf = BytesMut::with_capacity(MIN_READ);
        let mut received = false;
        let mut filled = false;
        let fail = |message: String, received: bool| HeadError {
            message,
            nothing_received: !received,
        };
        loop {
            let (head_len, status, version_1_0, ranges) = loop {
                if let Some(parsed) = parse_head(&buf).map_err(|e| fail(e, true))? {
                    break parsed;
                }
                if buf.len() >= MAX_HEAD_BYTES {
                    return Err(fail(
                        format!("the response head exceeds {MAX_HEAD_BYTES} bytes"),
                        true,
                    ));
                }
                buf.reserve(MIN_READ);
                let room = buf.capacity() - buf.len();
                match read_more(&mut stream, &mut buf).await {
                    Ok(0) => {
                        return Err(fail(
                            "the provider closed the connection before answering".into(),
                            received,
                        ));
                    }
                    Ok(n) => {
                        received = true;
                        filled = n == room;
                    }
                    Err(e) => return Err(fail(e, received)),
                }
            };
            // One read can bring more than the limit (the buffer grows past it after an interim
            // head is split off), so the parsed head is measured too, not only the buffer.
            if head_len > MAX_HEAD_BYTES {
                return Err(fail(
                    format!("the response head exceeds {MAX_HEAD_BYTES} bytes"),
                    true,
                ));
            }
            // A copy, not a view: a view would keep the whole first read buffer alive for the
            // answer's life, and the next read would need a second buffer beside it.
            let head = Bytes::copy_from_slice(&buf[..head_len]);
            buf.advance(head_len);
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut response = Self {
                stream,
                buf,
                head,
                headers: ranges,
                status,
                framing: Framing::Done,
                keepalive: !version_1_0,
                filled,
                failed: None,
            };
            response.framing = response.framing().map_err(|e| fail(e, true))?;
            let close = response
                .header("connection")
                .is_some_and(|v| has_token(v, b"close"));
            // A switched protocol is no longer HTTP, and a body framed two ways is a request
            // smuggling hazard: neither connection may carry another request.
            let ambiguous = response.header("transfer-encoding").is_some()
                && response.header("content-length").is_some();
            if close || status == 101 || ambiguous {
                response.keepalive = false;
            }
            return Ok(response);
        }
    }

    fn framing(&self) -> Result<Framing, String> {
        if matches!(self.status, 101 | 204 | 304) {
            return Ok(Framing::Done);
        }
        if let Some(te) = self.all("transfer-encoding").last() {
            // Chunked must be the final coding (of the last header line, when there are
            // several); anything else is delimited by close.
            return Ok(if last_token_is(te, b"chunked") {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::UntilClose
            });
        }
        let mut length = None;
        for v in self.all("content-length") {
            let n = std::str::from_utf8(v)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("the response has an invalid content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("the response has conflicting content-length headers".into());
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header of that name (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.all(name).next()
    }

    /// Every header of that name, in order.
    fn all<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.head[v.clone()])
    }

    /// The whole body has been read.
    pub fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Body bytes that are already buffered, without waiting for the network: a provider that
    /// sends many small HTTP chunks at once hands them over in one read, and the caller can
    /// forward them in one write. `Ok(None)` when nothing more is buffered.
    pub fn read_buffered(&mut self) -> Result<Option<Bytes>, String> {
        match self.framing {
            Framing::Chunked(state) => self.step_chunked(state),
            Framing::Length(remaining) if !self.buf.is_empty() => {
                let n = self.buf.len().min(clamp(remaining));
                let left = remaining - n as u64;
                self.framing = if left == 0 {
                    Framing::Done
                } else {
                    Framing::Length(left)
                };
                Ok(Some(self.take(n)))
            }
            Framing::UntilClose if !self.buf.is_empty() => {
                let n = self.buf.len();
                Ok(Some(self.take(n)))
            }
            Framing::Length(_) | Framing::UntilClose | Framing::Done => Ok(None),
        }
    }

    /// The next piece of the body; `Ok(None)` once it is complete.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(data) = self.read_buffered()? {
                return Ok(Some(data));
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            // Sized to what the body still owes, so a long answer takes few reads.
            let want = match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(n) | Framing::Chunked(Chunk::Data(n)) => n,
                Framing::UntilClose => MAX_READ as u64,
                Framing::Chunked(_) => MIN_READ as u64,
            };
            if self.fill(want).await? == 0 {
                if self.framing != Framing::UntilClose {
                    return Err("the provider closed the connection mid-answer".into());
                }
                // The close is the end of this body, and of the connection.
                self.keepalive = false;
                self.framing = Framing::Done;
                return Ok(None);
            }
        }
    }

    /// Advances the chunked decoder over what is buffered. Returns data when there is some;
    /// `None` means more input is needed (or the body just ended).
    fn step_chunked(&mut self, mut state: Chunk) -> Result<Option<Bytes>, String> {
        loop {
            match state {
                Chunk::Size => {
                    let Some((len, used)) = self.line()? else {
                        break;
                    };
                    let size = parse_chunk_size(&self.buf[..len])?;
                    self.buf.advance(used);
                    state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(remaining) => {
                    if self.buf.is_empty() {
                        break;
                    }
                    let n = self.buf.len().min(clamp(remaining));
                    let left = remaining - n as u64;
                    self.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(self.take(n)));
                }
                Chunk::DataEnd => {
                    let Some((len, used)) = self.line()? else {
                        break;
                    };
                    if len != 0 {
                        return Err("a chunk of the response is longer than its size".into());
                    }
                    self.buf.advance(used);
                    state = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some((len, used)) = self.line()? else {
                        break;
                    };
                    self.buf.advance(used);
                    if len == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                }
            }
        }
        self.framing = Framing::Chunked(state);
        Ok(None)
    }

    /// The CRLF- (or LF-) terminated line at the start of the buffer, once it is complete: its
    /// length without the terminator and with it. The caller reads it in place and advances
    /// past it; splitting it off as `Bytes` would share the buffer and count references for
    /// two framing lines per chunk.
    fn line(&self) -> Result<Option<(usize, usize)>, String> {
        match memchr::memchr(b'\n', &self.buf) {
            Some(end) if end > MAX_CHUNK_LINE => {
                Err("the response's chunk framing is not HTTP".into())
            }
            Some(end) => {
                let len = if end > 0 && self.buf[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                Ok(Some((len, end + 1)))
            }
            None if self.buf.len() > MAX_CHUNK_LINE => {
                Err("the response's chunk framing is not HTTP".into())
            }
            None => Ok(None),
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n).freeze()
    }

    /// Reads at least one more byte when the buffer holds less than needed; returns how many
    /// were read (0 at end of stream).
    async fn fill(&mut self, want: u64) -> Result<usize, String> {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            // Within bounds, so a long answer takes few reads and an idle stream holds little.
            self.buf.reserve(clamp(want).clamp(MIN_READ, MAX_READ));
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = read_more(&mut self.stream, &mut self.buf).await?;
        self.filled = n == room;
        Ok(n)
    }

    /// Reads, without waiting, what the socket already holds when the last read filled the
    /// buffer: an answer sent at once but larger than one read is then in hand whole, and
    /// leaves in one write rather than as a first part, a second and a terminator. Returns
    /// whether anything arrived; an error or the end of the connection is left for the next
    /// [`Self::read_chunk`] to report. After a read that did not fill the buffer there is
    /// nothing to look for, so a stream that trickles in costs no extra system call.
    pub fn read_arrived(&mut self) -> bool {
        if !self.filled || matches!(self.framing, Framing::Done) {
            return false;
        }
        self.filled = false;
        let want = match self.framing {
            Framing::Length(n) | Framing::Chunked(Chunk::Data(n)) => n,
            _ => MIN_READ as u64,
        };
        // Polled once with a waker that does nothing: ready data is taken, and a socket with
        // none is left for the next real read, which registers its own waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = std::pin::pin!(self.fill(want)).poll(&mut cx);
        match polled {
            std::task::Poll::Ready(Ok(n)) => n > 0,
            std::task::Poll::Ready(Err(e)) => {
                self.failed = Some(e);
                false
            }
            std::task::Poll::Pending => false,
        }
    }

    /// The connection, when the answer was read to its end and the provider allows reuse.
    pub fn into_reusable(self) -> Option<Stream> {
        (self.is_done() && self.keepalive && self.buf.is_empty()).then_some(self.stream)
    }
}

async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<usize, String> {
    stream
        .read_buf(buf)
        .await
        .map_err(|e| format!("reading from the provider failed: {}", e.kind()))
}

fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

type Head = (usize, u16, bool, Vec<(Range<usize>, Range<usize>)>);

/// `Some((head length, status, is HTTP/1.0, header ranges))` once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let len = match config.parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("the provider's response head is not HTTP: {e}")),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let ranges = resp
        .headers
        .iter()
        .map(|h| (range(h.name.as_bytes()), range(h.value)))
        .collect();
    let status = resp.code.ok_or("the response has no status")?;
    Ok(Some((len, status, resp.version == Some(0), ranges)))
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err("the response's chunk framing is not HTTP".into());
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or("the response's chunk framing is not HTTP")?;
        Ok(n * 16 + u64::from(d))
    })
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn has_token(v: &[u8], token: &[u8]) -> bool {
    tokens(v).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(v: &[u8], token: &[u8]) -> bool {
    tokens(v)
        .filter(|t| !t.is_empty())
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
