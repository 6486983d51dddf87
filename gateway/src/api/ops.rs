//! Operational routes: liveness and readiness.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::{Value, json};
use utoipa_axum::routes;

use super::Routes;
use crate::api::ApiState;

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_document))
        .routes(routes!(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up")))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Store open, workers running"), (status = 503)))]
async fn readyz(State(state): State<Arc<ApiState>>) -> (StatusCode, Json<Value>) {
    let store_ok = state.catalog.check().await.is_ok();
    if store_ok && state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
    }
}

/// `(tenant, webhook, events in the log after its stored cursor)` for every webhook.
async fn webhook_lags(state: &ApiState) -> anyhow::Result<Vec<(String, String, u64)>> {
    let mut lags = Vec::new();
    for (tenant, webhook) in state.catalog.all_webhook_ids().await? {
        let webhook_ref = crate::storage::WebhookRef::new(&tenant, &webhook);
        let Some(cursor) = state.deliveries.cursor(&webhook_ref).await? else {
            continue; // never started: nothing is queued for it yet
        };
        let head = state.log.durable_seq(&tenant).await?;
        lags.push((tenant, webhook, head.saturating_sub(cursor)));
    }
    Ok(lags)
}

/// The document is generated from the registered routes once, in `api::router`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI document")))]
async fn openapi_document(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.get().cloned().unwrap_or_default(),
    )
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    // Workers update the lag as they move; a stopped, disabled or deleted webhook has no
    // worker, so every webhook's lag is read from its stored cursor here.
    match webhook_lags(&state).await {
        Ok(lags) => state.metrics.reset_lags(lags),
        Err(error) => tracing::warn!(%error, "could not read webhook cursors for /metrics"),
    }
    state.metrics.set_workers(state.delivery.workers_here());
    let mut text = state.metrics.render();
    let mut appended = String::new();
    state.log.render_metrics(&mut appended);
    // Plugin call sequences by where they ran: inline on a delivery worker, or on a
    // blocking thread (a hop each way; `abandoned` of those were cut off inline first).
    let runs = state.plugins.run_stats();
    appended.push_str(&format!(
        "# HELP hookgate_plugin_runs Plugin call sequences of deliveries, by where they ran.\n\
         # TYPE hookgate_plugin_runs counter\n\
         hookgate_plugin_runs_total{{ran=\"inline\"}} {}\n\
         hookgate_plugin_runs_total{{ran=\"blocking\"}} {}\n\
         # HELP hookgate_plugin_runs_abandoned Inline plugin runs cut off and made again on a blocking thread.\n\
         # TYPE hookgate_plugin_runs_abandoned counter\n\
         hookgate_plugin_runs_abandoned_total {}\n",
        runs.inline, runs.blocking, runs.abandoned
    ));
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &appended),
        None => text.push_str(&appended),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
