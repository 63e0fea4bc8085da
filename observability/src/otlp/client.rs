//! Sending an encoded trace request to a collector: OTLP/gRPC through tonic's generic client
//! with a codec that writes the bytes as they are, OTLP/HTTP through the hyper client the
//! SDK's own exporter uses.
//!
//! A failed call is tried again as the OTLP specification says and the SDK's exporters did:
//! up to three more times, 100 ms doubling to 1.6 s apart plus up to 100 ms of jitter, a
//! server's own delay (gRPC `RetryInfo`, HTTP `Retry-After` in seconds) when it gives one,
//! and never past the destination's `timeout` from the first try. What is retried is
//! [`grpc_failure`] and [`http_failure`]: pure, and tested as tables.
//!
//! Headers are the destination's (from the policy), then those of
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (or, when it is unset, `OTEL_EXPORTER_OTLP_HEADERS`),
//! which replace a policy header of the same name: what the SDK's exporters did. Errors
//! carry no header value and no text of the collector's own (an auth proxy may echo a
//! token): a gRPC status is named by its code, with the local cause when there is one.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_http::HttpClient as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use sluice_config::{OtlpConfig, OtlpProtocol};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt as _;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// Retries after the first try.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;

/// One destination's connection to its collector.
#[derive(Debug)]
pub struct TraceClient {
    wire: Wire,
    headers: HeaderMap,
    /// The budget of one export, retries included.
    timeout: Duration,
}

enum Wire {
    Grpc(tonic::client::Grpc<Channel>),
    Http {
        /// Boxed: hyper's client is most of the enum's size, and there is one per destination.
        client: Box<HyperClient>,
        endpoint: http::Uri,
    },
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc(_) => "Wire::Grpc",
            Self::Http { .. } => "Wire::Http",
        })
    }
}

/// A batch that did not get through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    /// For the log: no header value, no text of the collector's own.
    pub message: String,
    /// The collector answered and refused this batch for good, as opposed to being out of
    /// reach or overloaded past the retries: the next batch may well get through.
    pub answered: bool,
}

/// What a failed try means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Trying again would fail the same way (a bad request, a refused credential).
    Final,
    /// Worth another try after the usual backoff.
    Retry,
    /// Worth another try, not before this long (the collector said so).
    RetryAfter(Duration),
}

/// A gRPC status: retryable ones per the OTLP specification. `RESOURCE_EXHAUSTED` only when
/// the collector said when to come back; `UNAVAILABLE` (also what a refused or reset
/// connection becomes) always.
pub fn grpc_failure(code: tonic::Code, retry_info: Option<Duration>) -> Failure {
    use tonic::Code;
    match code {
        Code::ResourceExhausted => retry_info.map_or(Failure::Final, Failure::RetryAfter),
        Code::Unavailable => match retry_info.filter(|d| !d.is_zero()) {
            Some(d) => Failure::RetryAfter(d),
            None => Failure::Retry,
        },
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Failure::Retry,
        _ => Failure::Final,
    }
}

/// An HTTP answer (`None`: none came, the connection failed): 429 and 503 honour
/// `Retry-After`, 502 and 504 are retried, everything else is final.
pub fn http_failure(status: Option<u16>, retry_after: Option<Duration>) -> Failure {
    match status {
        None | Some(502 | 504) => Failure::Retry,
        Some(429 | 503) => retry_after.map_or(Failure::Retry, Failure::RetryAfter),
        Some(_) => Failure::Final,
    }
}

/// How long to wait before retry number `retry` (1 for the first), or `None` to give up: out
/// of retries, a final failure, or a wait that would not end within `left` of the budget.
pub fn backoff(retry: u32, failure: Failure, jitter: Duration, left: Duration) -> Option<Duration> {
    if retry == 0 || retry > RETRIES {
        return None;
    }
    let usual = FIRST_BACKOFF
        .saturating_mul(1 << (retry - 1).min(16))
        .min(MAX_BACKOFF);
    let wait = match failure {
        Failure::Final => return None,
        Failure::Retry => usual,
        Failure::RetryAfter(d) => usual.max(d),
    } + jitter;
    (wait < left).then_some(wait)
}

