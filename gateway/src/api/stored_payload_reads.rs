//! Read routes over payloads stored before ingest refused deep nesting (issue 15, item 5).
//!
//! Ingest now refuses payloads nested deeper than `events::MAX_PAYLOAD_DEPTH`, so the
//! only way such a payload exists is an older data directory. These tests put one there
//! the way an older gateway did — appended to the event log through its library API,
//! with a delivery record beside it — and read it through the real router: every route
//! that shows the payload must answer 200 with the stored bytes.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Method, Request, StatusCode, header},
};
use serde_json::{Value, json, value::RawValue};
use tower::ServiceExt;

use crate::{
    api::ApiState,
    config::Config,
    delivery::records::{Delivery, MessageStatus},
    iso::now_millis,
    storage::NewEvent,
    storage::{OutcomeSet, WebhookRef},
};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// 200 levels: past the ingest limit and past the 128 that `serde_json::Value` can hold.
const DEPTH: usize = 200;

struct Gateway {
    state: Arc<ApiState>,
    router: Router,
    tenant_key: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway with tenant `acme` and its stopped webhook `w1` (stopped, so no worker
    /// touches the records the test writes).
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            admin_token: Some(ADMIN_TOKEN.into()),
            ..Config::default()
        };
        let state = crate::app::open(config, tokio::runtime::Handle::current())
            .await
            .unwrap()
            .api;
        let router = super::router(state.clone());
        let mut gateway = Gateway {
            state,
            router,
            tenant_key: String::new(),
            _dir: dir,
        };
        let (status, tenant) = gateway
            .call(
                Method::POST,
                "/admin/v1/tenants",
                ADMIN_TOKEN,
                Some(json!({"id": "acme"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let tenant: Value = serde_json::from_slice(&tenant).unwrap();
        gateway.tenant_key = tenant["api_key"].as_str().unwrap().to_string();
        let webhook = json!({"id": "w1", "url": "https://receiver.example/hook",
                             "event_types": ["order.created"], "enabled": false});
        let key = gateway.tenant_key.clone();
        let (status, body) = gateway
            .call(Method::POST, "/acme/v1/webhooks", &key, Some(webhook))
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        gateway
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, bytes.to_vec())
    }

    /// GET under `/acme/v1`; asserts 200 and returns the body.
    async fn get(&self, path: &str) -> Vec<u8> {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/acme/v1{path}"),
                &self.tenant_key,
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Appends an event as an older gateway stored it, with a rejected delivery record
    /// for `w1` (so it is also in the rejected list).
    async fn store_old_event(&self, id: &str, payload: &str) {
        let appended = self
            .state
            .log
            .append(
                "acme",
                vec![NewEvent {
                    id: Some(id.into()),
                    event_type: "order.created".into(),
                    published_at: now_millis(),
                    received_at: now_millis(),
                    payload: RawValue::from_string(payload.into()).unwrap(),
                }],
            )
            .await
            .unwrap();
        let seq = appended[0].seq;
        let mut delivery = Delivery::new(seq, id, "order.created", now_millis());
        delivery.status = MessageStatus::Rejected;
        delivery.status_code = Some(400);
        delivery.runs = 1;
        let mut set = OutcomeSet::default();
        set.record(delivery, None);
        set.reject(seq);
        self.state
            .deliveries
            .apply(&WebhookRef::new("acme", "w1"), set)
            .await
            .unwrap();
    }
}

fn deep_payload(depth: usize) -> String {
    format!(
        r#"{{"status": "open", "deep": {}1.50{}}}"#,
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

/// An object's fields as the exact text the route sent.
type Fields = HashMap<String, Box<RawValue>>;

fn fields(body: &[u8]) -> Fields {
    serde_json::from_slice(body).unwrap()
}

fn page(body: &[u8]) -> Vec<Fields> {
    #[derive(serde::Deserialize)]
    struct Page {
        data: Vec<Fields>,
    }
    serde_json::from_slice::<Page>(body).unwrap().data
}

#[track_caller]
fn assert_payload(fields: &Fields, expected: &str, route: &str) {
    let shown = fields.get("payload").map(|raw| raw.get());
    assert_eq!(shown, Some(expected), "{route}");
}

#[tokio::test]
async fn every_route_shows_an_old_deep_payload_verbatim() {
    let gateway = Gateway::start().await;
    let payload = deep_payload(DEPTH);
    gateway.store_old_event("deep-old", &payload).await;

    let route = "/messages/deep-old";
    assert_payload(&fields(&gateway.get(route).await), &payload, route);
    for route in [
        "/events/order.created/messages",
        "/webhooks/w1/messages?include_payload=true",
        "/events/order.created/webhook/w1/messages",
    ] {
        let listed = page(&gateway.get(route).await);
        assert_eq!(listed.len(), 1, "{route}");
        assert_payload(&listed[0], &payload, route);
    }
    let route = "/webhooks/w1/rejected/deep-old";
    assert_payload(&fields(&gateway.get(route).await), &payload, route);
}

/// One unreadable-as-`Value` event does not take the listing of its type down with it.
#[tokio::test]
async fn a_deep_event_does_not_break_the_listing_of_its_type() {
    let gateway = Gateway::start().await;
    gateway.store_old_event("before", r#"{"n": 1}"#).await;
    gateway
        .store_old_event("deep-old", &deep_payload(100_000))
        .await;
    gateway.store_old_event("after", r#"{"n": 2}"#).await;
    let listed = page(&gateway.get("/events/order.created/messages").await);
    let ids: Vec<&str> = listed.iter().map(|m| m["id"].get()).collect();
    assert_eq!(ids, [r#""before""#, r#""deep-old""#, r#""after""#]);
}
