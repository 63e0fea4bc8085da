//! Metric cardinality under hostile input: thousands of made-up model names, `user` fields and
//! request ids must not create series, nor show up in the scrape at all.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::Instant;

use crate::common::{self, KEY, TestGateway};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\nmodels:\n  m: { provider: up, upstream_model: m-up, pricing: { input: 1, output: 2 } }\n";

/// Every random string starts with this, so one substring search covers them all.
const MARK: &str = "cardprobe";
const UNKNOWN: usize = 10_000;
const VALID: usize = 300;
const IN_FLIGHT: usize = 32;

/// xorshift64*: enough randomness for names, no dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn name(&mut self, kind: &str) -> String {
        format!("{MARK}-{kind}-{:016x}", self.next())
    }
}

struct Req {
    model: String,
    user: String,
    request_id: String,
    stream: bool,
    valid: bool,
}

fn plan(rng: &mut Rng, unknown: usize, valid: usize) -> Vec<Req> {
    let total = unknown + valid;
    let step = total / valid.max(1);
    let mut valid_left = valid;
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        // Valid requests spread evenly through the batch; every fourth of them streams.
        let is_valid = valid_left > 0 && (i.is_multiple_of(step) || total - i <= valid_left);
        let nth_valid = valid - valid_left;
        if is_valid {
            valid_left -= 1;
        }
        out.push(Req {
            model: if is_valid {
                "m".to_owned()
            } else {
                rng.name("model")
            },
            user: rng.name("user"),
            request_id: rng.name("rid"),
            stream: is_valid && nth_valid.is_multiple_of(4),
            valid: is_valid,
        });
    }
    out
}

async fn send_all(client: &reqwest::Client, url: &str, reqs: Vec<Req>) {
    let results: Vec<(bool, u16)> = futures_util::stream::iter(reqs)
        .map(|r| {
            let body = serde_json::json!({
                "model": r.model,
                "stream": r.stream,
                "user": r.user,
                "messages": [{"role": "user", "content": "hi"}],
            })
            .to_string();
            let req = client
                .post(url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .header("x-request-id", r.request_id)
                .body(body);
            async move {
                let resp = req.send().await.expect("request");
                let status = resp.status().as_u16();
                // Read the body so the connection goes back to the pool.
                let _ = resp.bytes().await.expect("body");
                (r.valid, status)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for (valid, status) in results {
        assert_eq!(status, if valid { 200 } else { 404 }, "valid: {valid}");
    }
}

/// The sum of `sluice_requests_total` samples whose labels contain `needle`.
fn requests_counted(scrape: &str, needle: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with("sluice_requests_total{") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A scrape once all `n` requests are counted: the gateway records a request after its
/// response went out, so the last few can land a moment after the client saw them end.
async fn settled_scrape(gw: &TestGateway, n: usize) -> String {
    let scrape = gw
        .metrics_when(|m| requests_counted(m, "") == n as f64)
        .await;
    assert_eq!(
        requests_counted(&scrape, ""),
        n as f64,
        "sluice_requests_total never reached {n}:\n{scrape}"
    );
    scrape
}

/// The series of a scrape (sample lines without their values and exemplars).
fn series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            // `name{labels} value [# {exemplar} value ts]`: label values here never hold '}'.
            match l.find('}') {
                Some(end) => l[..=end].to_owned(),
                None => l.split(' ').next().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_models_users_and_request_ids_create_no_series() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = gw.url("/v1/chat/completions");
    let mut rng = Rng::new();

    let started = Instant::now();
    let limit = Duration::from_secs(120);
    // 1,000 requests (30 valid), then the other 9,000 (270 valid).
    let first = plan(&mut rng, UNKNOWN / 10, VALID / 10);
    let rest = plan(&mut rng, UNKNOWN - UNKNOWN / 10, VALID - VALID / 10);
    let probes: Vec<String> = first
        .iter()
        .chain(&rest)
        .flat_map(|r| [r.model.clone(), r.user.clone(), r.request_id.clone()])
        .filter(|s| s.starts_with(MARK))
        .collect();
    assert!(probes.len() >= UNKNOWN * 3, "{}", probes.len());

    tokio::time::timeout(limit, send_all(&client, &url, first))
        .await
        .expect("the first 1,000 requests took over 120 s");
    let after_first = settled_scrape(&gw, (UNKNOWN + VALID) / 10).await;
    let first_elapsed = started.elapsed();
    tokio::time::timeout(limit, send_all(&client, &url, rest))
        .await
        .expect("the other 9,000 requests took over 120 s");
    let after_all = settled_scrape(&gw, UNKNOWN + VALID).await;
    let elapsed = started.elapsed();
    eprintln!(
        "cardinality: {} requests in {elapsed:.1?} ({:.0}/s; the first 1,000+ in {first_elapsed:.1?})",
        UNKNOWN + VALID,
        (UNKNOWN + VALID) as f64 / elapsed.as_secs_f64()
    );

    let s1 = series(&after_first);
    let s2 = series(&after_all);
    eprintln!(
        "cardinality: {} series after 1,030 requests, {} after 10,300",
        s1.len(),
        s2.len()
    );
    assert_eq!(
        s1,
        s2,
        "new series appeared between 1,030 and 10,300 requests: {:?}",
        s2.difference(&s1).collect::<Vec<_>>()
    );
    assert!(
        s2.len() < 200,
        "{} series for one model, one tenant and one route:\n{after_all}",
        s2.len()
    );

    // Both kinds of request were counted, under closed label values.
    let count = |needle: &str| requests_counted(&after_all, needle);
    assert_eq!(count("status=\"404\""), UNKNOWN as f64, "{after_all}");
    assert_eq!(count("status=\"200\""), VALID as f64, "{after_all}");

    // No random string anywhere in the exposition (labels, exemplars, help).
    assert!(
        !after_all.contains(MARK),
        "a client-chosen string leaked into /metrics:\n{}",
        after_all
            .lines()
            .filter(|l| l.contains(MARK))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let values: BTreeSet<&str> = after_all.split('"').skip(1).step_by(2).collect();
    for p in &probes {
        assert!(!values.contains(p.as_str()), "{p} is a label value");
    }
    assert!(
        elapsed < Duration::from_secs(120),
        "10,300 requests took {elapsed:?}"
    );
}
