//! The admin listener: liveness, readiness and Prometheus metrics, on its own port so it can
//! stay on loopback (or a private network) while the data plane faces clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::AppState;

pub struct Admin {
    pub state: Arc<AppState>,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, content_type, body) = match path {
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.state.is_draining() => (503, "text/plain", b"draining\n".to_vec()),
            "/readyz" => (200, "text/plain", b"ready\n".to_vec()),
            "/metrics" => {
                let mut out = String::with_capacity(8 << 10);
                match prometheus_client::encoding::text::encode(&mut out, &self.state.registry) {
                    Ok(()) => (200, OPENMETRICS, out.into_bytes()),
                    Err(_) => (500, "text/plain", b"cannot encode metrics\n".to_vec()),
                }
            }
            "/admin/inflight" => (
                200,
                "text/plain",
                format!("{}\n", self.state.inflight.load(Ordering::Relaxed)).into_bytes(),
            ),
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
