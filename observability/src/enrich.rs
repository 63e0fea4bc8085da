//! Enrichment: the resource every exported span and log record carries (who exported it),
//! and the tenant's own attributes on the records of its requests.
//!
//! The resource is put together from, lowest precedence first: `OTEL_RESOURCE_ATTRIBUTES`,
//! the defaults (`service.name`, `service.version`, `service.instance.id` as
//! `{hostname}-{pid}`), then `telemetry.resource` of the policy. Pure functions; the caller
//! reads the environment and the host name.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use sluice_config::ResourceConfig;

use crate::semconv as sc;

/// `deployment.environment.name`.
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
/// `service.instance.id`.
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `cloud.region`.
pub const CLOUD_REGION: &str = "cloud.region";

/// What the process knows about itself, for the defaults.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostname: String,
    pub pid: u32,
    /// `OTEL_RESOURCE_ATTRIBUTES`, when set.
    pub otel_resource_attributes: Option<String>,
}

impl Host {
    /// This process: the kernel's host name (or `HOSTNAME`), its pid, its environment.
    pub fn current() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "sluice".to_owned());
        Self {
            hostname,
            pid: std::process::id(),
            otel_resource_attributes: std::env::var("OTEL_RESOURCE_ATTRIBUTES").ok(),
        }
    }
}

/// The resource's attributes in order of precedence resolved: one value per key, sorted by
/// key so the result is stable.
pub fn resource_attributes(cfg: &ResourceConfig, host: &Host) -> Vec<(String, String)> {
    let mut out: std::collections::BTreeMap<String, String> = host
        .otel_resource_attributes
        .as_deref()
        .map(parse_otel_resource_attributes)
        .unwrap_or_default()
        .into_iter()
        .collect();
    out.insert(sc::SERVICE_NAME.to_owned(), "sluice".to_owned());
    out.insert(
        sc::SERVICE_VERSION.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    out.entry(SERVICE_INSTANCE_ID.to_owned())
        .or_insert_with(|| format!("{}-{}", host.hostname, host.pid));
    for (k, v) in &cfg.attributes {
        out.insert(k.clone(), v.clone());
    }
    let named = [
        (DEPLOYMENT_ENVIRONMENT_NAME, &cfg.environment),
        (SERVICE_INSTANCE_ID, &cfg.instance_id),
        (CLOUD_REGION, &cfg.region),
        (sc::SERVICE_VERSION, &cfg.version),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out.into_iter().collect()
}

/// The SDK resource of [`resource_attributes`].
pub fn resource(cfg: &ResourceConfig, host: &Host) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            resource_attributes(cfg, host)
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v)),
        )
        .build()
}

/// `key1=value1,key2=value2` with `%`-encoded characters, as the OpenTelemetry environment
/// specification writes `OTEL_RESOURCE_ATTRIBUTES`. A malformed pair is skipped (the spec
/// says to discard the whole value on error; one typo should not cost every attribute, and
/// the policy's own attributes are the place for ones that matter).
pub fn parse_otel_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (percent_decode(k.trim())?, percent_decode(v.trim())?);
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The tenant's attributes as span/log attributes.
pub fn tenant_attributes(
    attrs: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<KeyValue> {
    attrs
        .into_iter()
        .flatten()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(env: Option<&str>) -> Host {
        Host {
            hostname: "gw-a".into(),
            pid: 42,
            otel_resource_attributes: env.map(str::to_owned),
        }
    }

    fn get<'a>(attrs: &'a [(String, String)], k: &str) -> Option<&'a str> {
        attrs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// (name, policy, `OTEL_RESOURCE_ATTRIBUTES`, expected key → value or absent).
    type Case = (
        &'static str,
        ResourceConfig,
        Option<&'static str>,
        &'static [(&'static str, Option<&'static str>)],
    );

    #[test]
    fn defaults_environment_and_policy_in_order_of_precedence() {
        let cases: [Case; 4] = [
            (
                "defaults only",
                ResourceConfig::default(),
                None,
                &[
                    ("service.name", Some("sluice")),
                    ("service.instance.id", Some("gw-a-42")),
                    ("deployment.environment.name", None),
                    ("service.version", Some(env!("CARGO_PKG_VERSION"))),
                ],
            ),
            (
                "the environment adds and sets the instance id, never the service name",
                ResourceConfig::default(),
                Some("service.instance.id=pod-7, team=infra%2Cops,service.name=other,broken"),
                &[
                    ("service.instance.id", Some("pod-7")),
                    ("team", Some("infra,ops")),
                    ("service.name", Some("sluice")),
                ],
            ),
            (
                "the policy wins over the environment",
                ResourceConfig {
                    environment: Some("prod".into()),
                    instance_id: Some("gw-1".into()),
                    region: Some("eu-west-1".into()),
                    version: Some("2026.12".into()),
                    attributes: [("team".to_owned(), "platform".to_owned())].into(),
                },
                Some("team=infra,deployment.environment.name=dev"),
                &[
                    ("deployment.environment.name", Some("prod")),
                    ("service.instance.id", Some("gw-1")),
                    ("cloud.region", Some("eu-west-1")),
                    ("service.version", Some("2026.12")),
                    ("team", Some("platform")),
                ],
            ),
            (
                "named fields win over free attributes of the same key",
                ResourceConfig {
                    region: Some("us-east-1".into()),
                    attributes: [("cloud.region".to_owned(), "x".to_owned())].into(),
                    ..ResourceConfig::default()
                },
                None,
                &[("cloud.region", Some("us-east-1"))],
            ),
        ];
        for (name, cfg, env, want) in cases {
            let got = resource_attributes(&cfg, &host(env));
            for (k, v) in want {
                assert_eq!(get(&got, k), *v, "{name}: {k}");
            }
        }
    }

    #[test]
    fn otel_resource_attributes_parsing() {
        assert_eq!(
            parse_otel_resource_attributes("a=1,b = two ,c=%41%2c,=x,d,e=%zz,f="),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "two".to_owned()),
                ("c".to_owned(), "A,".to_owned()),
                ("f".to_owned(), String::new()),
            ]
        );
        assert!(parse_otel_resource_attributes("").is_empty());
    }
}