impl TraceClient {
    /// `headers` are the destination's, values already read from the environment; `env`
    /// looks up the standard variables (the process environment, or a test's).
    pub fn new(
        otlp: &OtlpConfig,
        headers: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut map = header_map(headers)?;
        if let Some(list) = env(TRACES_HEADERS).or_else(|| env(HEADERS)) {
            for (name, value) in env_headers(&list) {
                map.insert(name, value);
            }
        }
        let wire = match otlp.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(otlp.endpoint.clone())
                    .map_err(|e| format!("invalid OTLP endpoint: {e}"))?
                    .timeout(otlp.timeout);
                if otlp.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_enabled_roots())
                        .map_err(|e| format!("OTLP TLS: {e}"))?;
                }
                Wire::Grpc(tonic::client::Grpc::new(endpoint.connect_lazy()))
            }
            OtlpProtocol::HttpProtobuf => {
                let endpoint = otlp
                    .endpoint
                    .parse()
                    .map_err(|e| format!("invalid OTLP endpoint: {e}"))?;
                map.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                Wire::Http {
                    client: Box::new(HyperClient::with_default_connector(otlp.timeout, None)),
                    endpoint,
                }
            }
        };
        Ok(Self {
            wire,
            headers: map,
            timeout: otlp.timeout,
        })
    }

    /// Sends one request, retrying as the module says; `Ok` holds the number of spans the
    /// collector said it rejected.
    pub async fn export(&mut self, body: Vec<u8>) -> Result<u64, ExportError> {
        let body = Bytes::from(body);
        let started = tokio::time::Instant::now();
        let mut retry = 0;
        loop {
            let (failure, error) = match self.send(body.clone()).await {
                Ok(response) => {
                    return Ok(response
                        .partial_success
                        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)));
                }
                Err(e) => e,
            };
            retry += 1;
            let left = self.timeout.saturating_sub(started.elapsed());
            let jitter = Duration::from_millis(
                u64::try_from(crate::spans::random_id() % u128::from(MAX_JITTER_MS + 1))
                    .unwrap_or(0),
            );
            let Some(wait) = backoff(retry, failure, jitter, left) else {
                let message = if retry > 1 {
                    format!("{error} (after {retry} tries)")
                } else {
                    error
                };
                return Err(ExportError {
                    message,
                    answered: failure == Failure::Final,
                });
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&mut self, body: Bytes) -> Result<ExportTraceServiceResponse, (Failure, String)> {
        match &mut self.wire {
            Wire::Grpc(grpc) => {
                grpc.ready()
                    .await
                    .map_err(|e| (Failure::Retry, format!("OTLP/gRPC connection: {e}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() =
                    tonic::metadata::MetadataMap::from_headers(self.headers.clone());
                let response = grpc
                    .unary(
                        request,
                        http::uri::PathAndQuery::from_static(EXPORT_PATH),
                        Passthrough,
                    )
                    .await
                    .map_err(|s| {
                        let delay = s.get_details_retry_info().and_then(|r| r.retry_delay);
                        (grpc_failure(s.code(), delay), grpc_error(&s))
                    })?;
                Ok(response.into_inner())
            }
            Wire::Http { client, endpoint } => {
                let mut request = http::Request::post(endpoint.clone())
                    .body(body)
                    .map_err(|e| (Failure::Final, e.to_string()))?;
                *request.headers_mut() = self.headers.clone();
                let response = client
                    .send_bytes(request)
                    .await
                    .map_err(|e| (http_failure(None, None), format!("OTLP/HTTP: {e}")))?;
                let status = response.status();
                if !status.is_success() {
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .and_then(|s| Duration::try_from_secs_f64(s).ok());
                    return Err((
                        http_failure(Some(status.as_u16()), retry_after),
                        format!("OTLP/HTTP: status {}", status.as_u16()),
                    ));
                }
                // An empty or unreadable body is a success that says nothing more.
                Ok(ExportTraceServiceResponse::decode(response.into_body()).unwrap_or_default())
            }
        }
    }
}

/// A status by its code, and the local cause when tonic made it (a refused connection, a
/// timeout): never the collector's own message.
fn grpc_error(s: &tonic::Status) -> String {
    let mut out = format!("OTLP/gRPC: {:?}", s.code());
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

/// A destination's headers (from the policy, values read from the environment), checked: an
/// error names the header, never its value (usually a credential). The log exporter's gRPC
/// metadata is built from the same map.
pub fn header_map(headers: &HashMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| format!("`{k}` is not a valid header name"))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| format!("the value of header `{k}` is not valid in a header"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// `key=value,key2=value2`, values percent-decoded; pairs that are not valid headers are
/// left out, as the SDK did.
fn env_headers(list: &str) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    list.split(',').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return None;
        }
        let name = HeaderName::try_from(k).ok()?;
        // A value that is not valid percent-encoding is taken as it is, as the SDK did.
        let value =
            HeaderValue::try_from(percent_decode(v).unwrap_or_else(|| v.as_bytes().to_vec()))
                .ok()?;
        Some((name, value))
    })
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// The request's bytes as they are; the collector's answer decoded for its partial success.
#[derive(Debug, Clone, Copy, Default)]
struct Passthrough;

impl Codec for Passthrough {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Passthrough;
    type Decoder = Passthrough;

    fn encoder(&mut self) -> Self::Encoder {
        Passthrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        Passthrough
    }
}

impl Encoder for Passthrough {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Passthrough {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("the collector's answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_the_environment_replace_the_policys_and_the_signal_variable_wins() {
        let otlp = OtlpConfig::new("http://c:4318/v1/traces", OtlpProtocol::HttpProtobuf);
        let policy = HashMap::from([
            ("x-api-key".to_owned(), "from-policy".to_owned()),
            ("x-team".to_owned(), "a".to_owned()),
        ]);
        let headers = |env: &[(&str, &str)]| {
            let env: HashMap<String, String> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let client = TraceClient::new(&otlp, &policy, |k| env.get(k).cloned()).unwrap();
            let mut pairs: Vec<(String, String)> = client
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            pairs.sort();
            pairs
        };
        let own = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let ct = own("content-type", "application/x-protobuf");
        assert_eq!(
            headers(&[]),
            [
                ct.clone(),
                own("x-api-key", "from-policy"),
                own("x-team", "a")
            ]
        );
        assert_eq!(
            headers(&[(
                HEADERS,
                " x-api-key = from%20env , bad header=x, empty=, =v,x-extra=%41,x-raw=50%zz"
            )]),
            [
                ct.clone(),
                own("x-api-key", "from env"),
                own("x-extra", "A"),
                own("x-raw", "50%zz"),
                own("x-team", "a")
            ]
        );
        assert_eq!(
            headers(&[(HEADERS, "x-team=b"), (TRACES_HEADERS, "x-other=c")]),
            [
                ct,
                own("x-api-key", "from-policy"),
                own("x-other", "c"),
                own("x-team", "a")
            ]
        );
    }

    #[test]
    fn what_is_retried() {
        use tonic::Code;
        let s = Duration::from_secs;
        for (code, info, want) in [
            (Code::Unavailable, None, Failure::Retry),
            (Code::Unavailable, Some(s(0)), Failure::Retry),
            (Code::Unavailable, Some(s(2)), Failure::RetryAfter(s(2))),
            (Code::ResourceExhausted, None, Failure::Final),
            (
                Code::ResourceExhausted,
                Some(s(3)),
                Failure::RetryAfter(s(3)),
            ),
            (Code::Cancelled, None, Failure::Retry),
            (Code::DeadlineExceeded, None, Failure::Retry),
            (Code::Aborted, None, Failure::Retry),
            (Code::OutOfRange, None, Failure::Retry),
            (Code::DataLoss, None, Failure::Retry),
            (Code::Unknown, None, Failure::Final),
            (Code::InvalidArgument, Some(s(1)), Failure::Final),
            (Code::NotFound, None, Failure::Final),
            (Code::PermissionDenied, None, Failure::Final),
            (Code::Unauthenticated, None, Failure::Final),
            (Code::Unimplemented, None, Failure::Final),
            (Code::Internal, None, Failure::Final),
        ] {
            assert_eq!(grpc_failure(code, info), want, "{code:?} {info:?}");
        }
        for (status, after, want) in [
            (None, None, Failure::Retry),
            (Some(502), None, Failure::Retry),
            (Some(504), Some(s(9)), Failure::Retry),
            (Some(429), None, Failure::Retry),
            (Some(429), Some(s(5)), Failure::RetryAfter(s(5))),
            (Some(503), Some(s(1)), Failure::RetryAfter(s(1))),
            (Some(400), None, Failure::Final),
            (Some(401), Some(s(1)), Failure::Final),
            (Some(404), None, Failure::Final),
            (Some(413), None, Failure::Final),
            (Some(500), None, Failure::Final),
        ] {
            assert_eq!(http_failure(status, after), want, "{status:?} {after:?}");
        }
    }

    #[test]
    fn backoff_doubles_honours_the_collector_and_stays_in_the_budget() {
        let ms = Duration::from_millis;
        let plenty = Duration::from_secs(10);
        for (retry, failure, jitter, left, want) in [
            (1, Failure::Retry, ms(0), plenty, Some(ms(100))),
            (2, Failure::Retry, ms(0), plenty, Some(ms(200))),
            (3, Failure::Retry, ms(40), plenty, Some(ms(440))),
            // Three retries, then the batch is given up.
            (4, Failure::Retry, ms(0), plenty, None),
            (0, Failure::Retry, ms(0), plenty, None),
            (1, Failure::Final, ms(0), plenty, None),
            // The collector's delay when longer than the usual one, never shorter.
            (
                1,
                Failure::RetryAfter(ms(1500)),
                ms(10),
                plenty,
                Some(ms(1510)),
            ),
            (3, Failure::RetryAfter(ms(50)), ms(0), plenty, Some(ms(400))),
            // A wait that would use up the budget is not waited.
            (1, Failure::Retry, ms(0), ms(100), None),
            (1, Failure::Retry, ms(0), ms(101), Some(ms(100))),
            (
                2,
                Failure::RetryAfter(Duration::from_secs(30)),
                ms(0),
                plenty,
                None,
            ),
        ] {
            assert_eq!(
                backoff(retry, failure, jitter, left),
                want,
                "retry {retry} {failure:?} jitter {jitter:?} left {left:?}"
            );
        }
    }

    #[test]
    fn a_grpc_error_names_its_code_and_local_cause_and_never_the_collectors_text() {
        let from_collector = tonic::Status::permission_denied("bad token sk-CANARY-123");
        let e = grpc_error(&from_collector);
        assert_eq!(e, "OTLP/gRPC: PermissionDenied");
        let local = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        let e = grpc_error(&local);
        assert!(e.starts_with("OTLP/gRPC: "), "{e}");
        assert!(e.contains("connection refused"), "{e}");
    }

    #[test]
    fn percent_decoding() {
        for (s, want) in [
            ("plain", Some(&b"plain"[..])),
            ("a%20b", Some(b"a b")),
            ("%2C%3d", Some(b",=")),
            ("%e2%9c%93", Some("✓".as_bytes())),
            ("%", None),
            ("%4", None),
            ("%zz", None),
        ] {
            assert_eq!(percent_decode(s).as_deref(), want, "{s}");
        }
    }

    #[test]
    fn a_header_value_that_cannot_be_sent_is_named_without_its_value() {
        let otlp = OtlpConfig::new("http://c:4317", OtlpProtocol::Grpc);
        let policy = HashMap::from([("x-api-key".to_owned(), "secret\nvalue".to_owned())]);
        let err = TraceClient::new(&otlp, &policy, |_| None).unwrap_err();
        assert!(err.contains("x-api-key"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
