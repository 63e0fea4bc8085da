use std::sync::Mutex;

use tokio::io::AsyncWriteExt as _;

use super::*;

/// A connection that records each write it is given (one entry per system call it stands for),
/// taking at most `limit` bytes a call and, when `stall`, answering every other call with
/// `Pending` (and a wake), as a full socket buffer would.
#[derive(Debug, Default)]
struct Wire {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    limit: usize,
    stall: bool,
    stalled: bool,
}

impl Wire {
    fn new(limit: usize, stall: bool) -> (Self, Arc<Mutex<Vec<Vec<u8>>>>) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let wire = Self {
            writes: Arc::clone(&writes),
            limit,
            stall,
            stalled: false,
        };
        (wire, writes)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stall {
            this.stalled = !this.stalled;
            if this.stalled {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let mut took = Vec::new();
        for b in bufs {
            let n = b.len().min(this.limit - took.len());
            took.extend_from_slice(&b[..n]);
        }
        let n = took.len();
        this.writes.lock().expect("lock").push(took);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

crate::fake_io::pingora_io_for!(Wire, 7);

/// What a step of pingora's response writing does to the connection.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write(usize),
    /// A chunk as pingora writes it: size line, data, CRLF in one vectored write.
    Chunk(usize),
    Flush,
    Shutdown,
}

fn bytes(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i + seed) % 26) as u8).collect()
}

/// Runs `ops`; returns the bytes the caller wrote, in order, and the wire's writes.
async fn run(ops: &[Op], limit: usize, stall: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (wire, writes) = Wire::new(limit, stall);
    let mut c = Coalesced::new(Box::new(wire));
    let mut sent = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Write(n) => {
                let b = bytes(n, i);
                c.write_all(&b).await.expect("write");
                sent.extend_from_slice(&b);
            }
            Op::Chunk(n) => {
                let data = bytes(n, i);
                let size = format!("{n:X}\r\n");
                let mut buf =
                    bytes::Buf::chain(bytes::Buf::chain(size.as_bytes(), &data[..]), &b"\r\n"[..]);
                c.write_all_buf(&mut buf).await.expect("chunk");
                sent.extend_from_slice(size.as_bytes());
                sent.extend_from_slice(&data);
                sent.extend_from_slice(b"\r\n");
            }
            Op::Flush => c.flush().await.expect("flush"),
            Op::Shutdown => Shutdown::shutdown(&mut c).await,
        }
    }
    let writes = writes.lock().expect("lock").clone();
    (sent, writes)
}

#[tokio::test]
async fn a_head_leaves_with_its_body_in_one_write() {
    use Op::{Chunk, Flush, Shutdown, Write};
    // (steps, the sizes of the writes the connection sees)
    let cases: &[(&[Op], &[usize])] = &[
        // A whole stream or a large answer: head and body together.
        (&[Write(300), Write(4000), Flush], &[4300]),
        // A small answer: held whole until pingora's flush at the end of the body.
        (&[Write(300), Write(200), Flush], &[500]),
        // A chunked stream's head and first chunk together, then one write per chunk.
        (
            &[Write(300), Chunk(2000), Flush, Chunk(200), Flush],
            &[300 + 5 + 2000 + 2, 4 + 200 + 2],
        ),
        // Nothing held: a large write goes straight through, a small one at the flush.
        (&[Write(5000), Flush, Write(10), Flush], &[5000, 10]),
        // Up to the limit it is held; one byte more and everything leaves at once.
        (&[Write(HOLD), Flush], &[HOLD]),
        (&[Write(HOLD), Write(1), Flush], &[HOLD + 1]),
        // A shutdown sends what is held first.
        (&[Write(120), Shutdown], &[120]),
        // A flush with nothing held writes nothing.
        (&[Flush, Flush], &[]),
    ];
    for (ops, want) in cases {
        let (sent, writes) = run(ops, usize::MAX, false).await;
        let sizes: Vec<usize> = writes.iter().map(Vec::len).collect();
        assert_eq!(&sizes, want, "{ops:?}");
        assert_eq!(writes.concat(), sent, "{ops:?}: the bytes, in order");
    }
}

#[tokio::test]
async fn partial_and_pending_writes_lose_and_reorder_nothing() {
    use Op::{Chunk, Flush, Write};
    let ops = [
        Write(300),
        Write(4000),
        Flush,
        Write(200),
        Chunk(1500),
        Flush,
        Write(2),
        Flush,
    ];
    for limit in [1, 7, 299, 300, 301, 1460, 4096] {
        for stall in [false, true] {
            let (sent, writes) = run(&ops, limit, stall).await;
            assert_eq!(writes.concat(), sent, "limit {limit}, stall {stall}");
            assert!(
                writes.iter().all(|w| !w.is_empty() && w.len() <= limit),
                "limit {limit}"
            );
        }
    }
}

#[tokio::test]
async fn what_the_connection_underneath_says_is_passed_on() {
    let (wire, _) = Wire::new(usize::MAX, false);
    let c = Coalesced::new(Box::new(wire));
    assert_eq!(c.id(), 7);
    assert!(c.get_ssl_digest().is_none());
    assert!(c.is_write_vectored());
}

#[tokio::test]
async fn nothing_is_kept_once_sent() {
    let (wire, _) = Wire::new(usize::MAX, false);
    let mut c = Coalesced::new(Box::new(wire));
    c.write_all(&bytes(300, 0)).await.expect("head");
    assert!(c.held.capacity() >= 300);
    c.write_all(&bytes(4000, 1)).await.expect("body");
    assert_eq!(c.held.capacity(), 0, "sent with the body");
    c.write_all(&bytes(20, 2)).await.expect("small");
    c.flush().await.expect("flush");
    assert_eq!(c.held.capacity(), 0, "sent at the flush");
}
