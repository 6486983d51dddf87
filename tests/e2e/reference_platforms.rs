//! The five reference platforms' documented requests, sent as their documents write them
//! to Hookgate's routes, and their documented behaviour checked (`../shared/reference/`,
//! `docs/API.md` "Coming from …").

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    receiver::{Behaviour, Receiver, eventually, ingest, wait_status, webhook_messages},
    signing::{captured, python},
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn ingest_typed(t: &Client<'_>, event_type: &str, id: &str, extra: Value) {
    let mut body = json!({"event_type": event_type, "id": id, "payload": {"n": id}});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    t.post("/events", body).await.expect(202);
}

fn ids(messages: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

// ---- Sterling Store Engagement ----

/// "If you are using JWT as the method of authentication": the document's body, with
/// values in the fields, HMAC256; the token verifies with PyJWT.
#[tokio::test]
async fn sterling_jwt_webhook_and_subscription_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let secret = "sterling-hmac256-secret-for-the-e2e-test";
    let created = t
        .post(
            "/webhooks",
            json!({
                "url": rx.url("/example"),
                "credentials": {
                    "iss": "sterling", "sub": "acme", "privateKeyId": "key-1",
                    "algorithm": "HMAC256", "secret": secret, "audience": "erp"
                },
                "authenticationType": "JWT"
            }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["authentication"]["type"], "jwt", "{created}");
    assert_eq!(created["authentication"]["algorithm"], "HS256", "{created}");
    assert_ne!(
        created["authentication"]["secret"], secret,
        "secrets are masked"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    // Step 3: subscribe it to inventoryAdjustment.
    t.post(
        "/events/inventoryAdjustment/subscription",
        json!({"webhooks": [id]}),
    )
    .await
    .expect(200);
    ingest_typed(&t, "inventoryAdjustment", "adj-1", json!({})).await;
    ingest_typed(&t, "orderCreated", "other-1", json!({})).await;
    let requests = rx.wait_requests(&gw, 1, secs(20)).await;
    let mut request = captured(&requests[0]);
    request["secret"] = json!(secret);
    let verify = r#"
import json, sys, jwt
r = json.load(open(sys.argv[1]))
token = r["headers"]["authorization"].removeprefix("Bearer ")
assert jwt.get_unverified_header(token)["kid"] == "key-1"
claims = jwt.decode(token, r["secret"], algorithms=["HS256"], audience="erp", issuer="sterling")
assert claims["sub"] == "acme" and claims["jti"] == "adj-1", claims
print("verified")
"#;
    assert_eq!(python(verify, &request).unwrap(), "verified");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 1, "only the subscribed type is sent");

    // A misspelled credential is named, not dropped.
    let refused = t
        .post(
            "/webhooks",
            json!({"url": rx.url("/x"), "authenticationType": "JWT",
                   "credentials": {"iss": "i", "sub": "s", "algorithm": "HMAC256", "secrets": "x"}}),
        )
        .await
        .expect_error(400, "validation_error");
    assert_eq!(refused.body["errors"][0]["field"], "credentials.secrets");
}

/// "If you are using OAuth": the token comes from `oauthURL` with the client's
/// credentials and is sent as the bearer token.
#[tokio::test]
async fn sterling_oauth_webhook_as_written() {
    use axum::{Router, routing::post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_addr = listener.local_addr().unwrap();
    let token_server = tokio::spawn(async move {
        let app = Router::new().route(
            "/oauthToken",
            post(|body: String| async move {
                let granted = body.contains("grant_type=client_credentials");
                axum::Json(json!({
                    "access_token": if granted { "token-from-oauth" } else { "refused" },
                    "token_type": "Bearer", "expires_in": 3600
                }))
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let created = t
        .post(
            "/webhooks",
            json!({
                "url": rx.url("/example"),
                "credentials": {
                    "clientId": "sterling-client",
                    "clientSecret": "sterling-client-secret-0001",
                    "oauthURL": format!("http://{token_addr}/oauthToken")
                },
                "authenticationType": "OAUTH"
            }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["authentication"]["type"], "oauth2", "{created}");
    assert_eq!(created["authentication"]["client_id"], "sterling-client");
    ingest_typed(&t, "inventoryAdjustment", "adj-1", json!({})).await;
    let requests = rx.wait_requests(&gw, 1, secs(20)).await;
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer token-from-oauth")
    );
    token_server.abort();
}

/// Step 4: the message queries with Sterling's names and its sample 10-digit values
/// (seconds, whatever the text says), and `failedToSend=false`.
#[tokio::test]
async fn sterling_message_queries_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let ok = Receiver::start().await;
    let failing = Receiver::with(Behaviour::Always(500)).await;
    for (id, url) in [("good", ok.url("/h")), ("bad", failing.url("/h"))] {
        t.post(
            "/webhooks",
            json!({"id": id, "url": url, "event_types": ["inventoryAdjustment"],
                   "retry": {"mode": "manual", "schedule": ["PT0S"]}}),
        )
        .await
        .expect(201);
    }
    // 1630510372 is 2021-09-01T15:32:52Z, 1631028483 is 2021-09-07T15:28:03Z.
    for (id, at) in [
        ("before", "2021-08-31T00:00:00Z"),
        ("inside-1", "2021-09-02T00:00:00Z"),
        ("inside-2", "2021-09-07T15:28:03Z"),
        ("after", "2021-09-08T00:00:00Z"),
    ] {
        ingest_typed(&t, "inventoryAdjustment", id, json!({"published_at": at})).await;
    }
    let page = t
        .get("/events/inventoryAdjustment/messages?startDate=1630510372&endDate=1631028483")
        .await
        .expect(200)
        .body;
    let listed = ids(page["data"].as_array().unwrap());
    assert_eq!(listed, ["inside-1", "inside-2"], "{page}");
    // Both spellings at once is ambiguous: refused by name.
    t.get("/events/inventoryAdjustment/messages?startDate=1630510372&start_date=1630510372")
        .await
        .expect_error(400, "validation_error");

    wait_status(&t, "good", "after", "delivered", secs(20)).await;
    wait_status(&t, "bad", "after", "failed", secs(20)).await;
    for (webhook, failed, expected) in [
        ("good", "false", 4),
        ("good", "true", 0),
        ("bad", "false", 0),
        ("bad", "true", 4),
    ] {
        let path = format!(
            "/events/inventoryAdjustment/webhook/{webhook}/messages?&failedToSend={failed}"
        );
        let page = t.get(&path).await.expect(200).body;
        assert_eq!(
            page["data"].as_array().unwrap().len(),
            expected,
            "{path}: {page}"
        );
    }
}

// ---- Front Systems ----

/// "Subscribe": `{"event", "url"}`; then GetWebHooksEvents with its camelCase switches
/// and date-only bounds.
#[tokio::test]
async fn front_subscribe_and_list_events_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(404)).await;
    let created = t
        .post(
            "/webhooks",
            json!({"event": "OmniChannelEndlessAisleOrderCreated", "url": rx.url("/url"),
                   "retry": {"mode": "manual", "schedule": ["PT0S"]}}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(
        created["event_types"],
        json!(["OmniChannelEndlessAisleOrderCreated"])
    );
    let id = created["id"].as_str().unwrap().to_owned();
    // A filtered one is not a failure to resend.
    t.call(
        Method::PATCH,
        &format!("/webhooks/{id}"),
        Some(json!({"filter_conditions": {"payload.n": {"ne": "ea-skip"}}})),
    )
    .await
    .expect(200);
    ingest_typed(
        &t,
        "OmniChannelEndlessAisleOrderCreated",
        "ea-skip",
        json!({}),
    )
    .await;
    ingest_typed(&t, "OmniChannelEndlessAisleOrderCreated", "ea-1", json!({})).await;
    ingest_typed(&t, "SaleCreated", "sale-1", json!({})).await;
    wait_status(&t, &id, "ea-skip", "filtered", secs(20)).await;
    wait_status(&t, &id, "ea-1", "failed", secs(20)).await;
    let refused = t
        .post(
            &format!("/webhooks/{id}/messages/ea-skip/resend"),
            json!({}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(
        refused.body["message"].as_str().unwrap().contains("filter"),
        "{}",
        refused.body
    );

    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let path = format!(
        "/webhooks/{id}/messages?from={today}&to={today}&success=false&includePayload=true&includeRuns=true"
    );
    let page = t.get(&path).await.expect(200).body;
    let data = page["data"].as_array().unwrap();
    assert_eq!(ids(data), ["ea-1"], "{page}");
    assert_eq!(data[0]["status_code"], 404, "{page}");
    assert_eq!(data[0]["payload"], json!({"n": "ea-1"}), "{page}");
    assert_eq!(data[0]["runs"].as_array().unwrap().len(), 1, "{page}");
    // The document's own request: a window in 2021 holds nothing of today, and without
    // the switches neither payload nor runs are shown.
    let page = t
        .get(&format!(
            "/webhooks/{id}/messages?from=2021-12-01&to=2021-12-15&success=false&includePayload=false&includeRuns=false"
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(page["data"], json!([]), "{page}");
    let page = t
        .get(&format!(
            "/webhooks/{id}/messages?success=false&includePayload=false"
        ))
        .await
        .expect(200)
        .body;
    assert!(
        page["data"][0].get("payload").is_none_or(Value::is_null),
        "{page}"
    );
    // ResendWebhookEvent: sent again at once, the attempt is the answer.
    let attempt = t
        .post(&format!("/webhooks/{id}/messages/ea-1/resend"), json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(attempt["status_code"], 404);
    assert_eq!(rx.requests().len(), 2);
}

// ---- NewStore ----

/// "Create a webhook integration": `callback_parameters`, `api_key` as the bearer token;
/// then "Update the integration" with a new key; the log as NewStore writes it.
#[tokio::test]
async fn newstore_integration_lifecycle_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let created = t
        .post(
            "/webhooks",
            json!({
                "id": "erp-netsuite-integration-002",
                "integration_type": "permanent",
                "starts_at": "2019-01-17T12:00:00Z",
                "callback_parameters": {
                    "callback_url": rx.url("/hook"),
                    "api_key": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
                }
            }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["status"], "running");
    assert_eq!(created["starts_at"], "2019-01-17T12:00:00Z");
    let id = "erp-netsuite-integration-002";
    ingest_typed(&t, "order.created", "o-1", json!({})).await;
    let first = rx.wait_requests(&gw, 1, secs(20)).await;
    assert_eq!(
        first[0].header("authorization"),
        Some("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    );
    // The typical update workflow: stop, update, start.
    t.post(&format!("/webhooks/{id}/stop"), json!({}))
        .await
        .expect(200);
    t.call(
        Method::PATCH,
        &format!("/webhooks/{id}"),
        Some(json!({"callback_parameters": {"api_key": "a-new-api-key-0002"}})),
    )
    .await
    .expect(200);
    t.post(&format!("/webhooks/{id}/start"), json!({}))
        .await
        .expect(200);
    ingest_typed(&t, "order.created", "o-2", json!({})).await;
    let both = rx.wait_requests(&gw, 2, secs(20)).await;
    assert_eq!(
        both[1].header("authorization"),
        Some("Bearer a-new-api-key-0002")
    );

    // "The start and end date as well as integration type can not be modified."
    for change in [
        json!({"starts_at": "2020-01-01T00:00:00Z"}),
        json!({"integration_type": "temporary", "ends_at": "2020-01-01T00:00:00Z"}),
    ] {
        t.call(Method::PATCH, &format!("/webhooks/{id}"), Some(change))
            .await
            .expect_error(400, "validation_error");
    }
    let log = t.get(&format!("/webhooks/{id}/log")).await.expect(200).body;
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "integration_started", "{log}");
    assert_eq!(entries[0]["reason"], "Started via API.", "{log}");
    assert_eq!(entries[1]["action"], "integration_stopped", "{log}");
    assert_eq!(entries[1]["reason"], "Stopped via API.", "{log}");
}

/// `starts_at` back-fills a permanent integration, and "must not be in the future";
/// a temporary integration "can not be updated".
#[tokio::test]
async fn newstore_dates_as_documented() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    ingest_typed(
        &t,
        "order.created",
        "old-1",
        json!({"published_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    ingest_typed(
        &t,
        "order.created",
        "older",
        json!({"published_at": "2025-01-01T00:00:00Z"}),
    )
    .await;
    t.post(
        "/webhooks",
        json!({"id": "backfill", "integration_type": "permanent",
               "starts_at": "2025-06-01T00:00:00Z",
               "callback_parameters": {"callback_url": rx.url("/hook")}}),
    )
    .await
    .expect(201);
    let requests = rx.wait_requests(&gw, 1, secs(20)).await;
    assert_eq!(requests[0].webhook_id(), "old-1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 1, "before starts_at is not sent");

    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let refused = t
        .post(
            "/webhooks",
            json!({"id": "future", "integration_type": "permanent", "starts_at": future,
                   "callback_parameters": {"callback_url": rx.url("/hook")}}),
        )
        .await
        .expect_error(400, "validation_error");
    assert_eq!(
        refused.body["errors"][0]["field"], "starts_at",
        "{}",
        refused.body
    );

    t.post(
        "/webhooks",
        json!({"id": "sap-integration-001", "integration_type": "temporary",
               "starts_at": "2025-06-01T00:00:00Z", "ends_at": "2026-06-01T00:00:00Z",
               "callback_parameters": {"callback_url": rx.url("/replay")}}),
    )
    .await
    .expect(201);
    let refused = t
        .call(
            Method::PATCH,
            "/webhooks/sap-integration-001",
            Some(json!({"callback_parameters": {"api_key": "k"}})),
        )
        .await
        .expect_error(400, "validation_error");
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("temporary"),
        "{}",
        refused.body
    );
}

/// `filter_conditions` in NewStore's two shapes: by event and by entity.
#[tokio::test]
async fn newstore_filter_conditions_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    for (id, filter) in [
        ("by-event", json!({"events": ["order.items_cancelled"]})),
        ("by-entity", json!({"entities": ["order"]})),
    ] {
        t.post(
            "/webhooks",
            json!({"id": id, "integration_type": "permanent", "filter_conditions": filter,
                   "callback_parameters": {"callback_url": rx.url(&format!("/{id}"))}}),
        )
        .await
        .expect(201);
    }
    for (event_type, id) in [
        ("order.items_cancelled", "e-1"),
        ("order.created", "e-2"),
        ("fulfillment_request.created", "e-3"),
        ("orders.created", "e-4"),
    ] {
        ingest_typed(&t, event_type, id, json!({})).await;
    }
    wait_status(&t, "by-entity", "e-4", "filtered", secs(20)).await;
    wait_status(&t, "by-event", "e-4", "filtered", secs(20)).await;
    let sent = |path: &str| {
        let mut ids: Vec<String> = rx
            .requests()
            .iter()
            .filter(|r| r.path() == path)
            .map(|r| r.webhook_id().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(sent("/by-event"), ["e-1"]);
    assert_eq!(sent("/by-entity"), ["e-1", "e-2"]);
}

/// "Up to 30 rejected events are stored."
#[tokio::test]
async fn newstore_rejected_list_holds_thirty() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(400)).await;
    t.post(
        "/webhooks",
        json!({"id": "erp-1", "integration_type": "permanent", "ordering": "fifo",
               "callback_parameters": {"callback_url": rx.url("/hook")}}),
    )
    .await
    .expect(201);
    let events: Vec<Value> = (0..35)
        .map(|n| json!({"event_type": "order.created", "id": format!("r-{n:02}"), "payload": {}}))
        .collect();
    t.post("/events/batch", json!({"events": events}))
        .await
        .expect(202);
    wait_status(&t, "erp-1", "r-34", "rejected", secs(30)).await;
    let list = eventually(&gw, secs(10), "the list settles at 30", async || {
        let list = t.get("/webhooks/erp-1/rejected").await.expect(200).body;
        match list["data"].as_array().unwrap().len() {
            30 => Ok(list),
            _ => Err(list.to_string()),
        }
    })
    .await;
    let listed = ids(list["data"].as_array().unwrap());
    assert_eq!(
        listed.first().map(String::as_str),
        Some("r-05"),
        "the oldest left"
    );
    assert_eq!(listed.last().map(String::as_str), Some("r-34"));
    // The message of one that left the list is still there.
    let gone = webhook_messages(&t, "erp-1", "").await;
    assert!(
        gone.iter()
            .any(|m| m["id"] == "r-00" && m["status"] == "rejected")
    );
}

/// Each retry is logged as `retry_triggered`, with NewStore's reason; a 400, which is not
/// retried, as `event_rejected`.
#[tokio::test]
async fn newstore_logs_every_retry() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailFirst {
        n: 2,
        status: 429,
        retry_after: None,
    })
    .await;
    t.post(
        "/webhooks",
        json!({"id": "erp-1", "retry": {"schedule": ["PT0S", "PT0.2S", "PT0.2S"]},
               "callback_parameters": {"callback_url": rx.url("/webhook")}}),
    )
    .await
    .expect(201);
    ingest(&t, "o-1", json!({})).await;
    wait_status(&t, "erp-1", "o-1", "delivered", secs(20)).await;
    let log = eventually(&gw, secs(10), "two retries logged", async || {
        let log = t.get("/webhooks/erp-1/log").await.expect(200).body;
        let retries = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "retry_triggered")
            .count();
        if retries == 2 {
            Ok(log)
        } else {
            Err(log.to_string())
        }
    })
    .await;
    let reason = log["entries"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "Request to URL {} failed. Reason: too many requests (HTTP status code 429).",
            rx.url("/webhook")
        )),
        "{reason}"
    );

    // A 400 is not retried (the event goes to the rejected list), so it is not logged as a
    // retry but as what happened.
    rx.set(Behaviour::Always(400));
    ingest(&t, "o-2", json!({})).await;
    wait_status(&t, "erp-1", "o-2", "rejected", secs(20)).await;
    let log = eventually(&gw, secs(10), "the rejection logged", async || {
        let log = t.get("/webhooks/erp-1/log").await.expect(200).body;
        match log["entries"][0]["action"] == "event_rejected" {
            true => Ok(log),
            false => Err(log.to_string()),
        }
    })
    .await;
    let entries = log["entries"].as_array().unwrap();
    let retries = entries
        .iter()
        .filter(|e| e["action"] == "retry_triggered")
        .count();
    assert_eq!(retries, 2, "{log}");
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("(HTTP status code 400). Event: o-2"),
        "{reason}"
    );
}

// ---- Automation API ----

/// The `"webHook"` block: `key` on the query, `connectionTimeout`, `secret` as a hex
/// HMAC-SHA256 in `X-Signature` (checked by Python's hmac).
#[tokio::test]
async fn automation_webhook_block_as_written() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let created = t
        .post(
            "/webhooks",
            json!({"webHook": {
                "enabled": true,
                "key": "QueryParameterKey",
                "connectionTimeout": "PT60S",
                "secret": "HeaderSecret",
                "useSslTrustAll": false,
                "endpoint": rx.url("/automation")
            }}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["timeout"], "PT60S", "{created}");
    assert_eq!(created["authentication"]["type"], "hmac", "{created}");
    ingest_typed(&t, "OrderAccepted", "07c6ad8c", json!({})).await;
    let requests = rx.wait_requests(&gw, 1, secs(20)).await;
    assert_eq!(
        requests[0].query(),
        [("key".to_owned(), "QueryParameterKey".to_owned())]
    );
    let mut request = captured(&requests[0]);
    request["secret"] = json!("HeaderSecret");
    let verify = r#"
import json, sys, hmac, hashlib
r = json.load(open(sys.argv[1]))
expected = hmac.new(r["secret"].encode(), r["body"].encode(), hashlib.sha256).hexdigest()
assert hmac.compare_digest(expected, r["headers"]["x-signature"])
print("verified")
"#;
    assert_eq!(python(verify, &request).unwrap(), "verified");

    // "The default is to trust all SSL/TLS connections": not here, and it says so.
    let refused = t
        .post(
            "/webhooks",
            json!({"webHook": {"enabled": true, "useSslTrustAll": true,
                               "endpoint": "https://www.example.org/automation"}}),
        )
        .await
        .expect_error(400, "validation_error");
    assert_eq!(refused.body["errors"][0]["field"], "webHook.useSslTrustAll");
}

// ---- CloudBlue Connect ----

/// "Repeated when a response is not returned during the 10 min time-out": a 10-minute
/// timeout is a valid setting; and "Last failure … contains a link to that response":
/// the statistics name the attempt and its event, which lead to the response.
#[tokio::test]
async fn cloudblue_timeout_and_statistics_links_as_documented() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::Always(503)).await;
    let created = t
        .post(
            "/webhooks",
            json!({"id": "tutorial", "name": "Tutorial Webhook", "url": rx.url("/"),
                   "method": "POST", "timeout": "PT10M", "headers": {"X-Env": "demo"},
                   "additional_data": {"purpose": "demo", "audience": "partners"},
                   "retry": {"mode": "manual", "schedule": ["PT0S"]}}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["timeout"], "PT10M");
    t.post("/webhooks", json!({"url": rx.url("/"), "timeout": "PT11M"}))
        .await
        .expect_error(400, "validation_error");
    ingest(&t, "fr-1", json!({})).await;
    wait_status(&t, "tutorial", "fr-1", "failed", secs(20)).await;
    let stats = eventually(
        &gw,
        secs(10),
        "the failure is in the statistics",
        async || {
            let stats = t.get("/webhooks/tutorial/stats").await.expect(200).body;
            if stats["last_failure"].is_object() {
                Ok(stats)
            } else {
                Err(stats.to_string())
            }
        },
    )
    .await;
    let mark = &stats["last_failure"];
    assert_eq!(mark["event_id"], "fr-1", "{stats}");
    let path = format!(
        "/messages/{}/attempts/{}",
        mark["event_id"].as_str().unwrap(),
        mark["attempt_id"].as_str().unwrap()
    );
    let attempt = t.get(&path).await.expect(200).body;
    assert_eq!(attempt["status_code"], 503, "{attempt}");
    assert_eq!(attempt["id"], mark["attempt_id"]);
    t.get("/messages/fr-1/attempts/att_unknown")
        .await
        .expect_error(404, "not_found");
    let sent = rx.requests()[0].json();
    assert_eq!(
        sent["data"],
        json!({"purpose": "demo", "audience": "partners"})
    );
    assert_eq!(rx.requests()[0].header("x-env"), Some("demo"));
}

/// "Your external handler should receive a request as presented below" and "The JWT
/// carries signed trustworthy data": the body and the token carry `webhook_id`,
/// `webhook_name`, `object_class`, `triggered_at`, `last_success_at`, `last_failure_at`,
/// `processing_timeout` and `data`, with only a JWT secret configured; the token is
/// checked with PyJWT.
#[tokio::test]
async fn cloudblue_calls_and_their_jwt_carry_the_webhook_as_documented() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::with(Behaviour::FailFirst {
        n: 1,
        status: 500,
        retry_after: None,
    })
    .await;
    let secret = "cloudblue-jwt-secret-for-the-e2e-test";
    t.post(
        "/webhooks",
        json!({"id": "wh-623-978-334", "name": "Tutorial Webhook", "url": rx.url("/"),
               "timeout": "PT10M", "additional_data": {"purpose": "demo", "audience": "partners"},
               "authentication": {"type": "jwt", "algorithm": "HS256", "secret": secret},
               "retry": {"schedule": ["PT0S", "PT1S"]}}),
    )
    .await
    .expect(201);
    ingest_typed(&t, "fulfillment_requests.updated", "pr-1", json!({})).await;
    wait_status(&t, "wh-623-978-334", "pr-1", "delivered", secs(20)).await;
    let requests = rx.requests();
    assert_eq!(requests.len(), 2, "a failed call and its retry");
    let (first, retry) = (requests[0].json(), requests[1].json());
    for body in [&first, &retry] {
        assert_eq!(body["webhook_id"], "wh-623-978-334", "{body}");
        assert_eq!(body["webhook_name"], "Tutorial Webhook");
        assert_eq!(body["object_class"], "fulfillment_requests");
        assert_eq!(body["processing_timeout"], 600);
        assert_eq!(body["last_success_at"], Value::Null);
        assert_eq!(body["data"]["purpose"], "demo");
        assert_eq!(body["payload"]["n"], "pr-1");
        assert!(
            body["triggered_at"]
                .as_str()
                .is_some_and(|at| at.ends_with('Z'))
        );
    }
    assert_eq!(first["last_failure_at"], Value::Null, "{first}");
    assert!(
        retry["last_failure_at"].as_str().is_some(),
        "the retry knows the failure: {retry}"
    );
    assert!(retry["triggered_at"].as_str() > first["triggered_at"].as_str());

    // The token carries the same facts, signed; no registered claim was configured.
    let mut request = captured(&requests[1]);
    request["secret"] = json!(secret);
    let verify = r#"
import hashlib, json, sys, jwt
r = json.load(open(sys.argv[1]))
token = r["headers"]["authorization"].removeprefix("Bearer ")
assert jwt.get_unverified_header(token)["alg"] == "HS256"
claims = jwt.decode(token, r["secret"], algorithms=["HS256"])
body = json.loads(r["body"])
for name in ["webhook_id", "webhook_name", "object_class", "triggered_at", "last_success_at",
             "last_failure_at", "processing_timeout", "data"]:
    assert claims[name] == body[name], (name, claims, body)
assert "payload" not in claims and "iss" not in claims and "sub" not in claims, claims
assert claims["body_sha256"] == hashlib.sha256(r["body"].encode()).hexdigest()
print("verified")
"#;
    assert_eq!(python(verify, &request).unwrap(), "verified");
}

/// "Click the Trigger Now button and verify: the number of events, triggers, and responses
/// are increased within the Statistics tab; your webhook handler received an API request
/// according to your specified webhook configuration." The statistics' mark leads to the
/// test's response.
#[tokio::test]
async fn cloudblue_trigger_now_counts_in_the_statistics() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let secret = "cloudblue-jwt-secret-for-the-e2e-test";
    t.post(
        "/webhooks",
        json!({"id": "tutorial", "name": "Tutorial Webhook", "url": rx.url("/"),
               "headers": {"X-Env": "demo"},
               "authentication": {"type": "jwt", "algorithm": "HS256", "secret": secret}}),
    )
    .await
    .expect(201);
    let before = t.get("/webhooks/tutorial/stats").await.expect(200).body;
    let attempt = t
        .post("/webhooks/tutorial/test", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(attempt["status_code"], 200, "{attempt}");
    let after = t.get("/webhooks/tutorial/stats").await.expect(200).body;
    for counter in ["events", "triggers", "success_responses"] {
        assert_eq!(
            after[counter].as_u64().unwrap(),
            before[counter].as_u64().unwrap() + 1,
            "{counter}: {before} → {after}"
        );
    }
    assert_eq!(
        after["last_success"]["attempt_id"], attempt["id"],
        "{after}"
    );
    let path = format!(
        "/messages/{}/attempts/{}",
        after["last_success"]["event_id"].as_str().unwrap(),
        after["last_success"]["attempt_id"].as_str().unwrap()
    );
    let followed = t.get(&path).await.expect(200).body;
    assert_eq!(followed["status_code"], 200, "{followed}");
    // Sent as configured: its header, its JWT and the webhook's facts.
    let request = &rx.requests()[0];
    assert_eq!(request.header("x-env"), Some("demo"));
    assert!(
        request
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    );
    let body = request.json();
    assert_eq!(body["event_type"], "hookgate.test");
    assert_eq!(body["webhook_id"], "tutorial");
    assert_eq!(body["object_class"], "hookgate");
    // A test is no message: the message list stays empty.
    let messages = webhook_messages(&t, "tutorial", "").await;
    assert!(messages.is_empty(), "{messages:?}");
}
