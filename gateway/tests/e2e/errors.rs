//! Every client error is OpenAI error JSON with the right status and an `x-request-id`.

use crate::common::{self, TestGateway, assert_no_canary};

const POLICY: &str = "providers:\n  up: { kind: openai, base_url: \"{mock}\", api_key_env: SLUICE_TEST_PROVIDER_KEY }\n  local: { kind: mock }\nmodels:\n  m: { provider: up }\n  emb: { provider: local, kind: embedding }\n";

#[tokio::test]
async fn client_errors_have_the_right_status_and_shape() {
    let mock = common::mock_llm().await;
    let gw = TestGateway::start(POLICY, &mock).await;
    let client = reqwest::Client::new();
    let msg = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    let cases: Vec<(reqwest::RequestBuilder, u16, &str, serde_json::Value)> = vec![
        (client.post(gw.url("/v1/chat/completions")).body(msg), 401, "missing_api_key", serde_json::Value::Null),
        (
            client.post(gw.url("/v1/chat/completions")).bearer_auth("sk-wrong").body(msg),
            401,
            "invalid_api_key",
            serde_json::Value::Null,
        ),
        (gw.post("/v1/chat/completions", "{\"model\":"), 400, "invalid_request", serde_json::Value::Null),
        (gw.post("/v1/chat/completions", r#"{"messages":[]}"#), 400, "invalid_request", "model".into()),
        (
            gw.post("/v1/chat/completions", r#"{"model":"m","messages":[{"role":"user","content":"x"}],"base_url":"http://169.254.169.254/"}"#),
            400,
            "invalid_request",
            serde_json::Value::Null,
        ),
        (
            gw.post("/v1/chat/completions", r#"{"model":"gpt-unknown","messages":[{"role":"user","content":"x"}]}"#),
            404,
            "model_not_found",
            "model".into(),
        ),
        (
            gw.post("/v1/embeddings", r#"{"model":"m","input":"x"}"#),
            400,
            "invalid_request",
            "model".into(),
        ),
        (gw.post("/v1/nothing", "{}"), 404, "unknown_url", serde_json::Value::Null),
        (client.get(gw.url("/v1/chat/completions")).bearer_auth(common::KEY), 405, "method_not_allowed", serde_json::Value::Null),
    ];
    for (req, status, code, param) in cases {
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), status, "{code}");
        assert!(
            resp.headers()["x-request-id"]
                .to_str()
                .is_ok_and(|v| v.starts_with("req_"))
        );
        assert_eq!(resp.headers()["content-type"], "application/json");
        let text = resp.text().await.expect("body");
        assert_no_canary(&text);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let e = v["error"].as_object().expect("error object");
        assert_eq!(e.len(), 4, "exactly message, type, param, code: {text}");
        assert_eq!(e["code"], code, "{text}");
        assert_eq!(e["param"], param, "{text}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(e["type"].is_string());
    }
    assert_eq!(
        mock.stats().requests,
        0,
        "no client error reached the provider"
    );

    // A client-supplied request id is echoed back for correlation.
    let resp = gw
        .post("/v1/chat/completions", msg)
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");

    // Embeddings and the model list work for an authenticated client.
    let resp = gw
        .post("/v1/embeddings", r#"{"model":"emb","input":["a","b"]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    let v: serde_json::Value = client
        .get(gw.url("/v1/models"))
        .bearer_auth(common::KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["emb", "m"]);
}
