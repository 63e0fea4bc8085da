//! The JSON Schema of the policy file ([`json_schema`]) against the parser and validation.
//!
//! Every check is driven by walking the schema, so a field added to `raw.rs` (or to the
//! schema) without the other side fails a test:
//! - each schema object lists exactly the fields the parser's `deny_unknown_fields` names;
//! - one policy uses every field: it loads, validates, and is the base for the checks below;
//! - removing a field and setting it to `null` agree (optional fields) and both fail
//!   (required ones), in `sluice check` and in the schema alike;
//! - documented defaults give the same `Config` as leaving the field out;
//! - bounds, and enum values, are accepted and refused exactly where validation does;
//! - shipped policies validate; invalid fixtures are refused where a schema can tell;
//! - `config/policy.schema.json` is current (`SLUICE_BLESS=1` rewrites it, and still fails).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sluice_config::{Config, Diagnostic, Error, json_schema, json_schema_text, load_str_with_env};

/// A field name no section has.
const UNKNOWN: &str = "zz_unknown";
/// A value no enum has.
const BOGUS: &str = "zz_bogus";

/// A policy that sets every field of the schema at least once (checked by
/// `the_every_field_policy_loads_validates_and_covers_the_schema`), with values that are not
/// the defaults so that the default checks change something.
const EVERY_FIELD: &str = r#"
server:
  listen: 0.0.0.0:8081
  admin_listen: 127.0.0.1:9465
  max_body_bytes: 1048576
  max_response_bytes: 2097152
  threads: 4
  shutdown_grace: 30s
  upstream_pool_size: 64
  cache_max_bytes: 1048576
  reload: { watch: false, interval: 2s }
  max_json_depth: 64
  header_timeout: 5s
  body_timeout: 30s
  keepalive_timeout: 20s
  max_header_bytes: 32768
  max_connections: 500
  data_dir: /var/lib/sluice
  tls: { cert: /etc/sluice/tls.crt, key: /etc/sluice/tls.key, client_ca: /etc/sluice/clients.pem }
  admin_tls: { cert: /etc/sluice/admin.crt, key: /etc/sluice/admin.key, client_ca: /etc/sluice/ops-ca.pem }
  http2: { h2c: true, max_concurrent_streams: 50 }
telemetry:
  otlp:
    endpoint: http://127.0.0.1:4317
    protocol: grpc
    timeout: 5s
    queue_size: 1024
    batch_size: 128
    export_interval: 2s
  sample: { head_ratio: 0.1, keep: [error, slow], slow: 5s, expensive_usd: 0.5 }
  capture_content: true
  max_content_bytes: 4096
  redact: [email, { regex: "ACME-[0-9]{6}" }]
  access_log: false
  access_log_anonymous_per_s: 5
  destinations:
    - name: canary
      endpoint: http://127.0.0.1:4318
      protocol: http
      timeout: 3s
      queue_size: 256
      batch_size: 64
      export_interval: 500ms
      headers_env: { authorization: CANARY_TOKEN }
      sampling: all
      filter: { routes: [chat], tenants: [acme], outcomes: [ok, timeout] }
      signals: [traces, logs]
  resource:
    environment: production
    instance_id: gw-1
    region: eu-west-1
    version: 2026.12.1
    attributes: { team: platform }
providers:
  openai:
    kind: openai
    base_url: https://api.example.com/v1
    api_key_env: OPENAI_API_KEY
    connect_timeout: 3s
    headers: { OpenAI-Organization: org-123, X-Trace-Token: { env: OPENAI_API_KEY } }
    ca_file: /etc/ssl/corp-ca.pem
    ca_replaces_roots: true
    proxy: { url: "http://proxy.corp:3128", credentials_env: PROXY_CREDS, no_proxy: [.internal, 10.0.0.0/8] }
    pool_size: 16
    idle_timeout: 30s
    tcp_keepalive: 15s
    tls_server_name: api.example.com
    compat: { stream_usage: false, max_tokens_field: max_tokens, developer_as_system: true, drop_fields: [parallel_tool_calls] }
    http_version: auto
  local: { kind: mock, ttft_ms: 10, tokens_per_s: 500 }
  claude:
    kind: anthropic
    base_url: https://anthropic.example.com
    api_key_env: ANTHROPIC_API_KEY
    connect_timeout: 2s
    anthropic_version: 2024-01-01
    default_max_tokens: 2048
  vertex:
    kind: gemini
    api_key_env: VERTEX_ACCESS_TOKEN
    api_version: v1beta1
    project: acme-prod
    location: us-central1
  azure:
    kind: azure_openai
    base_url: https://acme.openai.azure.com
    api_key_env: AZURE_OPENAI_API_KEY
    deployment: gpt-4o-prod
    api_version: 2024-10-21
  aws:
    kind: bedrock
    region: eu-west-1
    aws_access_key_id_env: ACME_AWS_ACCESS_KEY_ID
    aws_secret_access_key_env: ACME_AWS_SECRET_ACCESS_KEY
    aws_session_token_env: ACME_AWS_SESSION_TOKEN
models:
  gpt-4o:
    provider: openai
    upstream_model: gpt-4o-2024-08-06
    kind: chat
    pricing: { input: 2.5, output: 10, cached_input: 1.25, cache_write_input: 3.125 }
  mock-chat: { provider: local }
  mock-embed: { provider: local, kind: embedding }
