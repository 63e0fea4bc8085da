//! Credential headers for each provider: pure functions from a secret to the headers that
//! carry it. [`super::request`] never sees a credential; the caller adds these last, since
//! SigV4 signs the final method, URL, headers and body.
//!
//! | provider | header |
//! |---|---|
//! | Anthropic | `x-api-key` ([`anthropic`]) |
//! | Gemini API | `x-goog-api-key` ([`gemini_api_key`]); never the `?key=` query, which ends up in logs |
//! | Vertex AI | `authorization: Bearer <OAuth2 access token>` ([`bearer`]) |
//! | Azure OpenAI | `api-key` ([`azure_api_key`]), or an Entra ID token with [`bearer`] |
//! | Bedrock | SigV4 ([`bedrock_sigv4`]), or a Bedrock API key with [`bearer`] |
//!
//! SigV4 is computed by `aws-sigv4`, AWS's own signer from smithy-rs (the issue asks for a
//! well-kept crate, and it is tested against AWS's published suite here too). Its defaults
//! match Bedrock: the canonical URI encodes each path segment a second time (so a model id sent
//! as `…-v1%3A0` is signed as `…-v1%253A0`, the detail peers got wrong), and a session token is
//! signed as `x-amz-security-token` for temporary (STS, IRSA, pod identity) credentials.
//! `x-amz-content-sha256` is always sent for Bedrock, so the signed payload is explicit.
//! All returned values are [`Secret`]s: they never appear in `Debug` output.

use std::fmt;
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use sluice_config::Secret;

use super::UpstreamRequest;

/// A credential header to add to the upstream request.
pub type AuthHeader = (&'static str, Secret);

/// `x-api-key` for Anthropic (`anthropic-version` is already in the request's headers).
pub fn anthropic(api_key: &Secret) -> AuthHeader {
    ("x-api-key", api_key.clone())
}

/// `x-goog-api-key` for the Gemini API (and Vertex AI express mode).
pub fn gemini_api_key(api_key: &Secret) -> AuthHeader {
    ("x-goog-api-key", api_key.clone())
}

/// `api-key` for Azure OpenAI.
pub fn azure_api_key(api_key: &Secret) -> AuthHeader {
    ("api-key", api_key.clone())
}

/// `authorization: Bearer <token>`: Vertex AI access tokens, Azure Entra ID tokens, Bedrock
/// API keys.
pub fn bearer(token: &Secret) -> AuthHeader {
    (
        "authorization",
        Secret::new(format!("Bearer {}", token.expose())),
    )
}

/// AWS credentials. `Debug` shows the access key id (an identifier, not a secret) only.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Present for temporary credentials.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why a request could not be signed (a malformed URL or header; never a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sigv4 signing failed: {0}")]
pub struct SigningError(String);

/// The parts of a request that SigV4 signs.
#[derive(Debug, Clone, Copy)]
pub struct SignableParts<'a> {
    pub method: &'a str,
    /// The absolute URL as it will be sent (`https://host/path?query`, already percent-encoded).
    pub url: &'a str,
    /// Headers to sign, besides `host` (taken from the URL when absent) and the ones SigV4 adds.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Signs a request with SigV4 and returns the headers to add: `x-amz-date`, `authorization`,
/// `x-amz-security-token` with temporary credentials, and `x-amz-content-sha256` when
/// `content_sha256_header` is set.
pub fn sigv4(
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    request: &SignableParts<'_>,
    time: SystemTime,
    content_sha256_header: bool,
) -> Result<Vec<AuthHeader>, SigningError> {
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.expose().to_owned(),
        creds.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "sluice",
    )
    .into();
    let mut settings = SigningSettings::default();
    if content_sha256_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SigningError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| SigningError(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SigningError(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), Secret::new(h.value())))
        .collect())
}

/// SigV4 for a Bedrock Runtime request built by [`super::bedrock::request`]. `base_url` is
/// what the request is sent to (`https://bedrock-runtime.{region}.amazonaws.com`, plus any
/// path prefix), and the `host` header sent must be that URL's host (with its port only when
/// it is not the scheme's default), as the signature covers it.
pub fn bedrock_sigv4(
    creds: &AwsCredentials,
    region: &str,
    base_url: &str,
    request: &UpstreamRequest,
    time: SystemTime,
) -> Result<Vec<AuthHeader>, SigningError> {
    let url = format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        request.path_and_query
    );
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    sigv4(
        creds,
        region,
        "bedrock",
        &SignableParts {
            method: request.method,
            url: &url,
            headers: &headers,
            body: &request.body,
        },
        time,
        true,
    )
}
