//! Restart safety of delivery: `kill -9` twice while 5,000 events fan out to 3 webhooks
//! whose receivers fail 30% of requests; every (event, webhook) pair still gets a 2xx.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    harness::{Client, Gateway},
    receiver::{Behaviour, Receiver, create_webhook, ingest_batch, log_tail},
};

const EVENTS: usize = 5_000;
const BATCH: usize = 100;
const WEBHOOKS: usize = 3;

fn tenant<'a>(gw: &'a Gateway, key: &str) -> Client<'a> {
    Client {
        gateway: gw,
        tenant: "acme".into(),
        key: key.into(),
    }
}

fn delivered_pairs(receivers: &[Receiver]) -> usize {
    receivers.iter().map(Receiver::delivered_count).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_delivered_across_two_kill_9() {
    let started = Instant::now();
    let mut gw = Gateway::start().await;
    let key = gw.tenant("acme").await;
    let mut receivers = Vec::new();
    for w in 0..WEBHOOKS {
        let rx = Receiver::with(Behaviour::FailRandomly {
            p: 0.3,
            seed: 100 + w as u64,
        })
        .await;
        // Fifteen steps 1 s apart: a pair exhausting them all (0.3^15) is negligible, and
        // retries stay quick enough for the deadline.
        let mut steps = vec!["PT0S"];
        steps.extend(["PT1S"; 14]);
        create_webhook(
            &tenant(&gw, &key),
            &format!("w{w}"),
            &rx.url(&format!("/w{w}")),
            json!({"retry": {"schedule": steps}}),
        )
        .await;
        receivers.push(rx);
    }
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("c-{i:05}")).collect();
    let total = EVENTS * WEBHOOKS;

    // First crash in the middle of ingest, while deliveries of earlier batches run.
    for (n, chunk) in ids.chunks(BATCH).enumerate() {
        if n == EVENTS / BATCH * 2 / 5 {
            gw.crash_and_restart().await;
            println!(
                "crash 1 after {n} batches: {} of {total} pairs delivered",
                delivered_pairs(&receivers)
            );
        }
        ingest_batch(&tenant(&gw, &key), chunk).await;
    }
    // Second crash mid-delivery: once a good part, but not all, has been delivered.
    let some = receivers[0]
        .try_wait(Duration::from_secs(60), |_| {
            delivered_pairs(&receivers) >= total * 2 / 5
        })
        .await;
    let before = delivered_pairs(&receivers);
    gw.crash_and_restart().await;
    println!(
        "crash 2: {before} of {total} pairs delivered{}",
        if some {
            ""
        } else {
            " (40% not reached in 60 s)"
        }
    );

    let done = receivers[0]
        .try_wait(Duration::from_secs(120), |_| {
            delivered_pairs(&receivers) == total
        })
        .await;
    if !done {
        let missing: Vec<String> = receivers
            .iter()
            .enumerate()
            .flat_map(|(w, rx)| {
                let successes = rx.successes();
                ids.iter()
                    .filter(move |id| !successes.contains_key(*id))
                    .map(move |id| format!("w{w}/{id}"))
            })
            .collect();
        panic!(
            "{} of {total} pairs never answered 2xx, e.g. {:?}\ngateway log tail:\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            log_tail(&gw)
        );
    }
    let requests: usize = receivers.iter().map(|rx| rx.requests().len()).sum();
    let duplicates: u32 = receivers
        .iter()
        .flat_map(|rx| rx.successes().into_values())
        .map(|n| n - 1)
        .sum();
    println!(
        "crash test: {total} pairs delivered in {:?}; {requests} requests; {duplicates} duplicate deliveries (2xx more than once)",
        started.elapsed()
    );
    // At-least-once allows duplicates, but only for what was in flight at a crash.
    assert!(
        (duplicates as usize) < total / 10,
        "{duplicates} duplicates of {total} pairs"
    );
    // Nothing delivered that was not ingested.
    for rx in &receivers {
        let successes = rx.successes();
        assert!(
            successes.keys().all(|id| ids.binary_search(id).is_ok()),
            "unknown event ids delivered"
        );
    }
}
