//! Upload, cache, restart, isolation between calls.

use hookgate_plugin_host::{CacheStats, LoadError, PluginError};
use serde_json::json;

use crate::support::*;

#[test]
fn restart_reuses_the_cached_compilation() {
    let dir = tempfile::tempdir().unwrap();
    let sha256 = {
        let rt = runtime(dir.path());
        let artifact = rt.compile(&wasm("field-filter")).unwrap();
        assert_eq!(rt.cache_stats().compiled, 1);
        assert!(
            dir.path()
                .join(format!("{}.wasm", artifact.sha256))
                .exists()
        );
        assert!(
            dir.path()
                .join(format!("{}.cwasm", artifact.sha256))
                .exists()
        );
        artifact.sha256
    };

    // A new runtime on the same directory: deserializes, never compiles.
    let rt = runtime(dir.path());
    let plugin = rt.load(TENANT, &sha256).unwrap();
    rt.load(TENANT, &sha256).unwrap();
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            compiled: 0,
            cache_hits: 1,
            memory_hits: 1
        }
    );
    let report = rt.call_filter_blocking(&plugin, "[]", &envelope("x", json!({})), no_secrets());
    assert_eq!(report.result, Ok(true));
}

#[test]
fn missing_or_unusable_compiled_cache_is_rebuilt_from_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let sha256 = runtime(dir.path())
        .compile(&wasm("erp-transform"))
        .unwrap()
        .sha256;
    let cwasm = dir.path().join(format!("{sha256}.cwasm"));

    std::fs::remove_file(&cwasm).unwrap();
    let rt = runtime(dir.path());
    rt.load(TENANT, &sha256).unwrap();
    assert_eq!(rt.cache_stats().compiled, 1);
    assert!(cwasm.exists(), "the compiled artifact is rewritten");

    // Not something our engine wrote (e.g. from another wasmtime version): recompiled.
    std::fs::write(&cwasm, b"not a wasmtime artifact").unwrap();
    let rt = runtime(dir.path());
    rt.load(TENANT, &sha256).unwrap();
    assert_eq!(rt.cache_stats().compiled, 1);
    let rt = runtime(dir.path());
    rt.load(TENANT, &sha256).unwrap();
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            compiled: 0,
            cache_hits: 1,
            memory_hits: 0
        }
    );
}

#[test]
fn unknown_or_malformed_digests_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert!(matches!(
        rt.load(TENANT, &"0".repeat(64)),
        Err(LoadError::NotFound(_))
    ));
    assert!(matches!(
        rt.load(TENANT, "../../etc/passwd"),
        Err(LoadError::BadDigest(_))
    ));

    let sha256 = rt.compile(&wasm("field-filter")).unwrap().sha256;
    rt.remove(&sha256).unwrap();
    assert!(matches!(
        rt.load(TENANT, &sha256),
        Err(LoadError::NotFound(_))
    ));
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(
            TENANT,
            &rt.compile(&wasm("stateful-counter")).unwrap().sha256,
        )
        .unwrap();
    for _ in 0..5 {
        let report = rt
            .call_filter(&plugin, "", envelope("x", json!({})), no_secrets())
            .await;
        assert_eq!(
            report.result,
            Ok(true),
            "the global counter starts at zero every call"
        );
        assert_eq!(report.logs[0].message, "call 1");
        let report = rt
            .call_transform(&plugin, "cfg", envelope("x", json!({})), no_secrets())
            .await;
        assert_eq!(
            body_json(&report.result.unwrap()),
            json!({"calls": 1, "config": "cfg"})
        );
    }
}

#[test]
fn blocking_calls_report_instantiation_separately() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(TENANT, &rt.compile(&wasm("field-filter")).unwrap().sha256)
        .unwrap();
    let report = rt.call_filter_blocking(&plugin, "[]", &envelope("x", json!({})), no_secrets());
    assert_eq!(report.result, Ok(true));
    assert!(report.instantiate > std::time::Duration::ZERO && report.instantiate < report.elapsed);
    assert_eq!(report.fuel_used, None);
    let _: Result<bool, PluginError> = report.result;
}
