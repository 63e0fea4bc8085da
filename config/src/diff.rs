//! What changed between two validated policies: the reload's summary line, its refusal of
//! restart-only settings, and `sluice check --diff`.
//!
//! Named things (providers, models, routes, keys, admin tokens) are compared by name, so a
//! renamed route reads as one removed and one added. Summaries name things, never values: a
//! provider whose key (read from its environment variable) changed is "changed", and nothing
//! more is said about it.

use std::collections::BTreeMap;
use std::fmt;

use crate::Config;

/// Names added, removed and changed in one section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// The difference between the serving policy and a candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    /// Settings read once at start that differ; a reload with any of these is refused.
    pub restart_only: Vec<&'static str>,
    /// Other settings (outside the named sections) that differ, by path.
    pub settings: Vec<&'static str>,
    pub providers: Changes,
    pub models: Changes,
    pub routes: Changes,
    pub keys: Changes,
    pub admin_tokens: Changes,
    pub tenants: Changes,
}

// === impl Changes ===

impl Changes {
    fn of<T: PartialEq>(old: &BTreeMap<&str, &T>, new: &BTreeMap<&str, &T>) -> Self {
        let mut c = Self::default();
        for (name, v) in new {
            match old.get(name) {
                None => c.added.push((*name).to_owned()),
                Some(o) if o != v => c.changed.push((*name).to_owned()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| (*n).to_owned())
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Whether `name` was added or changed (so its runtime state starts fresh).
    pub fn touches(&self, name: &str) -> bool {
        self.added.iter().chain(&self.changed).any(|n| n == name)
    }
}

// === impl PolicyDiff ===

impl PolicyDiff {
    pub fn between(old: &Config, new: &Config) -> Self {
        let (o, n) = (&old.server, &new.server);
        let mut restart_only = Vec::new();
        let mut settings = Vec::new();
        let mut check = |differs: bool, path: &'static str, restart: bool| {
            if differs {
                if restart {
                    restart_only.push(path);
                } else {
                    settings.push(path);
                }
            }
        };
        check(o.listen != n.listen, "server.listen", true);
        check(
            o.admin_listen != n.admin_listen,
            "server.admin_listen",
            true,
        );
        check(o.threads != n.threads, "server.threads", true);
        check(
            o.upstream_pool_size != n.upstream_pool_size,
            "server.upstream_pool_size",
            true,
        );
        check(
            o.cache_max_bytes != n.cache_max_bytes,
            "server.cache_max_bytes",
            true,
        );
        check(o.data_dir != n.data_dir, "server.data_dir", true);
        // OTLP destinations follow the policy: the recorder rebuilds them on a reload.
        check(
            old.telemetry.otlp != new.telemetry.otlp,
            "telemetry.otlp",
            false,
        );
        check(
            old.telemetry.destinations != new.telemetry.destinations,
            "telemetry.destinations",
            false,
        );
        check(
            old.telemetry.resource != new.telemetry.resource,
            "telemetry.resource",
            false,
        );
        check(
            o.max_body_bytes != n.max_body_bytes,
            "server.max_body_bytes",
            false,
        );
        check(
            o.max_response_bytes != n.max_response_bytes,
            "server.max_response_bytes",
            false,
        );
        check(
            o.shutdown_grace != n.shutdown_grace,
            "server.shutdown_grace",
            false,
        );
        check(o.reload != n.reload, "server.reload", false);
        check(
            o.max_json_depth != n.max_json_depth,
            "server.max_json_depth",
            false,
        );
        check(
            o.header_timeout != n.header_timeout,
            "server.header_timeout",
            false,
        );
        check(
            o.body_timeout != n.body_timeout,
            "server.body_timeout",
            false,
        );
        check(
            o.keepalive_timeout != n.keepalive_timeout,
            "server.keepalive_timeout",
            false,
        );
        check(
            o.max_header_bytes != n.max_header_bytes,
            "server.max_header_bytes",
            false,
        );
        check(
            o.max_connections != n.max_connections,
            "server.max_connections",
            false,
        );
        // The listeners are built at start; the files they name are reloaded when they change.
        check(o.tls != n.tls, "server.tls", true);
        check(o.admin_tls != n.admin_tls, "server.admin_tls", true);
        // Read by each new connection.
        check(o.http2 != n.http2, "server.http2", false);
        let (ot, nt) = (&old.telemetry, &new.telemetry);
        check(ot.sample != nt.sample, "telemetry.sample", false);
        check(
            ot.capture_content != nt.capture_content,
            "telemetry.capture_content",
            false,
        );
        check(
            ot.max_content_bytes != nt.max_content_bytes,
            "telemetry.max_content_bytes",
            false,
        );
        check(ot.redact != nt.redact, "telemetry.redact", false);
        check(
            ot.access_log != nt.access_log,
            "telemetry.access_log",
            false,
        );
        check(
            ot.access_log_anonymous_per_s != nt.access_log_anonymous_per_s,
            "telemetry.access_log_anonymous_per_s",
            false,
        );

        check(old.slo != new.slo, "slo", false);
        check(old.incidents != new.incidents, "incidents", false);
        // The connection to Redis is made once, at start.
        check(old.state != new.state, "state", true);
        check(old.aiops != new.aiops, "aiops", false);

        let providers = Changes::of(&by_name(&old.providers), &by_name(&new.providers));
        let models = Changes::of(&by_name(&old.models), &by_name(&new.models));
        Self {
            restart_only,
            settings,
            providers,
            models,
            routes: Changes::of(
                &named(&old.routes, |r| &r.name),
                &named(&new.routes, |r| &r.name),
            ),
            keys: Changes::of(
                &named(&old.keys, |k| &k.name),
                &named(&new.keys, |k| &k.name),
            ),
            admin_tokens: Changes::of(
                &named(&old.admin.tokens, |t| &t.name),
                &named(&new.admin.tokens, |t| &t.name),
            ),
            tenants: Changes::of(&by_name(&old.tenants), &by_name(&new.tenants)),
        }
    }

    /// Nothing differs at all.
    pub fn is_empty(&self) -> bool {
        self.restart_only.is_empty()
            && self.settings.is_empty()
            && self.providers.is_empty()
            && self.models.is_empty()
            && self.routes.is_empty()
            && self.keys.is_empty()
            && self.admin_tokens.is_empty()
            && self.tenants.is_empty()
    }

    /// One line, e.g. `routes +fast ~chat; keys -old; settings telemetry.sample`; names only.
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

fn by_name<T>(m: &BTreeMap<String, T>) -> BTreeMap<&str, &T> {
    m.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

fn named<T>(items: &[T], name: fn(&T) -> &String) -> BTreeMap<&str, &T> {
    items.iter().map(|t| (name(t).as_str(), t)).collect()
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut parts: Vec<String> = Vec::new();
        for (section, c) in [
            ("providers", &self.providers),
            ("models", &self.models),
            ("routes", &self.routes),
            ("keys", &self.keys),
            ("admin tokens", &self.admin_tokens),
            ("tenants", &self.tenants),
        ] {
            if c.is_empty() {
                continue;
            }
            let names = c
                .added
                .iter()
                .map(|n| format!("+{n}"))
                .chain(c.removed.iter().map(|n| format!("-{n}")))
                .chain(c.changed.iter().map(|n| format!("~{n}")))
                .collect::<Vec<_>>()
                .join(" ");
            parts.push(format!("{section} {names}"));
        }
        if !self.settings.is_empty() {
            parts.push(format!("settings {}", self.settings.join(" ")));
        }
        if !self.restart_only.is_empty() {
            parts.push(format!(
                "restart-only settings {}",
                self.restart_only.join(" ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        crate::load_str_with_env(yaml, "t.yaml", &|_| Some("sk-secret-value".into()))
            .expect("valid")
            .config
    }

    const BASE: &str = r#"
server: { listen: 127.0.0.1:8080, admin_listen: 127.0.0.1:9464 }
providers:
  up: { kind: openai, base_url: "http://127.0.0.1:9000/v1", api_key_env: KEY }
models:
  a: { provider: up }
  b: { provider: up }
routes:
  - { name: chat, match: { model: gpt }, targets: [ { model: a } ] }
  - { name: other, match: { model: o }, targets: [ { model: b } ] }
keys:
  - { name: k1, key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213", tenant: t }
"#;

    #[test]
    fn identical_policies_have_no_changes() {
        let d = PolicyDiff::between(&load(BASE), &load(BASE));
        assert!(d.is_empty(), "{d}");
        assert_eq!(d.summary(), "no changes");
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let next = BASE
            .replace(
                "targets: [ { model: b } ]",
                "targets: [ { model: b } ], retry: { max_attempts: 1 }",
            )
            .replace(
                "  - { name: chat, match: { model: gpt }, targets: [ { model: a } ] }\n",
                "",
            )
            .replace(
                "  b: { provider: up }\n",
                "  b: { provider: up }\n  c: { provider: up }\n",
            )
            .replace("tenant: t }", "tenant: t, limits: { rpm: 5 } }");
        let d = PolicyDiff::between(&load(BASE), &load(&next));
        assert_eq!(d.routes.removed, ["chat"]);
        assert_eq!(d.routes.changed, ["other"]);
        assert_eq!(d.models.added, ["c"]);
        assert_eq!(d.keys.changed, ["k1"]);
        assert!(d.keys.touches("k1") && !d.routes.touches("chat"));
        assert!(d.restart_only.is_empty());
        assert_eq!(d.summary(), "models +c; routes -chat ~other; keys ~k1");
    }

    #[test]
    fn restart_only_settings_are_named_and_secrets_never_are() {
        let next = BASE
            .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8081")
            .replace("server: {", "server: { threads: 4, max_body_bytes: 4096,");
        let d = PolicyDiff::between(&load(BASE), &load(&next));
        assert_eq!(d.restart_only, ["server.listen", "server.threads"]);
        assert_eq!(d.settings, ["server.max_body_bytes"]);
        let mut rotated = load(BASE);
        let old = rotated.clone();
        if let Some(p) = rotated.providers.get_mut("up")
            && let crate::ProviderKind::OpenAi { api_key, .. } = &mut p.kind
        {
            *api_key = Some(crate::Secret::new("sk-rotated"));
        }
        let d = PolicyDiff::between(&old, &rotated);
        assert_eq!(d.providers.changed, ["up"]);
        assert!(!d.summary().contains("sk-"), "{d}");
    }
}
