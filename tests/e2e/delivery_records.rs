//! What a delivery looks like on the wire, and what the gateway records about it:
//! envelope and headers, GET deliveries, the test endpoint, statistics, the integration
//! log and metrics.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    receiver::{
        Behaviour, Receiver, assert_attempt_shape, attempts, create_webhook, eventually, ingest,
        schedule, wait_status,
    },
};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The envelope (with the webhook's facts, docs/API.md "What a delivery sends"), custom
/// headers, `query_key`, `user-agent` and `webhook-id` arrive as the contract says; `data`
/// appears only when `additional_data` is set.
#[tokio::test]
async fn request_carries_envelope_headers_and_query_key() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(
        &t,
        "erp",
        &rx.url("/hooks/erp"),
        json!({"headers": {"X-Env": "prod", "X-Trace": "abc"}, "query_key": "s3cr3t",
               "additional_data": {"region": "eu"}}),
    )
    .await;
    create_webhook(&t, "plain", &rx.url("/plain"), json!({})).await;
    ingest(&t, "e-1", json!({"total": 42})).await;
    let requests = rx.wait_requests(&gw, 2, secs(10)).await;

    let erp = requests.iter().find(|r| r.path() == "/hooks/erp").unwrap();
    assert_eq!(erp.method, Method::POST);
    assert_eq!(erp.uri, "/hooks/erp?key=s3cr3t");
    let content_type = erp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        erp.header("user-agent"),
        Some(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(erp.header("webhook-id"), Some("e-1"));
    assert_eq!(erp.header("x-env"), Some("prod"));
    assert_eq!(erp.header("x-trace"), Some("abc"));
    let body = erp.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "data",
            "event_type",
            "id",
            "last_failure_at",
            "last_success_at",
            "object_class",
            "payload",
            "processing_timeout",
            "published_at",
            "tenant",
            "triggered_at",
            "webhook_id",
            "webhook_name"
        ]
    );
    assert_eq!(body["webhook_id"], "erp");
    assert_eq!(body["object_class"], "order");
    assert_eq!(body["processing_timeout"], 1, "create_webhook sets PT1S");
    assert_eq!(body["id"], "e-1");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["event_type"], "order.created");
    assert_eq!(body["payload"], json!({"total": 42}));
    assert_eq!(body["data"], json!({"region": "eu"}));
    let published = body["published_at"].as_str().unwrap();
    published
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("published_at `{published}`: {e}"));

    let plain = requests.iter().find(|r| r.path() == "/plain").unwrap();
    assert_eq!(plain.uri, "/plain", "no query without query_key");
    assert_eq!(plain.header("x-env"), None, "headers are per webhook");
    let body = plain.json();
    assert!(
        body.get("data").is_none(),
        "no data without additional_data: {body}"
    );
    assert_eq!(body["payload"], json!({"total": 42}));
}

/// `method: GET` sends no body and carries the event in the query string.
#[tokio::test]
async fn get_method_carries_the_event_in_the_query() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(
        &t,
        "getter",
        &rx.url("/get"),
        json!({"method": "GET", "query_key": "k1"}),
    )
    .await;
    ingest(&t, "e-1", json!({"total": 42})).await;
    let requests = rx.wait_requests(&gw, 1, secs(10)).await;

    let request = &requests[0];
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.path(), "/get");
    assert!(request.body.is_empty(), "a GET has no body");
    assert_eq!(request.header("webhook-id"), Some("e-1"));
    let query = request.query();
    for (key, value) in [
        ("event_id", "e-1"),
        ("event_type", "order.created"),
        ("tenant", "acme"),
        ("key", "k1"),
    ] {
        assert!(
            query.iter().any(|(k, v)| k == key && v == value),
            "{key}={value} missing from {}",
            request.uri
        );
    }
    wait_status(&t, "getter", "e-1", "delivered", secs(5)).await;
}

/// `POST …/test` sends a `hookgate.test` event at once and answers with its attempt.
#[tokio::test]
async fn test_endpoint_sends_now_and_returns_the_attempt() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;

    let attempt = t
        .post("/webhooks/w1/test", json!({}))
        .await
        .expect(200)
        .body;
    let event_id = attempt["event_id"].as_str().expect("event_id").to_string();
    assert_attempt_shape(&attempt, &event_id, "w1");
    assert_eq!(attempt["status_code"], 200, "{attempt}");
    assert_eq!(attempt["response_body"], "ok");
    // Synchronous: the receiver already has it when the answer comes.
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].webhook_id(), event_id);
    let body = requests[0].json();
    assert_eq!(body["event_type"], "hookgate.test");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["id"], event_id.as_str());
}

