//! Cluster mode under failure: a gateway node killed under load, a node paused past its
//! lease. Two gateway nodes on a real 3-server JetStream cluster; receivers on loopback.

use std::time::{Duration, Instant};

use hookgate_nats_cluster::NatsCluster;
use serde_json::{Value, json};

use crate::{
    cluster::{cluster_node, running_on},
    harness::{Client, Gateway},
    receiver::{Behaviour, Receiver, create_webhook, eventually, ingest_batch, poll_until},
};

/// Creates webhooks through `nodes` in turn (`url(id)` each, `extra` merged in) until
/// there are at least `at_least` and every node runs some; returns their ids.
async fn spread_webhooks(
    nodes: &[&Client<'_>],
    at_least: usize,
    url: impl Fn(&str) -> String,
    extra: Value,
) -> Vec<String> {
    let gateways: Vec<&Gateway> = nodes.iter().map(|t| t.gateway).collect();
    let mut webhooks: Vec<String> = Vec::new();
    for i in 0..32 {
        let id = format!("w{i}");
        create_webhook(nodes[i % nodes.len()], &id, &url(&id), extra.clone()).await;
        webhooks.push(id);
        let running = eventually(
            gateways[0],
            Duration::from_secs(20),
            "every webhook runs on one node",
            async || {
                let mut running = Vec::new();
                for gw in &gateways {
                    running.push(running_on(gw).await);
                }
                match running.iter().sum::<u64>() == webhooks.len() as u64 {
                    true => Ok(running),
                    false => Err(format!("{running:?}")),
                }
            },
        )
        .await;
        if webhooks.len() >= at_least && running.iter().all(|n| *n > 0) {
            return webhooks;
        }
        // The node that started first holds every shard until the other takes its share.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the webhooks did not spread over the nodes");
}

fn client_of<'g>(gateway: &'g Gateway, key: &str) -> Client<'g> {
    Client {
        gateway,
        tenant: "acme".into(),
        key: key.into(),
    }
}

/// A retry schedule of `n` steps 1 s apart after an immediate first attempt: with 30% of
/// requests failing, a pair failing every one (0.3^15) is negligible.
fn quick_retries() -> Value {
    let mut steps = vec!["PT0S"];
    steps.extend(["PT1S"; 14]);
    json!({"retry": {"schedule": steps}})
}

/// Pairs of `ids` × receivers answered 2xx at least once.
fn delivered(receiver: &Receiver, webhooks: &[String], ids: &[String]) -> usize {
    let got = receiver.requests();
    webhooks
        .iter()
        .map(|w| {
            let path = format!("/{w}");
            ids.iter()
                .filter(|id| {
                    got.iter()
                        .any(|r| r.uri == path && r.webhook_id() == id.as_str() && r.succeeded())
                })
                .count()
        })
        .sum()
}

