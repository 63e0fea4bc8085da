//! The data plane's accept loop: one task per connection, whose future is the connection.
//!
//! pingora's listening service spawns each connection as a task whose future keeps room for a
//! TLS handshake (8 KiB, on a plain listener too) for the connection's whole life, and awaits
//! the application's future in a box of its own beside it: two 10 KiB allocations for every
//! open connection, a third of what an open stream cost. Here a TLS handshake is boxed and
//! freed once done, and the task's future is [`Downstream::connection`] itself.
//!
//! The socket is bound before the server starts, so a port that is taken or an address that
//! cannot be listened on stops Sluice with an error naming it (pingora retried in the
//! background, for the hand-over of sockets between processes Sluice does not use).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::Downstream;

/// The kernel's queue of connections not yet accepted, as pingora asks for (the kernel caps it
/// at `net.core.somaxconn`): a burst of new clients waits there instead of being refused.
const BACKLOG: i32 = 65_535;

/// How long a client may take over its TLS handshake (pingora's limit).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long accepting pauses when the process is out of file descriptors or memory: `accept`
/// would fail again at once, and connections closing are what frees them.
const OUT_OF_RESOURCES_PAUSE: Duration = Duration::from_millis(100);

/// The data-plane socket, bound and listening, not yet accepting.
pub struct Bound(std::net::TcpListener);

impl Bound {
    /// Binds `addr` (address reuse on, so a restart does not wait out `TIME_WAIT`).
    pub fn new(addr: SocketAddr) -> Result<Self, String> {
        listen(addr)
            .map(Self)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    }

    /// The accept loop over this socket, serving each connection with `downstream`.
    pub fn serve(self, tls: Option<Acceptor>, downstream: Downstream) -> DataListener {
        DataListener {
            socket: Mutex::new(Some(self.0)),
            tls: tls.map(Arc::new),
            downstream: Arc::new(downstream),
        }
    }
}

/// The data plane's accept loop, run as a pingora background service.
pub struct DataListener {
    /// Taken when accepting starts, so the socket closes when accepting stops.
    socket: Mutex<Option<std::net::TcpListener>>,
    tls: Option<Arc<Acceptor>>,
    downstream: Arc<Downstream>,
}

fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[async_trait]
impl BackgroundService for DataListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let socket = self.socket.lock().ok().and_then(|mut s| s.take());
        let Some(socket) = socket else {
            tracing::error!("The data plane's socket was already taken.");
            return;
        };
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "Cannot accept data-plane connections.");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            };
            match accepted {
                Ok((tcp, _)) => {
                    let downstream = Arc::clone(&self.downstream);
                    let tls = self.tls.clone();
                    let shutdown = shutdown.clone();
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "each connection is its own task, as in pingora's accept loop; it ends with the connection"
                    )]
                    tokio::spawn(async move {
                        if let Some(stream) = handshake(tcp, tls.as_deref()).await {
                            downstream.connection(stream, &shutdown).await;
                        }
                    });
                }
                Err(e) if out_of_resources(&e) => {
                    tracing::warn!(error = %e, "Cannot accept a connection; pausing accepts.");
                    tokio::time::sleep(OUT_OF_RESOURCES_PAUSE).await;
                }
                // A connection reset before it was accepted, and the like: that one only.
                Err(e) => {
                    tracing::debug!(error = %e, "A connection failed before it was accepted.")
                }
            }
        }
        tracing::info!("The data plane stopped accepting connections.");
    }
}

/// The connection as the data plane reads it: TCP with no delay, TLS on top when configured.
async fn handshake(tcp: tokio::net::TcpStream, tls: Option<&Acceptor>) -> Option<Stream> {
    // Responses leave whole (see `coalesce`); Nagle would only hold back a stream's events.
    tcp.set_nodelay(true).ok()?;
    let l4 = L4Stream::from(tcp);
    let Some(acceptor) = tls else {
        return Some(Box::new(l4));
    };
    // Boxed: the handshake's state is large and needed only until it is done.
    match timeout(HANDSHAKE_TIMEOUT, Box::pin(acceptor.tls_handshake(l4))).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        // A client that does not trust the certificate, or speaks no TLS: its own business.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "A TLS handshake failed.");
            None
        }
        Err(_) => {
            tracing::debug!("A TLS handshake timed out.");
            None
        }
    }
}

fn out_of_resources(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_in_the_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = listen(addr).expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn resource_exhaustion_pauses_and_other_errors_do_not() {
        for (errno, pauses) in [
            (24, true),
            (23, true),
            (105, true),
            (12, true),
            (103, false),
        ] {
            assert_eq!(
                out_of_resources(&io::Error::from_raw_os_error(errno)),
                pauses,
                "errno {errno}"
            );
        }
    }
}
