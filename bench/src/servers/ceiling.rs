//! `ceiling-server`: the ingest routes with nothing behind them.
//!
//! It does what any ingest handler must do — read the body, check it is JSON of the right
//! shape, answer 202 with ids — and nothing a gateway adds (auth, validation, storage).
//! The gateway's events/s over this server's, measured by the same driver on the same
//! machine, is the ratio issue 2 asks for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

/// Source of the `evt_<n>` ids it hands out.
type IdCounter = Arc<AtomicU64>;

pub fn router() -> Router {
    Router::new()
        .route("/{tenant}/v1/events", post(ingest_one))
        .route("/{tenant}/v1/events/batch", post(ingest_batch))
        .route("/readyz", get(super::ready))
        .route("/healthz", get(super::ready))
        .with_state(IdCounter::default())
}

#[derive(Deserialize)]
struct Batch {
    events: Vec<IgnoredAny>,
}

async fn ingest_one(State(ids): State<IdCounter>, body: Bytes) -> Response {
    // Parse without building a tree: the check a real handler cannot skip, at minimum cost.
    if serde_json::from_slice::<IgnoredAny>(&body).is_err() {
        return invalid_json();
    }
    let id = ids.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": format!("evt_{id}") })),
    )
        .into_response()
}

async fn ingest_batch(State(ids): State<IdCounter>, body: Bytes) -> Response {
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return invalid_json();
    };
    let count = batch.events.len() as u64;
    let first = ids.fetch_add(count, Ordering::Relaxed);
    let ids: Vec<String> = (first..first + count)
        .map(|id| format!("evt_{id}"))
        .collect();
    (StatusCode::ACCEPTED, Json(json!({ "ids": ids }))).into_response()
}

fn invalid_json() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_code": "invalid_json", "message": "body is not the expected JSON", "request_id": ""})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_202_with_ids() {
        let addr = super::super::spawn_for_test(router()).await;
        let http = reqwest::Client::new();
        let one: serde_json::Value = http
            .post(format!("http://{addr}/acme/v1/events"))
            .body(r#"{"event_type":"a","payload":{}}"#)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["id"], "evt_0");
        let response = http
            .post(format!("http://{addr}/acme/v1/events/batch"))
            .body(r#"{"events":[{"event_type":"a"},{"event_type":"b"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let batch: serde_json::Value = response.json().await.unwrap();
        assert_eq!(batch["ids"], json!(["evt_1", "evt_2"]));
        let bad = http
            .post(format!("http://{addr}/acme/v1/events"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
    }
}
