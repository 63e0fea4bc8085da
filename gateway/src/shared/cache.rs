//! Response caches shared by every replica through Redis (`state.redis.share_cache`).
//!
//! A replica that misses in its own cache asks Redis once, bounded by `state.redis.timeout`;
//! an answer found there is kept locally too, so the round trip is paid once per replica and
//! entry. An answer a replica stores is handed to the [`CacheWriter`] and written with `SET …
//! PX` off the request path (dropped and counted when the queue is full or Redis is down: a
//! shared cache is an optimisation, never worth waiting for). Any trouble reading is a miss.
//!
//! An entry is `{prefix}cache:{sha-256 hex}` (the key already covers tenant, route, endpoint
//! and body, so tenants stay apart), holding one JSON line with what the record needs and the
//! wall-clock time it was stored, then the body exactly as the client received it. Redis
//! expires it after ttl + max_stale; a reader computes the entry's age from the stored time,
//! so freshness is the same on every replica (within their clocks' skew).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sluice_observability::service::{Intake, Service, Shutdown};

use super::SharedState;
use crate::cache::{CacheKey, CachedAnswer};

/// Answers waiting to be written; past this many they are dropped (and counted).
pub const QUEUE: usize = 1024;
/// The longest one background write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Writes sent in one pipeline.
const BATCH: usize = 64;

/// One answer on its way to Redis.
#[derive(Debug)]
pub struct CachePut {
    key: CacheKey,
    answer: Arc<CachedAnswer>,
}

/// What an entry says about its answer besides the body.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    stream: bool,
    /// A passed-through Responses answer; absent in entries written before there were any,
    /// which all hold chat answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    native: bool,
    model: Option<String>,
    response_id: Option<String>,
    response_model: Option<String>,
    finish_reasons: Vec<String>,
    chunks: u32,
    ttl_ms: u64,
    max_stale_ms: u64,
    stored_unix_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// The Redis name of `key`.
pub fn name(prefix: &str, key: &CacheKey) -> String {
    format!("{prefix}cache:{}", key.hex())
}

/// An entry for `answer`, stored `age` before `now`; `None` when it has no time left.
pub fn encode(answer: &CachedAnswer, now: SystemTime, age: Duration) -> Option<(Bytes, u64)> {
    let (ttl, max_stale) = answer.lifetimes();
    let left = (ttl + max_stale)
        .checked_sub(age)
        .filter(|d| !d.is_zero())?;
    let head = Head {
        stream: answer.stream,
        native: answer.native,
        model: answer.model.as_deref().map(str::to_owned),
        response_id: answer.response_id.clone(),
        response_model: answer.response_model.clone(),
        finish_reasons: answer.finish_reasons.clone(),
        chunks: answer.chunks,
        ttl_ms: millis(ttl),
        max_stale_ms: millis(max_stale),
        stored_unix_ms: unix_ms(now).saturating_sub(millis(age)),
    };
    let head = serde_json::to_vec(&head).ok()?;
    let mut out = BytesMut::with_capacity(head.len() + 1 + answer.body.len());
    out.put_slice(&head);
    out.put_u8(b'\n');
    out.put_slice(&answer.body);
    Some((out.freeze(), millis(left).max(1)))
}

/// The answer in an entry read at `now`; `None` when it is malformed or expired.
pub fn decode(entry: Bytes, now: SystemTime) -> Option<CachedAnswer> {
    let split = entry.iter().position(|&b| b == b'\n')?;
    let head: Head = serde_json::from_slice(&entry[..split]).ok()?;
    let ttl = Duration::from_millis(head.ttl_ms);
    let max_stale = Duration::from_millis(head.max_stale_ms);
    let age = Duration::from_millis(unix_ms(now).saturating_sub(head.stored_unix_ms));
    if age >= ttl + max_stale {
        return None;
    }
    Some(CachedAnswer::restore(
        entry.slice(split + 1..),
        (head.stream, head.native),
        head.model.map(Arc::from),
        head.response_id,
        head.response_model,
        head.finish_reasons,
        head.chunks,
        (ttl, max_stale),
        age,
    ))
}

impl SharedState {
    /// Whether routes' caches are shared through Redis.
    pub fn shares_cache(&self) -> bool {
        self.cache_puts.is_some()
    }

    /// Looks `key` up in Redis, within `state.redis.timeout`; any trouble is a miss.
    pub async fn cache_get(&self, key: &CacheKey) -> Option<CachedAnswer> {
        let m = &self.metrics.cache;
        let Some(mut conn) = self.link.conn() else {
            m.error.inc();
            return None;
        };
        let mut cmd = redis::cmd("GET");
        cmd.arg(name(&self.cfg.key_prefix, key));
        let get = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(self.cfg.timeout, get).await {
            Ok(Ok(Some(entry))) => match decode(Bytes::from(entry), SystemTime::now()) {
                Some(answer) => {
                    m.hit.inc();
                    Some(answer)
                }
                None => {
                    m.miss.inc();
                    None
                }
            },
            Ok(Ok(None)) => {
                m.miss.inc();
                None
            }
            // A slow or failing read is one miss; the admission path and the ping own the
            // link's up/down state.
            Ok(Err(_)) | Err(_) => {
                m.error.inc();
                None
            }
        }
    }

    /// Hands an answer this replica stored to the writer, which encodes it; never waits.
    pub fn cache_put(&self, key: &CacheKey, answer: &Arc<CachedAnswer>) {
        if let Some(feed) = &self.cache_puts {
            feed.offer(CachePut {
                key: *key,
                answer: Arc::clone(answer),
            });
        }
    }
}

