//! Delivery outcomes: retries until success, rejections, `Retry-After`, timeouts, refused
//! connections, manual mode, resend and recover.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    receiver::{
        Behaviour, FAILURE_BODY_LEN, Receiver, assert_attempt_shape, attempts, create_webhook,
        eventually, ingest, refused_url, status_codes, wait_status, webhook_messages,
    },
};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Waits until `/messages/{event_id}/attempts` lists `n` attempts (the record of an
/// attempt may land a moment after the receiver answered).
async fn wait_attempts(t: &Client<'_>, event_id: &str, n: usize) -> Vec<Value> {
    let what = format!("{n} attempts recorded for {event_id}");
    eventually(t.gateway, secs(10), &what, async || {
        let list = attempts(t, event_id).await;
        if list.len() >= n {
            Ok(list)
        } else {
            Err(json!(list).to_string())
        }
    })
    .await
}

fn ids_of(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|m| m["id"].as_str()).collect()
}

/// A header of an attempt's recorded response, whatever case the gateway stored it in.
fn response_header<'a>(attempt: &'a Value, name: &str) -> Option<&'a Value> {
    attempt["response_headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A receiver that fails three times (503) then answers 200 gets the event exactly four
/// times, with the same `webhook-id`, and the four attempts are listed in order.
#[tokio::test]
async fn fails_three_times_then_delivers() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailFirst {
        n: 3,
        status: 503,
        retry_after: None,
    })
    .await;
    // PT0S then three 1 s retries: four attempts in all.
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    ingest(&t, "e-1", json!({"total": 42})).await;

    rx.wait_for(&gw, secs(20), "a 2xx for e-1", |r| {
        r.iter().any(|r| r.succeeded())
    })
    .await;
    let delivered = wait_status(&t, "w1", "e-1", "delivered", secs(10)).await;
    // Nothing more may follow a success: give a stray retry time to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = rx.requests();
    let answered: Vec<_> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(
        answered,
        [Some(503), Some(503), Some(503), Some(200)],
        "exactly four requests"
    );
    for r in &requests {
        assert_eq!(r.webhook_id(), "e-1", "same webhook-id on every attempt");
        assert_eq!(r.json()["id"], "e-1");
    }
    // The 1 s steps (±20% jitter) separate the attempts.
    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(780), "retried after {gap:?}");
    }

    assert_eq!(delivered["webhook_id"], "w1", "{delivered}");
    assert_eq!(delivered["event_type"], "order.created", "{delivered}");
    assert_eq!(delivered["status_code"], 200, "{delivered}");
    assert_eq!(delivered["success"], true, "{delivered}");
    assert_eq!(delivered["runs_counter"], 4, "{delivered}");
    assert!(delivered["created_at"].is_string() && delivered["updated_at"].is_string());

    let list = wait_attempts(&t, "e-1", 4).await;
    assert_eq!(
        status_codes(&list),
        [Some(503), Some(503), Some(503), Some(200)]
    );
    for attempt in &list {
        assert_attempt_shape(attempt, "e-1", "w1");
        assert_eq!(
            response_header(attempt, "x-receiver"),
            Some(&json!("e2e")),
            "response headers are recorded: {attempt}"
        );
    }
    let times: Vec<jiff::Timestamp> = list
        .iter()
        .map(|a| a["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
    // The failure bodies were 6 KiB: the record keeps at most 4 KiB of them.
    let kept = list[0]["response_body"].as_str().unwrap();
    assert!(
        !kept.is_empty() && kept.len() <= 4096 && kept.len() < FAILURE_BODY_LEN,
        "response body capped at 4 KiB, kept {} bytes",
        kept.len()
    );
    assert!(kept.starts_with("no no "), "{kept:.40}");
    assert_eq!(list[3]["response_body"], "ok");
    assert_eq!(list[3]["error"], Value::Null);

    // The message routes agree.
    let with_runs = webhook_messages(&t, "w1", "&include_runs=true&include_payload=true").await;
    assert_eq!(with_runs.len(), 1);
    assert_eq!(with_runs[0]["runs"].as_array().map(Vec::len), Some(4));
    assert_eq!(with_runs[0]["payload"], json!({"total": 42}));
    assert_eq!(
        ids_of(&webhook_messages(&t, "w1", "&success=true").await),
        ["e-1"]
    );
    assert!(
        webhook_messages(&t, "w1", "&success=false")
            .await
            .is_empty()
    );
    let by_outcome = "/events/order.created/webhook/w1/messages?failed_to_send";
    let sent = t.get(&format!("{by_outcome}=false")).await.expect(200).body;
    assert_eq!(ids_of(sent["data"].as_array().unwrap()), ["e-1"]);
    let unsent = t.get(&format!("{by_outcome}=true")).await.expect(200).body;
    assert_eq!(unsent["data"], json!([]));
    let event = t.get("/messages/e-1").await.expect(200).body;
    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{event}");
    assert_eq!(deliveries[0]["webhook_id"], "w1");
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(deliveries[0]["runs_counter"], 4);
}

/// 400 puts the event in the rejected list without automatic retry; it can be read,
/// retried (and leaves the list on 2xx) or deleted.
#[tokio::test]
async fn rejected_event_is_listed_retried_and_deleted() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(400)).await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    ingest(&t, "e-1", json!({"total": 1})).await;
    ingest(&t, "e-2", json!({"total": 2})).await;

    for id in ["e-1", "e-2"] {
        let rejected = wait_status(&t, "w1", id, "rejected", secs(15)).await;
        assert_eq!(rejected["status_code"], 400, "{rejected}");
        assert_eq!(rejected["success"], false, "{rejected}");
        assert_eq!(rejected["runs_counter"], 1, "{rejected}");
    }
    // The schedule has three more 1 s steps; a rejection must use none of them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        (rx.count("e-1"), rx.count("e-2")),
        (1, 1),
        "no automatic retry"
    );
    let unsent = t
        .get("/events/order.created/webhook/w1/messages?failed_to_send=true")
        .await
        .expect(200)
        .body;
    let mut unsent_ids = ids_of(unsent["data"].as_array().unwrap());
    unsent_ids.sort();
    assert_eq!(
        unsent_ids,
        ["e-1", "e-2"],
        "rejected counts as failed to send"
    );

    let list = t.get("/webhooks/w1/rejected").await.expect(200).body;
    let mut listed = ids_of(list["data"].as_array().expect("data"));
    listed.sort();
    assert_eq!(listed, ["e-1", "e-2"], "{list}");
    assert!(list["data"][0]["created_at"].is_string(), "{list}");
    let one = t.get("/webhooks/w1/rejected/e-1").await.expect(200).body;
    assert_eq!(one["id"], "e-1");
    assert_eq!(one["tenant"], "acme");
    assert_eq!(one["event_type"], "order.created");
    assert!(one["published_at"].is_string(), "{one}");
    assert_eq!(one["payload"], json!({"total": 1}));

    // Still refused: NewStore's 502, in the error format, naming the attempt; the event
    // stays in the list.
    let refused = t
        .post("/webhooks/w1/rejected/e-1/retry", json!({}))
        .await
        .expect_error(502, "bad_gateway");
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains("stays in the rejected list") && message.contains("att_"),
        "{message}"
    );
    assert_eq!(rx.count("e-1"), 2);
    let list = t.get("/webhooks/w1/rejected").await.expect(200).body;
    assert_eq!(ids_of(list["data"].as_array().unwrap()).len(), 2, "{list}");

    // Fixed receiver: a retry from the list delivers and removes it from the list.
    rx.set(Behaviour::OK);
    let attempt = t
        .post("/webhooks/w1/rejected/e-1/retry", json!({}))
        .await
        .expect(200)
        .body;
    assert_attempt_shape(&attempt, "e-1", "w1");
    assert_eq!(attempt["status_code"], 200, "{attempt}");
    assert_eq!(rx.count("e-1"), 3);
    assert_eq!(rx.requests().last().unwrap().answered, Some(200));
    let list = t.get("/webhooks/w1/rejected").await.expect(200).body;
    assert_eq!(ids_of(list["data"].as_array().unwrap()), ["e-2"], "{list}");
    let delivered = wait_status(&t, "w1", "e-1", "delivered", secs(5)).await;
    assert_eq!(delivered["runs_counter"], 3, "{delivered}");

    // Delete: gone from the list, and no longer readable.
    t.call(Method::DELETE, "/webhooks/w1/rejected/e-2", None)
        .await
        .expect(204);
    let list = t.get("/webhooks/w1/rejected").await.expect(200).body;
    assert_eq!(list["data"], json!([]), "{list}");
    t.get("/webhooks/w1/rejected/e-2")
        .await
        .expect_error(404, "not_found");
    assert_eq!(rx.count("e-2"), 1, "deleting does not send");
}

