//! Tenants cannot reach each other through plugins, on the real binary: the attacks of
//! issue 15 that went through (a tenant switching off another's hook with a copy of its
//! bytes; a tenant's sleeping plugins holding every sandbox slot) and the per-tenant bound
//! on stored plugin versions.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    plugins::{dry_run, upload, upload_ok, wasm},
    receiver::{Receiver, create_webhook, ingest, schedule},
};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Tenant B uploads tenant A's exact bytes and, by a dry run with its own config, makes
/// its copy's `authenticate` hook pose as not implemented. A's deliveries stay signed.
#[tokio::test]
async fn a_tenant_cannot_switch_off_another_tenants_hook() {
    let gw = Gateway::start().await;
    let victim = Client::new(&gw, "acme").await;
    let attacker = Client::new(&gw, "mallory").await;
    let rx = Receiver::start().await;

    let original = upload_ok(&victim, "signer", "hostile-two-faced").await;
    create_webhook(
        &victim,
        "signed",
        &rx.url("/signed"),
        json!({"plugins": [{"plugin": "signer", "config": {}}]}),
    )
    .await;
    ingest(&victim, "before", json!({})).await;
    rx.wait_delivered(&gw, 1, secs(20)).await;

    let copy = upload_ok(&attacker, "copy", "hostile-two-faced").await;
    assert_eq!(copy["sha256"], original["sha256"], "the very same bytes");
    let posed = dry_run(
        &attacker,
        "copy",
        json!({"hook": "authenticate", "config": {"pose_as_default": true},
               "event": {"event_type": "order.created", "payload": {}}}),
    )
    .await;
    assert_eq!(posed["result"], json!([]), "{posed}");

    for id in ["after-1", "after-2", "after-3"] {
        ingest(&victim, id, json!({})).await;
    }
    rx.wait_delivered(&gw, 4, secs(20)).await;
    let requests = rx.requests();
    for id in ["before", "after-1", "after-2", "after-3"] {
        let request = requests
            .iter()
            .find(|r| r.webhook_id() == id)
            .unwrap_or_else(|| panic!("{id} was delivered"));
        assert_eq!(
            request.header("x-two-faced"),
            Some("signed"),
            "{id} went out without the victim's authenticate header"
        );
    }
}

/// The attack of issue 15: a tenant's `authenticate` hook sleeps, with about a hundred
/// attempts in flight. Another tenant's plugin webhook must still deliver each event
/// promptly (it waited 11 s per event when one tenant could take every slot).
#[tokio::test]
async fn one_tenants_sleeping_plugins_do_not_hold_up_anothers_deliveries() {
    let gw = Gateway::start().await;
    let victim = Client::new(&gw, "acme").await;
    let attacker = Client::new(&gw, "mallory").await;
    let sink = Receiver::start().await;
    let rx = Receiver::start().await;

    upload_ok(&attacker, "sleeper", "hostile-sleeper").await;
    for n in 0..2 {
        create_webhook(
            &attacker,
            &format!("sleepy-{n}"),
            &sink.url("/sleepy"),
            json!({"plugins": [{"plugin": "sleeper"}], "max_in_flight": 48,
                   "retry": {"schedule": schedule(10)}}),
        )
        .await;
    }
    let events: Vec<Value> = (0..400)
        .map(|n| json!({"event_type": "order.created", "id": format!("m-{n}"), "payload": {}}))
        .collect();
    attacker
        .post("/events/batch", json!({"events": events}))
        .await
        .expect(202);

    upload_ok(&victim, "keep-all", "field-filter").await;
    create_webhook(
        &victim,
        "filtered",
        &rx.url("/victim"),
        json!({"plugins": [{"plugin": "keep-all", "config": []}]}),
    )
    .await;
    // Let the attacker's attempts fill the slots first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut took = Vec::new();
    for n in 0..5 {
        let id = format!("v-{n}");
        let started = Instant::now();
        ingest(&victim, &id, json!({})).await;
        rx.wait_delivered(&gw, n + 1, secs(30)).await;
        took.push(started.elapsed());
    }
    assert!(
        took.iter().all(|t| *t < secs(1)),
        "the victim's deliveries took {took:?} with another tenant's plugins sleeping"
    );
    // The attack was on: the attacker's attempts were failing at the time limit.
    let attempts = attacker
        .call(
            Method::GET,
            "/webhooks/sleepy-0/messages?include_runs=true&limit=5",
            None,
        )
        .await
        .expect(200)
        .body;
    let reasons = attempts.to_string();
    assert!(
        reasons.contains("timeout"),
        "{attempts}\n{}",
        crate::receiver::log_tail(&gw)
    );
    assert_eq!(sink.delivered_count(), 0, "a sleeping hook never signs");
}

/// A tenant stores at most `plugin_max_versions_per_tenant` plugin versions (each keeps
/// its component and compiled code on disk); past it uploads get 429, other tenants are
/// unaffected, and deleting a version makes room again.
#[tokio::test]
async fn plugin_versions_per_tenant_are_bounded() {
    let gw = Gateway::start_with(&[("HOOKGATE_PLUGIN_MAX_VERSIONS_PER_TENANT", "3")]).await;
    let t = Client::new(&gw, "acme").await;
    let other = Client::new(&gw, "other").await;
    upload_ok(&t, "filter-a", "field-filter").await;
    upload_ok(&t, "filter-a", "field-filter").await;
    upload_ok(&t, "filter-b", "erp-transform").await;

    let refused = upload(&t, "filter-c", wasm("field-filter"))
        .await
        .expect_error(429, "plugin_version_limit_reached");
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(message.contains('3'), "{}", refused.body);
    t.get("/plugins/filter-c").await.expect(404);

    upload_ok(&other, "filter-a", "field-filter").await;

    t.call(Method::DELETE, "/plugins/filter-a/versions/1", None)
        .await
        .expect(204);
    upload_ok(&t, "filter-c", "field-filter").await;
}
