//! Issue 15, items 5 and 6: payloads that `serde_json::Value` cannot hold.
//!
//! Ingest refuses payloads nested deeper than 64 levels (400, nothing written). A payload
//! at the limit is stored and read back byte for byte on every route that shows it. A
//! payload that is valid JSON but that `serde_json::Value` refuses (a number out of `f64`
//! range, such as `1e400`) is still accepted — JSON puts no bound on numbers and the
//! gateway keeps payloads verbatim — so these tests use it for what deep nesting can no
//! longer reach end to end: every read route must still answer, and a webhook whose
//! `filter_conditions` cannot evaluate such an event must not deliver it (fail closed),
//! recording why.
//!
//! The harness parses replies into `serde_json::Value`, which the `1e400` payload would
//! defeat, so these tests read replies as raw bytes and compare payloads as raw text.

use std::{collections::HashMap, time::Duration};

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use crate::{
    harness::{Client, Gateway, Reply},
    receiver::{
        Behaviour, Receiver, create_webhook, ingest, refused_url, wait_status, webhook_messages,
    },
};

/// The gateway's nesting limit for payloads (docs/API.md, "Ingest").
const LIMIT: usize = 64;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A payload nested exactly `depth` levels (its own object counts as one), arrays and
/// objects alternating below it. It carries what a re-serialization would change
/// (spaces, `1.50`, escapes, brackets inside strings), so a byte-for-byte comparison
/// shows whether a route parsed it.
fn nested_payload(depth: usize) -> String {
    assert!(depth >= 1);
    let (mut open, mut close) = (String::new(), String::new());
    for level in 1..depth {
        if level % 2 == 1 {
            open.push_str("[ ");
            close.insert_str(0, " ]");
        } else {
            open.push_str(r#"{"k" : "#);
            close.insert(0, '}');
        }
    }
    let note = r#""]} not a bracket: \" \\ \u00e9 [{""#;
    format!(r#"{{"status": "paid", "total": 1.50, "note": {note}, "deep": {open}true{close}}}"#)
}

/// One `order.created` event with this id and payload text, as the ingest body.
fn event_text(id: &str, payload: &str) -> String {
    format!(r#"{{"event_type": "order.created", "id": "{id}", "payload": {payload}}}"#)
}

/// POSTs `body` verbatim under the tenant's `/v1`.
async fn post_text(t: &Client<'_>, path: &str, body: String) -> Reply {
    let response = t
        .gateway
        .http
        .post(format!("{}/{}/v1{path}", t.gateway.base, t.tenant))
        .bearer_auth(&t.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// GETs a path under the tenant's `/v1` and returns the body's bytes. A handler that
/// panics closes the connection without an answer: that fails here, naming the route.
async fn get_bytes(t: &Client<'_>, path: &str) -> Vec<u8> {
    let response = t
        .gateway
        .http
        .get(format!("{}/{}/v1{path}", t.gateway.base, t.tenant))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: no answer ({e})"));
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: the answer broke off ({e})"));
    assert_eq!(
        status,
        StatusCode::OK,
        "GET {path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes.to_vec()
}

/// A JSON object's fields, each kept as the exact text the gateway sent.
type Fields = HashMap<String, Box<RawValue>>;

#[derive(Deserialize)]
struct RawPage {
    data: Vec<Fields>,
    done: bool,
}

async fn get_fields(t: &Client<'_>, path: &str) -> Fields {
    let bytes = get_bytes(t, path).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "GET {path}: not a JSON object ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// One page (the tests keep to fewer events than a page holds).
async fn get_page(t: &Client<'_>, path: &str) -> Vec<Fields> {
    let bytes = get_bytes(t, path).await;
    let page: RawPage = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "GET {path}: not a page ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(page.done, "GET {path}: one page expected");
    page.data
}

fn sorted_keys(fields: &Fields) -> Vec<&str> {
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[track_caller]
fn assert_payload(fields: &Fields, expected: &str, route: &str) {
    let shown = fields
        .get("payload")
        .unwrap_or_else(|| panic!("{route}: no payload in {:?}", sorted_keys(fields)));
    assert_eq!(
        shown.get(),
        expected,
        "{route}: the payload is not verbatim"
    );
}

fn field_str<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields.get(key).map_or("<missing>", |raw| raw.get())
}

/// The keys of a message of `/messages/{id}` and `/events/{type}/messages`.
const EVENT_MESSAGE_KEYS: [&str; 8] = [
    "created_at",
    "deliveries",
    "event_type",
    "id",
    "payload",
    "published_at",
    "status",
    "updated_at",
];

/// The keys of a webhook's message (without `payload` and `runs`, which come on request).
const DELIVERY_KEYS: [&str; 11] = [
    "created_at",
    "event_type",
    "id",
    "next_attempt_at",
    "reason",
    "runs_counter",
    "status",
    "status_code",
    "success",
    "updated_at",
    "webhook_id",
];

fn with_payload(keys: &[&'static str]) -> Vec<&'static str> {
    let mut keys = keys.to_vec();
    keys.push("payload");
    keys.sort_unstable();
    keys
}

/// Every route that shows `id`'s payload shows `payload` verbatim, in the shape the
/// contract gives. `webhook` took the event.
async fn assert_every_route_shows(t: &Client<'_>, webhook: &str, id: &str, payload: &str) {
    let route = format!("/messages/{id}");
    let message = get_fields(t, &route).await;
    assert_eq!(sorted_keys(&message), EVENT_MESSAGE_KEYS, "{route}");
    assert_payload(&message, payload, &route);
    let deliveries: Vec<Fields> =
        serde_json::from_str(field_str(&message, "deliveries")).expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{route}");
    assert_eq!(sorted_keys(&deliveries[0]), DELIVERY_KEYS, "{route}");

    let route = "/events/order.created/messages".to_string();
    let listed = get_page(t, &route).await;
    let found = listed
        .iter()
        .find(|m| field_str(m, "id") == format!("\"{id}\""))
        .unwrap_or_else(|| panic!("{route}: {id} not listed"));
    assert_eq!(sorted_keys(found), EVENT_MESSAGE_KEYS, "{route}");
    assert_payload(found, payload, &route);

    for route in [
        format!("/webhooks/{webhook}/messages?include_payload=true"),
        format!("/events/order.created/webhook/{webhook}/messages"),
    ] {
        let listed = get_page(t, &route).await;
        assert_eq!(listed.len(), 1, "{route}");
        assert_eq!(
            sorted_keys(&listed[0]),
            with_payload(&DELIVERY_KEYS),
            "{route}"
        );
        assert_payload(&listed[0], payload, &route);
    }
    let route = format!("/webhooks/{webhook}/messages");
    let listed = get_page(t, &route).await;
    assert_eq!(
        sorted_keys(&listed[0]),
        DELIVERY_KEYS,
        "{route}: no payload unless asked"
    );
}

/// The builder nests as asked: `serde_json::Value` holds at most 127 levels.
#[test]
fn nested_payload_has_the_depth_asked_for() {
    for depth in [1, 2, 64, 127] {
        let text = nested_payload(depth);
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "{depth}: {text}"
        );
    }
    assert!(serde_json::from_str::<Value>(&nested_payload(128)).is_err());
}

/// Deeper than the limit: 400 in the contract's error shape naming the payload, and
/// nothing written — for a single event and for a whole batch holding one such event.
/// Exactly at the limit is accepted.
#[tokio::test]
async fn ingest_refuses_payloads_nested_deeper_than_the_limit() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;

    for (id, payload) in [
        ("over-1", nested_payload(LIMIT + 1)),
        // The attacker's event: 100,000 levels.
        (
            "over-2",
            format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
    ] {
        let refused = post_text(&t, "/events", event_text(id, &payload))
            .await
            .expect_error(400, "validation_error");
        assert_eq!(refused.body["errors"][0]["field"], "payload", "{id}");
        let message = refused.body["message"].as_str().unwrap_or_default();
        assert!(message.contains("64 levels"), "{id}: {message}");
    }

    let batch = format!(
        r#"{{"events": [{}, {}]}}"#,
        event_text("batch-ok", r#"{"n": 1}"#),
        event_text("batch-deep", &nested_payload(LIMIT + 1)),
    );
    let refused = post_text(&t, "/events/batch", batch)
        .await
        .expect_error(400, "validation_error");
    assert_eq!(
        refused.body["errors"][0]["field"], "events[1].payload",
        "{}",
        refused.body
    );

    for id in ["over-1", "over-2", "batch-ok", "batch-deep"] {
        t.get(&format!("/messages/{id}"))
            .await
            .expect_error(404, "not_found");
    }

    let accepted = post_text(
        &t,
        "/events",
        event_text("at-limit", &nested_payload(LIMIT)),
    )
    .await
    .expect(202);
    assert_eq!(accepted.body["id"], "at-limit");
    let listed = get_page(&t, "/events/order.created/messages").await;
    let ids: Vec<&str> = listed.iter().map(|m| field_str(m, "id")).collect();
    assert_eq!(ids, [r#""at-limit""#], "only the accepted event is stored");
}

/// A payload exactly at the limit is delivered and shown by every read route, byte for
/// byte as it was sent.
#[tokio::test]
async fn payload_at_the_limit_reads_back_byte_for_byte() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    let payload = nested_payload(LIMIT);
    post_text(&t, "/events", event_text("deep-1", &payload))
        .await
        .expect(202);

    let requests = rx.wait_requests(&gw, 1, secs(10)).await;
    let body = String::from_utf8_lossy(&requests[0].body);
    assert!(
        body.contains(&format!(r#""payload":{payload}"#)),
        "the envelope carries the payload's bytes: {body}"
    );
    wait_status(&t, "w1", "deep-1", "delivered", secs(10)).await;
    assert_every_route_shows(&t, "w1", "deep-1", &payload).await;
}

/// A stored payload that `serde_json::Value` refuses (a number beyond `f64`) is shown
/// verbatim by every read route, the rejected event's too; none of them drops the
/// connection or turns the payload into `null`.
#[tokio::test]
async fn reads_survive_a_payload_that_serde_json_values_cannot_hold() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(400)).await;
    create_webhook(&t, "w1", &rx.url("/hook"), json!({})).await;
    let payload = r#"{"status": "open", "amount": 1e400}"#;
    post_text(&t, "/events", event_text("huge-1", payload))
        .await
        .expect(202);
    wait_status(&t, "w1", "huge-1", "rejected", secs(10)).await;

    assert_every_route_shows(&t, "w1", "huge-1", payload).await;
    let route = "/webhooks/w1/rejected/huge-1";
    let rejected = get_fields(&t, route).await;
    assert_eq!(
        sorted_keys(&rejected),
        ["event_type", "id", "payload", "published_at", "tenant"],
        "{route}"
    );
    assert_payload(&rejected, payload, route);
}

/// `filter_conditions` that cannot read an event do not let it through: the event is
/// recorded as `filtered` with the reason, for HTTP and S3 webhooks alike, even when the
/// condition would hold; events the filter can read are filtered or delivered as before.
#[tokio::test]
async fn filter_that_cannot_evaluate_an_event_does_not_deliver_it() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let paid_only = json!({"filter_conditions": {"payload.status": "paid"}});
    create_webhook(&t, "http-paid", &rx.url("/hook"), paid_only.clone()).await;
    // An S3 webhook records filtered events when it reads them, before any upload: an
    // endpoint where nothing listens is enough.
    let endpoint = refused_url().trim_end_matches("/hook").to_string();
    let s3 = json!({
        "id": "s3-paid", "event_types": ["order.created"], "timeout": "PT1S",
        "retry": {"schedule": ["PT0S", "PT1S"]},
        "filter_conditions": {"payload.status": "paid"},
        "destination": {
            "type": "s3", "bucket": "lake", "key_prefix": "out", "region": "us-east-1",
            "endpoint": endpoint, "path_style": true,
            "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret-example-key",
            "flush_interval": "PT1S", "max_file_bytes": 1024 * 1024,
        },
    });
    t.post("/webhooks", s3).await.expect(201);

    for (id, payload) in [
        ("open-huge", r#"{"status": "open", "amount": 1e400}"#),
        ("paid-huge", r#"{"status": "paid", "amount": 1e400}"#),
    ] {
        post_text(&t, "/events", event_text(id, payload))
            .await
            .expect(202);
    }
    ingest(&t, "open-1", json!({"status": "open"})).await;
    ingest(&t, "paid-1", json!({"status": "paid"})).await;

    rx.wait_for(&gw, secs(10), "paid-1 delivered", |r| {
        r.iter()
            .any(|r| r.webhook_id() == "paid-1" && r.succeeded())
    })
    .await;
    for webhook in ["http-paid", "s3-paid"] {
        for id in ["open-huge", "paid-huge"] {
            let filtered = wait_status(&t, webhook, id, "filtered", secs(10)).await;
            let reason = filtered["reason"].as_str().unwrap_or_default();
            assert!(
                reason.starts_with("filter_conditions: cannot evaluate")
                    && reason.contains("number out of range"),
                "{webhook}/{id}: {filtered}"
            );
        }
        let open = wait_status(&t, webhook, "open-1", "filtered", secs(10)).await;
        assert_eq!(open["reason"], "filter_conditions", "{webhook}: {open}");
    }
    // Give a stray send time to show up: only the paid event that the filter could read
    // may reach the receiver.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.webhook_ids(), ["paid-1"]);
    let delivered = webhook_messages(&t, "http-paid", "&success=true").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["id"], "paid-1");
}

/// A GET webhook signed with JWT carries the event as the token's claims. An event that
/// cannot become claims fails its attempt with the reason; before, the token went out
/// without the event and the message counted as delivered.
#[tokio::test]
async fn jwt_get_webhook_does_not_send_a_token_without_the_event() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let jwt_get = json!({
        "method": "GET",
        "retry": {"mode": "manual", "schedule": ["PT0S"]},
        "authentication": {"type": "jwt", "algorithm": "HMAC256",
                           "secret": "jwt-shared-secret-for-the-e2e-test-0123456789",
                           "iss": "hookgate", "sub": "acme"},
    });
    create_webhook(&t, "getter", &rx.url("/get"), jwt_get).await;
    post_text(
        &t,
        "/events",
        event_text("huge-get", r#"{"status": "paid", "amount": 1e400}"#),
    )
    .await
    .expect(202);
    ingest(&t, "plain-get", json!({"status": "paid"})).await;

    wait_status(&t, "getter", "plain-get", "delivered", secs(10)).await;
    wait_status(&t, "getter", "huge-get", "failed", secs(10)).await;
    let attempts = crate::receiver::attempts(&t, "huge-get").await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let error = attempts[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the event cannot be carried as JWT claims")
            && error.contains("number out of range"),
        "{}",
        attempts[0]
    );
    assert_eq!(attempts[0]["status_code"], Value::Null);
    assert_eq!(rx.webhook_ids(), ["plain-get"], "nothing sent for huge-get");
}
