//! Steady open-loop traffic through Sluice while a drill runs: one request every `1/rate`
//! seconds whatever the answers take, at most [`MAX_IN_FLIGHT`] at once (a request that would
//! exceed it is counted as not sent), until stopped or [`MAX_DURATION`] has passed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Method;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::Http;
use super::scenario::{Key, Scenario};

/// Requests in flight at most.
pub const MAX_IN_FLIGHT: usize = 128;
/// The longest a drill's traffic runs, whatever happens.
pub const MAX_DURATION: Duration = Duration::from_secs(400);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How one request ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A whole answer (a stream ended with `[DONE]`); `stale` when `x-sluice-cache: stale`.
    Ok { stale: bool },
    /// Refused on purpose: 503 `load_shed`.
    Shed,
    /// Anything else: an error status, a stream without `[DONE]`, a broken connection, no
    /// answer in time. The text says which.
    Error(String),
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sent: Instant,
    pub key: Key,
    pub seen: Seen,
}

/// What the traffic did.
#[derive(Debug, Default)]
pub struct Tally {
    pub samples: Vec<Sample>,
    /// Requests not sent because [`MAX_IN_FLIGHT`] were still running.
    pub not_sent: u64,
}

/// Running traffic; [`stop`](Self::stop) ends it and returns what it saw.
#[derive(Debug)]
pub struct Traffic {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Tally>,
}

/// The virtual keys' plaintext, by [`Key`].
#[derive(Debug, Clone)]
pub struct Keys {
    pub gold: String,
    pub bulk: String,
}

impl Traffic {
    pub fn start(scenario: Scenario, rate: f64, gateway: SocketAddr, keys: Keys) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(scenario, rate, gateway, keys, stopped));
        Traffic { stop, task }
    }

    /// Stops sending, waits (bounded) for the requests in flight, and returns the tally.
    pub async fn stop(self) -> Tally {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn run(
    scenario: Scenario,
    rate: f64,
    gateway: SocketAddr,
    keys: Keys,
    mut stopped: watch::Receiver<bool>,
) -> Tally {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let pool: Arc<Mutex<Vec<Http>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let keys = Arc::new(keys);
    let mut tasks = JoinSet::new();
    let mut not_sent = 0;
    let every = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let start = Instant::now();
    let mut tick = tokio::time::interval(every);
    // Open loop: a late tick is sent at once, never skipped or bunched up later.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0u64;
    while start.elapsed() < MAX_DURATION {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        let req = scenario.request(i);
        i += 1;
        let (pool, samples, keys) = (Arc::clone(&pool), Arc::clone(&samples), Arc::clone(&keys));
        tasks.spawn(async move {
            let sent = Instant::now();
            let mut http = pop(&pool).unwrap_or_else(|| Http::new(gateway));
            let key = match req.key {
                Key::Gold => keys.gold.as_str(),
                Key::Bulk => keys.bulk.as_str(),
            };
            let answer = http
                .send(
                    Method::POST,
                    "/v1/chat/completions",
                    Some(key),
                    Some(req.body),
                    REQUEST_TIMEOUT,
                )
                .await;
            let seen = classify(answer, req.stream);
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(http);
            samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Sample {
                    sent,
                    key: req.key,
                    seen,
                });
            drop(slot);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    Tally { samples, not_sent }
}

fn pop(pool: &Mutex<Vec<Http>>) -> Option<Http> {
    pool.lock().unwrap_or_else(PoisonError::into_inner).pop()
}

/// How the client saw an answer.
pub fn classify(answer: Result<super::client::Answer, String>, stream: bool) -> Seen {
    let a = match answer {
        Ok(a) => a,
        Err(e) => return Seen::Error(e),
    };
    if a.status == 503 && a.json()["error"]["code"] == "load_shed" {
        return Seen::Shed;
    }
    if a.status != 200 {
        return Seen::Error(format!("HTTP {}", a.status));
    }
    if stream && !a.body.ends_with(b"data: [DONE]\n\n") {
        return Seen::Error("stream cut short".into());
    }
    Seen::Ok {
        stale: a.cache.as_deref() == Some("stale"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::client::Answer;
    use super::*;

    fn answer(status: u16, cache: Option<&str>, body: &'static str) -> Result<Answer, String> {
        Ok(Answer {
            status,
            cache: cache.map(str::to_owned),
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    #[test]
    fn answers_are_classified_as_a_client_sees_them() {
        assert_eq!(
            classify(answer(200, None, "{}"), false),
            Seen::Ok { stale: false }
        );
        assert_eq!(
            classify(answer(200, Some("stale"), "{}"), false),
            Seen::Ok { stale: true }
        );
        assert_eq!(
            classify(
                answer(503, None, r#"{"error":{"code":"load_shed"}}"#),
                false
            ),
            Seen::Shed
        );
        assert_eq!(
            classify(answer(503, None, r#"{"error":{"code":null}}"#), false),
            Seen::Error("HTTP 503".into())
        );
        assert_eq!(
            classify(answer(200, None, "data: {}\n\ndata: [DONE]\n\n"), true),
            Seen::Ok { stale: false }
        );
        assert_eq!(
            classify(answer(200, None, "data: {}\n\n"), true),
            Seen::Error("stream cut short".into())
        );
        assert_eq!(
            classify(Err("connect refused".into()), false),
            Seen::Error("connect refused".into())
        );
    }
}
