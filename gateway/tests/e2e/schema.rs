//! `sluice schema`: the policy file's JSON Schema on standard output, as checked in.

use std::process::{Command, Stdio};

#[test]
fn sluice_schema_prints_the_checked_in_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("schema")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice schema");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(printed, sluice_config::json_schema_text());
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.schema.json"),
    )
    .expect("read config/policy.schema.json");
    assert!(
        printed == checked_in,
        "`sluice schema` differs from config/policy.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["routes"].is_object());
}
