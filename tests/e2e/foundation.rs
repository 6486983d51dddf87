//! Tenants, keys, event types, webhooks, ingest and errors through the real binary.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    harness::{ADMIN_TOKEN, Client, Gateway},
    receiver::{Receiver, ingest},
};

#[tokio::test]
async fn tenants_are_isolated() {
    let gw = Gateway::start().await;
    let a = Client::new(&gw, "tenant-a").await;
    let b = Client::new(&gw, "tenant-b").await;
    b.post(
        "/webhooks",
        json!({"id": "b-hook", "url": "https://b.example.com/h"}),
    )
    .await
    .expect(201);

    // A's key on B's paths: 404, as if B did not exist.
    for path in [
        "/tenant-b/v1/webhooks",
        "/tenant-b/v1/webhooks/b-hook",
        "/tenant-b/v1/event-types",
    ] {
        gw.call(Method::GET, path, Some(&a.key), None)
            .await
            .expect_error(404, "not_found");
    }
    gw.call(
        Method::POST,
        "/tenant-b/v1/events",
        Some(&a.key),
        Some(json!({"event_type": "x", "payload": {}})),
    )
    .await
    .expect_error(404, "not_found");
    // No key, wrong key, malformed key, admin token on a tenant path: 401.
    gw.call(Method::GET, "/tenant-b/v1/webhooks", None, None)
        .await
        .expect_error(401, "unauthorized");
    let forged = format!("{}x", &b.key[..b.key.len() - 1]);
    for token in [forged.as_str(), "hgk_nope", "garbage", ADMIN_TOKEN] {
        gw.call(Method::GET, "/tenant-b/v1/webhooks", Some(token), None)
            .await
            .expect_error(401, "unauthorized");
    }
    // A tenant key is not an admin token.
    gw.call(Method::GET, "/admin/v1/tenants", Some(&a.key), None)
        .await
        .expect_error(401, "unauthorized");
    // A sees only its own (empty) list; B sees its webhook.
    assert_eq!(a.get("/webhooks").await.expect(200).body["data"], json!([]));
    assert_eq!(
        b.get("/webhooks").await.expect(200).body["data"][0]["id"],
        "b-hook"
    );

    // A second key works; revoking it stops it; the first key still works.
    let issued = gw
        .admin(Method::POST, "/admin/v1/tenants/tenant-b/keys", None)
        .await
        .expect(201)
        .body;
    let second = issued["api_key"].as_str().unwrap();
    gw.call(Method::GET, "/tenant-b/v1/webhooks", Some(second), None)
        .await
        .expect(200);
    let revoke = format!(
        "/admin/v1/tenants/tenant-b/keys/{}",
        issued["key_id"].as_str().unwrap()
    );
    gw.admin(Method::DELETE, &revoke, None).await.expect(204);
    gw.call(Method::GET, "/tenant-b/v1/webhooks", Some(second), None)
        .await
        .expect_error(401, "unauthorized");
    b.get("/webhooks").await.expect(200);

    // Only a hash of the key is stored: its secret part is in no file of the data directory.
    let secret_part = b.key.rsplit('_').next().unwrap();
    gw.assert_not_stored(secret_part);
    let tenant = gw
        .admin(Method::GET, "/admin/v1/tenants/tenant-b", None)
        .await
        .expect(200)
        .body;
    assert!(!tenant.to_string().contains(&b.key));

    // Deleting a tenant removes its keys and data.
    gw.admin(Method::DELETE, "/admin/v1/tenants/tenant-b", None)
        .await
        .expect(204);
    gw.call(Method::GET, "/tenant-b/v1/webhooks", Some(&b.key), None)
        .await
        .expect_error(401, "unauthorized");
    gw.admin(Method::GET, "/admin/v1/tenants/tenant-b", None)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn admin_tenant_validation() {
    let gw = Gateway::start().await;
    gw.tenant("acme").await;
    gw.admin(
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await
    .expect_error(409, "conflict");
    gw.admin(
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "Not_Valid"})),
    )
    .await
    .expect_error(400, "validation_error");
    gw.admin(
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "admin"})),
    )
    .await
    .expect_error(400, "validation_error");
    let list = gw
        .admin(Method::GET, "/admin/v1/tenants?limit=1", None)
        .await
        .expect(200)
        .body;
    assert_eq!(list["data"][0]["id"], "acme");
    gw.admin(Method::GET, "/admin/v1/tenants?limit=0", None)
        .await
        .expect_error(400, "validation_error");
}

