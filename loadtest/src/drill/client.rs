//! The drill's HTTP/1.1 client: one keep-alive connection per [`Http`], whole answers (status,
//! the headers a drill reads, body), every exchange bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// One answer, read to its end.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `x-sluice-cache`, when present.
    pub cache: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A keep-alive connection to one address; reconnects after any failure.
#[derive(Debug)]
pub struct Http {
    addr: SocketAddr,
    host: HeaderValue,
    live: Option<(SendRequest<Full<Bytes>>, JoinHandle<()>)>,
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some((_, task)) = self.live.take() {
            task.abort();
        }
    }
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            addr,
            host,
            live: None,
        }
    }

    /// One exchange, bounded by `within`; `bearer` goes in `Authorization`.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Bytes>,
        within: Duration,
    ) -> Result<Answer, String> {
        let result = tokio::time::timeout(within, self.exchange(method, path, bearer, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {within:?}")));
        if result.is_err() {
            // Never reuse a connection whose exchange broke half-way.
            if let Some((_, task)) = self.live.take() {
                task.abort();
            }
        }
        result
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if has_body {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the token is not a valid header value".to_owned())?;
            h.insert(AUTHORIZATION, value);
        }
        let tx = self.sender().await?;
        let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let cache = resp
            .headers()
            .get("x-sluice-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            cache,
            body,
        })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let usable = match &mut self.live {
            Some((tx, _)) => tx.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            if let Some((_, task)) = self.live.take() {
                task.abort();
            }
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
            self.live = Some((tx, task));
        }
        self.live
            .as_mut()
            .map(|(tx, _)| tx)
            .ok_or_else(|| "no connection".to_owned())
    }
}
