//! The response cache: exact-match, tenant-scoped, byte-weighted, with each route's TTL.
//!
//! A request is cacheable when its route has `cache:` and, under `only_deterministic`, it asked
//! for `temperature: 0` (embeddings always qualify). The key is a SHA-256 over the tenant, the
//! route, the endpoint and the body bytes, so two tenants never share an answer and any change
//! in the request (including `stream` and `stream_options`) is a different entry. What is stored
//! is exactly what the client received: the JSON body, or every SSE byte of a stream that
//! finished cleanly; a hit replays it unchanged. Answers that failed, were cut or were cancelled
//! are never stored.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use sluice_config::CacheConfig;
use sluice_observability::{Endpoint, Outcome, RequestParams, RequestRecord};

/// Bookkeeping an entry costs beyond its body, so tiny answers still weigh something.
const ENTRY_OVERHEAD: usize = 256;
/// No single answer may take more than this share of the cache.
const MAX_ENTRY_SHARE: u64 = 16;
/// A stream being collected for the cache holds at most this much; longer answers are not
/// cached, so a thousand open cacheable streams cannot hold the cache's size each.
const MAX_STREAM_FILL: usize = 512 * 1024;

/// What the cache did for a request. A closed set, so it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from the cache; no provider was called.
    Hit,
    /// Cacheable, not cached yet: the answer is stored if it completes.
    Miss,
    /// The route caches, but this request is not deterministic.
    Bypass,
    /// Answered from an entry past its ttl: cache fallback was on, or every attempt failed.
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn of(tenant: &str, route: &str, endpoint: Endpoint, body: &[u8]) -> Self {
        let mut h = Sha256::new();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [
            tenant.as_bytes(),
            route.as_bytes(),
            endpoint.as_str().as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(body);
        Self(h.finalize().into())
    }

    /// The key as 64 lowercase hex digits (its name in a shared cache).
    pub fn hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// Whether a request on a caching route may be answered from (and stored in) the cache.
pub fn cacheable(cfg: &CacheConfig, endpoint: Endpoint, params: &RequestParams) -> bool {
    endpoint == Endpoint::Embeddings || !cfg.only_deterministic || params.temperature == Some(0.0)
}

/// One stored answer, exactly as the client received it, and what its record needs.
#[derive(Debug)]
pub struct CachedAnswer {
    pub body: Bytes,
    pub stream: bool,
    /// The body is a Responses answer as an OpenAI-kind target sent it (replayed as stored),
    /// not a chat answer (rendered through the request's face).
    pub native: bool,
    /// The catalog model that produced it.
    pub model: Option<Arc<str>>,
    pub response_id: Option<String>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
    pub chunks: u32,
    /// How long it is fresh, and how long after that it is kept for cache fallback.
    ttl: Duration,
    max_stale: Duration,
    stored: tokio::time::Instant,
}

impl CachedAnswer {
    /// Whether it is still within its ttl at `now` (else only a stale fallback may serve it).
    pub fn fresh(&self, now: tokio::time::Instant) -> bool {
        now.saturating_duration_since(self.stored) < self.ttl
    }

    /// How long it may still be kept: its ttl and max_stale from when it was stored (an answer
    /// read from a shared cache arrives with some of that gone).
    fn left(&self) -> Duration {
        (self.ttl + self.max_stale).saturating_sub(self.age(tokio::time::Instant::now()))
    }

    /// How long it is fresh, and how long after that it may serve a cache fallback.
    pub fn lifetimes(&self) -> (Duration, Duration) {
        (self.ttl, self.max_stale)
    }

    /// How long ago, at `now`, it was stored.
    pub fn age(&self, now: tokio::time::Instant) -> Duration {
        now.saturating_duration_since(self.stored)
    }

    /// An answer another replica stored `age` ago (read back from a shared cache).
    #[expect(clippy::too_many_arguments, reason = "the stored fields, one by one")]
    pub fn restore(
        body: Bytes,
        (stream, native): (bool, bool),
        model: Option<Arc<str>>,
        response_id: Option<String>,
        response_model: Option<String>,
        finish_reasons: Vec<String>,
        chunks: u32,
        lifetimes: (Duration, Duration),
        age: Duration,
    ) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            body,
            stream,
            native,
            model,
            response_id,
            response_model,
            finish_reasons,
            chunks,
            ttl: lifetimes.0,
            max_stale: lifetimes.1,
            stored: now.checked_sub(age).unwrap_or(now),
        }
    }
}

struct PerEntryTtl;

#[expect(
    clippy::disallowed_types,
    reason = "moka's Expiry trait is written in std's Instant; only durations are used here"
)]
impl moka::Expiry<CacheKey, Arc<CachedAnswer>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.left())
    }

    /// A concurrent duplicate miss that stores again gets a full ttl, not the old remainder.
    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.left())
    }
}

pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<CachedAnswer>>,
    max_entry: usize,
}

impl ResponseCache {
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &CacheKey, v: &Arc<CachedAnswer>| {
                u32::try_from(v.body.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self {
            entries,
            max_entry: usize::try_from(max_bytes / MAX_ENTRY_SHARE).unwrap_or(usize::MAX),
        }
    }

    /// A fresh answer: within the ttl the route sets now (a reload may have shortened it).
    pub fn get(&self, key: &CacheKey, ttl: Duration) -> Option<Arc<CachedAnswer>> {
        let hit = self.entries.get(key)?;
        let age = tokio::time::Instant::now().saturating_duration_since(hit.stored);
        (age < ttl.min(hit.ttl)).then_some(hit)
    }

    /// An answer, fresh or past its ttl but within its `max_stale`: served only by the
    /// cache-fallback remediation and when every attempt failed, never by a normal lookup.
    pub fn get_stale(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        self.entries.get(key)
    }

    /// Starts collecting a cacheable request's answer as it goes to the client.
    pub fn fill(&self, key: CacheKey, ttl: Duration, max_stale: Duration) -> Fill {
        Fill {
            key,
            ttl,
            max_stale,
            whole: None,
            streamed: BytesMut::new(),
            limit: self.max_entry,
            overflow: self.max_entry == 0,
            complete: false,
            native: false,
        }
    }

    /// Keeps an answer read from a shared cache, so the next request here finds it locally.
    pub fn insert(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        if answer.body.len() <= self.max_entry {
            self.entries.insert(key, answer);
        }
    }

    /// Stores a finished request's answer when it completed cleanly; returns what it stored.
    pub fn store(
        &self,
        fill: Fill,
        record: &RequestRecord,
    ) -> Option<(CacheKey, Arc<CachedAnswer>)> {
        if record.outcome != Outcome::Ok || record.status != 200 || fill.overflow || !fill.complete
        {
            return None;
        }
        // An exact-size copy: what the client got may be a slice of a larger read buffer (or
        // a collection buffer with spare room), which the weigher would not see.
        let body = match &fill.whole {
            Some(body) => Bytes::copy_from_slice(body),
            None if !fill.streamed.is_empty() => Bytes::copy_from_slice(&fill.streamed),
            None => return None,
        };
        let answer = CachedAnswer {
            body,
            stream: record.stream,
            native: fill.native,
            model: record.model.clone(),
            response_id: record.response_id.clone(),
            response_model: record.response_model.clone(),
            finish_reasons: record.finish_reasons.clone(),
            chunks: record.chunks,
            ttl: fill.ttl,
            max_stale: fill.max_stale,
            stored: tokio::time::Instant::now(),
        };
        let answer = Arc::new(answer);
        self.entries.insert(fill.key, Arc::clone(&answer));
        Some((fill.key, answer))
    }
}

/// The answer of a cache miss, gathered while it is written to the client.
#[derive(Debug)]
pub struct Fill {
    key: CacheKey,
    ttl: Duration,
    max_stale: Duration,
    whole: Option<Bytes>,
    streamed: BytesMut,
    limit: usize,
    overflow: bool,
    /// The answer is whole: a non-streaming body, or a stream that ended with the provider's
    /// own `[DONE]` (or a passed-through Responses stream with its `response.completed` or
    /// `response.incomplete`).
    complete: bool,
    /// What is gathered is a passed-through Responses answer.
    native: bool,
}

impl Fill {
    /// The answer being gathered passes through in the Responses API's own shape.
    pub fn set_native(&mut self) {
        self.native = true;
    }

    /// A non-streaming answer, kept by reference until it is stored.
    pub fn set_whole(&mut self, body: &Bytes) {
        self.overflow = body.len() > self.limit;
        if !self.overflow {
            self.whole = Some(body.clone());
            self.complete = true;
        }
    }

    /// Marks a stream as ended by the provider's `[DONE]`. A stream that ended on a finish
    /// reason alone may be missing other choices or its usage chunk, so it is not cached.
    pub fn mark_complete(&mut self) {
        self.complete = true;
    }