/// 429 and 503 with `Retry-After: 2` are retried no earlier than 2 s later, although the
/// next schedule step is PT0S.
#[tokio::test]
async fn retry_after_is_honoured() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let mut receivers = Vec::new();
    for (id, status) in [("w429", 429), ("w503", 503)] {
        let rx = Receiver::with(Behaviour::FailFirst {
            n: 1,
            status,
            retry_after: Some(2),
        })
        .await;
        create_webhook(
            &t,
            id,
            &rx.url("/hook"),
            json!({"retry": {"schedule": ["PT0S", "PT0S", "PT1S"]}}),
        )
        .await;
        receivers.push((id, status, rx));
    }
    ingest(&t, "e-1", json!({})).await;

    for (id, status, rx) in &receivers {
        let requests = rx.wait_requests(&gw, 2, secs(15)).await;
        assert_eq!(requests[0].answered, Some(*status));
        assert_eq!(requests[1].answered, Some(200));
        let gap = requests[1].at - requests[0].at;
        // Millisecond timestamps may round the 2 s down by a hair; the schedule's PT0S
        // would have retried at once.
        assert!(
            gap >= Duration::from_millis(1990),
            "{id}: retried {gap:?} after a {status} with Retry-After: 2"
        );
        assert!(
            gap < secs(6),
            "{id}: waited {gap:?}, far beyond Retry-After"
        );
        let delivered = wait_status(&t, id, "e-1", "delivered", secs(5)).await;
        assert_eq!(delivered["runs_counter"], 2, "{delivered}");
    }
}

