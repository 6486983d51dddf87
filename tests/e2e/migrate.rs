//! `hookgate migrate`: a stopped embedded gateway's data directory copied into a running
//! 3-server cluster, and deliveries going on there where they stopped.

use std::{collections::BTreeMap, process::Command, time::Duration};

use hookgate_nats_cluster::NatsCluster;
use serde_json::{Value, json};

use crate::{
    cluster::{MASTER_KEY, cluster_node},
    harness::{Client, Gateway},
    plugins::{assert_acme_signature, order, put_secret, upload_ok},
    receiver::{Behaviour, Receiver, create_webhook, eventually, ingest, webhook_messages},
};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs `hookgate migrate --from <dir>` against `servers`; returns its output, asserting
/// it succeeded.
async fn migrate(from: &std::path::Path, servers: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .arg("migrate")
        .arg("--from")
        .arg(from)
        .env("HOOKGATE_STORAGE", "nats")
        .env("HOOKGATE_NATS_SERVERS", servers)
        .env("HOOKGATE_MASTER_KEY", MASTER_KEY);
    let output = tokio::time::timeout(
        secs(120),
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .expect("migrate finishes")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "migrate failed:\n{text}");
    text
}

/// Each message of a webhook by event id: (status, runs, attempt ids).
async fn messages_of(t: &Client<'_>, webhook: &str) -> BTreeMap<String, (String, u64, Vec<Value>)> {
    let mut out = BTreeMap::new();
    for m in webhook_messages(t, webhook, "&include_runs=true").await {
        let id = m["id"].as_str().unwrap().to_string();
        let attempts = crate::receiver::attempts(t, &id)
            .await
            .into_iter()
            .filter(|a| a["webhook_id"] == webhook)
            .map(|a| a["id"].clone())
            .collect();
        let status = m["status"].as_str().unwrap().to_string();
        out.insert(id, (status, m["runs_counter"].as_u64().unwrap(), attempts));
    }
    out
}

