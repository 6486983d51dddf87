//! The Python plugins (`plugins/py-*`, built with componentize-py: CPython inside the
//! component) against the Rust ones: the same decisions and output on the same cases in
//! dry runs, and on real deliveries.

use std::{collections::HashMap, process::Command, sync::Mutex};

use serde_json::json;

use crate::{
    harness::{Client, Gateway},
    plugins::{
        assert_filters_like_the_rust_one, assert_transforms_like_the_rust_erp, dry_run, repo_root,
        upload, upload_ok,
    },
};

/// An interpreter in the component: over the default upload cap.
const COMPONENT_CAP: &str = "33554432";

/// The component built by componentize-py from `plugins/{dir}/app.py`, once per test
/// process and directory. `None` when componentize-py is not installed and this is not CI
/// (`tests/run` installs it from `tests/requirements.txt`); in CI its absence fails.
fn python_component(dir: &str) -> Option<Vec<u8>> {
    static BUILT: Mutex<Option<HashMap<String, Option<Vec<u8>>>>> = Mutex::new(None);
    // Held while building: componentize-py runs take seconds and a lot of memory each.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    built
        .entry(dir.to_owned())
        .or_insert_with(|| build_python(dir))
        .clone()
}

fn build_python(dir: &str) -> Option<Vec<u8>> {
    let root = repo_root();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = Command::new(&python)
        .args(["-c", "import componentize_py"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "componentize-py is not installed: run tests/run (pip install -r tests/requirements.txt)"
        );
        eprintln!("skipped: componentize-py is not installed (tests/run installs it)");
        return None;
    }
    let out_dir = root.join("plugins/target/python");
    std::fs::create_dir_all(&out_dir).expect("create plugins/target/python");
    let component = out_dir.join(format!("{}.wasm", dir.replace('-', "_")));
    // The console script's entry point, called through the interpreter so that the
    // script's install location need not be on PATH.
    let output = Command::new(&python)
        .args([
            "-c",
            "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()",
            "-d",
        ])
        .arg(root.join("wit"))
        .args(["-w", "plugin", "componentize", "--stub-wasi", "-p"])
        .arg(root.join("plugins").join(dir))
        .arg("app")
        .arg("-o")
        .arg(&component)
        .output()
        .expect("run componentize-py");
    assert!(
        output.status.success(),
        "componentize-py for plugins/{dir} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&component).expect("read the Python component");
    assert!(
        bytes.len() > 10 << 20,
        "an interpreter in the component: over the default upload cap"
    );
    Some(bytes)
}

/// The contract is language-neutral: the Python port of `field-filter`, built with
/// componentize-py (CPython inside the component), uploads next to the Rust plugin, makes
/// the same decision on every operator (each also checked against the expected one), logs
/// through the host interface, and filters real deliveries.
#[tokio::test]
async fn python_field_filter_decides_like_the_rust_one() {
    let Some(python_filter) = python_component("py-field-filter") else {
        return;
    };
    let gw = Gateway::start_with(&[("HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES", COMPONENT_CAP)]).await;
    let t = Client::new(&gw, "acme").await;
    upload_ok(&t, "large-orders", "field-filter").await;
    upload(&t, "py-large-orders", python_filter)
        .await
        .expect(201);

    assert_filters_like_the_rust_one(&t, "py-large-orders").await;
    // The host interface works from Python too: the drop is logged.
    let dropped = dry_run(
        &t,
        "py-large-orders",
        json!({"hook": "filter", "config": [{"path": "/payload/total", "op": "gte", "value": 100}],
               "event": {"event_type": "order.created", "id": "o-9", "payload": {"total": 50}}}),
    )
    .await;
    assert_eq!(dropped["result"], false, "{dropped}");
    assert_eq!(
        dropped["logs"],
        json!([{"level": "debug", "message": "event o-9 dropped by py-field-filter"}])
    );
}

/// The Python port of `erp-transform` writes what the Rust one writes, in dry runs and on
/// a real delivery; its unwritten hooks say so (`plugin check` calls them neutral).
#[tokio::test]
async fn python_erp_transform_writes_what_the_rust_one_writes() {
    let Some(python_transform) = python_component("py-erp-transform") else {
        return;
    };
    let gw = Gateway::start_with(&[("HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES", COMPONENT_CAP)]).await;
    let t = Client::new(&gw, "acme").await;
    upload_ok(&t, "erp", "erp-transform").await;
    upload(&t, "py-erp", python_transform).await.expect(201);
    assert_transforms_like_the_rust_erp(&gw, &t, "py-erp").await;

    let neutral = dry_run(
        &t,
        "py-erp",
        json!({"hook": "filter", "event": {"event_type": "order.created", "payload": {}}}),
    )
    .await;
    assert_eq!(neutral["result"], true, "{neutral}");
    assert_eq!(
        neutral["logs"],
        json!([]),
        "the marker is not kept: {neutral}"
    );
}
