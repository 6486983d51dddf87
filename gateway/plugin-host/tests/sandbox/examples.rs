//! The example plugins do what their docs say.

use hmac::{Hmac, KeyInit, Mac};
use hookgate_plugin_host::{CallContext, Hook, OutgoingRequest, PluginError};
use std::time::Duration;

use serde_json::json;
use sha2::Sha256;

use crate::support::*;

#[tokio::test]
async fn field_filter_keeps_only_matching_events() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let artifact = rt.compile(&wasm("field-filter")).unwrap();
    assert_eq!(artifact.exports, Hook::ALL.to_vec());
    let plugin = rt.load(TENANT, &artifact.sha256).unwrap();

    let config = r#"[{"path": "/payload/total", "op": "gte", "value": 100},
                     {"path": "/payload/status", "op": "in", "value": ["paid", "shipped"]}]"#;
    let cases = [
        (json!({"total": 150, "status": "paid"}), true),
        (json!({"total": 100.0, "status": "shipped"}), true),
        (json!({"total": 99.5, "status": "paid"}), false),
        (json!({"total": 500, "status": "cancelled"}), false),
        (json!({"status": "paid"}), false),
    ];
    for (payload, expected) in cases {
        let report = rt
            .call_filter(
                &plugin,
                config,
                envelope("order.created", payload.clone()),
                no_secrets(),
            )
            .await;
        assert_eq!(report.result, Ok(expected), "payload {payload}");
    }

    let any = r#"{"match": "any", "conditions": [{"path": "/payload/vip", "op": "eq", "value": true},
                                                {"path": "/payload/total", "op": "gt", "value": 1000}]}"#;
    let report = rt
        .call_filter(
            &plugin,
            any,
            envelope("order.created", json!({"vip": true})),
            no_secrets(),
        )
        .await;
    assert_eq!(report.result, Ok(true));

    let report = rt
        .call_filter(
            &plugin,
            r#"{"nonsense": 1}"#,
            envelope("x", json!({})),
            no_secrets(),
        )
        .await;
    assert!(
        matches!(&report.result, Err(PluginError::Plugin(m)) if m.contains("config")),
        "{:?}",
        report.result
    );
}

#[tokio::test]
async fn sdk_defaults_are_neutral() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(TENANT, &rt.compile(&wasm("field-filter")).unwrap().sha256)
        .unwrap();
    let event = envelope("order.created", json!({"total": 1}));

    let report = rt
        .call_transform(&plugin, "", event.clone(), no_secrets())
        .await;
    assert_eq!(
        report.result,
        Ok(event.clone()),
        "transform defaults to the identity"
    );

    let request = OutgoingRequest {
        method: "POST".into(),
        url: "https://x".into(),
        headers: vec![],
        body: event.body,
    };
    let report = rt
        .call_authenticate(&plugin, "", request, no_secrets())
        .await;
    assert_eq!(
        report.result,
        Ok(vec![]),
        "authenticate defaults to no headers"
    );
}

/// A default hook says so (the SDK logs the reserved marker), the runtime remembers it and
/// answers later calls of that hook with the same neutral result without a sandbox; the
/// hooks the plugin implements keep running every time.
#[tokio::test]
async fn default_hooks_run_once_then_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(TENANT, &rt.compile(&wasm("erp-transform")).unwrap().sha256)
        .unwrap();
    let event = envelope("order.created", json!({"order_id": "SO-1", "lines": []}));
    assert!(plugin.runs_hook(Hook::Filter) && plugin.runs_hook(Hook::Transform));

    let first = rt
        .call_filter(&plugin, "", event.clone(), no_secrets())
        .await;
    assert_eq!(first.result, Ok(true));
    assert!(first.instantiate > Duration::ZERO, "the first call runs");
    assert!(
        first.logs.is_empty(),
        "the marker is not a log line: {:?}",
        first.logs
    );
    assert!(!plugin.runs_hook(Hook::Filter));
    let again = rt
        .call_filter(&plugin, "", event.clone(), no_secrets())
        .await;
    assert_eq!(again.result, Ok(true));
    assert_eq!(again.instantiate, Duration::ZERO, "skipped");

    for _ in 0..2 {
        let out = rt
            .call_transform(&plugin, "", event.clone(), no_secrets())
            .await;
        assert_eq!(out.result.unwrap().event_type, "ERP_ORDER_NEW");
        assert!(
            out.instantiate > Duration::ZERO,
            "an implemented hook always runs"
        );
    }
    assert!(plugin.runs_hook(Hook::Transform));
    assert!(plugin.exports_hook(Hook::Filter), "still exported");
}

