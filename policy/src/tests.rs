use super::*;

const YAML: &str = r#"
providers:
  a: { kind: mock }
  b: { kind: mock }
models:
  m-a: { provider: a }
  m-b: { provider: b }
  m-c: { provider: b, upstream_model: real-c }
  emb: { provider: a, kind: embedding }
routes:
  - name: chat
    match: { model: [chat, m-a] }
    targets: [ { model: m-a, weight: 3 }, { model: m-b, weight: 1 } ]
    fallbacks: [ m-c ]
    retry: { max_attempts: 3 }
  - name: single
    match: { model: one }
    targets: [ { model: m-b } ]
    retry: { max_attempts: 2 }
keys:
  - { name: k, key_sha256: "e24dd2c0e3d1e0a2ff1afb7d9da3a4b2e4b4e0d0a07ab7e5b4e36e1a0a2e1c5f", tenant: t }
"#;

fn policy() -> Policy {
    let loaded = sluice_config::load_str_with_env(YAML, "test.yaml", &|_| None)
        .expect("test policy is valid");
    Policy::compile(&loaded.config, &RuntimeState::new()).expect("compiles")
}

fn names(plan: &AttemptPlan<'_>) -> Vec<String> {
    plan.targets().map(|t| t.model.to_string()).collect()
}

#[test]
fn weighted_pick_is_exact_over_a_cycle() {
    let p = policy();
    let firsts: Vec<String> = (0..8)
        .map(|_| {
            p.route("chat", |_, _| false)
                .expect("routed")
                .target(0)
                .expect("t")
                .model
                .to_string()
        })
        .collect();
    assert_eq!(firsts.iter().filter(|m| *m == "m-a").count(), 6);
    assert_eq!(firsts.iter().filter(|m| *m == "m-b").count(), 2);
}

#[test]
fn plan_walks_targets_then_fallbacks() {
    let p = policy();
    let plan = p.route("chat", |_, _| false).expect("routed");
    let order = names(&plan);
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], "m-c", "fallback comes last");
    let mut firsts = order[..2].to_vec();
    firsts.sort();
    assert_eq!(firsts, ["m-a", "m-b"], "both targets are tried once");
}

#[test]
fn single_target_route_retries_the_same_target() {
    let p = policy();
    let plan = p.route("one", |_, _| false).expect("routed");
    assert_eq!(names(&plan), ["m-b", "m-b"]);
}

#[test]
fn catalog_models_are_routable_by_name_and_unknown_models_are_not() {
    let p = policy();
    let plan = p.route("m-c", |_, _| false).expect("implicit route");
    assert_eq!(plan.route.origin, RouteOrigin::Implicit);
    assert_eq!(&*plan.target(0).expect("t").upstream_model, "real-c");
    assert!(p.route("gpt-nonexistent", |_, _| false).is_none());
    let ids: Vec<&str> = p.public_models().iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["chat", "emb", "m-a", "m-b", "m-c", "one"]);
}

#[test]
fn keys_authenticate_by_hash_only() {
    let p = policy();
    assert!(p.authenticate("wrong").is_none());
    let mut cfg = sluice_config::load_str_with_env(YAML, "t", &|_| None)
        .expect("valid")
        .config;
    cfg.keys[0].key_sha256 = hash_key("sk-right");
    let p = Policy::compile(&cfg, &RuntimeState::new()).expect("compiles");
    assert_eq!(&*p.authenticate("sk-right").expect("valid key").tenant, "t");
}

#[test]
fn store_swaps_whole_policies() {
    let store = PolicyStore::new(policy());
    let before = store.snapshot();
    assert_eq!(store.replace(policy()), 2);
    assert!(!Arc::ptr_eq(&before, &store.snapshot()));
}

#[test]
fn a_reload_keeps_live_state_of_unchanged_rules() {
    let runtime = RuntimeState::new();
    let limited = YAML.replace("tenant: t }", "tenant: t, limits: { rpm: 2 } }");
    let load = |y: &str| {
        sluice_config::load_str_with_env(y, "test.yaml", &|_| None)
            .expect("valid")
            .config
    };
    let first = Policy::compile(&load(&limited), &runtime).expect("compiles");
    let key = first.keys().next().expect("one key");
    let limiter = key.limiter.clone().expect("limited");
    limiter.admit().expect("1 of 2");
    limiter.admit().expect("2 of 2");
    assert!(limiter.admit().is_err(), "the key is out of requests");

    // Another route's retry settings change; the key's window must carry over.
    let second_cfg = load(&limited.replace("max_attempts: 2", "max_attempts: 1"));
    let second = Policy::compile(&second_cfg, &runtime).expect("compiles");
    runtime.retain(&second);
    let again = second
        .keys()
        .next()
        .and_then(|k| k.limiter.clone())
        .expect("limited");
    assert!(Arc::ptr_eq(&limiter, &again));
    assert!(again.admit().is_err(), "still limited after the reload");
    let cooling = &first.catalog_model("m-a").expect("model").state;
    let same = &second.catalog_model("m-a").expect("model").state;
    assert!(Arc::ptr_eq(cooling, same), "target state carried over");

    // A changed limit is a new rule: a fresh window.
    let third =
        Policy::compile(&load(&limited.replace("rpm: 2", "rpm: 3")), &runtime).expect("compiles");
    let fresh = third
        .keys()
        .next()
        .and_then(|k| k.limiter.clone())
        .expect("limited");
    assert!(fresh.admit().is_ok());
    // Removing every limit and keys forgets the state once the new policy is in place.
    runtime.retain(&third);
    assert_eq!(runtime.sizes().0, 1);
}
