//! HTTP/2 from clients: over TLS when ALPN chose `h2`, and on a plain listener with prior
//! knowledge when `server.http2.h2c` is on.
//!
//! The connection is pingora's (its accept loop, GOAWAY on shutdown, idle timeout, a budget of
//! malformed streams); each stream is one request for the same handler as HTTP/1.1, served on
//! a task of its own. The limits are the policy's as the connection opens: concurrent streams
//! (`server.http2.max_concurrent_streams`, refused beyond with `REFUSED_STREAM`), the decoded
//! header list (`server.max_header_bytes`, beyond it `431`), and `server.keepalive_timeout`
//! for a connection with no stream open. Response bodies go out frame by frame under the
//! client's flow-control window, so an SSE stream is sent chunk by chunk as on HTTP/1.1.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v2::server::{H2Options, default_h2_options};
use pingora::server::ShutdownWatch;
use sluice_config::ServerConfig;
use sluice_observability::metrics::RefusedReason;

use crate::handler::DataPlane;

/// The connection preface a client sends first on HTTP/2 with prior knowledge (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 connection and its limits.
pub struct H2Connection {
    app: Arc<DataPlane>,
    options: HttpServerOptions,
    max_streams: u32,
    max_header_bytes: u32,
    max_connections: usize,
}

impl H2Connection {
    pub fn new(app: Arc<DataPlane>, server: &ServerConfig) -> Self {
        let mut options = HttpServerOptions::default();
        // Only ever handed connections already known to be HTTP/2: on TLS pingora goes by
        // ALPN and ignores this; on a plain one it finds the preface again.
        options.h2c = true;
        options.h2_idle_timeout = Some(server.keepalive_timeout);
        Self {
            app,
            options,
            max_streams: server.http2.max_concurrent_streams,
            max_header_bytes: u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX),
            max_connections: server.max_connections,
        }
    }
}

#[async_trait]
impl HttpServerApp for H2Connection {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // Asked per stream, not once per connection: a connection that opened over the limit
        // (where HTTP/1.1 would get its 503 and close) serves again once others have closed.
        let open = self.app.state.connections.load(Ordering::Relaxed);
        if open > self.max_connections {
            self.app
                .state
                .metrics
                .record_refused(RefusedReason::MaxConnections);
            refuse_busy(&mut session).await;
            return None;
        }
        // A stream is never reused; the connection lives on in pingora's accept loop.
        let _ = self.app.serve(session, shutdown).await;
        None
    }

    fn h2_options(&self) -> Option<H2Options> {
        let mut o = default_h2_options();
        o.max_concurrent_streams(self.max_streams);
        o.max_header_list_size(self.max_header_bytes);
        Some(o)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

/// `503` for a stream of a connection over `server.max_connections`, as HTTP/1.1 gets it.
async fn refuse_busy(session: &mut ServerSession) {
    let body = Bytes::from(
        serde_json::json!({"error": {"message": "the server has too many open connections; retry shortly", "type": "invalid_request_error", "param": null, "code": RefusedReason::MaxConnections.as_str()}})
            .to_string(),
    );
    let Ok(mut h) = ResponseHeader::build(503, Some(3)) else {
        return;
    };
    if h.insert_header("content-type", "application/json").is_err()
        || h.insert_header("content-length", body.len()).is_err()
        || h.insert_header("retry-after", "1").is_err()
    {
        return;
    }
    if session.write_response_header(Box::new(h)).await.is_ok() {
        let _ = session.write_response_body(body, true).await;
    }
}