/// Writes stored answers to Redis, in pipelines, off the request path.
pub struct CacheWriter {
    shared: Arc<SharedState>,
    intake: Intake<CachePut>,
}

impl CacheWriter {
    pub fn new(shared: Arc<SharedState>, intake: Intake<CachePut>) -> Self {
        Self { shared, intake }
    }

    async fn write(&self, batch: &mut Vec<CachePut>) {
        let m = &self.shared.metrics.cache;
        let Some(mut conn) = self.shared.link.conn() else {
            m.dropped.inc_by(batch.len() as u64);
            batch.clear();
            return;
        };
        let (now, wall) = (tokio::time::Instant::now(), SystemTime::now());
        let prefix = &self.shared.cfg.key_prefix;
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        for put in batch.drain(..) {
            // An answer whose time ran out in the queue is not written (nor counted stored).
            let Some((value, expire_ms)) = encode(&put.answer, wall, put.answer.age(now)) else {
                continue;
            };
            pipe.cmd("SET")
                .arg(name(prefix, &put.key))
                .arg(value.as_ref())
                .arg("PX")
                .arg(expire_ms)
                .ignore();
            n += 1;
        }
        if n == 0 {
            return;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {
                m.stored.inc_by(n);
            }
            Ok(Err(_)) | Err(_) => {
                m.dropped.inc_by(n);
            }
        }
    }
}

impl Service for CacheWriter {
    fn name(&self) -> &'static str {
        "shared-cache"
    }

    fn run(
        mut self: Box<Self>,
        mut shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                tokio::select! {
                    item = self.intake.recv() => match item {
                        Some(put) => {
                            batch.push(put);
                            self.intake.drain_into(&mut batch, BATCH);
                            self.write(&mut batch).await;
                        }
                        None => break,
                    },
                    () = shutdown.wait() => break,
                }
            }
            // What the last requests stored still reaches the other replicas.
            self.intake.close();
            while self.intake.drain_into(&mut batch, BATCH) > 0 {
                self.write(&mut batch).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ttl: u64, max_stale: u64, age: u64) -> CachedAnswer {
        CachedAnswer::restore(
            Bytes::from_static(b"{\"id\":\"x\"}\n"),
            (true, false),
            Some(Arc::from("gpt-4o-mini")),
            Some("chatcmpl-1".to_owned()),
            Some("gpt-4o-mini-2024".to_owned()),
            vec!["stop".to_owned()],
            7,
            (Duration::from_secs(ttl), Duration::from_secs(max_stale)),
            Duration::from_secs(age),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_reads_back_with_its_age_and_expiry() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // (ttl, max_stale, age when written, read after, expected: Some(fresh) or None)
        let cases: [(u64, u64, u64, u64, Option<bool>); 6] = [
            (60, 0, 0, 0, Some(true)),
            (60, 0, 10, 40, Some(true)),
            (60, 0, 10, 50, None),
            (60, 30, 10, 60, Some(false)),
            (60, 30, 10, 80, None),
            (60, 0, 60, 0, None),
        ];
        for (ttl, stale, age, later, want) in cases {
            let a = answer(ttl, stale, age);
            let encoded = encode(&a, t0, Duration::from_secs(age));
            let Some((entry, expire_ms)) = encoded else {
                assert_eq!(want, None, "{ttl} {stale} {age}: nothing left to write");
                continue;
            };
            assert_eq!(expire_ms, (ttl + stale - age) * 1000);
            let read = decode(entry, t0 + Duration::from_secs(later));
            let now = tokio::time::Instant::now();
            assert_eq!(
                read.as_ref().map(|r| r.fresh(now)),
                want,
                "{ttl} {stale} {age} {later}"
            );
            if let Some(r) = read {
                assert_eq!(r.body, a.body);
                assert_eq!(
                    (r.stream, r.chunks, &r.finish_reasons, &r.response_id),
                    (a.stream, a.chunks, &a.finish_reasons, &a.response_id)
                );
                assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
                assert_eq!(r.age(now), Duration::from_secs(age + later));
            }
        }
    }

    #[test]
    fn the_answers_shape_survives_and_old_entries_read_as_chat() {
        let now = SystemTime::now();
        let mut a = answer(60, 0, 0);
        a.native = true;
        let (entry, _) = encode(&a, now, Duration::ZERO).expect("entry");
        assert!(decode(entry, now).expect("reads").native);
        // A chat entry's head says nothing new, so older replicas read it as before.
        let (entry, _) = encode(&answer(60, 0, 0), now, Duration::ZERO).expect("entry");
        assert!(!String::from_utf8_lossy(&entry).contains("native"));
        let old = format!(
            "{{\"stream\":false,\"model\":null,\"response_id\":null,\"response_model\":null,\"finish_reasons\":[],\"chunks\":0,\"ttl_ms\":60000,\"max_stale_ms\":0,\"stored_unix_ms\":{}}}\n{{}}",
            unix_ms(now)
        );
        assert!(
            !decode(Bytes::from(old), now)
                .expect("an old entry reads")
                .native
        );
    }

    #[test]
    fn malformed_entries_are_misses() {
        let now = SystemTime::now();
        for entry in [&b""[..], b"no newline", b"{}\nbody", b"not json\nbody"] {
            assert!(decode(Bytes::from_static(entry), now).is_none());
        }
    }
}