/// A receiver that never answers: each attempt ends at the webhook's timeout with no
/// status code and a timeout error; after the schedule the message is failed.
#[tokio::test]
async fn receiver_that_never_answers_times_out() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Hang).await;
    create_webhook(
        &t,
        "w1",
        &rx.url("/hook"),
        json!({"timeout": "PT1S", "retry": {"schedule": ["PT0S", "PT1S"]}}),
    )
    .await;
    ingest(&t, "e-1", json!({})).await;

    let failed = wait_status(&t, "w1", "e-1", "failed", secs(20)).await;
    assert_eq!(failed["status_code"], Value::Null, "{failed}");
    assert_eq!(failed["success"], false, "{failed}");
    assert_eq!(failed["runs_counter"], 2, "{failed}");
    assert_eq!(rx.count("e-1"), 2);
    let list = wait_attempts(&t, "e-1", 2).await;
    assert_eq!(status_codes(&list), [None, None]);
    for attempt in &list {
        assert_attempt_shape(attempt, "e-1", "w1");
        let error = attempt["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            error.contains("timeout") || error.contains("timed out"),
            "the error names the timeout: {attempt}"
        );
        let ms = attempt["duration_ms"].as_f64().unwrap();
        assert!(
            (900.0..5000.0).contains(&ms),
            "an attempt lasts about the 1 s timeout: {attempt}"
        );
    }
}

