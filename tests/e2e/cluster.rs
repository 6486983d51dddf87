//! Cluster mode (`storage = "nats"`): what the gateway checks about the NATS servers it is
//! given before it uses them, and a gateway node on a real 3-server JetStream cluster.

use std::{process::Command, time::Duration};

use hookgate_nats_cluster::NatsCluster;
use serde_json::json;

use crate::{
    harness::{Client, Gateway},
    receiver::{
        Behaviour, Receiver, Recorded, attempts, create_webhook, eventually, ingest, wait_status,
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// A stand-in for a NATS server that claims `version`: it speaks just enough of the
/// protocol (INFO, then PONG to every PING) for a client to connect and read the version.
async fn fake_nats_server(version: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"{version}\",\
                     \"proto\":1,\"go\":\"go1.22\",\"host\":\"127.0.0.1\",\"port\":{port},\
                     \"headers\":true,\"max_payload\":1048576,\"jetstream\":true}}\r\n"
                );
                if write.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && write.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Runs `hookgate serve` with `env` and returns its exit status and output, expecting it
/// to exit on its own.
async fn serve_until_exit(env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .arg("serve")
        .env("HOOKGATE_LISTEN", "127.0.0.1:0")
        .env("HOOKGATE_DATA_DIR", dir.path())
        .env("HOOKGATE_ADMIN_TOKEN", crate::harness::ADMIN_TOKEN);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .expect("hookgate exits on its own")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

#[tokio::test]
async fn a_nats_server_older_than_2_12_is_refused_at_startup() {
    let port = fake_nats_server("2.10.4").await;
    let (status, output) = serve_until_exit(&[
        ("HOOKGATE_STORAGE", "nats".into()),
        ("HOOKGATE_NATS_SERVERS", format!("nats://127.0.0.1:{port}")),
        ("HOOKGATE_MASTER_KEY", MASTER_KEY.into()),
    ])
    .await;
    assert!(!status.success(), "output: {output}");
    assert!(
        output.contains("nats-server 2.10.4") && output.contains("too old"),
        "the refusal names the version: {output}"
    );
    assert!(output.contains("2.12 or newer"), "{output}");
}

#[tokio::test]
async fn nats_settings_without_storage_nats_are_refused() {
    let (status, output) =
        serve_until_exit(&[("HOOKGATE_NATS_SERVERS", "nats://127.0.0.1:4222".into())]).await;
    assert!(!status.success(), "output: {output}");
    assert!(output.contains("only with storage"), "{output}");
}

/// One gateway node on a 3-server cluster: tenants, webhooks, ingest (idempotent ids),
/// retries until success, the message and its attempts, statistics, and a restart of the
/// node that loses nothing (its `data_dir` holds only caches).
#[tokio::test]
async fn a_node_on_a_nats_cluster_ingests_retries_and_delivers() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let mut gw = cluster_node(&servers).await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailFirst {
        n: 2,
        status: 503,
        retry_after: None,
    })
    .await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    ingest(&t, "e-1", json!({"total": 42})).await;
    // The same id again: a duplicate, not a second event.
    ingest(&t, "e-1", json!({"total": 42})).await;

    rx.wait_for(&gw, Duration::from_secs(30), "a 2xx for e-1", |r| {
        r.iter().any(|r| r.succeeded())
    })
    .await;
    let delivered = wait_status(&t, "w1", "e-1", "delivered", Duration::from_secs(15)).await;
    assert_eq!(delivered["runs_counter"], 3, "{delivered}");
    let list = attempts(&t, "e-1").await;
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(rx.requests().len(), 3, "one event, three attempts");

    // Statistics trail the records by up to 50 ms (they are written with the cursor, not
    // with every pass): wait for them so that the crash below does not race that write.
    success_responses(&gw, &t, 1).await;

    // A restart: everything is in the cluster.
    let (tenant, key) = (t.tenant.clone(), t.key.clone());
    drop(t);
    gw.crash_and_restart().await;
    let t = Client {
        gateway: &gw,
        tenant,
        key,
    };
    let webhook = t.get("/webhooks/w1").await.expect(200).body;
    assert_eq!(webhook["status"], "running", "{webhook}");
    ingest(&t, "e-2", json!({"total": 7})).await;
    rx.wait_for(
        &gw,
        Duration::from_secs(30),
        "e-2 delivered after the restart",
        |r| r.iter().any(|r| r.webhook_id() == "e-2" && r.succeeded()),
    )
    .await;
    success_responses(&gw, &t, 2).await;
    assert_eq!(
        rx.requests()
            .iter()
            .filter(|r| r.webhook_id() == "e-1")
            .count(),
        3,
        "nothing delivered again after the restart"
    );
}

/// Waits until the webhook `w1`'s statistics count `n` successful responses.
async fn success_responses(gw: &Gateway, t: &Client<'_>, n: u64) {
    eventually(
        gw,
        Duration::from_secs(15),
        &format!("statistics count {n} successes"),
        async || {
            let stats = t.get("/webhooks/w1/stats").await.body;
            if stats["success_responses"] == n {
                Ok(())
            } else {
                Err(stats.to_string())
            }
        },
    )
    .await;
}

/// The NATS-cluster tests run one at a time: each starts three servers and up to two
/// gateway nodes, and several at once on a 2-core machine make their timings (takeover,
/// stalls) a measure of the machine. Held for the test's whole life.
pub async fn one_cluster_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static CLUSTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    CLUSTERS.lock().await
}

