//! Tenants cannot reach each other through the sandbox: a plugin sleeping in a host call
//! ends at its time limit and frees its slot, one tenant's slow plugins leave slots for
//! the others, and tenants that upload the same bytes share compiled code but no state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_plugin_host::{OutgoingRequest, PluginError, PluginRuntime, RuntimeConfig};
use serde_json::json;

use crate::support::*;

fn request() -> OutgoingRequest {
    OutgoingRequest {
        method: "POST".into(),
        url: "https://receiver.example/hook".into(),
        headers: vec![],
        body: b"{}".to_vec(),
    }
}

/// `std::thread::sleep` is a WASI `poll` on a clock pollable: a host call, which the epoch
/// deadline that stops running WebAssembly cannot interrupt. It must end at the call's
/// time limit anyway, on every path a call can take.
#[tokio::test]
async fn sleeping_in_a_host_call_ends_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let sleeper = rt
        .load(
            TENANT,
            &rt.compile(&wasm("hostile-sleeper")).unwrap().sha256,
        )
        .unwrap();
    let limit = CALL_TIMEOUT * 3;

    // A 3 s sleep and an endless one, on a blocking thread.
    for config in [
        r#"{"ms": 3000, "sleep_in_filter": true}"#,
        r#"{"sleep_in_filter": true}"#,
    ] {
        let started = Instant::now();
        let report = rt
            .call_filter(&sleeper, config, envelope("x", json!({})), no_secrets())
            .await;
        let took = started.elapsed();
        assert_eq!(
            report.result,
            Err(PluginError::Timeout),
            "config {config:?}"
        );
        assert!(took < limit, "config {config:?}: took {took:?}");
    }

    // Inline first (it would wait, so it is moved off the caller), then blocking.
    let started = Instant::now();
    let plugin = sleeper.clone();
    let result = rt
        .with_slot(TENANT, move |slot| {
            slot.call_authenticate(&plugin, "", &request(), no_secrets())
                .result
        })
        .await
        .unwrap();
    assert_eq!(result, Err(PluginError::Timeout));
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());

    // A short sleep within the limit still completes.
    let report = rt
        .call_authenticate(&sleeper, r#"{"ms": 5}"#, request(), no_secrets())
        .await;
    assert_eq!(report.result.unwrap()[0].name, "x-slept");
}

/// The slots a sleeping call held are free again once it timed out: as many sleepers as
/// there are slots, then a good call, all within a few time limits.
#[tokio::test]
async fn sleepers_give_their_slots_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        max_calls_per_tenant: 8,
        ..test_config(dir.path())
    };
    let rt = PluginRuntime::new(config).unwrap();
    let sleeper = rt
        .load(
            TENANT,
            &rt.compile(&wasm("hostile-sleeper")).unwrap().sha256,
        )
        .unwrap();
    let good = rt
        .load(TENANT, &rt.compile(&wasm("field-filter")).unwrap().sha256)
        .unwrap();
    let started = Instant::now();
    let sleepers: Vec<_> = (0..8)
        .map(|_| {
            let (rt, sleeper) = (rt.clone(), sleeper.clone());
            tokio::spawn(async move {
                let config = r#"{"sleep_in_filter": true}"#;
                rt.call_filter(&sleeper, config, envelope("x", json!({})), no_secrets())
                    .await
                    .result
            })
        })
        .collect();
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), Err(PluginError::Timeout));
    }
    let report = rt
        .call_filter(&good, "[]", envelope("x", json!({})), no_secrets())
        .await;
    assert_eq!(report.result, Ok(true));
    assert!(
        started.elapsed() < CALL_TIMEOUT * 5,
        "took {:?}",
        started.elapsed()
    );
}

/// The attack of issue 15: 96 calls of a tenant's sleeping `authenticate` hook in flight
/// on the default 64 slots. Another tenant's call must start at once, not queue behind
/// them: from asking to answer it takes less than its own time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_slow_plugins_do_not_delay_anothers() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = RuntimeConfig::new(dir.path());
    let config = RuntimeConfig {
        max_concurrent_calls: defaults.max_concurrent_calls,
        max_calls_per_tenant: defaults.max_calls_per_tenant,
        ..test_config(dir.path())
    };
    let rt = PluginRuntime::new(config).unwrap();
    let sleeper_sha = rt.compile(&wasm("hostile-sleeper")).unwrap().sha256;
    let good = rt
        .load("victim", &rt.compile(&wasm("field-filter")).unwrap().sha256)
        .unwrap();

    // Three hostile tenants, 32 sleepers each, all in flight until the test ends.
    let mut hostile = Vec::new();
    for tenant in ["mallory-1", "mallory-2", "mallory-3"] {
        let sleeper = rt.load(tenant, &sleeper_sha).unwrap();
        for _ in 0..32 {
            let (rt, sleeper) = (rt.clone(), sleeper.clone());
            hostile.push(tokio::spawn(async move {
                loop {
                    let report = rt
                        .call_authenticate(&sleeper, "", request(), no_secrets())
                        .await;
                    assert_eq!(report.result, Err(PluginError::Timeout));
                }
            }));
        }
    }
    tokio::time::sleep(CALL_TIMEOUT / 2).await;

    for _ in 0..10 {
        let started = Instant::now();
        let report = tokio::time::timeout(
            Duration::from_secs(10),
            rt.call_filter(&good, "[]", envelope("x", json!({})), no_secrets()),
        )
        .await
        .expect("the victim's call was answered");
        let took = started.elapsed();
        assert_eq!(report.result, Ok(true));
        assert!(
            took < CALL_TIMEOUT,
            "the victim's call took {took:?} with the slots under attack"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in &hostile {
        assert!(!task.is_finished(), "a hostile call failed otherwise");
        task.abort();
    }
}

/// Tenants that upload the same bytes share the compiled code, never what calls learn. A
/// hook that poses as an SDK default (logs the not-implemented marker) under one tenant's
/// config is skipped from then on for that tenant only.
#[tokio::test]
async fn tenants_sharing_bytes_share_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let sha = rt.compile(&wasm("hostile-two-faced")).unwrap().sha256;
    let victim = rt.load("victim", &sha).unwrap();
    // The attacker uploads the same bytes: the same code, not the same handle.
    assert_eq!(rt.compile(&wasm("hostile-two-faced")).unwrap().sha256, sha);
    let attacker = rt.load("mallory", &sha).unwrap();
    assert!(!Arc::ptr_eq(&victim, &attacker));
    assert_eq!(attacker.tenant(), "mallory");

    let pose = r#"{"pose_as_default": true}"#;
    let posed = rt
        .call_authenticate(&attacker, pose, request(), no_secrets())
        .await;
    assert_eq!(posed.result, Ok(vec![]));
    assert!(!attacker.runs_hook(hookgate_plugin_host::Hook::Authenticate));

    // The victim's hook still runs and signs, on the handle it had and on the one its
    // next delivery looks up.
    assert!(victim.runs_hook(hookgate_plugin_host::Hook::Authenticate));
    let victim = rt.load("victim", &sha).unwrap();
    assert!(victim.runs_hook(hookgate_plugin_host::Hook::Authenticate));
    for _ in 0..3 {
        let headers = rt
            .call_authenticate(&victim, "{}", request(), no_secrets())
            .await
            .result
            .unwrap();
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[0].name, "x-two-faced");
    }
    // Loading again gives the same handle (its state is kept per tenant, not per call).
    assert!(Arc::ptr_eq(&victim, &rt.load("victim", &sha).unwrap()));
    assert!(!Arc::ptr_eq(&victim, &rt.load("mallory", &sha).unwrap()));
}
