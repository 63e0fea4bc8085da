//! Vectors: AWS's SigV4 test suite (as shipped in the `aws-sigv4` crate's
//! `aws-signing-test-suite/v4/`), and the Bedrock vector of openai-python's
//! `tests/fixtures/bedrock/v1/sigv4.json`. Copies live in
//! `tests/fixtures/providers/sigv4/` (see the README there).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use sluice_config::Secret;

use crate::providers::translate::auth::*;

fn dir() -> String {
    format!(
        "{}/tests/fixtures/providers/sigv4",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn read(case: &str, file: &str) -> String {
    let path = format!("{}/{case}/{file}", dir());
    std::fs::read_to_string(&path).expect(&path)
}

/// `2015-08-30T12:36:00Z` → SystemTime (the suite only uses whole UTC seconds).
fn parse_time(s: &str) -> SystemTime {
    let digits: Vec<u64> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(6)
        .map(|p| p.parse().expect("number"))
        .collect();
    let (y, mo, d, h, mi, se) = (
        digits[0], digits[1], digits[2], digits[3], digits[4], digits[5],
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + se)
}

struct Parsed {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// The suite's `request.txt`: a request line, `Name:value` headers, a blank line, a body.
fn parse_request(text: &str) -> Parsed {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let line = lines.next().expect("request line");
    let mut parts = line.split(' ');
    let method = parts.next().expect("method").to_owned();
    let path = parts.next().expect("path").to_owned();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header");
            (n.to_owned(), v.to_owned())
        })
        .collect();
    Parsed {
        method,
        path,
        headers,
        body: body.to_owned(),
    }
}

fn authorization_line(signed: &str) -> String {
    signed
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .expect("Authorization line")
        .to_owned()
}

fn find<'a>(headers: &'a [AuthHeader], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.expose())
}

fn run_suite_case(case: &str) {
    let ctx: Value = serde_json::from_str(&read(case, "context.json")).expect("context");
    let creds = AwsCredentials {
        access_key_id: ctx["credentials"]["access_key_id"]
            .as_str()
            .expect("akid")
            .into(),
        secret_access_key: Secret::new(
            ctx["credentials"]["secret_access_key"]
                .as_str()
                .expect("secret"),
        ),
        session_token: ctx["credentials"]["token"].as_str().map(Secret::new),
    };
    let req = parse_request(&read(case, "request.txt"));
    let host = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .expect("host");
    let url = format!("https://{host}{}", req.path);
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let out = sigv4(
        &creds,
        ctx["region"].as_str().expect("region"),
        ctx["service"].as_str().expect("service"),
        &SignableParts {
            method: &req.method,
            url: &url,
            headers: &headers,
            body: req.body.as_bytes(),
        },
        parse_time(ctx["timestamp"].as_str().expect("timestamp")),
        ctx["sign_body"].as_bool() == Some(true),
    )
    .expect(case);
    let want = authorization_line(&read(case, "header-signed-request.txt"));
    assert_eq!(find(&out, "authorization"), Some(want.as_str()), "{case}");
    let signature = read(case, "header-signature.txt");
    assert!(
        want.ends_with(signature.trim()),
        "{case}: fixture consistency"
    );
    assert_eq!(find(&out, "x-amz-date"), Some("20150830T123600Z"), "{case}");
    assert_eq!(
        find(&out, "x-amz-security-token"),
        ctx["credentials"]["token"].as_str(),
        "{case}"
    );
}

#[test]
fn aws_sigv4_suite() {
    for case in [
        "get-vanilla",
        "get-vanilla-query",
        "get-vanilla-query-order-key-case",
        "get-vanilla-query-unreserved",
        "get-vanilla-with-session-token",
        "get-unreserved",
        "get-slashes-normalized",
        "post-vanilla",
        "post-vanilla-query",
        "post-header-key-sort",
        "post-header-value-case",
        "post-x-www-form-urlencoded",
    ] {
        run_suite_case(case);
    }
}