/// The webhook statistics count what the receiver actually saw.
#[tokio::test]
async fn stats_match_what_the_receiver_saw() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailFirst {
        n: 1,
        status: 500,
        retry_after: None,
    })
    .await;
    create_webhook(
        &t,
        "w1",
        &rx.url("/hook"),
        json!({"retry": {"schedule": schedule(2)}}),
    )
    .await;
    let fresh = t.get("/webhooks/w1/stats").await.expect(200).body;
    assert_eq!(fresh["triggers"], 0, "{fresh}");
    assert_eq!(fresh["last_success"], Value::Null, "{fresh}");

    ingest(&t, "e-1", json!({})).await;
    ingest(&t, "e-2", json!({})).await;
    for id in ["e-1", "e-2"] {
        wait_status(&t, "w1", id, "delivered", secs(15)).await;
    }
    assert_eq!(rx.requests().len(), 4, "one failure and one success each");
    let stats = wait_stats(&t, |s| s["success_responses"] == 2).await;
    assert_eq!(stats["events"], 2, "{stats}");
    assert_eq!(stats["triggers"], 4, "{stats}");
    assert_eq!(stats["failure_responses"], 2, "{stats}");
    assert_eq!(stats["failures_since_last_success"], 0, "{stats}");
    assert!(stats["last_event_at"].is_string(), "{stats}");
    assert!(stats.get("next_trigger_at").is_some(), "{stats}");
    let mut all = attempts(&t, "e-1").await;
    all.extend(attempts(&t, "e-2").await);
    let ids_with = |code: u64| -> Vec<Value> {
        all.iter()
            .filter(|a| a["status_code"] == code)
            .map(|a| a["id"].clone())
            .collect()
    };
    assert!(stats["last_success"]["at"].is_string(), "{stats}");
    assert!(
        ids_with(200).contains(&stats["last_success"]["attempt_id"]),
        "{stats}"
    );
    assert!(stats["last_failure"]["at"].is_string(), "{stats}");
    assert!(
        ids_with(500).contains(&stats["last_failure"]["attempt_id"]),
        "{stats}"
    );

    // Now a receiver that only fails: three attempts, all counted as failures in a row.
    rx.set(Behaviour::Always(500));
    ingest(&t, "e-3", json!({})).await;
    wait_status(&t, "w1", "e-3", "failed", secs(15)).await;
    assert_eq!(rx.requests().len(), 7);
    let stats = wait_stats(&t, |s| s["failure_responses"] == 5).await;
    assert_eq!(stats["failures_since_last_success"], 3, "{stats}");
    assert_eq!(stats["success_responses"], 2, "{stats}");
    assert_eq!(stats["triggers"], 7, "{stats}");
    assert_eq!(stats["events"], 3, "{stats}");
}

/// Statistics may be updated a moment after the message; waits until `ready` holds.
async fn wait_stats(t: &Client<'_>, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(t.gateway, secs(10), "statistics caught up", async || {
        let stats = t.get("/webhooks/w1/stats").await.expect(200).body;
        if ready(&stats) {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    })
    .await
}

/// Creating, stopping and starting a webhook are logged, newest first.
#[tokio::test]
async fn log_records_lifecycle_newest_first() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    create_webhook(&t, "w1", "http://127.0.0.1:9/hook", json!({})).await;
    t.post("/webhooks/w1/stop", json!({})).await.expect(200);
    t.post("/webhooks/w1/start", json!({})).await.expect(200);

    let log = t.get("/webhooks/w1/log").await.expect(200).body;
    let entries = log["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    let position = |action: &str| {
        actions
            .iter()
            .position(|a| *a == action)
            .unwrap_or_else(|| panic!("no `{action}` entry in {log}"))
    };
    assert_eq!(actions[0], "integration_started", "newest first: {log}");
    assert!(
        position("integration_started") < position("integration_stopped"),
        "{log}"
    );
    assert!(
        position("integration_stopped") < position("created"),
        "{log}"
    );
    assert_eq!(entries[0]["reason"], "Started via API.", "{log}");
    for entry in entries {
        let created_at = entry["created_at"].as_str().expect("created_at");
        created_at.parse::<jiff::Timestamp>().unwrap();
        assert!(entry.get("reason").is_some(), "{entry}");
    }
}

/// `/metrics` counts deliveries by outcome.
#[tokio::test]
async fn metrics_count_deliveries_by_outcome() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let ok = Receiver::start().await;
    let rejecting = Receiver::with(Behaviour::Always(400)).await;
    create_webhook(&t, "ok", &ok.url("/ok"), json!({})).await;
    create_webhook(&t, "rejecting", &rejecting.url("/no"), json!({})).await;
    ingest(&t, "e-1", json!({})).await;
    ingest(&t, "e-2", json!({})).await;
    for id in ["e-1", "e-2"] {
        wait_status(&t, "ok", id, "delivered", secs(10)).await;
        wait_status(&t, "rejecting", id, "rejected", secs(10)).await;
    }

    let (delivered, rejected) = eventually(&gw, secs(10), "metrics caught up", async || {
        let text = metrics(&gw).await;
        let counts = (
            deliveries(&text, "delivered"),
            deliveries(&text, "rejected"),
        );
        if counts.0 >= 2.0 && counts.1 >= 2.0 {
            Ok(counts)
        } else {
            Err(text)
        }
    })
    .await;
    assert_eq!((delivered, rejected), (2.0, 2.0));
}

pub async fn metrics(gw: &Gateway) -> String {
    // Scrapers usually come without credentials; accept an admin-protected endpoint too.
    let mut reply = gw.call(Method::GET, "/metrics", None, None).await;
    if reply.status == 401 {
        reply = gw.admin(Method::GET, "/metrics", None).await;
    }
    let reply = reply.expect(200);
    // Either exposition format Prometheus reads: classic text or OpenMetrics.
    let content_type = reply.headers["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    reply.body.as_str().expect("text").to_string()
}

/// Sum of `hookgate_deliveries_total` samples with this outcome, whatever other labels.
fn deliveries(text: &str, outcome: &str) -> f64 {
    let label = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| l.starts_with("hookgate_deliveries_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