/// 2xx answers beyond the first, per (webhook path, event).
fn duplicates(receiver: &Receiver) -> usize {
    let mut seen = std::collections::HashMap::<(String, String), usize>::new();
    for r in receiver.requests().iter().filter(|r| r.succeeded()) {
        *seen
            .entry((r.uri.clone(), r.webhook_id().to_string()))
            .or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// `kill -9` of one of two gateway nodes while events are ingested through both and the
/// receivers fail 30% of requests: every acknowledged event reaches every webhook, the
/// survivor taking over the dead node's webhooks; duplicates are counted and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_event() {
    const EVENTS: usize = 1_000;
    const BATCH: usize = 50;
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let a = cluster_node(&servers).await;
    let mut b = cluster_node(&servers).await;
    let ta = Client::new(&a, "acme").await;
    let key = ta.key.clone();
    let rx = Receiver::with(Behaviour::FailRandomly { p: 0.3, seed: 17 }).await;
    let webhooks = {
        let tb = client_of(&b, &key);
        spread_webhooks(
            &[&ta, &tb],
            4,
            |w| rx.url(&format!("/{w}")),
            quick_retries(),
        )
        .await
    };
    let on_b = running_on(&b).await;

    let started = Instant::now();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut killed_at = None;
    for (n, chunk) in (0..EVENTS)
        .map(|i| format!("k-{i:05}"))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .enumerate()
    {
        if n == EVENTS / BATCH * 2 / 5 {
            b.kill9();
            killed_at = Some(Instant::now());
            println!(
                "killed node b (running {on_b} of {} webhooks) after {n} batches; {} pairs delivered",
                webhooks.len(),
                delivered(&rx, &webhooks, &acknowledged)
            );
        }
        // Both nodes take ingest until b dies; then a alone.
        let node = if killed_at.is_none() && n % 2 == 1 {
            &b
        } else {
            &a
        };
        ingest_batch(&client_of(node, &key), chunk).await;
        acknowledged.extend(chunk.iter().cloned());
    }
    let total = acknowledged.len() * webhooks.len();
    let done = poll_until(Duration::from_secs(150), || {
        delivered(&rx, &webhooks, &acknowledged) == total
    })
    .await;
    let got = delivered(&rx, &webhooks, &acknowledged);
    assert!(
        done,
        "{got} of {total} acknowledged pairs delivered\nsurvivor's log tail:\n{}",
        crate::receiver::log_tail(&a)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duplicates = duplicates(&rx);
    println!(
        "node kill under load: {total} pairs delivered in {:?} ({:?} after the kill); {} requests; {duplicates} duplicate deliveries",
        started.elapsed(),
        killed_at.expect("killed").elapsed(),
        rx.requests().len()
    );
    // At least once: duplicates only for what was in flight or unrecorded at the kill.
    assert!(
        duplicates < total / 10,
        "{duplicates} duplicates of {total}"
    );
    assert_eq!(
        running_on(&a).await,
        webhooks.len() as u64,
        "a runs them all"
    );
}

/// `SIGSTOP` of a node for longer than its lease: the other node takes its webhooks over
/// and delivers what is ingested meanwhile; on `SIGCONT` the paused node sends nothing the
/// new owner already sent, and stops its workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_loses_its_webhooks_and_sends_nothing_again() {
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let a = cluster_node(&servers).await;
    let b = cluster_node(&servers).await;
    let ta = Client::new(&a, "acme").await;
    let tb = ta.on(&b);
    let rx = Receiver::start().await;
    let webhooks = spread_webhooks(&[&ta, &tb], 4, |w| rx.url(&format!("/{w}")), json!({})).await;
    let before: Vec<String> = (0..20).map(|i| format!("p-{i:03}")).collect();
    ingest_batch(&ta, &before).await;
    assert!(
        poll_until(Duration::from_secs(30), || {
            delivered(&rx, &webhooks, &before) == before.len() * webhooks.len()
        })
        .await,
        "delivered before the pause"
    );

    b.signal("STOP");
    let paused_at = Instant::now();
    let during: Vec<String> = (0..50).map(|i| format!("q-{i:03}")).collect();
    ingest_batch(&ta, &during).await;
    let taken_over = poll_until(Duration::from_secs(40), || {
        delivered(&rx, &webhooks, &during) == during.len() * webhooks.len()
    })
    .await;
    let moved_after = paused_at.elapsed();
    b.signal("CONT");
    assert!(
        taken_over,
        "the paused node's webhooks moved and delivered\n{}",
        crate::receiver::log_tail(&a)
    );
    println!("paused node: its webhooks delivered by the other node {moved_after:?} after SIGSTOP");
    assert_eq!(running_on(&a).await, webhooks.len() as u64);

    // Awake again: it learns it lost its shards, and sends nothing a already sent.
    eventually(
        &b,
        Duration::from_secs(20),
        "b stopped its workers",
        async || match running_on(&b).await {
            0 => Ok(()),
            n => Err(format!("{n} running")),
        },
    )
    .await;
    let after: Vec<String> = (0..20).map(|i| format!("r-{i:03}")).collect();
    ingest_batch(&tb, &after).await;
    assert!(
        poll_until(Duration::from_secs(30), || {
            delivered(&rx, &webhooks, &after) == after.len() * webhooks.len()
        })
        .await,
        "delivered after the pause, through either node"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        duplicates(&rx),
        0,
        "nothing was sent twice (no attempt was in flight at the pause)"
    );
    assert!(
        running_on(&a).await + running_on(&b).await == webhooks.len() as u64,
        "each webhook runs once"
    );
}

/// `kill -9` of the server that leads the event stream while events are ingested: ingest
/// stalls while a new leader is elected (batches answered 503 are sent again with the same
/// ids, which is safe: ids are idempotent), then goes on; every acknowledged event is
/// delivered to every webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_under_load_stalls_briefly_and_loses_nothing() {
    const BATCHES: usize = 30;
    const BATCH: usize = 20;
    let _one_at_a_time = crate::cluster::one_cluster_at_a_time().await;
    let mut cluster = NatsCluster::start(3).await;
    let servers = cluster.urls();
    let a = cluster_node(&servers).await;
    let ta = Client::new(&a, "acme").await;
    let rx = Receiver::with(Behaviour::FailRandomly { p: 0.3, seed: 5 }).await;
    let webhooks: Vec<String> = (0..3).map(|w| format!("w{w}")).collect();
    for w in &webhooks {
        create_webhook(&ta, w, &rx.url(&format!("/{w}")), quick_retries()).await;
    }
    let mut acknowledged = Vec::new();
    let mut longest_stall = Duration::ZERO;
    let mut refused = 0;
    for n in 0..BATCHES {
        if n == BATCHES / 3 {
            let leader = cluster
                .stream_leader(0, "HG_EVENTS")
                .await
                .expect("the event stream has a leader");
            let i = cluster.index_of(&leader).expect("a server of the cluster");
            cluster.kill9(i);
            println!("killed {leader}, the event stream's leader, after {n} batches");
        }
        let ids: Vec<String> = (0..BATCH).map(|i| format!("l-{n:03}-{i:02}")).collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"event_type": "order.created", "id": id, "payload": {}}))
            .collect();
        let first_try = Instant::now();
        loop {
            let reply = ta.post("/events/batch", json!({"events": events})).await;
            match reply.status.as_u16() {
                202 => break,
                503 => {
                    refused += 1;
                    assert_eq!(reply.body["error_code"], "not_durable", "{}", reply.body);
                    assert!(
                        first_try.elapsed() < Duration::from_secs(60),
                        "ingest stalled for a minute"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("ingest answered {other}: {}", reply.body),
            }
        }
        longest_stall = longest_stall.max(first_try.elapsed());
        acknowledged.extend(ids);
    }
    println!(
        "stream leader kill: longest ingest stall {longest_stall:?}, {refused} batches answered 503 and sent again"
    );
    assert!(longest_stall < Duration::from_secs(30), "{longest_stall:?}");
    let total = acknowledged.len() * webhooks.len();
    let done = poll_until(Duration::from_secs(120), || {
        delivered(&rx, &webhooks, &acknowledged) == total
    })
    .await;
    assert!(
        done,
        "{} of {total} pairs delivered\n{}",
        delivered(&rx, &webhooks, &acknowledged),
        crate::receiver::log_tail(&a)
    );
    println!(
        "stream leader kill: {total} pairs delivered, {} duplicates",
        duplicates(&rx)
    );
}