/// Every node of a cluster shares this key (and the admin token), as an operator sets it.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub async fn cluster_node(servers: &str) -> Gateway {
    Gateway::start_with(&[
        ("HOOKGATE_STORAGE", "nats"),
        ("HOOKGATE_NATS_SERVERS", servers),
        ("HOOKGATE_MASTER_KEY", MASTER_KEY),
    ])
    .await
}

/// `hookgate_webhooks_running` of one node: the webhooks whose worker runs there.
pub async fn running_on(gw: &Gateway) -> u64 {
    let text = crate::delivery_records::metrics(gw).await;
    text.lines()
        .find_map(|line| line.strip_prefix("hookgate_webhooks_running "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hookgate_webhooks_running in:\n{text}"))
}

/// How many of `requests` were for event `event` at `path`.
fn received(requests: &[Recorded], path: &str, event: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.uri == path && r.webhook_id() == event)
        .count()
}

/// Two nodes: whichever node a request reaches, changing, stopping, starting and resending
/// acts on the worker of the node that runs the webhook.
#[tokio::test]
async fn any_node_acts_on_webhooks_another_node_runs() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let a = cluster_node(&servers).await;
    let b = cluster_node(&servers).await;
    let ta = Client::new(&a, "acme").await;
    let tb = ta.on(&b);
    let nodes = [&ta, &tb];
    let rx = Receiver::start().await;
    // Webhooks, created through either node, until each node runs some: the node that
    // started first holds every shard until the second joins and takes its share.
    let mut webhooks: Vec<String> = Vec::new();
    for i in 0..24 {
        let id = format!("w{i}");
        create_webhook(
            nodes[i % 2],
            &id,
            &rx.url(&format!("/hook/{id}")),
            json!({}),
        )
        .await;
        webhooks.push(id);
        let (on_a, on_b) = eventually(
            &a,
            Duration::from_secs(15),
            "every webhook runs once",
            async || {
                let (on_a, on_b) = (running_on(&a).await, running_on(&b).await);
                match on_a + on_b == webhooks.len() as u64 {
                    true => Ok((on_a, on_b)),
                    false => Err(format!("{on_a} on a, {on_b} on b")),
                }
            },
        )
        .await;
        if on_a > 0 && on_b > 0 && webhooks.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        running_on(&a).await > 0 && running_on(&b).await > 0,
        "the webhooks are spread"
    );

    // Ingest on either node reaches every webhook, wherever it runs.
    ingest(&ta, "e-1", json!({})).await;
    ingest(&tb, "e-2", json!({})).await;
    rx.wait_for(
        &a,
        Duration::from_secs(30),
        "e-1 and e-2 at every webhook",
        |got| {
            webhooks.iter().all(|w| {
                let path = format!("/hook/{w}");
                received(got, &path, "e-1") == 1 && received(got, &path, "e-2") == 1
            })
        },
    )
    .await;

    // A change made through the node that does not run the webhook reloads its worker.
    let moved = Receiver::start().await;
    for (i, w) in webhooks.iter().enumerate() {
        nodes[i % 2]
            .call(
                reqwest::Method::PATCH,
                &format!("/webhooks/{w}"),
                Some(json!({"url": moved.url(&format!("/moved/{w}"))})),
            )
            .await
            .expect(200);
    }
    ingest(&ta, "e-3", json!({})).await;
    moved
        .wait_for(
            &a,
            Duration::from_secs(30),
            "e-3 at every moved webhook",
            |got| {
                webhooks
                    .iter()
                    .all(|w| received(got, &format!("/moved/{w}"), "e-3") == 1)
            },
        )
        .await;
    assert_eq!(rx.count("e-3"), 0, "no worker kept the old URL");

    // Stopped through one node, every worker stops: nothing is sent while stopped...
    for (i, w) in webhooks.iter().enumerate() {
        nodes[i % 2]
            .post(&format!("/webhooks/{w}/stop"), json!({}))
            .await
            .expect(200);
    }
    ingest(&tb, "e-4", json!({})).await;
    // ...except what is asked for: a resend through the other node, by the owner.
    for (i, w) in webhooks.iter().enumerate() {
        let attempt = nodes[(i + 1) % 2]
            .post(&format!("/webhooks/{w}/messages/e-3/resend"), json!({}))
            .await
            .expect(200)
            .body;
        assert_eq!(attempt["status_code"], 200, "{attempt}");
        assert_eq!(
            received(&moved.requests(), &format!("/moved/{w}"), "e-3"),
            2
        );
    }
    // Trigger Now through either node runs on the owner (a stopped webhook too), and its
    // attempt is in the statistics whichever node reads them.
    for (i, w) in webhooks.iter().enumerate() {
        let attempt = nodes[(i + 1) % 2]
            .post(&format!("/webhooks/{w}/test"), json!({}))
            .await
            .expect(200)
            .body;
        assert_eq!(attempt["status_code"], 200, "{attempt}");
        let stats = nodes[i % 2]
            .get(&format!("/webhooks/{w}/stats"))
            .await
            .expect(200)
            .body;
        assert_eq!(
            stats["last_success"]["attempt_id"], attempt["id"],
            "{stats}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(moved.count("e-4"), 0, "stopped webhooks sent nothing");

    // Started through the other node: each goes on from where it stopped.
    for (i, w) in webhooks.iter().enumerate() {
        nodes[(i + 1) % 2]
            .post(&format!("/webhooks/{w}/start"), json!({}))
            .await
            .expect(200);
    }
    moved
        .wait_for(&a, Duration::from_secs(30), "e-4 once started", |got| {
            webhooks
                .iter()
                .all(|w| received(got, &format!("/moved/{w}"), "e-4") == 1)
        })
        .await;
    assert_eq!(
        running_on(&a).await + running_on(&b).await,
        webhooks.len() as u64
    );
}

/// Two of three servers down: no quorum, so ingest answers 503 in the contract's format
/// (never 202) and the node is not ready; back up, everything acknowledged is delivered.
#[tokio::test]
async fn without_quorum_ingest_is_refused_and_nothing_acknowledged_is_lost() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let mut cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let gw = cluster_node(&servers).await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    ingest(&t, "before", json!({})).await;
    rx.wait_for(&gw, Duration::from_secs(30), "`before` delivered", |got| {
        got.iter().any(|r| r.webhook_id() == "before")
    })
    .await;

    cluster.kill9(1);
    cluster.kill9(2);
    let mut acknowledged = Vec::new();
    let refused = eventually(&gw, Duration::from_secs(60), "ingest refused", async || {
        let id = format!("during-{}", acknowledged.len());
        let reply = t
            .post(
                "/events",
                json!({"event_type": "order.created", "id": id, "payload": {}}),
            )
            .await;
        match reply.status.as_u16() {
            // Accepted before the servers noticed: it must be delivered later.
            202 => {
                acknowledged.push(id);
                Err("202".into())
            }
            503 => Ok(reply),
            other => panic!("ingest without quorum answered {other}: {}", reply.body),
        }
    })
    .await;
    refused.expect_error(503, "not_durable");
    let ready = gw.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        ready.status, 503,
        "not ready without quorum: {}",
        ready.body
    );

    cluster.restart(1).await;
    cluster.restart(2).await;
    eventually(&gw, Duration::from_secs(60), "ready again", async || {
        let ready = gw.call(reqwest::Method::GET, "/readyz", None, None).await;
        match ready.status.as_u16() {
            200 => Ok(()),
            other => Err(format!("{other} {}", ready.body)),
        }
    })
    .await;
    let after = eventually(
        &gw,
        Duration::from_secs(30),
        "ingest accepted again",
        async || {
            let reply = t
                .post(
                    "/events",
                    json!({"event_type": "order.created", "id": "after", "payload": {}}),
                )
                .await;
            match reply.status.as_u16() {
                202 => Ok(()),
                other => Err(format!("{other} {}", reply.body)),
            }
        },
    );
    after.await;
    acknowledged.push("after".into());
    rx.wait_for(
        &gw,
        Duration::from_secs(60),
        "every acknowledged event delivered",
        |got| {
            acknowledged
                .iter()
                .all(|id| got.iter().any(|r| r.webhook_id() == id && r.succeeded()))
        },
    )
    .await;
}

