//! Error classification per provider and the class table.

use std::time::Duration;

use serde_json::Value;

use crate::providers::translate::{ErrorClass, Kind, ProviderError, error, stream_error};

type H = [(&'static str, &'static str)];

fn json(e: &ProviderError) -> Value {
    serde_json::from_slice(&e.openai_error_json).expect("json")
}

#[test]
fn class_table_covers_every_class() {
    for (class, status, retryable) in [
        (ErrorClass::InvalidRequest, 400, false),
        (ErrorClass::ContentFilter, 400, false),
        (ErrorClass::RequestTooLarge, 413, false),
        (ErrorClass::Authentication, 502, true),
        (ErrorClass::PermissionDenied, 502, true),
        (ErrorClass::NotFound, 502, true),
        (ErrorClass::RateLimited, 429, true),
        (ErrorClass::QuotaExceeded, 429, true),
        (ErrorClass::Overloaded, 503, true),
        (ErrorClass::Unavailable, 503, true),
        (ErrorClass::ServerError, 502, true),
        (ErrorClass::Timeout, 504, true),
        (ErrorClass::BadResponse, 502, true),
        (ErrorClass::Interrupted, 502, true),
    ] {
        let v = class.client();
        assert_eq!((v.status, v.retryable), (status, retryable), "{class:?}");
    }
}

#[test]
fn anthropic_529_is_a_retryable_503() {
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    let e = error(Kind::Anthropic, 529, &[] as &H, body);
    assert_eq!(e.class, ErrorClass::Overloaded);
    assert_eq!(e.status_for_client, 503);
    assert!(e.retryable);
    assert_eq!(
        json(&e),
        serde_json::json!({"error":{
            "message":"anthropic answered 529 (overloaded_error): Overloaded",
            "type":"server_error","param":null,"code":"provider_overloaded"}})
    );
}

#[test]
fn anthropic_429_honours_retry_after_and_spend_limits() {
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let e = error(Kind::Anthropic, 429, &[("retry-after", "7")] as &H, body);
    assert_eq!(e.class, ErrorClass::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
    let e = error(Kind::Anthropic, 429, &[] as &H, body);
    assert_eq!(e.class, ErrorClass::QuotaExceeded);
    assert_eq!(json(&e)["error"]["code"], "insufficient_quota");
}

#[test]
fn anthropic_statuses() {
    for (status, ty, class) in [
        (400, "invalid_request_error", ErrorClass::InvalidRequest),
        (401, "authentication_error", ErrorClass::Authentication),
        (402, "billing_error", ErrorClass::QuotaExceeded),
        (403, "permission_error", ErrorClass::PermissionDenied),
        (404, "not_found_error", ErrorClass::NotFound),
        (413, "request_too_large", ErrorClass::RequestTooLarge),
        (500, "api_error", ErrorClass::ServerError),
        (504, "timeout_error", ErrorClass::Timeout),
    ] {
        let body = format!(r#"{{"type":"error","error":{{"type":"{ty}","message":"m"}}}}"#);
        assert_eq!(
            error(Kind::Anthropic, status, &[] as &H, body.as_bytes()).class,
            class
        );
    }
    let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let e = error(Kind::Anthropic, 400, &[] as &H, body);
    assert_eq!(json(&e)["error"]["code"], "context_length_exceeded");
    assert!(!e.retryable);
}

#[test]
fn gemini_resource_exhausted_is_429_with_retry_delay() {
    let body = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"57.238747106s"}]}}"#;
    let e = error(Kind::Gemini, 429, &[] as &H, body);
    assert_eq!(e.status_for_client, 429);
    assert_eq!(e.class, ErrorClass::RateLimited);
    assert_eq!(
        e.retry_after.map(|d| d.as_millis()),
        Some(57_238),
        "fractional retryDelay"
    );
    let key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
    let e = error(Kind::Gemini, 400, &[] as &H, key);
    assert_eq!(e.class, ErrorClass::Authentication);
    assert_eq!(e.status_for_client, 502, "Sluice's key, not the client's");
    for (s, class) in [
        ("UNAVAILABLE", ErrorClass::Unavailable),
        ("DEADLINE_EXCEEDED", ErrorClass::Timeout),
        ("INTERNAL", ErrorClass::ServerError),
        ("PERMISSION_DENIED", ErrorClass::PermissionDenied),
        ("NOT_FOUND", ErrorClass::NotFound),
    ] {
        let body = format!(r#"{{"error":{{"code":1,"message":"m","status":"{s}"}}}}"#);
        assert_eq!(
            error(Kind::Vertex, 500, &[] as &H, body.as_bytes()).class,
            class
        );
    }
}

#[test]
fn bedrock_names_come_from_the_error_type_header() {
    let h: &H = &[(
        "x-amzn-ErrorType",
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    )];
    let e = error(Kind::Bedrock, 429, h, br#"{"message":"Too many requests"}"#);
    assert_eq!(e.class, ErrorClass::RateLimited);
    assert_eq!(e.provider_code.as_deref(), Some("ThrottlingException"));
    assert!(e.message.contains("Too many requests"));
    for (name, class) in [
        ("ValidationException", ErrorClass::InvalidRequest),
        ("AccessDeniedException", ErrorClass::PermissionDenied),
        ("ResourceNotFoundException", ErrorClass::NotFound),
        ("ServiceUnavailableException", ErrorClass::Unavailable),
        ("InternalServerException", ErrorClass::ServerError),
        ("ModelTimeoutException", ErrorClass::Timeout),
        ("ModelNotReadyException", ErrorClass::RateLimited),
        ("ModelErrorException", ErrorClass::ServerError),
        ("UnrecognizedClientException", ErrorClass::Authentication),
    ] {
        let h = [("x-amzn-errortype", name)];
        assert_eq!(
            error(Kind::Bedrock, 400, &h as &H, br#"{"Message":"m"}"#).class,
            class,
            "{name}"
        );
    }
    let e = stream_error(
        Kind::Bedrock,
        Some("throttlingException"),
        br#"{"message":"slow"}"#,
    );
    assert_eq!(e.class, ErrorClass::RateLimited);
    assert_eq!(e.provider_status, None);
}

#[test]
fn azure_content_filter_and_retry_after_ms() {
    let body = br#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
    let e = error(Kind::AzureOpenAi, 400, &[] as &H, body);
    assert_eq!(e.class, ErrorClass::ContentFilter);
    assert_eq!(e.status_for_client, 400);
    assert_eq!(json(&e)["error"]["param"], "prompt");
    let h: &H = &[("retry-after-ms", "1500"), ("retry-after", "2")];
    let e = error(
        Kind::AzureOpenAi,
        429,
        h,
        br#"{"error":{"code":"429","message":"Rate limit"}}"#,
    );
    assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(e.class, ErrorClass::RateLimited);
    let e = error(
        Kind::AzureOpenAi,
        400,
        &[] as &H,
        br#"{"error":{"code":"context_length_exceeded","message":"too long","param":"messages"}}"#,
    );
    assert_eq!(json(&e)["error"]["code"], "context_length_exceeded");
}

#[test]
fn unknown_bodies_fall_back_to_the_status() {
    let e = error(Kind::Anthropic, 502, &[] as &H, b"<html>bad gateway</html>");
    assert_eq!(e.class, ErrorClass::ServerError);
    assert!(e.message.contains("<html>bad gateway"));
    assert_eq!(
        error(Kind::Gemini, 503, &[] as &H, b"").class,
        ErrorClass::Unavailable
    );
}
