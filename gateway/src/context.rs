//! The per-request context: what one request has done so far, turned into a
//! [`RequestRecord`] once at the end.

use std::sync::Arc;

use sluice_observability::{Endpoint, Outcome, RequestRecord};
use tokio::time::Instant;

use crate::stream::Usage;

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub endpoint: Endpoint,
    pub tenant: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// The catalog model of the latest attempt (the one that answered, on success).
    pub model: Option<Arc<str>>,
    pub stream: bool,
    /// Requests actually sent to providers.
    pub attempts: u32,
    pub status: u16,
    pub outcome: Outcome,
    pub usage: Option<Usage>,
    /// When the first data event went to the client.
    pub first_chunk: Option<Instant>,
}

impl RequestCtx {
    pub fn new(request_id: String, endpoint: Endpoint) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            endpoint,
            tenant: None,
            route: None,
            model: None,
            stream: false,
            attempts: 0,
            status: 0,
            outcome: Outcome::GatewayError,
            usage: None,
            first_chunk: None,
        }
    }

    pub fn record(&self) -> RequestRecord {
        RequestRecord {
            endpoint: self.endpoint,
            route: self.route.clone(),
            model: self.model.clone(),
            stream: self.stream,
            status: self.status,
            outcome: self.outcome,
            attempts: self.attempts,
            duration: self.started.elapsed(),
        }
    }
}
