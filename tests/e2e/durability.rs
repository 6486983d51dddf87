//! Crash durability: every event acknowledged with 202 survives `kill -9`.

use std::{collections::HashSet, sync::Arc};

use serde_json::json;
use tokio::sync::Mutex;

use crate::harness::{Client, Gateway};

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let mut gw = Gateway::start().await;
    let key = gw.tenant("acme").await;
    const CLIENTS: usize = 32;
    const PER_CLIENT: usize = 100;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let http = gw.http.clone();
        let url = format!("{}/acme/v1", gw.base);
        let key = key.clone();
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                let id = format!("c{c}-e{i}");
                // Every 10th request is a batch of 10, to cover both paths.
                let response = if i % 10 == 0 {
                    let events: Vec<_> = (0..10)
                        .map(|j| json!({"event_type": "order.created", "id": format!("{id}-b{j}"), "payload": {"c": c, "i": i, "j": j}}))
                        .collect();
                    http.post(format!("{url}/events/batch")).bearer_auth(&key)
                        .json(&json!({"events": events})).send().await.unwrap()
                } else {
                    http.post(format!("{url}/events")).bearer_auth(&key)
                        .json(&json!({"event_type": "order.created", "id": id, "payload": {"c": c, "i": i}}))
                        .send().await.unwrap()
                };
                assert_eq!(response.status(), 202);
                let body: serde_json::Value = response.json().await.unwrap();
                let mut acked = acknowledged.lock().await;
                match body.get("ids") {
                    Some(ids) => acked.extend(ids.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string())),
                    None => acked.push(body["id"].as_str().unwrap().to_string()),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Right after the last 202: no graceful shutdown, no final flush.
    gw.crash_and_restart().await;

    let acknowledged: HashSet<String> = acknowledged.lock().await.iter().cloned().collect();
    let t = Client {
        gateway: &gw,
        tenant: "acme".into(),
        key,
    };
    let stored: HashSet<String> = t
        .all_messages_of_type("order.created")
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let expected = CLIENTS * (PER_CLIENT / 10 * 9 + PER_CLIENT / 10 * 10);
    assert_eq!(acknowledged.len(), expected);
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "no event appears twice or from nowhere"
    );
    println!(
        "durability: {} acknowledged events, all present after kill -9",
        acknowledged.len()
    );
}
