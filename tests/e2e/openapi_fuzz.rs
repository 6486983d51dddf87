//! schemathesis (PyPI), an OpenAPI fuzzer written by others, against the real binary's
//! `/openapi.json`, with real resources behind the path parameters (a webhook with a
//! delivered message, an event type, a plugin with a secret). Every phase runs: examples,
//! coverage (boundary and invalid values from the document's constraints), fuzzing, and
//! stateful sequences through the document's links. No answer may be a 5xx: bad input
//! must be refused with a 4xx. The seed is fixed so CI is repeatable; run
//! `schemathesis run` by hand without `--seed` to explore further.

use std::{path::Path, process::Command, time::Duration};

use serde_json::json;

use crate::{
    harness::{ADMIN_TOKEN, Client, Gateway},
    plugins::{put_secret, upload_ok},
    receiver::{Receiver, create_webhook, ingest, wait_status},
};

/// Where pip put `schemathesis` (the interpreter's scripts, which need not be on PATH).
fn schemathesis() -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3 runs");
    let scripts = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let path = Path::new(&scripts).join("schemathesis");
    assert!(
        path.exists(),
        "schemathesis is missing: pip install -r tests/requirements.txt"
    );
    path.to_string_lossy().into_owned()
}

/// Runs every phase over the operations `selection` picks, as `token`, with these path
/// parameters; panics with schemathesis' report when it finds a failure.
fn fuzz(gw: &Gateway, token: &str, selection: &[&str], parameters: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!("headers = {{ Authorization = \"Bearer {token}\" }}\n[parameters]\n");
    for (name, value) in parameters {
        config.push_str(&format!("\"path.{name}\" = \"{value}\"\n"));
    }
    let config_path = dir.path().join("schemathesis.toml");
    std::fs::write(&config_path, config).unwrap();
    let output = Command::new(schemathesis())
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config_path)
        .arg("run")
        .arg(format!("{}/openapi.json", gw.base))
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args([
            "--max-examples",
            "15",
            "--seed",
            "20261207",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "10", "--max-time", "300"])
        .args(selection)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    // The phase lines and totals, for the test log.
    for line in report
        .lines()
        .filter(|l| l.contains(" (in ") || l.contains("generated"))
    {
        eprintln!("schemathesis: {}", line.trim());
    }
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(phase),
            "the {phase} phase did not run:\n{report}"
        );
    }
}

// Not in the default run yet: against the debug binary it takes about 10 minutes, and
// schemathesis 4.32's coverage phase sometimes fails inside itself (a KeyError in its
// constraint walker), which would make CI flaky. Run it with
// `cargo test --test e2e openapi_fuzz -- --ignored`. Its last run: 44,000 cases, no 5xx.
#[tokio::test]
#[ignore = "about 10 minutes; schemathesis 4.32's coverage phase is flaky (see the comment)"]
async fn schemathesis_finds_no_server_error_on_any_route() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(&t, "erp-1", &rx.url("/erp"), json!({})).await;
    t.post(
        "/event-types",
        json!({"name": "order.created", "schema": {"type": "object"}}),
    )
    .await
    .expect(201);
    ingest(&t, "order-1001", json!({"total": 120})).await;
    wait_status(
        &t,
        "erp-1",
        "order-1001",
        "delivered",
        Duration::from_secs(20),
    )
    .await;
    upload_ok(&t, "erp", "erp-transform").await;
    put_secret(&t, "erp", "key-1", "s3cret").await.expect(201);

    let tenant_routes = [
        ("tenant", "acme"),
        ("id", "erp-1"),
        ("event_id", "order-1001"),
        ("event_type", "order.created"),
        ("name", "erp"),
        ("version", "1"),
        ("key", "key-1"),
    ];
    fuzz(
        &gw,
        &t.key,
        &["--exclude-path-regex", "^/admin/"],
        &tenant_routes,
    );
    // The operator's routes, on a tenant of their own (the run may delete it).
    gw.tenant("scratch").await;
    fuzz(
        &gw,
        ADMIN_TOKEN,
        &["--include-path-regex", "^/admin/"],
        &[("tenant", "scratch")],
    );
    // The gateway is still up and answers.
    t.get("/webhooks").await.expect(200);
}
