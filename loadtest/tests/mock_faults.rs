//! mock-llm's runtime faults over real sockets: set with `POST /_mock/faults`, listed with
//! `GET`, cleared with `DELETE`, scoped to one model or the whole process.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::json;
use sluice_loadtest::drill::client::{Answer, Http};
use sluice_loadtest::mock_llm::MockTiming;
use sluice_loadtest::{MockLlm, MockLlmConfig};

const WITHIN: Duration = Duration::from_secs(10);

async fn mock(ttft_ms: u64) -> MockLlm {
    MockLlm::start(MockLlmConfig {
        timing: MockTiming {
            ttft: Duration::from_millis(ttft_ms),
            tokens_per_s: 0.0,
        },
        ..MockLlmConfig::default()
    })
    .await
    .expect("mock-llm starts")
}

async fn chat(http: &mut Http, model: &str) -> Result<Answer, String> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    http.send(
        Method::POST,
        "/v1/chat/completions",
        None,
        Some(Bytes::from(body.to_string())),
        WITHIN,
    )
    .await
}

async fn control(
    http: &mut Http,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    http.send(
        method,
        path,
        None,
        body.map(|b| Bytes::from(b.to_string())),
        WITHIN,
    )
    .await
    .expect("control answer")
}

#[tokio::test]
async fn an_error_ratio_on_one_model_fails_that_share_until_cleared() {
    let llm = mock(0).await;
    let mut http = Http::new(llm.addr());
    let set = control(
        &mut http,
        Method::POST,
        "/_mock/faults",
        Some(json!({"model": "primary", "error_ratio": 0.5, "error_status": 502})),
    )
    .await;
    assert_eq!(set.status, 200);
    assert_eq!(set.json()["faults"][0]["model"], "primary");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(chat(&mut http, "primary").await.expect("answer").status);
    }
    // Spread evenly: every second request fails.
    assert_eq!(statuses, [200, 502, 200, 502, 200, 502, 200, 502, 200, 502]);
    // Another model, and the same model with a request fault suffix's base name, are scoped.
    assert_eq!(
        chat(&mut http, "secondary").await.expect("answer").status,
        200
    );
    assert_eq!(
        chat(&mut http, "primary@ttft:1")
            .await
            .expect("answer")
            .status,
        200
    );
    let cleared = control(
        &mut http,
        Method::DELETE,
        "/_mock/faults?model=primary",
        None,
    )
    .await;
    assert_eq!(cleared.json()["faults"], json!([]));
    for _ in 0..4 {
        assert_eq!(
            chat(&mut http, "primary").await.expect("answer").status,
            200
        );
    }
    assert!(llm.faults().is_empty());
    llm.shutdown().await;
}

#[tokio::test]
async fn a_ttft_multiplier_slows_only_its_model() {
    let llm = mock(40).await;
    let mut http = Http::new(llm.addr());
    control(
        &mut http,
        Method::POST,
        "/_mock/faults",
        Some(json!({"model": "big", "ttft_multiplier": 10})),
    )
    .await;
    let timed = async |http: &mut Http, model: &str| {
        let t = Instant::now();
        assert_eq!(chat(http, model).await.expect("answer").status, 200);
        t.elapsed()
    };
    let slow = timed(&mut http, "big").await;
    let fast = timed(&mut http, "small").await;
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    assert!(fast < Duration::from_millis(300), "{fast:?}");
    control(&mut http, Method::DELETE, "/_mock/faults", None).await;
    let back = timed(&mut http, "big").await;
    assert!(back < Duration::from_millis(300), "{back:?}");
    llm.shutdown().await;
}

#[tokio::test]
async fn outages_fail_refuse_or_hang_every_request() {
    let llm = mock(0).await;
    let mut ctl = Http::new(llm.addr());
    let mut http = Http::new(llm.addr());

    control(
        &mut ctl,
        Method::POST,
        "/_mock/faults",
        Some(json!({"outage": "status", "error_status": 503})),
    )
    .await;
    let a = chat(&mut http, "any").await.expect("answer");
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["type"], "server_error");

    // Refused: the connection is closed at accept, without an answer.
    control(
        &mut ctl,
        Method::POST,
        "/_mock/faults",
        Some(json!({"outage": "refuse"})),
    )
    .await;
    let mut fresh = Http::new(llm.addr());
    assert!(chat(&mut fresh, "any").await.is_err());

    // A model-scoped refusal closes the connection once the request is read.
    control(&mut ctl, Method::DELETE, "/_mock/faults", None).await;
    control(
        &mut ctl,
        Method::POST,
        "/_mock/faults",
        Some(json!({"model": "m", "outage": "refuse"})),
    )
    .await;
    assert!(chat(&mut http, "m").await.is_err());
    assert_eq!(chat(&mut http, "other").await.expect("answer").status, 200);

    // Hanging: no answer until the fault changes, then the connection closes.
    control(&mut ctl, Method::DELETE, "/_mock/faults", None).await;
    control(
        &mut ctl,
        Method::POST,
        "/_mock/faults",
        Some(json!({"outage": "hang"})),
    )
    .await;
    let addr = llm.addr();
    let hung = tokio::spawn(async move {
        let mut h = Http::new(addr);
        let t = Instant::now();
        let r = chat(&mut h, "any").await;
        (r.is_err(), t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hung.is_finished(), "a hung request waits");
    control(&mut ctl, Method::DELETE, "/_mock/faults", None).await;
    let (failed, waited) = hung.await.expect("task");
    assert!(failed);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(chat(&mut http, "any").await.expect("answer").status, 200);
    llm.shutdown().await;
}

#[tokio::test]
async fn requests_over_capacity_are_refused_at_once() {
    let llm = mock(300).await;
    let mut ctl = Http::new(llm.addr());
    control(
        &mut ctl,
        Method::POST,
        "/_mock/faults",
        Some(json!({"max_concurrent": 2})),
    )
    .await;
    let addr = llm.addr();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        tasks.push(tokio::spawn(async move {
            let mut h = Http::new(addr);
            let t = Instant::now();
            let a = chat(&mut h, "any").await.expect("answer");
            (a.status, t.elapsed())
        }));
        // Start them in order, so the first two hold the slots.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, took) = t.await.expect("task");
        match status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert!(took < Duration::from_millis(250), "{took:?}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (2, 3));
    // Slots come back when answers end.
    let mut h = Http::new(addr);
    assert_eq!(chat(&mut h, "any").await.expect("answer").status, 200);
    llm.shutdown().await;
}

#[tokio::test]
async fn bad_faults_are_refused_with_the_problem() {
    let llm = mock(0).await;
    let mut ctl = Http::new(llm.addr());
    for (body, says) in [
        (json!({"error_ratio": 2}), "error_ratio"),
        (json!({"error_rate": 0.5}), "unknown field"),
        (json!({"outage": "explode"}), "unknown variant"),
        (json!({"max_concurrent": 0}), "max_concurrent"),
    ] {
        let a = control(&mut ctl, Method::POST, "/_mock/faults", Some(body.clone())).await;
        assert_eq!(a.status, 400, "{body}");
        let v = a.json();
        assert_eq!(v["error"]["code"], "invalid_mock_fault");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {v}"
        );
    }
    let a = control(&mut ctl, Method::PUT, "/_mock/faults", None).await;
    assert_eq!(a.status, 405);
    let a = control(&mut ctl, Method::GET, "/_mock/faults", None).await;
    assert_eq!(a.json(), json!({"faults": []}));
    llm.shutdown().await;
}