/// Nothing listening: every attempt records an error naming the connection failure, and
/// the message ends failed.
#[tokio::test]
async fn refused_connection_is_retried_then_failed() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    create_webhook(
        &t,
        "w1",
        &refused_url(),
        json!({"retry": {"schedule": ["PT0S", "PT1S", "PT1S"]}}),
    )
    .await;
    ingest(&t, "e-1", json!({})).await;

    let failed = wait_status(&t, "w1", "e-1", "failed", secs(20)).await;
    assert_eq!(failed["status_code"], Value::Null, "{failed}");
    assert_eq!(failed["runs_counter"], 3, "{failed}");
    let list = wait_attempts(&t, "e-1", 3).await;
    assert_eq!(status_codes(&list), [None, None, None]);
    for attempt in &list {
        assert_attempt_shape(attempt, "e-1", "w1");
        let error = attempt["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            error.contains("refused") || error.contains("connect"),
            "the error says the connection failed: {attempt}"
        );
    }
}

/// `retry.mode: manual`: failed after the first failure, nothing automatic; `resend`
/// delivers it once the receiver is fixed.
#[tokio::test]
async fn manual_mode_fails_once_then_resend_delivers() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(500)).await;
    create_webhook(
        &t,
        "w1",
        &rx.url("/hook"),
        json!({"retry": {"mode": "manual", "schedule": ["PT0S", "PT1S", "PT1S"]}}),
    )
    .await;
    ingest(&t, "e-1", json!({})).await;

    let failed = wait_status(&t, "w1", "e-1", "failed", secs(15)).await;
    assert_eq!(failed["status_code"], 500, "{failed}");
    assert_eq!(failed["runs_counter"], 1, "{failed}");
    // The schedule's 1 s steps must not be used in manual mode.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.count("e-1"), 1, "no automatic retry in manual mode");

    rx.set(Behaviour::OK);
    let attempt = t
        .post("/webhooks/w1/messages/e-1/resend", json!({}))
        .await
        .expect(200)
        .body;
    assert_attempt_shape(&attempt, "e-1", "w1");
    assert_eq!(attempt["status_code"], 200, "{attempt}");
    assert_eq!(rx.count("e-1"), 2);
    let delivered = wait_status(&t, "w1", "e-1", "delivered", secs(5)).await;
    assert_eq!(delivered["runs_counter"], 2, "{delivered}");
    assert_eq!(delivered["success"], true, "{delivered}");
}

/// `recover` re-queues the failed messages of its window, and only those.
#[tokio::test]
async fn recover_requeues_failed_messages_in_the_window() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(500)).await;
    // One step: failed after a single attempt.
    create_webhook(
        &t,
        "w1",
        &rx.url("/hook"),
        json!({"retry": {"schedule": ["PT0S"]}}),
    )
    .await;
    let now = jiff::Timestamp::now();
    let ago = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let ids: Vec<String> = (1..=5).map(|i| format!("e-{i}")).collect();
    for id in &ids {
        ingest(&t, id, json!({})).await;
    }
    for id in &ids {
        wait_status(&t, "w1", id, "failed", secs(15)).await;
    }
    rx.set(Behaviour::OK);

    // A window that ended an hour ago holds none of them.
    let none = recover(&t, json!({"since": ago(7200), "until": ago(3600)})).await;
    assert_eq!(none, json!({"recovered": 0}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 5, "nothing re-sent outside the window");

    let all = recover(&t, json!({"since": ago(60)})).await;
    assert_eq!(all, json!({"recovered": 5}));
    for id in &ids {
        let delivered = wait_status(&t, "w1", id, "delivered", secs(15)).await;
        assert_eq!(delivered["runs_counter"], 2, "{delivered}");
        assert_eq!(rx.count(id), 2, "{id}: one failure, one delivery");
    }
    // Nothing is failed any more, so a second recover finds nothing.
    let again = recover(&t, json!({"since": ago(60)})).await;
    assert_eq!(again, json!({"recovered": 0}));
}

/// `POST /webhooks/w1/recover`. The contract gives the body, not the status: re-queuing is
/// asynchronous, so 202 is as right as 200.
async fn recover(t: &Client<'_>, window: Value) -> Value {
    let reply = t.post("/webhooks/w1/recover", window).await;
    assert!(
        [200, 202].contains(&reply.status.as_u16()),
        "recover answered {}: {}",
        reply.status,
        reply.body
    );
    reply.body
}