#[tokio::test]
async fn erp_transform_flattens_order_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(TENANT, &rt.compile(&wasm("erp-transform")).unwrap().sha256)
        .unwrap();
    let order = json!({
        "order_id": "SO-1001", "customer": {"id": 77}, "currency": "EUR",
        "lines": [{"sku": "A-1", "quantity": 2, "unit_price": 9.95}, {"sku": "B-2", "unit_price": 5}]
    });

    let report = rt
        .call_transform(
            &plugin,
            "",
            envelope("order.created", order.clone()),
            no_secrets(),
        )
        .await;
    let out = report.result.expect("transform succeeds");
    assert_eq!(out.id, "evt_1");
    assert_eq!(out.event_type, "ERP_ORDER_NEW");
    assert!(
        out.headers
            .iter()
            .any(|h| h.name == "X-ERP-Record-Type" && h.value == "ERP_ORDER_NEW")
    );
    assert_eq!(
        body_json(&out),
        json!({
            "record_type": "ERP_ORDER_NEW", "source_event_id": "evt_1",
            "records": [
                {"order_no": "SO-1001", "customer_no": "77", "line_no": 1, "sku": "A-1", "quantity": 2.0,
                 "unit_price": 9.95, "amount": 19.9, "currency": "EUR", "ordered_at": "2026-11-22T10:00:00Z"},
                {"order_no": "SO-1001", "customer_no": "77", "line_no": 2, "sku": "B-2", "quantity": 1.0,
                 "unit_price": 5.0, "amount": 5.0, "currency": "EUR", "ordered_at": "2026-11-22T10:00:00Z"}
            ]
        })
    );

    // Configured mapping and header; unmapped types pass through untouched.
    let config = r#"{"event_types": {"order.updated": "ORD_CHG"}, "header": "X-Kind"}"#;
    let report = rt
        .call_transform(
            &plugin,
            config,
            envelope("order.updated", order.clone()),
            no_secrets(),
        )
        .await;
    let out = report.result.unwrap();
    assert_eq!(out.event_type, "ORD_CHG");
    assert!(out.headers.iter().any(|h| h.name == "X-Kind"));
    let untouched = envelope("order.created", order);
    let report = rt
        .call_transform(&plugin, config, untouched.clone(), no_secrets())
        .await;
    assert_eq!(report.result, Ok(untouched));
}

/// `include_payload` keeps the source payload verbatim beside the records; an order
/// without an id or lines still transforms (the delivery benchmark's events are such).
#[tokio::test]
async fn erp_transform_can_keep_the_source_payload() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(TENANT, &rt.compile(&wasm("erp-transform")).unwrap().sha256)
        .unwrap();
    let payload = json!({"sent_at_ns": 1_795_341_600_000_000_000u64, "seq": 7, "pad": "x\"y"});
    let config = r#"{"event_types": {"bench.x": "ERP_ORDER_NEW"}, "include_payload": true}"#;
    let report = rt
        .call_transform(
            &plugin,
            config,
            envelope("bench.x", payload.clone()),
            no_secrets(),
        )
        .await;
    let out = report.result.unwrap();
    assert_eq!(out.event_type, "ERP_ORDER_NEW");
    let body = body_json(&out);
    assert_eq!(body["payload"], payload);
    assert_eq!(body["records"], json!([]));
    assert_eq!(body["source_event_id"], "evt_1");

    // Without the option the payload is not copied.
    let config = r#"{"event_types": {"bench.x": "ERP_ORDER_NEW"}}"#;
    let report = rt
        .call_transform(&plugin, config, envelope("bench.x", payload), no_secrets())
        .await;
    assert!(body_json(&report.result.unwrap()).get("payload").is_none());
}

#[tokio::test]
async fn custom_signer_signs_timestamp_and_body_with_the_tenant_secret() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let artifact = rt.compile(&wasm("custom-signer")).unwrap();
    let plugin = rt.load(TENANT, &artifact.sha256).unwrap();
    let body = br#"{"id":"evt_1"}"#.to_vec();
    let request = OutgoingRequest {
        method: "POST".into(),
        url: "https://erp.example/hook".into(),
        headers: vec![],
        body: body.clone(),
    };
    let ctx = secrets(&[("acme-key", "s3cret")]).at(1_795_341_600_123);

    let report = rt
        .call_authenticate(&plugin, r#"{"secret": "acme-key"}"#, request.clone(), ctx)
        .await;
    let headers = report.result.expect("signed");
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].name, "X-Acme-Signature");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
    mac.update(b"1795341600.");
    mac.update(&body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(headers[0].value, format!("t=1795341600,s={expected}"));

    // No such secret for this plugin: a clear failure, not an unsigned request.
    let report = rt
        .call_authenticate(
            &plugin,
            r#"{"secret": "other"}"#,
            request,
            CallContext::default(),
        )
        .await;
    assert!(
        matches!(&report.result, Err(PluginError::Plugin(m)) if m.contains("'other' is not set")),
        "{:?}",
        report.result
    );
}

#[tokio::test]
async fn host_functions_reach_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let plugin = rt
        .load(
            TENANT,
            &rt.compile(&wasm("stateful-counter")).unwrap().sha256,
        )
        .unwrap();
    let request = OutgoingRequest {
        method: "POST".into(),
        url: "https://x".into(),
        headers: vec![],
        body: b"abc".to_vec(),
    };
    let report = rt
        .call_authenticate(&plugin, "k", request, secrets(&[("k", "v")]).at(42))
        .await;
    let headers = report.result.unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
            .unwrap()
    };
    assert_eq!(get("x-secret"), "v");
    assert_eq!(get("x-now-ms"), "42");
    assert_eq!(
        get("x-sha256"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].message, "call 1");
}
