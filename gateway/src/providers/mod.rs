//! Provider adapters: how one attempt reaches a provider and what comes back.
//!
//! [`Upstream`] is the answer of one attempt, whatever the provider kind: a status, a few
//! headers, and body chunks read one at a time. The exchange and the SSE forwarding are written
//! once against it. `openai` speaks HTTP over connections from [`pool`]; `mock` synthesizes
//! answers in-process (the same synthesis `mock-llm` serves over HTTP).

pub mod adapter;
pub mod dial;
pub mod egress;
mod h1;
pub mod h2up;
pub mod mock;
mod mock_upstream;
pub mod openai;
pub mod pool;
pub mod translate;

use bytes::Bytes;
use pingora::upstreams::peer::Peer as _;

pub use adapter::TranslatedUpstream;
pub use mock_upstream::MockUpstream;

/// Why an attempt failed before it produced a response header.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP/TLS connect or sending the request failed.
    Connect(String),
    /// The provider is configured but cannot be used now (its key is not set).
    Unavailable(String),
}

/// The response side of one attempt.
pub enum Upstream {
    Http(Box<HttpUpstream>),
    Mock(MockUpstream),
    /// Another dialect, shown as OpenAI (see [`adapter`]).
    Translated(Box<TranslatedUpstream>),
}

pub struct HttpUpstream {
    pub session: Session,
    /// The peer an HTTP/1.1 connection returns to the pool under (`None` for HTTP/2).
    pub peer: Option<openai::ProviderPeer>,
    /// The provider's own pool (`pool_size`), which the connection returns to.
    pub own_pool: Option<std::sync::Arc<pool::Connector>>,
}

/// An answer on an HTTP/1.1 connection or an HTTP/2 stream.
pub enum Session {
    H1(h1::Response),
    H2(h2up::Response),
}

impl Session {
    pub fn status(&self) -> u16 {
        match self {
            Self::H1(r) => r.status(),
            Self::H2(r) => r.status(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        match self {
            Self::H1(r) => r.header(name),
            Self::H2(r) => r.header(name),
        }
    }

    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Self::H1(r) => r.read_chunk().await,
            Self::H2(r) => r.read_chunk().await,
        }
    }

    /// Body bytes already received, without waiting (HTTP/2 hands over each frame as it is
    /// read, so it has none).
    pub fn read_buffered(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Self::H1(r) => r.read_buffered(),
            Self::H2(_) => Ok(None),
        }
    }

    /// Reads what has already arrived, without waiting (see [`h1::Response::read_arrived`];
    /// HTTP/2 hands over each frame as it is read).
    pub fn read_arrived(&mut self) -> bool {
        match self {
            Self::H1(r) => r.read_arrived(),
            Self::H2(_) => false,
        }
    }

    pub fn is_done(&self) -> bool {
        match self {
            Self::H1(r) => r.is_done(),
            Self::H2(r) => r.is_done(),
        }
    }
}

// === impl Upstream ===

impl Upstream {
    pub fn status(&self) -> u16 {
        match self {
            Self::Http(h) => h.session.status(),
            Self::Mock(m) => m.status(),
            Self::Translated(t) => t.status(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        match self {
            Self::Http(h) => h.session.header(name),
            Self::Mock(m) => m.header(name),
            Self::Translated(t) => t.header(name),
        }
    }

    /// The next body chunk; `Ok(None)` at the clean end of the body.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Self::Http(h) => h.session.read_chunk().await,
            Self::Mock(m) => Ok(m.next_chunk().await),
            Self::Translated(t) => t.read_chunk().await,
        }
    }

    /// Body bytes already received but not yet returned, without waiting; `None` when there
    /// are none (always, for the mock, which paces its own chunks).
    pub fn read_buffered(&mut self) -> Option<Bytes> {
        match self {
            // An error here shows again on the next `read_chunk`, which reports it.
            Self::Http(h) => h.session.read_buffered().ok().flatten(),
            Self::Mock(_) => None,
            Self::Translated(t) => t.read_buffered(),
        }
    }

    /// Reads what the provider has already sent past the last full read, without waiting;
    /// whether anything arrived (then [`Self::read_buffered`] has it).
    pub fn read_arrived(&mut self) -> bool {
        match self {
            Self::Http(h) => h.session.read_arrived(),
            Self::Mock(_) => false,
            Self::Translated(t) => t.read_arrived(),
        }
    }

    /// Returns a fully read connection to the pool; anything else is closed, so a half-read
    /// answer can never leak into the next request on that connection.
    pub async fn release(self, connector: &pool::Connector, complete: bool) {
        let (h, complete) = match self {
            Self::Http(h) => (h, complete),
            // Complete only when the provider's own body was read to its end too.
            Self::Translated(t) => {
                let (h, inner_complete) = t.into_inner();
                (h, complete && inner_complete)
            }
            Self::Mock(_) => return,
        };
        let HttpUpstream {
            session,
            peer,
            own_pool,
        } = *h;
        let connector = own_pool.as_deref().unwrap_or(connector);
        // Anything not reusable is dropped here, which closes the connection; an HTTP/2
        // stream gives its slot back as it is dropped (reset first when not read to its end).
        if complete
            && let (Session::H1(session), Some(peer)) = (session, peer)
            && let Some(stream) = session.into_reusable()
        {
            let idle = peer.0.options.idle_timeout.unwrap_or(egress::DEFAULT_IDLE);
            connector.release(stream, peer.reuse_hash(), idle);
        }
    }
}