routes:
  - name: chat
    match: { model: [gpt-4o, gpt-4] }
    targets: [ { model: gpt-4o, weight: 3 }, { model: mock-chat } ]
    fallbacks: [ mock-chat ]
    retry:
      max_attempts: 2
      on: [connect, "429"]
      max_retry_after: 1s
      budget: { ratio: 0.5, min_per_s: 5 }
    timeouts: { ttft: 20s, idle: 10s, total: 120s }
    telemetry: { slow: 15s }
    cache: { ttl: 10m, only_deterministic: false, max_stale: 1h }
    balance: p2c
    health:
      consecutive_failures: 3
      failure_ratio: 0.3
      window: 1m
      min_requests: 20
      base_ejection: 5s
      max_ejection: 2m
      max_ejected_share: 0.3
    judge:
      model: mock-chat
      sample: 0.25
      always: { remediated: false, downgraded: false, per_minute: 10 }
      rubric: { name: tone, text: "Is the answer polite?" }
      max_capture_bytes: 4096
      concurrency: 2
      timeout: 10s
      rpm: 60
      usd_per_day: 5
    slos:
      - name: availability
        objective: 99.5
        window: 7d
        sli: errors
        min_events: 20
        runbook_url: https://runbooks.example.com/chat
      - { name: fast-start, objective: 95, sli: { ttft_below: 2s } }
      - { name: quality, objective: 90, sli: { judge_score_at_least: 0.7 } }
    remediation:
      - name: chat-failover
        when: { slo: availability, burn: { window: 5m, above: 10 }, no_healthy_target: true }
        do: failover
        hold: 5m
        cooldown: 2m
        probe_share: 0.1
        max_share: 0.5
        dry_run: true
        runbook_url: https://runbooks.example.com/failover
      - name: chat-faster
        when: { slo: fast-start, burn: ticket }
        do: { downgrade_to: [mock-chat] }
        guard: { slo: quality, burn: ticket, no_healthy_target: null }
      - when: { slo: availability }
        do: { shed: { max_priority: 3 } }
      - name: chat-slow-start
        when: { anomaly: ttft, min_score: 6 }
        do: { downgrade_to: [mock-chat] }
        guard: { anomaly: error_ratio, min_score: 3 }
  - name: fast
    match: { header: { name: x-sluice-route, value: fast } }
    targets: [ { model: mock-chat } ]
  - name: embed
    match: { model: text-embedding }
    targets: [ { model: mock-embed } ]
keys:
  - name: app
    key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213"
    tenant: acme
    limits: { rpm: 600, tpm: 200000 }
    models: [gpt-4o, mock-chat]
    routes: [mock-chat]
    priority: 7
    expires: 2030-01-31T00:00:00Z
admin:
  tokens:
    - name: ops
      token_sha256: "6f743bc217cf070fa7f96c0f2db66b0d53bc31466bb30b846ce21068488543c7"
tenants:
  acme:
    limits: { rpm: 1000, tpm: 500000 }
    budget: { usd_per_day: 50, usd_per_month: 1000 }
    attributes: { team: payments }
slo: { window_scale: 0.5, evaluate_every: 2s, snapshot_every: 1m }
incidents:
  alertmanager: { url: "http://alertmanager:9093", bearer_env: OPENAI_API_KEY }
  webhook: { url: "https://hooks.example.com/sluice", bearer_env: HOOK_TOKEN }
state:
  redis:
    url: redis://127.0.0.1:6379/1
    password_env: REDIS_PASSWORD
    key_prefix: "test:"
    timeout: 20ms
    fail: closed
    local_allowance: 10
    share_cache: true
aiops:
  enabled: true
  interval: 30s
  window: 4
  k: 6
  hold: 1m
  clear: 2m
  min_events: 20
  warmup: 10
  relearn_after: 2h
  max_tenants: 50
  group_window: 2m
"#;

/// Fixtures under tests/fixtures/invalid whose problems a JSON Schema cannot see, and why.
/// Every other fixture must fail schema validation.
const NOT_SCHEMA_DETECTABLE: &[(&str, &str)] = &[
    (
        "duplicate_names.yaml",
        "route names, key names and key hashes must be unique across list items; \
         `uniqueItems` only compares whole items",
    ),
    (
        "duplicate_route_match.yaml",
        "a model name matched by two routes is a relation between list items",
    ),
    (
        "listen_equals_admin.yaml",
        "compares the values of two fields",
    ),
    (
        "listen_overlaps_admin.yaml",
        "compares the values of two fields (same port, one on all addresses)",
    ),
    (
        "mixed_kinds_in_route.yaml",
        "a route's kind comes from the catalog entries its targets name",
    ),
    (
        "unknown_provider_reference.yaml",
        "a model's provider must be a key of `providers`: a reference",
    ),
    (
        "unknown_target_model.yaml",
        "targets and fallbacks must be keys of `models`: references",
    ),
];

/// Fixtures that are not a YAML document at all, so there is nothing to apply a schema to.
const NOT_A_DOCUMENT: &[(&str, &str)] = &[
    ("syntax_error.yaml", "a YAML syntax error"),
    (
        "duplicate_yaml_key.yaml",
        "a mapping with the same key twice is refused by the YAML parser",
    ),
];

