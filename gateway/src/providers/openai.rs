//! The `openai` provider kind: any OpenAI-compatible HTTP API (OpenAI itself, vLLM, Ollama,
//! another gateway), reached through pingora's pooled connector.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use sluice_config::{BaseUrl, Secret};

use super::{ConnectError, HttpUpstream, Upstream};

/// How long an idle pooled connection to a provider is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Everything one attempt needs to reach an OpenAI-compatible provider.
pub struct HttpTarget<'a> {
    pub addr: SocketAddr,
    pub base_url: &'a BaseUrl,
    pub api_key: Option<&'a Secret>,
    pub connect_timeout: Duration,
    /// The API path below the base URL, e.g. `/chat/completions`.
    pub path: &'static str,
    pub stream: bool,
    pub request_id: &'a str,
}

/// Connects (or reuses a pooled connection), sends the request and reads the response header.
/// The caller bounds the whole call with its time-to-first-byte deadline.
pub async fn send(
    connector: &Connector,
    target: &HttpTarget<'_>,
    body: Bytes,
) -> Result<Upstream, ConnectError> {
    let mut peer = HttpPeer::new(
        target.addr,
        target.base_url.tls,
        target.base_url.host.clone(),
    );
    peer.options.connection_timeout = Some(target.connect_timeout);
    peer.options.total_connection_timeout = Some(target.connect_timeout * 2);
    peer.options.idle_timeout = Some(POOL_IDLE);

    let header = request_header(target, body.len()).map_err(ConnectError::Connect)?;
    let (mut session, reused) = connector.get_http_session(&peer).await.map_err(|e| {
        ConnectError::Connect(format!(
            "connect to {}: {}",
            target.base_url,
            e.etype().as_str()
        ))
    })?;
    // The connector applies only connect timeouts; reads are bounded by the exchange's own
    // deadlines, writes by the connect timeout so a dead peer cannot hold the request.
    session.set_write_timeout(Some(target.connect_timeout));
    let sent = async {
        session.write_request_header(Box::new(header)).await?;
        session.write_request_body(body, true).await?;
        session.finish_request_body().await?;
        session.read_response_header().await
    }
    .await;
    if let Err(e) = sent {
        session.shutdown().await;
        let what = if reused {
            "reused connection to"
        } else {
            "request to"
        };
        return Err(ConnectError::Connect(format!(
            "{what} {} failed: {}",
            target.base_url,
            e.etype().as_str()
        )));
    }
    Ok(Upstream::Http(Box::new(HttpUpstream { session, peer })))
}

fn request_header(target: &HttpTarget<'_>, len: usize) -> Result<RequestHeader, String> {
    let url = target.base_url;
    let mut path = String::with_capacity(url.path.len() + target.path.len());
    path.push_str(&url.path);
    path.push_str(target.path);
    let build = || -> pingora::Result<RequestHeader> {
        let mut h = RequestHeader::build("POST", path.as_bytes(), Some(8))?;
        let default_port = if url.tls { 443 } else { 80 };
        if url.port == default_port {
            h.insert_header("host", url.host.as_str())?;
        } else {
            h.insert_header("host", format!("{}:{}", url.host, url.port))?;
        }
        if let Some(key) = target.api_key {
            h.insert_header("authorization", format!("Bearer {}", key.expose()))?;
        }
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", len)?;
        h.insert_header(
            "accept",
            if target.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        )?;
        // Sluice parses what comes back, so it asks for it uncompressed.
        h.insert_header("accept-encoding", "identity")?;
        h.insert_header("user-agent", concat!("sluice/", env!("CARGO_PKG_VERSION")))?;
        h.insert_header("x-request-id", target.request_id)?;
        Ok(h)
    };
    build().map_err(|e| format!("cannot build the upstream request: {}", e.etype().as_str()))
}
