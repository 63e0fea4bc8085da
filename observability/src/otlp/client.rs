//! Sending an encoded trace request to a collector, one call per batch, no retries (the
//! worker counts a failed batch and goes on): OTLP/gRPC through tonic's generic client with a
//! codec that writes the bytes as they are, OTLP/HTTP through the hyper client the SDK's own
//! exporter uses.
//!
//! Headers are the destination's (from the policy), then those of
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (or, when it is unset, `OTEL_EXPORTER_OTLP_HEADERS`),
//! which replace a policy header of the same name: what the SDK's exporters did. Errors
//! never carry a header's value.

use std::collections::HashMap;

use bytes::{BufMut as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_http::HttpClient as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use sluice_config::{OtlpConfig, OtlpProtocol};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// One destination's connection to its collector.
pub enum TraceClient {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        headers: HeaderMap,
    },
    Http {
        /// Boxed: hyper's client is most of the enum's size, and there is one per destination.
        client: Box<HyperClient>,
        endpoint: http::Uri,
        headers: HeaderMap,
    },
}

impl std::fmt::Debug for TraceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc { .. } => "TraceClient::Grpc",
            Self::Http { .. } => "TraceClient::Http",
        })
    }
}

impl TraceClient {
    /// `headers` are the destination's, values already read from the environment; `env`
    /// looks up the standard variables (the process environment, or a test's).
    pub fn new(
        otlp: &OtlpConfig,
        headers: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (k, v) in headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("`{k}` is not a valid header name"))?;
            // Never echo the value: it is usually a credential.
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("the value of header `{k}` is not valid in a header"))?;
            map.insert(name, value);
        }
        if let Some(list) = env(TRACES_HEADERS).or_else(|| env(HEADERS)) {
            for (name, value) in env_headers(&list) {
                map.insert(name, value);
            }
        }
        match otlp.protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(otlp.endpoint.clone())
                    .map_err(|e| format!("invalid OTLP endpoint: {e}"))?
                    .timeout(otlp.timeout);
                if otlp.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_enabled_roots())
                        .map_err(|e| format!("OTLP TLS: {e}"))?;
                }
                Ok(Self::Grpc {
                    grpc: tonic::client::Grpc::new(endpoint.connect_lazy()),
                    headers: map,
                })
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
                Ok(Self::Http {
                    client: Box::new(HyperClient::with_default_connector(otlp.timeout, None)),
                    endpoint,
                    headers: map,
                })
            }
        }
    }

    /// Sends one request; `Ok` holds the number of spans the collector said it rejected.
    pub async fn export(&mut self, body: Vec<u8>) -> Result<u64, String> {
        let response = match self {
            Self::Grpc { grpc, headers } => {
                grpc.ready()
                    .await
                    .map_err(|e| format!("OTLP/gRPC connection: {e}"))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() =
                    tonic::metadata::MetadataMap::from_headers(headers.clone());
                grpc.unary(
                    request,
                    http::uri::PathAndQuery::from_static(EXPORT_PATH),
                    Passthrough,
                )
                .await
                .map_err(|s| format!("OTLP/gRPC: {:?}: {}", s.code(), s.message()))?
                .into_inner()
            }
            Self::Http {
                client,
                endpoint,
                headers,
            } => {
                let mut request = http::Request::post(endpoint.clone())
                    .body(Bytes::from(body))
                    .map_err(|e| e.to_string())?;
                *request.headers_mut() = headers.clone();
                let response = client
                    .send_bytes(request)
                    .await
                    .map_err(|e| format!("OTLP/HTTP: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("OTLP/HTTP: status {}", response.status().as_u16()));
                }
                // An empty or unreadable body is a success that says nothing more.
                ExportTraceServiceResponse::decode(response.into_body()).unwrap_or_default()
            }
        };
        Ok(response
            .partial_success
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)))
    }
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
        let value = HeaderValue::try_from(percent_decode(v)?).ok()?;
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
    type Encode = Vec<u8>;
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
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
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
            let TraceClient::Http { headers, .. } =
                TraceClient::new(&otlp, &policy, |k| env.get(k).cloned()).unwrap()
            else {
                panic!("an HTTP client");
            };
            let mut pairs: Vec<(String, String)> = headers
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
                " x-api-key = from%20env , bad header=x, empty=, =v,x-extra=%41"
            )]),
            [
                ct.clone(),
                own("x-api-key", "from env"),
                own("x-extra", "A"),
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