/// Every webhook validation rule of the contract, each answered by a 400 naming the field.
#[tokio::test]
async fn webhook_validation_errors_name_the_field() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let url = "https://erp.example.com/hook";
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "url"),
        (json!({"url": "ftp://erp.example.com"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": url, "id": "UPPER"}), "id"),
        (json!({"url": url, "id": "a".repeat(51)}), "id"),
        (json!({"url": url, "timeout": "30s"}), "timeout"),
        (json!({"url": url, "timeout": "PT11M"}), "timeout"),
        (
            json!({"url": url, "retry": {"schedule": ["PT5S", "later"]}}),
            "retry.schedule[1]",
        ),
        (
            json!({"url": url, "retry": {"mode": "sometimes"}}),
            "retry.mode",
        ),
        (
            json!({"url": url, "integration_type": "temporary"}),
            "starts_at",
        ),
        (
            json!({"url": url, "integration_type": "temporary", "starts_at": "2026-01-01T00:00:00Z"}),
            "ends_at",
        ),
        (
            json!({"url": url, "integration_type": "temporary", "starts_at": "2026-02-01T00:00:00Z",
                "ends_at": "2026-01-01T00:00:00Z"}),
            "ends_at",
        ),
        (json!({"url": url, "starts_at": "yesterday"}), "starts_at"),
        (json!({"url": url, "method": "PUT"}), "method"),
        (
            json!({"url": url, "headers": {"Content-Length": "1"}}),
            "headers.Content-Length",
        ),
        (json!({"url": url, "max_in_flight": 0}), "max_in_flight"),
        (
            json!({"url": url, "rate_limit_per_second": 0}),
            "rate_limit_per_second",
        ),
        (json!({"url": url, "ordering": "random"}), "ordering"),
        (
            json!({"url": url, "plugins": [{"plugin": "not-uploaded"}]}),
            "plugins[0].plugin",
        ),
        (
            json!({"url": url, "filter_conditions": {"payload.total": {"between": [1, 2]}}}),
            "filter_conditions",
        ),
        (
            json!({"url": url, "additional_data": [1, 2]}),
            "additional_data",
        ),
        (
            json!({"url": url, "destination": {"type": "s3", "bucket": "B!", "region": "eu",
                "access_key_id": "a", "secret_access_key": "s"}}),
            "url",
        ),
        (json!({"url": url, "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let reply = t
            .post("/webhooks", body.clone())
            .await
            .expect_error(400, "validation_error");
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected {field} in {fields:?}"
        );
    }
    // Nothing invalid was stored.
    assert_eq!(t.get("/webhooks").await.expect(200).body["data"], json!([]));
}

#[tokio::test]
async fn webhook_lifecycle_and_masked_secrets() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let secret = "hmac-secret-that-must-never-be-shown";
    let s3_secret = "s3-secret-key-that-must-never-be-shown";
    let query_key = "query-key-that-must-never-be-shown";
    let created = t
        .post(
            "/webhooks",
            json!({
                "id": "erp-1", "name": "ERP", "url": "https://erp.example.com/hook",
                "event_types": ["order.created"], "query_key": query_key,
                "headers": {"X-Env": "prod"}, "additional_data": {"region": "eu"},
                "authentication": {"type": "hmac", "secret": secret},
                "retry": {"mode": "manual", "schedule": ["PT1S"]}, "ordering": "fifo",
            }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(created["status"], "running");
    assert_eq!(created["timeout"], "PT30S");
    t.post(
        "/webhooks",
        json!({"id": "erp-1", "url": "https://x.example.com"}),
    )
    .await
    .expect_error(409, "conflict");
    t.post(
        "/webhooks",
        json!({"id": "lake", "destination": {"type": "s3", "bucket": "exports",
        "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": s3_secret}}),
    )
    .await
    .expect(201);

    let list = t.get("/webhooks").await.expect(200).body.to_string();
    let one = t.get("/webhooks/erp-1").await.expect(200).body;
    for shown in [list, one.to_string(), created.to_string()] {
        for hidden in [secret, s3_secret, query_key] {
            assert!(!shown.contains(hidden), "secret leaked: {shown}");
        }
    }
    // Read-modify-write with the masked values keeps the secrets (and changes the rest).
    let mut edited = one.clone();
    edited["name"] = json!("ERP v2");
    let replaced = t
        .call(Method::PUT, "/webhooks/erp-1", Some(edited))
        .await
        .expect(200)
        .body;
    assert_eq!(replaced["name"], "ERP v2");
    assert_eq!(
        replaced["authentication"]["secret"],
        one["authentication"]["secret"]
    );
    // Secrets are sealed at rest.
    for hidden in [secret, s3_secret, query_key] {
        gw.assert_not_stored(hidden);
    }

    // PATCH is a merge patch; `null` removes.
    let patched = t
        .call(
            Method::PATCH,
            "/webhooks/erp-1",
            Some(json!({"headers": {"X-Env": null, "X-New": "1"}, "timeout": "PT5S"})),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(patched["headers"], json!({"X-New": "1"}));
    assert_eq!(patched["timeout"], "PT5S");
    assert_eq!(patched["name"], "ERP v2");
    t.call(
        Method::PATCH,
        "/webhooks/erp-1",
        Some(json!({"timeout": "soon"})),
    )
    .await
    .expect_error(400, "validation_error");
    t.call(
        Method::PUT,
        "/webhooks/erp-1",
        Some(json!({"id": "other", "url": "https://x.io"})),
    )
    .await
    .expect_error(400, "validation_error");

    // Stop and start.
    assert_eq!(
        t.post("/webhooks/erp-1/stop", json!({}))
            .await
            .expect(200)
            .body["status"],
        "stopped"
    );
    assert_eq!(t.get("/webhooks/erp-1").await.body["status"], "stopped");
    assert_eq!(
        t.post("/webhooks/erp-1/start", json!({}))
            .await
            .expect(200)
            .body["status"],
        "running"
    );

    // Sterling subscriptions are the same relation as event_types.
    let subs = t
        .post(
            "/events/order.updated/subscription",
            json!({"webhooks": ["erp-1"]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(subs, json!({"webhooks": ["erp-1"]}));
    let types = t.get("/webhooks/erp-1").await.body["event_types"].clone();
    assert_eq!(types, json!(["order.created", "order.updated"]));
    t.post(
        "/events/order.updated/subscription",
        json!({"webhooks": ["missing"]}),
    )
    .await
    .expect_error(404, "not_found");
    t.call(
        Method::DELETE,
        "/events/order.updated/subscription",
        Some(json!({"webhooks": ["erp-1"]})),
    )
    .await
    .expect(200);
    // Removing the last type would silently mean "all types": refused.
    t.call(
        Method::DELETE,
        "/events/order.created/subscription",
        Some(json!({"webhooks": ["erp-1"]})),
    )
    .await
    .expect_error(409, "conflict");
    assert_eq!(
        t.get("/events/order.created/subscription")
            .await
            .expect(200)
            .body,
        json!({"webhooks": ["erp-1"]})
    );

    t.call(Method::DELETE, "/webhooks/erp-1", None)
        .await
        .expect(204);
    t.get("/webhooks/erp-1")
        .await
        .expect_error(404, "not_found");
}

/// The destination's settings may also come inside `destination` (the nested form). The
/// webhook reads back in the contract's flat form, secrets masked, and delivers with every
/// setting; a setting given in both places is a 400 naming it.
#[tokio::test]
async fn webhook_with_a_nested_http_destination_delivers() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let secret = "hmac-secret-that-must-never-be-shown";
    let query_key = "query-key-that-must-never-be-shown";
    let url = rx.url("/nested");
    let created = t
        .post(
            "/webhooks",
            json!({
                "id": "nested", "event_types": ["order.created"],
                "destination": {"type": "http", "url": url, "headers": {"X-Env": "prod"},
                    "query_key": query_key, "timeout": "PT5S",
                    "authentication": {"type": "hmac", "secret": secret}},
            }),
        )
        .await
        .expect(201)
        .body;
    let shown = t.get("/webhooks/nested").await.expect(200).body;
    for body in [&created, &shown] {
        assert_eq!(body["url"], url.as_str(), "{body}");
        assert_eq!(body["method"], "POST");
        assert_eq!(body["headers"], json!({"X-Env": "prod"}));
        assert_eq!(body["timeout"], "PT5S");
        assert_eq!(body["tls"], Value::Null);
        assert_eq!(body["authentication"]["type"], "hmac");
        assert_eq!(body["destination"], json!({"type": "http"}));
        for hidden in [secret, query_key] {
            assert!(!body.to_string().contains(hidden), "secret leaked: {body}");
        }
    }

    // Both forms at once: refused, naming the nested one.
    let refused = t
        .post(
            "/webhooks",
            json!({"url": url, "destination": {"type": "http", "url": url}}),
        )
        .await
        .expect_error(400, "validation_error");
    assert_eq!(refused.body["errors"][0]["field"], "destination.url");
    // A merge patch in the nested form changes the flat setting.
    let patched = t
        .call(
            Method::PATCH,
            "/webhooks/nested",
            Some(json!({"destination": {"headers": {"X-Env": "staging"}}})),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(patched["headers"], json!({"X-Env": "staging"}));
    assert_eq!(patched["destination"], json!({"type": "http"}));

    ingest(&t, "e-1", json!({"total": 42})).await;
    let requests = rx.wait_requests(&gw, 1, Duration::from_secs(20)).await;
    let request = &requests[0];
    assert_eq!(request.path(), "/nested");
    assert_eq!(
        request.query(),
        [("key".to_string(), query_key.to_string())]
    );
    assert_eq!(request.header("x-env"), Some("staging"));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&request.body);
    assert_eq!(
        request.header("x-signature"),
        Some(hex::encode(mac.finalize().into_bytes()).as_str())
    );
    assert_eq!(request.json()["payload"], json!({"total": 42}));
}

#[tokio::test]
async fn webhook_limit_per_tenant() {
    let gw = Gateway::start_with(&[("HOOKGATE_MAX_WEBHOOKS_PER_TENANT", "2")]).await;
    let t = Client::new(&gw, "acme").await;
    for i in 0..2 {
        t.post(
            "/webhooks",
            json!({"url": format!("https://h{i}.example.com")}),
        )
        .await
        .expect(201);
    }
    t.post("/webhooks", json!({"url": "https://h3.example.com"}))
        .await
        .expect_error(429, "webhook_limit_reached");
    // Other tenants have their own quota.
    let other = Client::new(&gw, "other").await;
    other
        .post("/webhooks", json!({"url": "https://h.example.com"}))
        .await
        .expect(201);
}

#[tokio::test]
async fn ingest_is_idempotent_and_validated() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let event = json!({"event_type": "order.created", "id": "order-1", "payload": {"total": 5}});
    let first = t.post("/events", event.clone()).await.expect(202).body;
    let again = t.post("/events", event.clone()).await.expect(202).body;
    assert_eq!(first, json!({"id": "order-1"}));
    assert_eq!(first, again);
    // Generated ids are prefixed.
    let generated = t
        .post(
            "/events",
            json!({"event_type": "order.created", "payload": {}}),
        )
        .await
        .expect(202)
        .body;
    assert!(generated["id"].as_str().unwrap().starts_with("evt_"));
    // Batch: duplicates inside the batch and of earlier events are written once.
    let batch = t
        .post(
            "/events/batch",
            json!({"events": [
                {"event_type": "order.created", "id": "order-2", "payload": {"n": 2}},
                {"event_type": "order.created", "id": "order-2", "payload": {"n": 2}},
                {"event_type": "order.created", "id": "order-1", "payload": {"total": 5}},
            ]}),
        )
        .await
        .expect(202)
        .body;
    assert_eq!(batch["ids"], json!(["order-2", "order-2", "order-1"]));
    let messages = t.all_messages_of_type("order.created").await;
    let mut ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"order-1") && ids.contains(&"order-2"));
    assert_eq!(messages[0]["payload"], json!({"total": 5}));

    // Bad input: every case a clear 4xx, nothing stored.
    t.post(
        "/events",
        json!({"event_type": "order.created", "id": "Bad Id", "payload": {}}),
    )
    .await
    .expect_error(400, "validation_error");
    t.post("/events", json!({"event_type": "has space", "payload": {}}))
        .await
        .expect_error(400, "validation_error");
    t.post("/events", json!({"event_type": "order.created"}))
        .await
        .expect_error(400, "validation_error");
    t.post(
        "/events",
        json!({"event_type": "order.created", "payload": {}, "published_at": "noon"}),
    )
    .await
    .expect_error(400, "validation_error");
    t.post("/events/batch", json!({"events": []}))
        .await
        .expect_error(400, "validation_error");
    // A batch with one bad event is refused whole.
    t.post(
        "/events/batch",
        json!({"events": [
            {"event_type": "order.created", "id": "order-9", "payload": {}},
            {"event_type": "order.created", "id": "BAD", "payload": {}}]}),
    )
    .await
    .expect_error(400, "validation_error");
    let raw = |body: &'static str, content_type: &'static str| {
        gw.http
            .post(format!("{}/acme/v1/events", gw.base))
            .bearer_auth(&t.key)
            .header("content-type", content_type)
            .body(body)
    };
    let invalid = raw("{\"event_type\": \"x\", ", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["error_code"], "invalid_json");
    let wrong_type = raw("{}", "text/plain").send().await.unwrap();
    assert_eq!(wrong_type.status(), 415);
    let big = format!(
        "{{\"event_type\": \"x\", \"payload\": \"{}\"}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let too_large = gw
        .http
        .post(format!("{}/acme/v1/events", gw.base))
        .bearer_auth(&t.key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let body: Value = too_large.json().await.unwrap();
    assert_eq!(body["error_code"], "payload_too_large");
    assert_eq!(t.all_messages_of_type("order.created").await.len(), 3);
    assert_eq!(t.all_messages_of_type("x").await.len(), 0);
}

#[tokio::test]
async fn schemas_reject_bad_payloads() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let schema = json!({"type": "object", "required": ["total"],
        "properties": {"total": {"type": "number", "minimum": 0}}});
    t.post(
        "/event-types",
        json!({"name": "order.created", "description": "New order", "schema": schema}),
    )
    .await
    .expect(201);
    t.post("/event-types", json!({"name": "order.created"}))
        .await
        .expect_error(409, "conflict");
    // A boolean schema takes everything or nothing: not what the catalog declares.
    for boolean in [false, true] {
        let refused = t
            .post("/event-types", json!({"name": "flag", "schema": boolean}))
            .await
            .expect_error(400, "validation_error");
        assert_eq!(refused.body["errors"][0]["field"], "schema");
    }
    t.post(
        "/event-types",
        json!({"name": "broken", "schema": {"type": 12}}),
    )
    .await
    .expect_error(400, "validation_error");
    assert_eq!(
        t.get("/event-types/order.created/schema")
            .await
            .expect(200)
            .body,
        schema
    );

    let rejected = t
        .post(
            "/events",
            json!({"event_type": "order.created", "payload": {"total": -1}}),
        )
        .await
        .expect_error(422, "schema_violation")
        .body;
    assert_eq!(rejected["errors"][0]["field"], "payload/total");
    t.post(
        "/events",
        json!({"event_type": "order.created", "payload": {}}),
    )
    .await
    .expect_error(422, "schema_violation");
    t.post(
        "/events/batch",
        json!({"events": [
            {"event_type": "order.created", "payload": {"total": 1}},
            {"event_type": "order.created", "payload": {"total": "ten"}}]}),
    )
    .await
    .expect_error(422, "schema_violation");
    t.post(
        "/events",
        json!({"event_type": "order.created", "payload": {"total": 3}}),
    )
    .await
    .expect(202);
    // Updating the schema takes effect at once; deleting the type removes it.
    t.call(
        Method::PUT,
        "/event-types/order.created",
        Some(json!({"schema": {"type": "object"}})),
    )
    .await
    .expect(200);
    t.post(
        "/events",
        json!({"event_type": "order.created", "payload": {"total": "ten"}}),
    )
    .await
    .expect(202);
    t.call(Method::DELETE, "/event-types/order.created", None)
        .await
        .expect(204);
    t.get("/event-types/order.created/schema")
        .await
        .expect_error(404, "not_found");
    assert_eq!(t.all_messages_of_type("order.created").await.len(), 2);
}

#[tokio::test]
async fn messages_by_time_range_and_pages() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    for (i, day) in ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
        .iter()
        .enumerate()
    {
        t.post(
            "/events",
            json!({"event_type": "ORDER_CREATE", "id": format!("o-{i}"),
            "published_at": format!("{day}T12:00:00Z"), "payload": {"i": i}}),
        )
        .await
        .expect(202);
    }
    t.post("/events", json!({"event_type": "OTHER", "payload": {}}))
        .await
        .expect(202);
    let range = t
        .get("/events/ORDER_CREATE/messages?start_date=2026-01-02T00:00:00Z&end_date=1767484800000")
        .await
        .expect(200)
        .body;
    let ids: Vec<&str> = range["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["o-1", "o-2"]);
    let first = t
        .get("/events/ORDER_CREATE/messages?limit=3")
        .await
        .expect(200)
        .body;
    assert_eq!(first["done"], false);
    let next = t
        .get(&format!(
            "/events/ORDER_CREATE/messages?limit=3&iterator={}",
            first["iterator"].as_str().unwrap()
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(next["data"][0]["id"], "o-3");
    assert_eq!(next["done"], true);
    t.get("/events/ORDER_CREATE/messages?start_date=tuesday")
        .await
        .expect_error(400, "validation_error");
}

#[tokio::test]
async fn errors_health_and_openapi() {
    let gw = Gateway::start().await;
    gw.call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    gw.call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    gw.call(Method::GET, "/no/such/route", None, None)
        .await
        .expect_error(404, "not_found");
    gw.call(Method::DELETE, "/healthz", None, None)
        .await
        .expect_error(405, "method_not_allowed");
    let custom = gw
        .http
        .get(format!("{}/healthz", gw.base))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(custom.headers()["x-request-id"], "trace-123");

    let doc = gw
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200)
        .body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/admin/v1/tenants", vec!["post", "get"]),
        ("/admin/v1/tenants/{tenant}", vec!["get", "delete"]),
        ("/admin/v1/tenants/{tenant}/keys", vec!["post"]),
        ("/admin/v1/tenants/{tenant}/keys/{key_id}", vec!["delete"]),
        ("/{tenant}/v1/event-types", vec!["post", "get"]),
        ("/{tenant}/v1/event-types/{name}", vec!["put", "delete"]),
        ("/{tenant}/v1/event-types/{name}/schema", vec!["get"]),
        ("/{tenant}/v1/webhooks", vec!["post", "get"]),
        (
            "/{tenant}/v1/webhooks/{id}",
            vec!["get", "put", "patch", "delete"],
        ),
        ("/{tenant}/v1/webhooks/{id}/start", vec!["post"]),
        ("/{tenant}/v1/webhooks/{id}/stop", vec!["post"]),
        (
            "/{tenant}/v1/events/{event_type}/subscription",
            vec!["post", "get", "delete"],
        ),
        ("/{tenant}/v1/events", vec!["post"]),
        ("/{tenant}/v1/events/batch", vec!["post"]),
        ("/{tenant}/v1/events/{event_type}/messages", vec!["get"]),
        ("/healthz", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/openapi.json", vec!["get"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from openapi.json"));
        for method in methods {
            assert!(
                item.get(method).is_some(),
                "{method} {path} missing from openapi.json"
            );
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_keeps_everything() {
    let mut gw = Gateway::start().await;
    let t_key = gw.tenant("acme").await;
    for i in 0..20 {
        gw.call(
            Method::POST,
            "/acme/v1/events",
            Some(&t_key),
            Some(json!({"event_type": "e", "id": format!("e-{i}"), "payload": {}})),
        )
        .await
        .expect(202);
    }
    let status = gw.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", gw.log());
    assert!(gw.log().contains("stopped cleanly"));
    gw.restart_after_exit().await;
    let t = crate::harness::Client {
        gateway: &gw,
        tenant: "acme".into(),
        key: t_key,
    };
    assert_eq!(t.all_messages_of_type("e").await.len(), 20);
}

/// No query parameter is silently ignored: one a route does not take is a 400 naming it
/// (with what the route takes), on routes with and without parameters, before anything
/// happens; the ones a route declares keep working, and percent-encoded names count.
#[tokio::test]
async fn unknown_query_parameters_are_refused_by_name() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    t.post(
        "/webhooks",
        json!({"id": "erp", "url": "https://erp.example.com/hook"}),
    )
    .await
    .expect(201);
    let refused = t
        .get("/webhooks?limit=5&colour=red")
        .await
        .expect_error(400, "validation_error")
        .body;
    assert_eq!(refused["errors"][0]["field"], "colour", "{refused}");
    assert!(refused.to_string().contains("iterator, limit"), "{refused}");
    // A route that takes none, on a write: refused, and nothing was stored.
    let refused = t
        .post(
            "/events?dry_run=true",
            json!({"event_type": "order.created", "payload": {}}),
        )
        .await
        .expect_error(400, "validation_error")
        .body;
    assert_eq!(refused["errors"][0]["field"], "dry_run", "{refused}");
    assert!(refused.to_string().contains("takes none"), "{refused}");
    assert_eq!(
        t.get("/webhooks/erp/messages").await.expect(200).body["data"],
        json!([])
    );
    // A platform's spelling is not Hookgate's (yet): refused, not ignored.
    t.get("/webhooks/erp/messages?failedToSend=false")
        .await
        .expect_error(400, "validation_error");
    gw.admin(Method::GET, "/admin/v1/tenants?lim%69t=1&sort=id", None)
        .await
        .expect_error(400, "validation_error");
    // Declared ones still work.
    t.get("/webhooks/erp/messages?include_payload=true&include_runs=true&success=false&limit=5")
        .await
        .expect(200);
    gw.admin(Method::GET, "/admin/v1/tenants?lim%69t=1", None)
        .await
        .expect(200);
}
