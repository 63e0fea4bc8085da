//! The drill's HTTP/1.1 client: one keep-alive connection per [`Http`], whole answers (status,
//! the headers a drill reads, body), every exchange bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};

use crate::keepalive::KeepAlive;

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
    host: HeaderValue,
    conn: KeepAlive,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            host,
            conn: KeepAlive::new(addr),
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
            self.conn.discard();
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
        let tx = self.conn.sender().await?;
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
}
