//! `forwarder`: the delivery ceiling.
//!
//! The ingest routes, and behind them only what every delivery needs: parse the event,
//! build the same envelope the gateway sends, and POST it (N copies with `--fanout N`,
//! concurrently) with one pooled reqwest client. It answers 202 once every copy got a 2xx,
//! so a closed-loop driver measures forwarding throughput directly. Nothing is stored,
//! retried or signed; the gateway's deliveries/s over this server's is issue 3's ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

struct Forwarder {
    http: reqwest::Client,
    destinations: Vec<reqwest::Url>,
    fanout: usize,
    next_id: AtomicU64,
}

pub fn router(destinations: &[String], fanout: usize, timeout: Duration) -> Result<Router> {
    ensure!(fanout >= 1, "--fanout must be at least 1");
    let destinations = destinations
        .iter()
        .map(|url| reqwest::Url::parse(url).with_context(|| format!("--to `{url}`")))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!destinations.is_empty(), "at least one --to is needed");
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!(
            "hookgate-bench-forwarder/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()?;
    let forwarder = Arc::new(Forwarder {
        http,
        destinations,
        fanout,
        next_id: AtomicU64::new(0),
    });
    Ok(Router::new()
        .route("/{tenant}/v1/events", post(ingest_one))
        .route("/{tenant}/v1/events/batch", post(ingest_batch))
        .route("/readyz", get(super::ready))
        .route("/healthz", get(super::ready))
        .with_state(forwarder))
}

#[derive(Deserialize)]
struct IncomingEvent {
    event_type: String,
    payload: Value,
    id: Option<String>,
    published_at: Option<String>,
}

#[derive(Deserialize)]
struct IncomingBatch {
    events: Vec<IncomingEvent>,
}

/// The gateway's default outgoing body (API.md), so the receiver parses the same bytes.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    tenant: &'a str,
    event_type: &'a str,
    published_at: &'a str,
    payload: &'a Value,
    data: Map<String, Value>,
}

impl Forwarder {
    /// Serialises the envelope once; every copy shares the same bytes.
    fn envelope(&self, tenant: &str, event: &IncomingEvent) -> (String, Bytes) {
        let id = event
            .id
            .clone()
            .unwrap_or_else(|| format!("evt_{}", self.next_id.fetch_add(1, Ordering::Relaxed)));
        let published_at = event
            .published_at
            .clone()
            .unwrap_or_else(|| jiff::Timestamp::now().to_string());
        let body = serde_json::to_vec(&Envelope {
            id: &id,
            tenant,
            event_type: &event.event_type,
            published_at: &published_at,
            payload: &event.payload,
            data: Map::new(),
        })
        .expect("an envelope of JSON values serialises");
        (id, Bytes::from(body))
    }

    /// Starts the `fanout` copies of one event, spread over the destinations.
    fn spawn_copies(&self, copies: &mut JoinSet<Result<()>>, id: &str, body: &Bytes) {
        for copy in 0..self.fanout {
            let request = self
                .http
                .post(self.destinations[copy % self.destinations.len()].clone())
                .header(CONTENT_TYPE, "application/json")
                .header("webhook-id", id)
                .body(body.clone());
            copies.spawn(async move {
                let response = request.send().await?;
                ensure!(
                    response.status().is_success(),
                    "destination answered {}",
                    response.status()
                );
                Ok(())
            });
        }
    }
}

/// Waits for every copy; the first failure becomes a 502 so the driver counts it.
async fn all_delivered(mut copies: JoinSet<Result<()>>) -> Result<(), Response> {
    while let Some(copy) = copies.join_next().await {
        let outcome = copy.map_err(anyhow::Error::from).and_then(|sent| sent);
        if let Err(error) = outcome {
            return Err((
                StatusCode::BAD_GATEWAY,
                Json(json!({"error_code": "forward_failed", "message": format!("{error:#}"), "request_id": ""})),
            )
                .into_response());
        }
    }
    Ok(())
}

fn invalid_json(error: serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_code": "invalid_json", "message": error.to_string(), "request_id": ""})),
    )
        .into_response()
}

async fn ingest_one(
    State(forwarder): State<Arc<Forwarder>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let event: IncomingEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => return invalid_json(error),
    };
    let (id, envelope) = forwarder.envelope(&tenant, &event);
    let mut copies = JoinSet::new();
    forwarder.spawn_copies(&mut copies, &id, &envelope);
    match all_delivered(copies).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(response) => response,
    }
}

async fn ingest_batch(
    State(forwarder): State<Arc<Forwarder>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let batch: IncomingBatch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(error) => return invalid_json(error),
    };
    let mut copies = JoinSet::new();
    let mut ids = Vec::with_capacity(batch.events.len());
    for event in &batch.events {
        let (id, envelope) = forwarder.envelope(&tenant, event);
        forwarder.spawn_copies(&mut copies, &id, &envelope);
        ids.push(id);
    }
    match all_delivered(copies).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "ids": ids }))).into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::receiver::{self, ReceiverStats};

    #[tokio::test]
    async fn fans_each_event_out_in_the_gateway_envelope() {
        let receiver = super::super::spawn_for_test(receiver::router()).await;
        let forwarder = super::super::spawn_for_test(
            router(
                &[format!("http://{receiver}/hook/forwarder")],
                3,
                Duration::from_secs(5),
            )
            .unwrap(),
        )
        .await;
        let http = reqwest::Client::new();
        let answer = http
            .post(format!("http://{forwarder}/acme/v1/events/batch"))
            .json(&json!({"events": [
                {"event_type": "a", "payload": {"sent_at_ns": crate::event::now_ns()}},
                {"event_type": "b", "payload": {}, "id": "given-id"}
            ]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let ids: Value = answer.json().await.unwrap();
        assert_eq!(ids["ids"][1], "given-id");
        let stats: ReceiverStats = http
            .get(format!("http://{receiver}/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats.deliveries_total, 6);
        assert_eq!(stats.without_timestamp, 3);
    }

    #[tokio::test]
    async fn failed_copy_answers_502() {
        // A port that was free a moment ago: connections to it are refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let forwarder = super::super::spawn_for_test(
            router(&[format!("http://{closed}/")], 1, Duration::from_secs(2)).unwrap(),
        )
        .await;
        let answer = reqwest::Client::new()
            .post(format!("http://{forwarder}/acme/v1/events"))
            .json(&json!({"event_type": "a", "payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 502);
    }
}
