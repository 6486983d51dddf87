//! Cursor behaviour: stop/start catches up, temporary webhooks replay a window of the log,
//! fifo webhooks deliver strictly in ingest order.

use std::{collections::HashSet, time::Duration};

use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    receiver::{
        Behaviour, Receiver, create_webhook, eventually, ingest, ingest_batch, webhook_status,
    },
};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Asserts every id in `expected` was received exactly once and nothing else arrived.
#[track_caller]
fn assert_exactly_once(rx: &Receiver, expected: &[String]) {
    let received = rx.webhook_ids();
    let unexpected: Vec<_> = received
        .iter()
        .filter(|id| !expected.contains(id))
        .collect();
    assert!(unexpected.is_empty(), "not expected: {unexpected:?}");
    let twice: Vec<_> = expected.iter().filter(|id| rx.count(id) > 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|id| rx.count(id) == 0).collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
}

/// A stopped webhook sends nothing; started again, it delivers everything ingested
/// meanwhile, each event once.
#[tokio::test]
async fn stop_freezes_and_start_catches_up() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    // One delivery first, so the stop interrupts a webhook that demonstrably works.
    ingest(&t, "before", json!({})).await;
    rx.wait_requests(&gw, 1, secs(10)).await;

    let stopped = t
        .post("/webhooks/w1/stop", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(stopped["status"], "stopped");
    let ids: Vec<String> = (0..100).map(|i| format!("s-{i:03}")).collect();
    ingest_batch(&t, &ids).await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(rx.requests().len(), 1, "a stopped webhook sends nothing");
    assert_eq!(webhook_status(&t, "w1").await, "stopped");
    // Its queue depth shows what waits for it, although no worker runs for it.
    assert_eq!(lag_of(&gw, "w1").await, Some(100));

    let started = t
        .post("/webhooks/w1/start", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(started["status"], "running");
    // The event from before the stop, and the 100 ingested while stopped.
    rx.wait_delivered(&gw, 101, secs(30)).await;
    // Time for a stray duplicate to show up.
    tokio::time::sleep(secs(1)).await;
    let mut expected = ids.clone();
    expected.push("before".into());
    assert_exactly_once(&rx, &expected);
}

/// The `hookgate_webhook_lag_events` sample of one webhook.
async fn lag_of(gw: &Gateway, webhook: &str) -> Option<u64> {
    let mut reply = gw.call(Method::GET, "/metrics", None, None).await;
    if reply.status == 401 {
        reply = gw.admin(Method::GET, "/metrics", None).await;
    }
    let text = reply.expect(200).body.as_str().expect("text").to_string();
    text.lines()
        .filter(|line| line.starts_with("hookgate_webhook_lag_events{"))
        .find(|line| line.contains(&format!("webhook=\"{webhook}\"")))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A temporary webhook delivers exactly the events published in `[starts_at, ends_at]`,
/// including those ingested before it existed, then completes.
#[tokio::test]
async fn temporary_webhook_replays_its_window_then_completes() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    // Thirty events published a minute apart, two hours ago, all ingested up front.
    let base = Timestamp::from_second(Timestamp::now().as_second() - 7200).unwrap();
    let at = |minute: i64| base + SignedDuration::from_mins(minute);
    let events: Vec<Value> = (0..30)
        .map(|i| {
            json!({"event_type": "order.created", "id": format!("t-{i:02}"),
                   "published_at": at(i).to_string(), "payload": {"i": i}})
        })
        .collect();
    t.post("/events/batch", json!({"events": events}))
        .await
        .expect(202);

    // The window's bounds fall exactly on events 10 and 19: both are inside.
    create_webhook(
        &t,
        "replay",
        &rx.url("/replay"),
        json!({"integration_type": "temporary",
               "starts_at": at(10).to_string(), "ends_at": at(19).to_string()}),
    )
    .await;
    // Published now, after ends_at: not part of the replay.
    ingest(&t, "late", json!({})).await;

    let what = "the temporary webhook completes";
    eventually(&gw, secs(30), what, async || {
        match webhook_status(&t, "replay").await.as_str() {
            "completed" => Ok(()),
            other => Err(format!("status {other}, received {}", rx.requests().len())),
        }
    })
    .await;
    let expected: Vec<String> = (10..=19).map(|i| format!("t-{i:02}")).collect();
    assert_exactly_once(&rx, &expected);
    // The envelope carries the original publication time.
    for request in rx.requests() {
        let body = request.json();
        let i = body["payload"]["i"].as_i64().unwrap();
        let published: Timestamp = body["published_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(published, at(i), "{body}");
    }
    let log = t.get("/webhooks/replay/log").await.expect(200).body;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"completed"), "{log}");
    // A completed webhook cannot simply be started again.
    let restart = t.call(Method::POST, "/webhooks/replay/start", None).await;
    assert_eq!(restart.status.as_u16(), 409, "{}", restart.body);
}

/// A fifo webhook whose receiver fails 30% of requests (seeded) still delivers 500
/// events in exactly the ingest order, one at a time.
#[tokio::test]
async fn fifo_keeps_ingest_order_despite_random_failures() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailRandomly { p: 0.3, seed: 6 }).await;
    // Immediate retries keep the test short; twelve steps make exhausting one negligible
    // (0.3^12 per event).
    create_webhook(
        &t,
        "fifo",
        &rx.url("/fifo"),
        json!({"ordering": "fifo", "retry": {"schedule": vec!["PT0S"; 12]}}),
    )
    .await;
    let ids: Vec<String> = (0..500).map(|i| format!("f-{i:03}")).collect();
    for chunk in ids.chunks(100) {
        ingest_batch(&t, chunk).await;
    }

    rx.wait_delivered(&gw, ids.len(), secs(55)).await;
    assert_eq!(
        rx.first_success_order(),
        ids,
        "first successes in ingest order"
    );
    // Stronger: the head of the queue only moves forward, retries included.
    let position: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let arrivals: Vec<usize> = rx
        .webhook_ids()
        .iter()
        .map(|id| position[id.as_str()])
        .collect();
    assert!(
        arrivals.is_sorted(),
        "a later event was sent before an earlier one succeeded"
    );
    assert_eq!(rx.max_in_flight(), 1, "fifo: one request in flight");
    let failures = rx.requests().iter().filter(|r| !r.succeeded()).count();
    assert!(failures > 100, "the receiver failed only {failures} times");
    let distinct: HashSet<String> = rx.webhook_ids().into_iter().collect();
    assert_eq!(distinct.len(), 500);
}
