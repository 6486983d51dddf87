//! The TypeScript plugins (`plugins/ts`, built with plain npm: jco / componentize-js)
//! against the Rust ones: the same decisions and output on the same cases in dry runs,
//! and on real deliveries.

use std::{process::Command, sync::OnceLock};

use serde_json::json;

use crate::{
    harness::{Client, Gateway},
    plugins::{
        assert_filters_like_the_rust_one, assert_transforms_like_the_rust_erp, dry_run, upload,
        upload_ok,
    },
};

/// A component of StarlingMonkey (the JS engine) and the plugin: over the default cap.
const COMPONENT_CAP: &str = "33554432";

struct Components {
    field_filter: Vec<u8>,
    erp_transform: Vec<u8>,
}

/// `npm ci && npm run build` in `plugins/ts`, once per test process. `None` when npm is
/// not installed and this is not CI (`.ci/run` installs Node); in CI its absence fails.
fn typescript_components() -> Option<&'static Components> {
    static BUILT: OnceLock<Option<Components>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/ts");
            let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
            if Command::new(&npm).arg("--version").output().is_err() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "npm is not installed: install Node.js (`apt-get install nodejs npm`)"
                );
                eprintln!("skipped: npm is not installed");
                return None;
            }
            for args in [&["ci", "--no-audit", "--no-fund"][..], &["run", "build"]] {
                let output = Command::new(&npm)
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .expect("run npm");
                assert!(
                    output.status.success(),
                    "npm {args:?} in plugins/ts failed:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let read = |name: &str| {
                std::fs::read(dir.join("dist").join(name))
                    .unwrap_or_else(|e| panic!("read plugins/ts/dist/{name}: {e}"))
            };
            Some(Components {
                field_filter: read("ts_field_filter.wasm"),
                erp_transform: read("ts_erp_transform.wasm"),
            })
        })
        .as_ref()
}

#[tokio::test]
async fn typescript_field_filter_decides_like_the_rust_one() {
    let Some(ts) = typescript_components() else {
        return;
    };
    let gw = Gateway::start_with(&[("HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES", COMPONENT_CAP)]).await;
    let t = Client::new(&gw, "acme").await;
    upload_ok(&t, "large-orders", "field-filter").await;
    let uploaded = upload(&t, "ts-large-orders", ts.field_filter.clone())
        .await
        .expect(201)
        .body;
    assert_eq!(
        uploaded["exports"],
        json!(["filter", "transform", "authenticate"])
    );

    assert_filters_like_the_rust_one(&t, "ts-large-orders").await;
    // The host interface from TypeScript: the drop is logged, as by the Rust plugin.
    let drop = json!({"hook": "filter", "config": [{"path": "/payload/total", "op": "gte", "value": 100}],
                      "event": {"event_type": "order.created", "id": "o-9", "payload": {"total": 50}}});
    assert_eq!(
        dry_run(&t, "ts-large-orders", drop.clone()).await["logs"],
        dry_run(&t, "large-orders", drop).await["logs"]
    );
    // Its unwritten hooks say so, and the gateway skips them.
    let neutral = dry_run(
        &t,
        "ts-large-orders",
        json!({"hook": "transform", "event": {"event_type": "order.created", "payload": {}}}),
    )
    .await;
    assert!(neutral["error"].is_null(), "{neutral}");
}

#[tokio::test]
async fn typescript_erp_transform_writes_what_the_rust_one_writes() {
    let Some(ts) = typescript_components() else {
        return;
    };
    let gw = Gateway::start_with(&[("HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES", COMPONENT_CAP)]).await;
    let t = Client::new(&gw, "acme").await;
    upload_ok(&t, "erp", "erp-transform").await;
    upload(&t, "ts-erp", ts.erp_transform.clone())
        .await
        .expect(201);

    assert_transforms_like_the_rust_erp(&gw, &t, "ts-erp").await;
}
