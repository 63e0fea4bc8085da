//! One keep-alive HTTP/1.1 connection for the load and drill clients: connected on first use,
//! dropped after any failed exchange and opened again on the next.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A keep-alive connection to one address (reconnects lazily after an error).
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    live: Option<(SendRequest<Full<Bytes>>, JoinHandle<()>)>,
    /// Connections opened so far.
    pub opened: u64,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.discard();
    }
}

impl KeepAlive {
    /// Not connected yet; the first request connects.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            live: None,
            opened: 0,
        }
    }

    /// The connection's sender, ready for a request; a new connection when the last one broke.
    pub async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let usable = match &mut self.live {
            Some((tx, _)) => tx.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.discard();
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = tcp.set_nodelay(true);
            let (tx, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            self.opened += 1;
            self.live = Some((tx, task));
        }
        self.live
            .as_mut()
            .map(|(tx, _)| tx)
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Drops the connection: one whose exchange broke half-way is never reused.
    pub fn discard(&mut self) {
        if let Some((_, task)) = self.live.take() {
            task.abort();
        }
    }
}