#[test]
fn double_encoded_path_segments() {
    // The suite's `double-encode-path` case (signed with smithy-rs's test credentials):
    // `%3D` in the path must be signed as `%253D`.
    let creds = AwsCredentials {
        access_key_id: "ANOTREAL".into(),
        secret_access_key: Secret::new("notrealrnrELgWzOk3IfjzDKtFBhDby"),
        session_token: None,
    };
    let req = parse_request(&read("double-encode-path", "request.txt"));
    let url = format!(
        "https://tj9n5r0m12.execute-api.us-east-1.amazonaws.com{}",
        req.path
    );
    let out = sigv4(
        &creds,
        "us-east-1",
        "service",
        &SignableParts {
            method: &req.method,
            url: &url,
            headers: &[],
            body: &[],
        },
        parse_time("2015-08-30T12:36:00Z"),
        false,
    )
    .expect("signs");
    let want = authorization_line(&read("double-encode-path", "header-signed-request.txt"));
    assert_eq!(find(&out, "authorization"), Some(want.as_str()));
}

#[test]
fn bedrock_vector_with_session_token_and_payload_hash() {
    let v: Value = serde_json::from_str(&read("bedrock-mantle", "sigv4.json")).expect("vector");
    let creds = AwsCredentials {
        access_key_id: v["credentials"]["accessKeyId"].as_str().expect("id").into(),
        secret_access_key: Secret::new(
            v["credentials"]["secretAccessKey"]
                .as_str()
                .expect("secret"),
        ),
        session_token: v["credentials"]["sessionToken"].as_str().map(Secret::new),
    };
    let content_type = v["request"]["contentType"].as_str().expect("ct");
    let out = sigv4(
        &creds,
        v["region"].as_str().expect("region"),
        v["service"].as_str().expect("service"),
        &SignableParts {
            method: v["request"]["method"].as_str().expect("method"),
            url: v["request"]["url"].as_str().expect("url"),
            headers: &[("content-type", content_type)],
            body: v["request"]["body"].as_str().expect("body").as_bytes(),
        },
        parse_time(v["signingDate"].as_str().expect("date")),
        true,
    )
    .expect("signs");
    assert_eq!(
        find(&out, "authorization"),
        v["expected"]["authorization"].as_str()
    );
    assert_eq!(find(&out, "x-amz-date"), v["expected"]["date"].as_str());
    assert_eq!(
        find(&out, "x-amz-content-sha256"),
        v["expected"]["payloadHash"].as_str()
    );
    assert_eq!(
        find(&out, "x-amz-security-token"),
        Some("fixture-session-token")
    );
}

#[test]
fn bedrock_requests_sign_the_single_encoded_model_id_twice() {
    let opts = crate::providers::translate::BedrockOptions {
        region: "us-east-1".into(),
    };
    let req = crate::providers::translate::bedrock::request(
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
        crate::providers::translate::Endpoint::Chat,
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        &opts,
    )
    .expect("request");
    assert_eq!(
        req.path_and_query,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let creds = AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: None,
    };
    let time = parse_time("2025-01-02T03:04:05Z");
    let base = "https://bedrock-runtime.us-east-1.amazonaws.com";
    let out = bedrock_sigv4(&creds, "us-east-1", base, &req, time).expect("signs");
    let auth = find(&out, "authorization").expect("authorization");
    assert!(auth.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date, Signature="
    ), "{auth}");
    // The same signature as the general signer over the same parts: nothing else leaks in.
    let url = format!("{base}{}", req.path_and_query);
    let again = sigv4(
        &creds,
        "us-east-1",
        "bedrock",
        &SignableParts {
            method: "POST",
            url: &url,
            headers: &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ],
            body: &req.body,
        },
        time,
        true,
    )
    .expect("signs");
    assert_eq!(find(&again, "authorization"), Some(auth));
    assert!(
        !format!("{creds:?}").contains("wJalr"),
        "Debug never shows the secret"
    );
    assert!(
        !format!("{out:?}").contains(auth),
        "Debug never shows the signature"
    );
}

#[test]
fn plain_credential_headers() {
    let key = Secret::new("k-123");
    assert_eq!(anthropic(&key).0, "x-api-key");
    assert_eq!(gemini_api_key(&key).0, "x-goog-api-key");
    assert_eq!(azure_api_key(&key).0, "api-key");
    let (name, value) = bearer(&key);
    assert_eq!((name, value.expose()), ("authorization", "Bearer k-123"));
    assert_eq!(format!("{value:?}"), "***");
}
