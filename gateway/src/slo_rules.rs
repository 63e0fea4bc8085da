//! `sluice slo rules POLICY`: Prometheus recording rules and multi-window, multi-burn-rate
//! alerts for every SLO of a policy, so Prometheus watches the same SLOs Sluice acts on.
//!
//! The rules read `sluice_slo_events_total{slo, route, good}`, not the request metrics: that
//! counter is Sluice's own verdict on each request for each SLO, so it already leaves out what
//! the SLI excludes (client mistakes, client cancels, shed refusals), applies `ttft_below` and
//! `duration_below` thresholds exactly (histogram buckets would only approximate them), and
//! carries judge and app scores, which no request metric does. Prometheus then sees the very
//! counts the in-process engine burns on, and the two can be checked against each other. The
//! rule text itself is `sluice_observability::slo::prometheus_rules`.

use sluice_config::Config;
use sluice_observability::slo::{MetricNames, SloSpec, prometheus_rules};

/// The rules file for `config`'s SLOs. An SLO without its own `runbook_url` takes the first
/// one of the remediation rules it triggers, so a page links to what Sluice will do about it.
pub fn rules_for(config: &Config) -> String {
    let specs: Vec<SloSpec> = config
        .routes
        .iter()
        .flat_map(|route| {
            route.slos.iter().map(move |slo| {
                let mut spec = SloSpec::from_config(&route.name, slo);
                if spec.runbook_url.is_none() {
                    spec.runbook_url = route
                        .remediation
                        .iter()
                        .filter(|r| r.slo == slo.name)
                        .find_map(|r| r.runbook_url.as_deref())
                        .map(Into::into);
                }
                spec
            })
        })
        .collect();
    prometheus_rules(&specs, &MetricNames::default())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace")
            .to_path_buf()
    }

    /// The committed rules are what `sluice slo rules config/examples/slo.yaml` prints; if this
    /// fails, regenerate them:
    /// `sluice slo rules config/examples/slo.yaml > deploy/prometheus/rules/sluice-slo.rules.yml`.
    #[test]
    fn the_deployed_rules_are_generated_from_the_example_policy() {
        let root = repo();
        let loaded = sluice_config::load_file(&root.join("config/examples/slo.yaml"))
            .expect("the example policy loads");
        let committed =
            std::fs::read_to_string(root.join("deploy/prometheus/rules/sluice-slo.rules.yml"))
                .expect("the committed rules");
        assert!(
            committed == rules_for(&loaded.config),
            "deploy/prometheus/rules/sluice-slo.rules.yml is stale; regenerate it with \
             `sluice slo rules config/examples/slo.yaml > deploy/prometheus/rules/sluice-slo.rules.yml`"
        );
    }

    #[test]
    fn an_slo_without_a_runbook_takes_its_remediation_rules() {
        let yaml = r#"
providers:
  p: { kind: mock }
models:
  m: { provider: p }
routes:
  - name: chat
    match: { model: m }
    targets: [ { model: m } ]
    slos:
      - { name: availability, objective: 99.5, sli: errors, runbook_url: "https://rb/own" }
      - { name: fast-start, objective: 95, sli: { ttft_below: 1500ms } }
      - { name: quality, objective: 90, sli: { judge_score_at_least: 0.7 } }
    remediation:
      - { name: fo, when: { slo: availability, burn: page }, do: failover, runbook_url: "https://rb/fo" }
      - { name: slow, when: { slo: fast-start, burn: page }, do: failover }
      - { name: slow2, when: { slo: fast-start, burn: ticket }, do: failover, runbook_url: "https://rb/slow" }
keys:
  - { name: demo, key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213", tenant: demo }
"#;
        let loaded = sluice_config::load_str(yaml, "test.yaml").expect("policy");
        let rules = rules_for(&loaded.config);
        let doc: serde_json::Value = serde_saphyr::from_str(&rules).expect("YAML");
        let runbooks: Vec<Option<&str>> = doc["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                let rules = g["rules"].as_array().expect("rules");
                rules.last().expect("an alert")["annotations"]["runbook_url"].as_str()
            })
            .collect();
        assert_eq!(
            runbooks,
            [Some("https://rb/own"), Some("https://rb/slow"), None]
        );
    }
}