// === helpers ===

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> Option<String> {
    (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned())
}

/// YAML as a schema-aware editor sees it. Non-finite floats (`.inf`) become strings, which
/// fail `type: number` just as validation refuses them.
fn yaml_to_json(src: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    };
    serde_saphyr::from_str_with_options(src, options).map_err(|e| e.to_string())
}

fn every_field() -> Value {
    yaml_to_json(EVERY_FIELD).expect("the every-field policy is YAML")
}

/// [`every_field`] for the tests that edit it, which prove nothing unless it is valid to begin
/// with (`the_every_field_policy_loads_validates_and_covers_the_schema` says why not).
fn base(v: &jsonschema::Validator) -> Value {
    let doc = every_field();
    assert!(
        load(&doc).is_ok() && v.is_valid(&doc),
        "EVERY_FIELD must load and validate before it can be edited"
    );
    doc
}

/// Loads a document through the real parser and validation (JSON is YAML).
fn load(doc: &Value) -> Result<Config, Vec<Diagnostic>> {
    let text = serde_json::to_string(doc).expect("serializes");
    match load_str_with_env(&text, "doc.json", &env) {
        Ok(loaded) => Ok(loaded.config),
        Err(Error::Invalid { diagnostics, .. }) => Err(diagnostics),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&json_schema()).expect("the schema compiles")
}

/// `(instance path, message)` of each schema error.
fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<(String, String)> {
    v.iter_errors(doc)
        .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
        .collect()
}

fn show(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("\n  {d}")).collect()
}

/// One step from a schema node to a child: a fixed field, any entry of a user-named
/// mapping (`providers.<name>`), or any item of a list.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Entry,
    Item,
}

struct Node {
    path: Vec<Step>,
    schema: Value,
}

fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => out.push_str(&format!(".{k}")),
            Step::Entry => out.push_str(".<name>"),
            Step::Item => out.push_str("[]"),
        }
    }
    if out.is_empty() {
        "<root>".to_owned()
    } else {
        out
    }
}

