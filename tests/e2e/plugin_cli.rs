//! A plugin author's loop without a gateway: `hookgate plugin check` and `hookgate plugin
//! run` on components built from `plugins/`, checked against what the gateway's dry run
//! answers for the same component and event.

use std::{path::PathBuf, process::Command};

use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    plugins::{dry_run, order, plugin_dir, upload_ok},
};

fn component(crate_name: &str) -> PathBuf {
    plugin_dir().join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// Runs `hookgate plugin <args>`: (succeeded, stdout, stderr).
fn plugin(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("plugin")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run hookgate plugin");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_file(dir: &tempfile::TempDir, name: &str, value: &Value) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// `ordered_at` comes from the time of the run: the rest must be equal.
fn without_times(mut result: Value) -> Value {
    if let Some(records) = result["body"]["records"].as_array_mut() {
        for record in records {
            record.as_object_mut().unwrap().remove("ordered_at");
        }
    }
    result
}

#[test]
fn check_names_the_hooks_a_component_implements_or_why_it_is_refused() {
    let erp = component("erp-transform");
    let (ok, out, err) = plugin(&["check", erp.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("a component of the hookgate:plugin@0.1.0 world"),
        "{out}"
    );
    assert!(out.contains("transform: implemented"), "{out}");
    assert!(out.contains("filter: neutral"), "{out}");
    assert!(out.contains("authenticate: neutral"), "{out}");

    let filter = component("field-filter");
    let (ok, out, _) = plugin(&["check", filter.to_str().unwrap()]);
    assert!(
        ok && out.contains("filter: implemented") && out.contains("transform: neutral"),
        "{out}"
    );

    let hostile = component("hostile-forbidden-import");
    let (ok, out, err) = plugin(&["check", hostile.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("would be refused") && err.contains("hostile:escape/network"),
        "the refusal names the import: {err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, b"not a component").unwrap();
    let (ok, _, err) = plugin(&["check", not_wasm.to_str().unwrap()]);
    assert!(!ok && err.contains("would be refused"), "{err}");
}

/// `plugin run` answers what the gateway's dry run answers for the same component, event
/// and config, and reports what the call used beside the limits.
#[tokio::test]
async fn run_gives_the_dry_runs_result_and_what_the_call_used() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    upload_ok(&t, "erp", "erp-transform").await;
    let event = json!({"event_type": "order.created", "id": "so-1", "payload": order(250.0)});
    let dry = dry_run(&t, "erp", json!({"hook": "transform", "event": event})).await;
    assert!(dry["error"].is_null(), "{dry}");
    let peak = dry["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 0 && peak < 64 << 20, "{dry}");
    assert!(dry["output_bytes"].as_u64().unwrap() > 100, "{dry}");

    let dir = tempfile::tempdir().unwrap();
    let event_file = json_file(&dir, "event.json", &event);
    let erp = component("erp-transform");
    let (ok, out, err) = plugin(&[
        "run",
        erp.to_str().unwrap(),
        "--hook",
        "transform",
        "--event",
        &event_file,
    ]);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        without_times(report["result"].clone()),
        without_times(dry["result"].clone())
    );
    assert_eq!(report["output_bytes"], dry["output_bytes"], "{report}");
    assert!(report["elapsed_us"].as_u64().unwrap() >= report["instantiate_us"].as_u64().unwrap());
    let used = report["peak_memory_bytes"].as_u64().unwrap();
    assert!(
        used > 0 && used < report["limits"]["memory_limit_bytes"].as_u64().unwrap(),
        "{report}"
    );

    // A filter with its config, and a signer with a secret given on the command line.
    let filter = component("field-filter");
    let conditions = json_file(
        &dir,
        "conditions.json",
        &json!([{"path": "/payload/total", "op": "gte", "value": 300}]),
    );
    let (ok, out, err) = plugin(&[
        "run",
        filter.to_str().unwrap(),
        "--hook",
        "filter",
        "--event",
        &event_file,
        "--config",
        &conditions,
    ]);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["result"], false, "{report}");
    assert_eq!(
        report["logs"][0]["message"], "event so-1 dropped by field-filter",
        "{report}"
    );

    let signer = component("custom-signer");
    let secret_config = json_file(&dir, "signer.json", &json!({"secret": "acme-signing-key"}));
    let (ok, out, err) = plugin(&[
        "run",
        signer.to_str().unwrap(),
        "--hook",
        "authenticate",
        "--event",
        &event_file,
        "--config",
        &secret_config,
        "--secret",
        "acme-signing-key=s3cret",
    ]);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let headers = report["result"].as_array().expect("headers");
    assert!(
        headers.iter().any(|h| h["name"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("x-acme-signature")),
        "{report}"
    );
    // Without the secret the plugin fails, and so does the command (the report still shows why).
    let (ok, out, _) = plugin(&[
        "run",
        signer.to_str().unwrap(),
        "--hook",
        "authenticate",
        "--event",
        &event_file,
        "--config",
        &secret_config,
    ]);
    assert!(!ok, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["result"].is_null() && !report["error"].is_null(),
        "{report}"
    );
}

/// A plugin that bloats fails only its call, within the gateway's limit, and says so.
#[test]
fn run_stops_a_plugin_at_the_gateways_limits() {
    let dir = tempfile::tempdir().unwrap();
    let event_file = json_file(
        &dir,
        "event.json",
        &json!({"event_type": "order.created", "payload": {}}),
    );
    let bomb = component("hostile-memory-bomb");
    let (ok, out, err) = plugin(&[
        "run",
        bomb.to_str().unwrap(),
        "--hook",
        "transform",
        "--event",
        &event_file,
    ]);
    assert!(!ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["error"]["code"], "memory_limit", "{report}");
    assert!(
        report["peak_memory_bytes"].as_u64().unwrap()
            <= report["limits"]["memory_limit_bytes"].as_u64().unwrap(),
        "{report}"
    );
    let bad_event = json_file(
        &dir,
        "bad.json",
        &json!({"event_type": "x", "payload": {}, "extra": 1}),
    );
    let (ok, _, err) = plugin(&[
        "run",
        bomb.to_str().unwrap(),
        "--hook",
        "transform",
        "--event",
        &bad_event,
    ]);
    assert!(
        !ok && err.contains("unknown field `extra`"),
        "an input it does not understand is refused: {err}"
    );
}