/// Plugins uploaded through one node run on every node: the component bytes are in the
/// cluster's Object Store, and a node that lacks them fetches and compiles them once.
#[tokio::test]
async fn plugins_uploaded_through_one_node_run_on_every_node() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let a = cluster_node(&servers).await;
    let b = cluster_node(&servers).await;
    let ta = Client::new(&a, "acme").await;
    let tb = ta.on(&b);
    crate::plugins::upload_ok(&ta, "large-orders", "field-filter").await;
    crate::plugins::upload_ok(&ta, "erp", "erp-transform").await;
    // A dry run on the other node: it has never seen the component.
    let dry = crate::plugins::dry_run(
        &tb,
        "erp",
        json!({"hook": "transform", "event": {"event_type": "order.created", "payload":
            {"order_id": "SO-1", "currency": "EUR", "total": 250.0,
             "lines": [{"sku": "A-1", "quantity": 2, "unit_price": 9.5}]}}}),
    )
    .await;
    assert!(dry["error"].is_null(), "{dry}");
    assert_eq!(
        dry["result"]["body"]["record_type"], "ERP_ORDER_NEW",
        "{dry}"
    );

    let rx = Receiver::start().await;
    let nodes = [&ta, &tb];
    let mut webhooks = Vec::new();
    for i in 0..24 {
        let id = format!("p{i}");
        create_webhook(
            nodes[i % 2],
            &id,
            &rx.url(&format!("/{id}")),
            json!({"plugins": [
                {"plugin": "large-orders", "config": [{"path": "/payload/total", "op": "gte", "value": 100}]},
                {"plugin": "erp"},
            ]}),
        )
        .await;
        webhooks.push(id);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (on_a, on_b) = (running_on(&a).await, running_on(&b).await);
        if on_a > 0 && on_b > 0 && on_a + on_b == webhooks.len() as u64 && webhooks.len() >= 2 {
            break;
        }
    }
    assert!(
        running_on(&a).await > 0 && running_on(&b).await > 0,
        "spread"
    );
    let order = |total: f64| {
        json!({"order_id": "SO-1", "currency": "EUR", "total": total,
               "lines": [{"sku": "A-1", "quantity": 2, "unit_price": 9.5}]})
    };
    ingest(&tb, "small-1", order(50.0)).await;
    ingest(&tb, "large-1", order(250.0)).await;
    let got = rx
        .wait_for(
            &a,
            Duration::from_secs(60),
            "large-1 at every webhook",
            |got| {
                webhooks.iter().all(|w| {
                    got.iter()
                        .any(|r| r.uri == format!("/{w}") && r.webhook_id() == "large-1")
                })
            },
        )
        .await;
    for request in &got {
        let body = request.json();
        assert_eq!(body["record_type"], "ERP_ORDER_NEW", "{body}");
    }
    for w in &webhooks {
        wait_status(&ta, w, "small-1", "filtered", Duration::from_secs(15)).await;
    }
    assert!(
        got.iter().all(|r| r.webhook_id() != "small-1"),
        "filtered everywhere"
    );
}