/// Every subschema that describes a value at some position in the file. Constraint-only
/// subschemas (`allOf`, `if`/`then`, `not`) are not positions and are skipped.
fn nodes(root: &Value) -> Vec<Node> {
    fn walk(root: &Value, schema: &Value, path: Vec<Step>, out: &mut Vec<Node>) {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => root
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolvable $ref {r}")),
            None => schema,
        };
        out.push(Node {
            path: path.clone(),
            schema: schema.clone(),
        });
        for (k, child) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let mut p = path.clone();
            p.push(Step::Key(k.clone()));
            walk(root, child, p, out);
        }
        if let Some(child) = schema.get("additionalProperties").filter(|c| c.is_object()) {
            let mut p = path.clone();
            p.push(Step::Entry);
            walk(root, child, p, out);
        }
        if let Some(child) = schema.get("items").filter(|c| c.is_object()) {
            let mut p = path.clone();
            p.push(Step::Item);
            walk(root, child, p, out);
        }
        for key in ["oneOf", "anyOf"] {
            for child in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(root, child, path.clone(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, Vec::new(), &mut out);
    out
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A section with fixed fields (as opposed to a mapping of user-chosen names).
fn is_section(node: &Node) -> bool {
    types(&node.schema).contains(&"object") && node.schema.get("properties").is_some()
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn is_required(schema: &Value, key: &str) -> bool {
    schema["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|k| k == key))
}

/// A document that has `leaf` at `path` and nothing else: mappings get an entry `x`, lists
/// one item.
fn nest(path: &[Step], leaf: Value) -> Value {
    path.iter().rev().fold(leaf, |inner, step| match step {
        Step::Key(k) => Value::Object(Map::from_iter([(k.clone(), inner)])),
        Step::Entry => json!({ "x": inner }),
        Step::Item => json!([inner]),
    })
}

/// The path `nest` builds, as diagnostics spell it.
fn nested_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        let name = match step {
            Step::Key(k) => k.as_str(),
            Step::Entry => "x",
            Step::Item => {
                out.push_str("[0]");
                continue;
            }
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// JSON pointers of the values found at `path` in `doc` (absent and `null` ones skipped).
fn occurrences(doc: &Value, path: &[Step]) -> Vec<String> {
    let mut found = vec![(String::new(), doc)];
    for step in path {
        found = found
            .into_iter()
            .flat_map(|(ptr, v)| -> Vec<(String, &Value)> {
                match step {
                    Step::Key(k) => v
                        .as_object()
                        .and_then(|o| o.get(k))
                        .filter(|c| !c.is_null())
                        .map(|c| (format!("{ptr}/{}", escape(k)), c))
                        .into_iter()
                        .collect(),
                    Step::Entry => v
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, c)| (format!("{ptr}/{}", escape(k)), c))
                        .collect(),
                    Step::Item => v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, c)| (format!("{ptr}/{i}"), c))
                        .collect(),
                }
            })
            .collect();
    }
    found.into_iter().map(|(ptr, _)| ptr).collect()
}

/// Where a scalar described at some schema path can be edited in a document.
#[derive(Debug)]
enum Site {
    /// A field that is present in the object at this pointer.
    Field { object: String, key: String },
    /// A list whose items the schema path describes; edits replace the whole list.
    List { list: String },
}

fn sites(doc: &Value, path: &[Step]) -> Vec<Site> {
    match path.split_last() {
        Some((Step::Key(k), parent)) => occurrences(doc, parent)
            .into_iter()
            .filter(|o| doc.pointer(o).and_then(|v| v.get(k)).is_some())
            .map(|object| Site::Field {
                object,
                key: k.clone(),
            })
            .collect(),
        Some((Step::Item, parent)) => occurrences(doc, parent)
            .into_iter()
            .filter(|o| doc.pointer(o).is_some_and(Value::is_array))
            .map(|list| Site::List { list })
            .collect(),
        _ => Vec::new(),
    }
}

impl Site {
    fn pointer(&self) -> String {
        match self {
            Site::Field { object, key } => format!("{object}/{}", escape(key)),
            Site::List { list } => list.clone(),
        }
    }

    /// The site as diagnostics spell paths: `/routes/0/retry` → `routes[0].retry`.
    fn diagnostic_path(&self) -> String {
        pointer_to_path(&self.pointer())
    }

    fn set(&self, doc: &Value, value: Value) -> Value {
        let mut doc = doc.clone();
        match self {
            Site::Field { object, key } => {
                let o = doc.pointer_mut(object).and_then(Value::as_object_mut);
                o.expect("site is an object").insert(key.clone(), value);
            }
            Site::List { list } => {
                *doc.pointer_mut(list).expect("site is a list") = json!([value]);
            }
        }
        doc
    }

    fn remove(&self, doc: &Value) -> Value {
        let mut doc = doc.clone();
        if let Site::Field { object, key } = self {
            let o = doc.pointer_mut(object).and_then(Value::as_object_mut);
            o.expect("site is an object").remove(key);
        }
        doc
    }
}

fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// `routes[0].cache.ttl` → `["routes", "0", "cache", "ttl"]`.
fn segments(path: &str) -> Vec<String> {
    path.split(['.', '['])
        .map(|s| s.trim_end_matches(']').to_owned())
        .filter(|s| !s.is_empty() && s != "<root>")
        .collect()
}

/// Whether one path lies inside the other (a schema's `required` error sits on the parent
/// object, validation's "missing field" too; an unknown field is named in one, not the other).
fn related(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The values a validation message lists as allowed: `(expected a, b or c)`. Separators
/// inside backticks or parentheses (`{ downgrade_to: [model, …] }`, `(windows: 5m, 1h)`) do
/// not split; map forms (`{ … }`) are not enum values.
fn expected_values(message: &str) -> Option<Vec<String>> {
    let start = message.rfind("(expected ")? + "(expected ".len();
    let end = message.rfind(')')?;
    let mut rest = message.get(start..end)?;
    let mut items = vec![String::new()];
    let (mut quoted, mut depth) = (false, 0_usize);
    while let Some(c) = rest.chars().next() {
        if !quoted
            && depth == 0
            && let Some(after) = rest
                .strip_prefix(", ")
                .or_else(|| rest.strip_prefix(" or "))
        {
            items.push(String::new());
            rest = after;
            continue;
        }
        match c {
            '`' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
        items.last_mut()?.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if items.len() < 2 {
        return None;
    }
    Some(
        items
            .iter()
            .map(|v| v.trim().trim_matches('`').to_owned())
            .filter(|v| !v.starts_with('{'))
            .collect(),
    )
}

fn as_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

// === the schema against the parser ===

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!(
            "not a valid 2020-12 schema: {e} at {}",
            e.instance_path().as_str()
        );
    }
    validator();
}

#[test]
fn every_schema_object_lists_exactly_the_parsers_fields() {
    let schema = json_schema();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for node in nodes(&schema) {
        let where_ = render(&node.path);
        if types(&node.schema).contains(&"object") {
            let closed = match node.schema.get("additionalProperties") {
                Some(Value::Bool(false)) => node.schema.get("properties").is_some(),
                Some(Value::Object(_)) => node.schema.get("properties").is_none(),
                _ => false,
            };
            if !closed {
                failures.push(format!(
                    "{where_}: an object needs `properties` with `additionalProperties: false`, \
                     or `additionalProperties` alone for a mapping of names"
                ));
                continue;
            }
        }
        if !is_section(&node) {
            continue;
        }
        for (key, child) in node.schema["properties"].as_object().into_iter().flatten() {
            let described = child.get("description").is_some()
                || child["anyOf"][1].get("description").is_some();
            if !described {
                failures.push(format!("{where_}.{key}: no description"));
            }
        }

        let doc = nest(&node.path, json!({ UNKNOWN: 1 }));
        let diagnostics = match load(&doc) {
            Ok(_) => {
                failures.push(format!("{where_}: the parser took an unknown field"));
                continue;
            }
            Err(d) => d,
        };
        let [d] = diagnostics.as_slice() else {
            failures.push(format!(
                "{where_}: expected one parse error:{}",
                show(&diagnostics)
            ));
            continue;
        };
        let parent = nested_path(&node.path);
        let at_field = if parent.is_empty() {
            UNKNOWN.to_owned()
        } else {
            format!("{parent}.{UNKNOWN}")
        };
        // A hand-written visitor (a `redact` entry) reports at the entry itself.
        if d.path != at_field && d.path != parent {
            failures.push(format!("{where_}: the parser reported elsewhere: {d}"));
            continue;
        }
        let prefix = format!("unknown field `{UNKNOWN}`, expected one of ");
        let Some(list) = d.message.strip_prefix(&prefix) else {
            failures.push(format!("{where_}: not an unknown-field error: {d}"));
            continue;
        };
        let parser: BTreeSet<String> = list.split(", ").map(str::to_owned).collect();
        let ours = property_names(&node.schema);
        if parser != ours {
            failures.push(format!(
                "{where_}: the parser has {:?} that the schema lacks; the schema has {:?} that \
                 the parser lacks",
                parser.difference(&ours).collect::<Vec<_>>(),
                ours.difference(&parser).collect::<Vec<_>>(),
            ));
        }
        checked.push(where_);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked.contains(&"<root>".to_owned()), "{checked:?}");
    assert!(
        checked.len() >= 25,
        "only {} sections checked: {checked:?}",
        checked.len()
    );
}

#[test]
fn the_every_field_policy_loads_validates_and_covers_the_schema() {
    let doc = every_field();
    if let Err(d) = load(&doc) {
        panic!("every-field policy refused:{}", show(&d));
    }
    let errors = schema_errors(&validator(), &doc);
    assert!(errors.is_empty(), "{errors:#?}");

    let schema = json_schema();
    let mut missing = Vec::new();
    for node in nodes(&schema).iter().filter(|n| is_section(n)) {
        let objects = occurrences(&doc, &node.path);
        for key in property_names(&node.schema) {
            let used = objects
                .iter()
                .any(|o| doc.pointer(o).and_then(|v| v.get(&key)).is_some());
            if !used {
                missing.push(format!("{}.{key}", render(&node.path)));
            }
        }
    }
    assert!(missing.is_empty(), "EVERY_FIELD does not set: {missing:?}");
}

#[test]
fn absent_and_null_fields_agree_with_validation() {
    let v = validator();
    let doc = base(&v);
    let schema = json_schema();
    let mut failures = Vec::new();
    let mut checked = 0;
    for node in nodes(&schema).iter().filter(|n| is_section(n)) {
        for key in property_names(&node.schema) {
            let mut path = node.path.clone();
            path.push(Step::Key(key.clone()));
            let required = is_required(&node.schema, &key);
            for site in sites(&doc, &path) {
                let at = site.diagnostic_path();
                let absent = site.remove(&doc);
                let null = site.set(&doc, Value::Null);
                let (absent_loaded, null_loaded) = (load(&absent), load(&null));
                // Both refused counts as agreement: the messages differ (missing vs null).
                if absent_loaded.as_ref().ok() != null_loaded.as_ref().ok() {
                    failures.push(format!("{at}: `null` is not the same as absent"));
                }
                for (what, edited, loaded) in [
                    ("absent", &absent, &absent_loaded),
                    ("null", &null, &null_loaded),
                ] {
                    if required && loaded.is_ok() {
                        failures.push(format!("{at}: required in the schema, yet {what} loads"));
                    }
                    let valid = v.is_valid(edited);
                    if valid != loaded.is_ok() {
                        failures.push(format!(
                            "{at} {what}: schema says {}, sluice says {}",
                            if valid { "valid" } else { "invalid" },
                            match loaded {
                                Ok(_) => "valid".to_owned(),
                                Err(d) => format!("invalid:{}", show(d)),
                            }
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked >= 100, "only {checked} fields checked");
}

#[test]
fn documented_defaults_are_what_validation_uses() {
    let v = validator();
    let doc = base(&v);
    let schema = json_schema();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for node in nodes(&schema) {
        let Some(default) = node.schema.get("default") else {
            continue;
        };
        let where_ = render(&node.path);
        let sites = sites(&doc, &node.path);
        if sites.is_empty() {
            failures.push(format!("{where_}: not set in EVERY_FIELD"));
        }
        for site in sites {
            let at = site.diagnostic_path();
            let absent = load(&site.remove(&doc));
            let explicit_doc = site.set(&doc, default.clone());
            let explicit = load(&explicit_doc);
            match (&absent, &explicit) {
                (Ok(a), Ok(e)) if a == e => {}
                (Ok(_), Ok(_)) => failures.push(format!(
                    "{at}: `{default}` is not what validation uses when it is absent"
                )),
                (_, Err(d)) | (Err(d), _) => failures.push(format!(
                    "{at}: refused with `{default}` or absent:{}",
                    show(d)
                )),
            }
            if !v.is_valid(&explicit_doc) {
                failures.push(format!(
                    "{at}: the schema refuses its own default `{default}`"
                ));
            }
        }
        checked.push(where_);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        checked.len() >= 50,
        "only {} defaults: {checked:?}",
        checked.len()
    );
}

#[test]
fn numeric_bounds_match_validation() {
    let v = validator();
    let doc = base(&v);
    let schema = json_schema();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for node in nodes(&schema) {
        let t = types(&node.schema);
        let integer = t.contains(&"integer");
        // Text fields take numbers too, as names; they have no bounds.
        if (!integer && !t.contains(&"number")) || t.contains(&"string") {
            continue;
        }
        let bound = |k: &str| node.schema.get(k).and_then(Value::as_f64);
        let delta = |b: f64| {
            if integer {
                1.0
            } else {
                1e-3 * b.abs().max(1.0)
            }
        };
        let mut cases: Vec<(f64, bool)> = Vec::new();
        if let Some(min) = bound("minimum") {
            cases.extend([(min, true), (min - delta(min), false)]);
            if integer {
                cases.push((min + 0.5, false));
            }
        }
        if let Some(min) = bound("exclusiveMinimum") {
            cases.extend([(min, false), (min + delta(min), true)]);
        }
        if let Some(max) = bound("maximum") {
            cases.extend([(max, true), (max + delta(max), false)]);
        }
        assert!(
            !cases.is_empty(),
            "{}: a number without bounds",
            render(&node.path)
        );
        let sites = sites(&doc, &node.path);
        if sites.is_empty() {
            failures.push(format!("{}: not set in EVERY_FIELD", render(&node.path)));
        }
        for site in &sites {
            for &(n, ok) in &cases {
                // Whole numbers as JSON integers: validation's whole-number fields take no `1.0`.
                let value = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    json!(n as i64)
                } else {
                    json!(n)
                };
                let edited = site.set(&doc, value.clone());
                let loaded = load(&edited);
                let valid = v.is_valid(&edited);
                if loaded.is_ok() != ok || valid != ok {
                    failures.push(format!(
                        "{} = {value}: expected {}, sluice {}, schema {}",
                        site.diagnostic_path(),
                        if ok { "accepted" } else { "refused" },
                        if loaded.is_ok() { "accepts" } else { "refuses" },
                        if valid { "accepts" } else { "refuses" },
                    ));
                }
            }
        }
        checked.push(render(&node.path));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        checked.len() >= 30,
        "only {} numbers: {checked:?}",
        checked.len()
    );
}

#[test]
fn enums_match_validation() {
    let v = validator();
    let doc = base(&v);
    let schema = json_schema();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for node in nodes(&schema) {
        let Some(values) = node.schema.get("enum").and_then(Value::as_array) else {
            continue;
        };
        let where_ = render(&node.path);
        let values: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
        let allowed: BTreeSet<String> = values.iter().map(|v| as_text(v)).collect();
        let sites = sites(&doc, &node.path);
        if sites.is_empty() {
            failures.push(format!("{where_}: not set in EVERY_FIELD"));
            continue;
        }
        // Each value is accepted somewhere: a provider's `kind` only where its fields fit.
        for value in &values {
            let accepted = sites.iter().any(|s| {
                let edited = s.set(&doc, (*value).clone());
                load(&edited).is_ok() && v.is_valid(&edited)
            });
            if !accepted {
                failures.push(format!("{where_}: `{value}` is refused wherever it is put"));
            }
        }
        // A value outside the enum is refused everywhere, and validation's own list of what
        // it knows is in the enum.
        let mut listed = false;
        for site in &sites {
            let edited = site.set(&doc, json!(BOGUS));
            if v.is_valid(&edited) {
                failures.push(format!(
                    "{}: the schema takes `{BOGUS}`",
                    site.diagnostic_path()
                ));
            }
            let Err(diagnostics) = load(&edited) else {
                failures.push(format!(
                    "{}: sluice takes `{BOGUS}`",
                    site.diagnostic_path()
                ));
                continue;
            };
            for d in &diagnostics {
                if !related(&d.path, &site.diagnostic_path()) {
                    continue;
                }
                if let Some(known) = expected_values(&d.message) {
                    listed = true;
                    for k in known.iter().filter(|k| !allowed.contains(*k)) {
                        failures.push(format!("{where_}: validation knows `{k}`, the schema not"));
                    }
                }
            }
        }
        if !listed {
            failures.push(format!(
                "{where_}: no validation message listed the known values"
            ));
        }
        checked.push(where_);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        checked.len() >= 7,
        "only {} enums: {checked:?}",
        checked.len()
    );
}

/// Values with more than one shape (`sli`, `burn`, `do`, `rubric`): the schema types their map
/// forms under `allOf`, out of the walk above, so they are held against validation here one
/// edit of EVERY_FIELD at a time (`None` removes the field).
#[test]
fn one_of_shapes_match_validation() {
    type Edit = (&'static str, Option<Value>);
    let long_name = "r".repeat(64);
    let too_long = "r".repeat(65);
    let cases: Vec<(Vec<Edit>, bool)> = vec![
        // A route's SLI: one kind, one threshold (fast-start is no guard's SLO).
        (vec![("/routes/0/slos/1/sli", Some(json!("errors")))], true),
        (
            vec![("/routes/0/slos/1/sli", Some(json!("latency")))],
            false,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "duration_below": "1h" })),
            )],
            true,
        ),
        (
            vec![("/routes/0/slos/1/sli", Some(json!({ "ttft_below": "0s" })))],
            false,
        ),
        (
            vec![("/routes/0/slos/1/sli", Some(json!({ "ttft_below": 2 })))],
            false,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "ttft_below": "soon" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "ttft_below": "2s", "duration_below": "3s" })),
            )],
            false,
        ),
        (vec![("/routes/0/slos/1/sli", Some(json!({})))], false),
        (
            vec![("/routes/0/slos/1/sli", Some(json!({ "latency": "2s" })))],
            false,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "judge_score_at_least": 1 })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "judge_score_at_least": 1.5 })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/slos/1/sli",
                Some(json!({ "judge_score_at_least": "0.5" })),
            )],
            false,
        ),
        // A rule's burn: a level, or one window above a rate.
        (
            vec![("/routes/0/remediation/0/when/burn", Some(json!("page")))],
            true,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!("sometimes")),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "window": "slo", "above": 1 })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "window": "2h", "above": 3 })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "window": "5m", "above": 0 })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "window": "5m" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "above": 3 })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/when/burn",
                Some(json!({ "window": "5m", "above": 3, UNKNOWN: 1 })),
            )],
            false,
        ),
        // A rule's action: a name, or one action with settings.
        (
            vec![("/routes/0/remediation/2/do", Some(json!("reboot")))],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "shed": { "max_priority": 0 } })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "shed": { "max_priority": 9 } })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "shed": { "max_priority": 10 } })),
            )],
            false,
        ),
        (
            vec![("/routes/0/remediation/2/do", Some(json!({ "shed": {} })))],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "shed": { "max_priority": 3, UNKNOWN: 1 } })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "downgrade_to": "mock-chat" })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "downgrade_to": [] })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/2/do",
                Some(json!({ "downgrade_to": ["mock-chat"], "shed": { "max_priority": 1 } })),
            )],
            false,
        ),
        (vec![("/routes/0/remediation/2/do", Some(json!({})))], false),
        (
            vec![("/routes/0/remediation/2/do", Some(json!({ "reboot": 1 })))],
            false,
        ),
        // `cache_fallback` needs the route's cache; a guard needs `downgrade_to`.
        (
            vec![("/routes/0/remediation/2/do", Some(json!("cache_fallback")))],
            true,
        ),
        (
            vec![
                ("/routes/0/remediation/2/do", Some(json!("cache_fallback"))),
                ("/routes/0/cache", None),
            ],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/0/guard",
                Some(json!({ "slo": "quality" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/remediation/1/guard/no_healthy_target",
                Some(json!(true)),
            )],
            false,
        ),
        // The judge's rubric: a built-in name, or a snake_case name and a text of your own.
        (
            vec![("/routes/0/judge/rubric", Some(json!("safety")))],
            true,
        ),
        (
            vec![("/routes/0/judge/rubric", Some(json!("kindness")))],
            false,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": long_name, "text": "x" })),
            )],
            true,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": too_long, "text": "x" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": "Tone", "text": "x" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": "safety", "text": "x" })),
            )],
            false,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": "tone", "text": " " })),
            )],
            false,
        ),
        (
            vec![("/routes/0/judge/rubric", Some(json!({ "name": "tone" })))],
            false,
        ),
        (
            vec![(
                "/routes/0/judge/rubric",
                Some(json!({ "name": "tone", "text": "x", UNKNOWN: 1 })),
            )],
            false,
        ),
    ];
    let v = validator();
    let base = base(&v);
    let mut failures = Vec::new();
    for (edits, ok) in &cases {
        let mut doc = base.clone();
        for (pointer, value) in edits {
            let (object, key) = pointer.rsplit_once('/').expect("a pointer");
            let site = Site::Field {
                object: object.to_owned(),
                key: key.to_owned(),
            };
            doc = match value {
                Some(value) => site.set(&doc, value.clone()),
                None => site.remove(&doc),
            };
        }
        let (loaded, valid) = (load(&doc), v.is_valid(&doc));
        if loaded.is_ok() != *ok || valid != *ok {
            failures.push(format!(
                "{edits:?}: expected {}, sluice {}, schema {}",
                if *ok { "accepted" } else { "refused" },
                match &loaded {
                    Ok(_) => "accepts".to_owned(),
                    Err(d) => format!("refuses:{}", show(d)),
                },
                if valid { "accepts" } else { "refuses" },
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// === files ===

/// Every policy the repository ships: the examples, the compose stack's, and the Helm
/// chart's (`policy.content` in its values files is literal policy text, not a template).
fn shipped_policies() -> Vec<(String, String)> {
    let root = manifest().parent().expect("the workspace").to_path_buf();
    let yaml_in = |dir: PathBuf| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    };
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let name = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();

    let mut out = Vec::new();
    for p in yaml_in(manifest().join("examples")) {
        out.push((name(&p), read(&p)));
    }
    let compose = root.join("deploy/compose/sluice.yaml");
    out.push((name(&compose), read(&compose)));
    let mut helm_values = vec![root.join("deploy/helm/sluice/values.yaml")];
    helm_values.extend(yaml_in(root.join("deploy/helm/values")));
    for p in helm_values {
        let values = yaml_to_json(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", name(&p)));
        if let Some(content) = values.pointer("/policy/content").and_then(Value::as_str) {
            out.push((format!("{} (policy.content)", name(&p)), content.to_owned()));
        }
    }
    out
}

#[test]
fn shipped_policies_validate() {
    let v = validator();
    let policies = shipped_policies();
    let mut failures = Vec::new();
    for (name, src) in &policies {
        // Only policies sluice itself accepts prove anything here.
        if let Err(e) = load_str_with_env(src, name, &env) {
            failures.push(format!("{name}: sluice refuses it: {e}"));
            continue;
        }
        let doc = yaml_to_json(src).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (at, message) in schema_errors(&v, &doc) {
            failures.push(format!("{name}: {at}: {message}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let names: Vec<&str> = policies.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "config/examples/quickstart.yaml",
        "config/examples/openai.yaml",
        "deploy/compose/sluice.yaml",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not checked: {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("deploy/helm/")),
        "no Helm policy checked: {names:?}"
    );
}

#[test]
fn invalid_fixtures_are_refused_where_a_schema_can_tell() {
    let dir = manifest().join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name")
                .to_owned()
        })
        .collect();
    for (listed, _) in NOT_SCHEMA_DETECTABLE.iter().chain(NOT_A_DOCUMENT) {
        assert!(
            names.contains(*listed),
            "{listed} is listed but no longer a fixture"
        );
    }

    let v = validator();
    let mut failures = Vec::new();
    let mut refused = 0;
    for (name, path) in names.iter().zip(&files) {
        let src = std::fs::read_to_string(path).expect("read fixture");
        let doc = yaml_to_json(&src);
        if NOT_A_DOCUMENT.iter().any(|(n, _)| n == name) {
            if doc.is_ok() {
                failures.push(format!("{name}: listed as not YAML, but it converts"));
            }
            continue;
        }
        let doc = match doc {
            Ok(doc) => doc,
            Err(e) => {
                failures.push(format!("{name}: not YAML: {e}"));
                continue;
            }
        };
        let errors = schema_errors(&v, &doc);
        if NOT_SCHEMA_DETECTABLE.iter().any(|(n, _)| n == name) {
            // Kept honest: once the schema can tell, the fixture moves to the other side.
            if !errors.is_empty() {
                failures.push(format!(
                    "{name}: listed as undetectable, yet refused: {errors:?}"
                ));
            }
            continue;
        }
        if errors.is_empty() {
            failures.push(format!("{name}: the schema accepts it"));
            continue;
        }
        // Refused for one of the reasons validation gives, not by accident.
        let expected =
            std::fs::read_to_string(path.with_extension("expected")).expect("read .expected");
        let paths: Vec<&str> = expected
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .collect();
        let agrees = errors.iter().any(|(at, _)| {
            let at = pointer_to_path(at);
            paths.iter().any(|p| related(&at, p))
        });
        if !agrees {
            failures.push(format!(
                "{name}: the schema refuses it elsewhere than validation: {errors:?} vs {paths:?}"
            ));
        }
        refused += 1;
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(refused >= 20, "only {refused} fixtures refused");
}

#[test]
fn the_checked_in_schema_is_current() {
    let path = manifest().join("policy.schema.json");
    let want = json_schema_text();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write policy.schema.json");
        panic!(
            "rewrote {}; review the diff and run again without SLUICE_BLESS",
            path.display()
        );
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "config/policy.schema.json is stale (first difference at line {}); regenerate it \
             with `SLUICE_BLESS=1 cargo test -p sluice-config --test schema`",
            line + 1
        );
    }
    let parsed: Value = serde_json::from_str(&have).expect("the checked-in schema is JSON");
    assert_eq!(parsed, json_schema());
}

// === the helpers themselves ===

#[test]
fn helper_paths_and_messages() {
    assert_eq!(pointer_to_path("/routes/0/retry/on"), "routes[0].retry.on");
    assert_eq!(pointer_to_path(""), "");
    assert!(related("routes[1].cache", "routes[1].cache.ttl"));
    assert!(related("", "providers"));
    assert!(!related("routes[1].cache", "routes[0].cache"));
    assert_eq!(
        expected_values("unknown balance `x` (expected weighted, least_latency or p2c)"),
        Some(vec![
            "weighted".into(),
            "least_latency".into(),
            "p2c".into()
        ])
    );
    assert_eq!(
        expected_values(
            "unknown action `x` (expected `failover`, `cache_fallback`, \
             `{ downgrade_to: [model, …] }` or `{ shed: { max_priority: 3 } }`)"
        ),
        Some(vec!["failover".into(), "cache_fallback".into()])
    );
    assert_eq!(
        expected_values(
            "unknown burn `x` (expected `page`, `ticket` or `{ window: 5m, above: 10 }` \
             (windows: 5m, 30m, 1h, 6h, 1d, 3d, slo))"
        ),
        Some(vec!["page".into(), "ticket".into()])
    );
    assert_eq!(
        expected_values("unknown provider kind `x` (expected `openai` or `mock`)"),
        Some(vec!["openai".into(), "mock".into()])
    );
    assert_eq!(
        expected_values(
            "unknown redaction `x` (expected email, card, api_key or `{ regex: \"…\" }`)"
        ),
        Some(vec!["email".into(), "card".into(), "api_key".into()])
    );
    let path = [
        Step::Key("providers".into()),
        Step::Entry,
        Step::Key("kind".into()),
    ];
    assert_eq!(
        nest(&path, json!(1)),
        json!({ "providers": { "x": { "kind": 1 } } })
    );
    assert_eq!(nested_path(&path), "providers.x.kind");
    assert_eq!(render(&path), "providers.<name>.kind");
    assert_eq!(
        nested_path(&[Step::Key("keys".into()), Step::Item]),
        "keys[0]"
    );
}