    /// Bytes of a stream, in the order they were written.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.streamed.len() + bytes.len() > self.limit.min(MAX_STREAM_FILL) {
            self.overflow = true;
            self.streamed = BytesMut::new();
            return;
        }
        self.streamed.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(only_deterministic: bool) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            only_deterministic,
            max_stale: Duration::ZERO,
        }
    }

    #[test]
    fn keys_separate_tenants_routes_endpoints_and_bodies() {
        let body = br#"{"model":"m","temperature":0}"#;
        let k = CacheKey::of("a", "r", Endpoint::ChatCompletions, body);
        assert_eq!(k, CacheKey::of("a", "r", Endpoint::ChatCompletions, body));
        assert_ne!(k, CacheKey::of("b", "r", Endpoint::ChatCompletions, body));
        assert_ne!(k, CacheKey::of("a", "s", Endpoint::ChatCompletions, body));
        assert_ne!(k, CacheKey::of("a", "r", Endpoint::Completions, body));
        assert_ne!(
            k,
            CacheKey::of("a", "r", Endpoint::ChatCompletions, br#"{"model":"m"}"#)
        );
        assert_ne!(
            CacheKey::of("ab", "c", Endpoint::ChatCompletions, b""),
            CacheKey::of("a", "bc", Endpoint::ChatCompletions, b"")
        );
    }

    #[test]
    fn only_deterministic_requests_are_cacheable() {
        let zero = RequestParams {
            temperature: Some(0.0),
            ..RequestParams::default()
        };
        let warm = RequestParams {
            temperature: Some(0.7),
            ..RequestParams::default()
        };
        let unset = RequestParams::default();
        assert!(cacheable(&cfg(true), Endpoint::ChatCompletions, &zero));
        assert!(!cacheable(&cfg(true), Endpoint::ChatCompletions, &warm));
        // OpenAI's default temperature is 1.
        assert!(!cacheable(&cfg(true), Endpoint::Completions, &unset));
        assert!(cacheable(&cfg(true), Endpoint::Embeddings, &unset));
        assert!(cacheable(&cfg(false), Endpoint::ChatCompletions, &warm));
    }

    fn record(outcome: Outcome) -> RequestRecord {
        let plain = sluice_observability::testing::record(outcome);
        RequestRecord {
            trace: sluice_observability::TraceContext {
                sampled: true,
                ..plain.trace
            },
            start: std::time::SystemTime::now(),
            duration: Duration::from_millis(3),
            model: Some(Arc::from("m")),
            chunks: 2,
            response_id: Some("chatcmpl-1".into()),
            finish_reasons: vec!["stop".into()],
            ..plain
        }
    }

    #[test]
    fn stores_only_clean_answers_within_the_entry_limit() {
        let cache = ResponseCache::new(16 * 1024);
        let key = |n: u8| CacheKey::of("t", "r", Endpoint::ChatCompletions, &[n]);

        let mut fill = cache.fill(key(1), Duration::from_secs(60), Duration::ZERO);
        fill.push(b"data: {\"a\":1}\n\n");
        fill.push(b"data: [DONE]\n\n");
        fill.mark_complete();
        cache.store(fill, &record(Outcome::Ok));
        let hit = cache.get(&key(1), Duration::from_secs(60)).expect("stored");
        assert_eq!(&hit.body[..], b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(hit.chunks, 2);
        assert_eq!(hit.response_id.as_deref(), Some("chatcmpl-1"));

        let mut fill = cache.fill(key(2), Duration::from_secs(60), Duration::ZERO);
        fill.push(b"data: {\"a\":1}\n\n");
        cache.store(fill, &record(Outcome::Truncated));
        assert!(
            cache.get(&key(2), Duration::from_secs(60)).is_none(),
            "a cut stream is never replayed"
        );

        // 1 KiB per entry at most (1/16 of 16 KiB).
        let mut fill = cache.fill(key(3), Duration::from_secs(60), Duration::ZERO);
        fill.push(&[b'x'; 800]);
        fill.push(&[b'x'; 800]);
        fill.mark_complete();
        cache.store(fill, &record(Outcome::Ok));
        assert!(
            cache.get(&key(3), Duration::from_secs(60)).is_none(),
            "an oversize answer is not stored"
        );

        // A stream that ended without the provider's [DONE] is not stored either.
        let mut fill = cache.fill(key(4), Duration::from_secs(60), Duration::ZERO);
        fill.push(b"data: {\"a\":1}\n\n");
        cache.store(fill, &record(Outcome::Ok));
        assert!(cache.get(&key(4), Duration::from_secs(60)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_fresh_for_their_ttl_then_only_stale() {
        let cache = ResponseCache::new(1 << 20);
        let key = CacheKey::of("t", "r", Endpoint::Embeddings, b"{}");
        let ttl = Duration::from_millis(50);
        let mut fill = cache.fill(key, ttl, Duration::from_secs(600));
        fill.set_whole(&Bytes::from_static(b"{\"data\":[]}"));
        let mut r = record(Outcome::Ok);
        r.stream = false;
        cache.store(fill, &r);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(cache.get(&key, ttl).is_some());
        // A reload that shortens the ttl applies to what is stored already.
        assert!(cache.get(&key, Duration::from_millis(5)).is_none());
        tokio::time::advance(Duration::from_millis(40)).await;
        assert!(
            cache.get(&key, ttl).is_none(),
            "past its ttl: no normal hit"
        );
        let stale = cache.get_stale(&key).expect("kept for cache fallback");
        assert!(!stale.fresh(tokio::time::Instant::now()));
    }
}