/// The embedded gateway, stopped mid-way: a webhook that delivered everything (through a
/// transform and a signing plugin with a secret), one whose receiver is down (its events
/// wait for a retry), a stopped one with a backlog, and a second tenant. Migrated into a
/// cluster that already serves another tenant, while a node runs on it: everything is
/// there under the same ids and keys, and deliveries go on where they stopped: the
/// retries are made, the backlog goes out on start, nothing delivered is sent again, and
/// new events run through the same plugins with the same secret. A second run copies
/// nothing twice.
#[tokio::test]
async fn migrate_moves_a_stopped_gateway_into_a_cluster_where_deliveries_go_on() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let mut old = Gateway::start().await;
    let acme = Client::new(&old, "acme").await;
    let beta = Client::new(&old, "beta").await;
    upload_ok(&acme, "erp", "erp-transform").await;
    upload_ok(&acme, "signer", "custom-signer").await;
    put_secret(&acme, "signer", "acme-signing-key", "s3cret")
        .await
        .expect(201);
    let live = Receiver::start().await;
    let down = Receiver::with(Behaviour::Always(503)).await;
    let paused = Receiver::start().await;
    let other = Receiver::start().await;
    create_webhook(
        &acme,
        "live",
        &live.url("/live"),
        json!({"plugins": [
            {"plugin": "erp"},
            {"plugin": "signer", "config": {"secret": "acme-signing-key"}},
        ]}),
    )
    .await;
    // The first retry waits long enough to still be ahead when the cluster takes over.
    create_webhook(
        &acme,
        "down",
        &down.url("/down"),
        json!({"retry": {"schedule": ["PT0S", "PT25S"]}}),
    )
    .await;
    create_webhook(&acme, "paused", &paused.url("/paused"), json!({})).await;
    acme.post("/webhooks/paused/stop", json!({}))
        .await
        .expect(200);
    create_webhook(&beta, "b", &other.url("/b"), json!({})).await;
    for i in 1..=4 {
        ingest(&acme, &format!("e-{i}"), order(100.0 + f64::from(i))).await;
        ingest(&beta, &format!("b-{i}"), json!({"n": i})).await;
    }
    live.wait_delivered(&old, 4, secs(20)).await;
    other.wait_delivered(&old, 4, secs(20)).await;
    down.wait_requests(&old, 4, secs(20)).await;
    // The records are written a moment after the receiver answered.
    let before = eventually(&old, secs(10), "four records of `live`", async || {
        let now = messages_of(&acme, "live").await;
        match now.len() == 4 && now.values().all(|(status, _, _)| status == "delivered") {
            true => Ok(now),
            false => Err(format!("{now:?}")),
        }
    })
    .await;
    eventually(&old, secs(10), "four retries of `down` due", async || {
        let now = messages_of(&acme, "down").await;
        match now.len() == 4
            && now
                .values()
                .all(|(status, runs, _)| status == "pending" && *runs == 1)
        {
            true => Ok(()),
            false => Err(format!("{now:?}")),
        }
    })
    .await;
    // Statistics are written with the cursor, a moment after the records.
    let live_stats = eventually(&old, secs(10), "statistics of `live`", async || {
        let stats = acme.get("/webhooks/live/stats").await.expect(200).body;
        if stats["success_responses"] == 4 {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    })
    .await;
    let keys = [acme.key.clone(), beta.key.clone()];
    assert!(old.terminate().success(), "{}", old.log());

    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let node = cluster_node(&servers).await;
    // A tenant the cluster already serves: the migrated events get other seqs than they
    // had, and its own stay as they are.
    let gamma = Client::new(&node, "gamma").await;
    let gamma_rx = Receiver::start().await;
    create_webhook(&gamma, "g", &gamma_rx.url("/g"), json!({})).await;
    for i in 1..=5 {
        ingest(&gamma, &format!("g-{i}"), json!({"n": i})).await;
    }
    gamma_rx.wait_delivered(&node, 5, secs(20)).await;

    let report = migrate(old.data_dir(), &servers).await;
    assert!(report.contains("copied 2 tenants (2 API keys)"), "{report}");
    assert!(report.contains("8 events"), "{report}");
    assert!(report.contains("2 plugin versions (1 secrets)"), "{report}");
    assert!(report.contains("4 webhooks"), "{report}");

    // The same keys, the same webhooks and states, the same history.
    let [acme_key, beta_key] = keys;
    let acme = Client {
        gateway: &node,
        tenant: "acme".into(),
        key: acme_key,
    };
    let beta = Client {
        gateway: &node,
        tenant: "beta".into(),
        key: beta_key,
    };
    let webhooks = acme.get("/webhooks").await.expect(200).body;
    let states: BTreeMap<String, String> = webhooks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().into(),
                w["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("down".into(), "running".into()),
            ("live".into(), "running".into()),
            ("paused".into(), "stopped".into()),
        ])
    );
    assert_eq!(messages_of(&acme, "live").await, before);
    assert_eq!(
        acme.get("/webhooks/live/stats").await.expect(200).body,
        live_stats
    );
    let plugins = acme.get("/plugins").await.expect(200).body;
    assert_eq!(plugins["data"].as_array().unwrap().len(), 2, "{plugins}");
    let secrets = acme.get("/plugins/signer/secrets").await.expect(200).body;
    assert_eq!(secrets["data"][0]["key"], "acme-signing-key", "{secrets}");

    // The waiting retries are made by the cluster, once each.
    down.set(Behaviour::OK);
    eventually(
        &node,
        secs(60),
        "every event of `down` delivered",
        async || {
            let now = messages_of(&acme, "down").await;
            if now.len() == 4
                && now
                    .values()
                    .all(|(status, runs, _)| status == "delivered" && *runs == 2)
            {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    // The backlog of the stopped webhook goes out when it starts.
    acme.post("/webhooks/paused/start", json!({}))
        .await
        .expect(200);
    paused.wait_delivered(&node, 4, secs(30)).await;

    // New events: through the same plugins, signed with the migrated secret. An id the
    // old gateway took is still a duplicate.
    ingest(&acme, "e-5", order(250.0)).await;
    ingest(&acme, "e-1", order(999.0)).await;
    ingest(&beta, "b-5", json!({"n": 5})).await;
    let got = live
        .wait_for(&node, secs(30), "e-5 at `live`", |r| {
            r.iter().any(|r| r.webhook_id() == "e-5")
        })
        .await;
    let e5 = got.iter().find(|r| r.webhook_id() == "e-5").unwrap();
    assert_eq!(e5.json()["record_type"], "ERP_ORDER_NEW", "{}", e5.json());
    assert_acme_signature(
        e5.header("x-acme-signature").expect("signed by the plugin"),
        "s3cret",
        &e5.body,
    );
    other.wait_delivered(&node, 5, secs(30)).await;
    // Time for a repeat to show up.
    tokio::time::sleep(secs(2)).await;
    for (rx, ids) in [
        (&live, vec!["e-1", "e-2", "e-3", "e-4", "e-5"]),
        (&paused, vec!["e-1", "e-2", "e-3", "e-4", "e-5"]),
        (&other, vec!["b-1", "b-2", "b-3", "b-4", "b-5"]),
    ] {
        let counts: Vec<usize> = ids.iter().map(|id| rx.count(id)).collect();
        assert!(counts.iter().all(|&n| n == 1), "{ids:?}: {counts:?}");
        assert_eq!(rx.requests().len(), ids.len());
    }
    assert_eq!(down.count("e-5"), 1);
    assert_eq!(
        down.requests().len(),
        9,
        "one failed attempt and one retry each, and e-5"
    );
    let e1 = acme.get("/messages/e-1").await.expect(200).body;
    assert_eq!(e1["payload"]["total"], 101.0, "{e1}");
    assert_eq!(
        gamma_rx.requests().len(),
        5,
        "the cluster's own tenant is untouched"
    );

    // Run again: every tenant is there, nothing is copied twice.
    let again = migrate(old.data_dir(), &servers).await;
    assert!(again.contains("copied 0 tenants"), "{again}");
    assert!(
        again.contains("tenant acme: already in the cluster")
            && again.contains("tenant beta: already in the cluster"),
        "{again}"
    );
}

/// Migrating what is not a stopped data directory is refused with the reason, before
/// anything is written.
#[tokio::test]
async fn migrate_refuses_a_directory_in_use_or_not_a_data_directory() {
    let empty = tempfile::tempdir().unwrap();
    let run = |from: &std::path::Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("migrate")
            .arg("--from")
            .arg(from)
            .env("HOOKGATE_STORAGE", "nats")
            // Nothing listens here: the refusals come before any connection.
            .env("HOOKGATE_NATS_SERVERS", "nats://127.0.0.1:1")
            .env("HOOKGATE_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let refused = run(empty.path());
    assert!(
        refused.contains("not a Hookgate data directory"),
        "{refused}"
    );
    let running = Gateway::start().await;
    let refused = run(running.data_dir());
    assert!(
        refused.contains("is a gateway still running on it"),
        "{refused}"
    );
}
