//! `POST /{tenant}/v1/events[/batch]`: durable ingest. The answer (202) is sent only after
//! the events are on disk; a repeated client `id` gets the same answer and writes nothing.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{TenantAuth, parse_json, require_json_content_type},
};
use crate::{
    api::ApiState,
    ids,
    iso::{now_millis, parse_rfc3339},
    json_depth,
    model::{problems::FieldError, webhook::is_event_type_name},
    schemas,
    storage::NewEvent,
};

/// At most this many events in one batch request.
const MAX_BATCH: usize = 1000;

/// How deeply a payload may nest arrays and objects. Whatever reads an event back as a
/// `serde_json::Value` (the built-in filter, plugins, receivers) stops at 128 levels, and
/// it reads the payload inside the envelope (`{..., "payload": ..., "data": ...}`), one
/// level down. 64 leaves that room with a wide margin and is far beyond what business
/// events need; anything deeper is refused before it is stored.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(ingest_one))
        .routes(routes!(ingest_batch))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestEvent {
    event_type: String,
    /// Any JSON value; kept byte-for-byte.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// Idempotency key, `^[a-z0-9-]{1,50}$`; generated (`evt_…`) when absent.
    id: Option<String>,
    /// RFC 3339; defaults to the time of receipt.
    published_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestBatch {
    events: Vec<IngestEvent>,
}

#[derive(Serialize, ToSchema)]
struct Accepted {
    id: String,
}

#[derive(Serialize, ToSchema)]
struct BatchAccepted {
    ids: Vec<String>,
}

#[utoipa::path(post, path = "/{tenant}/v1/events", tag = "events", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = IngestEvent,
    responses((status = 202, body = Accepted, description = "Durable"), (status = 400),
              (status = 413), (status = 415), (status = 422, description = "Payload violates the type's schema")))]
async fn ingest_one(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    require_json_content_type(&headers)?;
    let event: IngestEvent = parse_json(&body)?;
    let received_at = now_millis();
    let event = prepare(&state, &auth.tenant, event, received_at, "").await?;
    let mut appended = state.log.append(&auth.tenant, vec![event]).await?;
    state.metrics.ingested(1);
    let id = appended.pop().expect("one outcome per event").id;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id })))
}

#[utoipa::path(post, path = "/{tenant}/v1/events/batch", tag = "events", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = IngestBatch,
    responses((status = 202, body = BatchAccepted, description = "All durable, in one write"), (status = 400),
              (status = 413), (status = 422)))]
async fn ingest_batch(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<BatchAccepted>)> {
    require_json_content_type(&headers)?;
    let batch: IngestBatch = parse_json(&body)?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::validation(vec![FieldError {
            field: "events".into(),
            message: format!("must hold 1 to {MAX_BATCH} events"),
        }]));
    }
    let received_at = now_millis();
    // All or nothing: validate every event before writing any.
    let mut events = Vec::with_capacity(batch.events.len());
    for (i, event) in batch.events.into_iter().enumerate() {
        let field_prefix = format!("events[{i}].");
        events.push(prepare(&state, &auth.tenant, event, received_at, &field_prefix).await?);
    }
    let appended = state.log.append(&auth.tenant, events).await?;
    state.metrics.ingested(appended.len() as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            ids: appended.into_iter().map(|a| a.id).collect(),
        }),
    ))
}

/// Validates one event (fields, then its type's schema) and turns it into a log entry.
async fn prepare(
    state: &ApiState,
    tenant: &str,
    event: IngestEvent,
    received_at: i64,
    field_prefix: &str,
) -> ApiResult<NewEvent> {
    let mut errors = Vec::new();
    let mut problem = |field: &str, message: String| {
        errors.push(FieldError {
            field: format!("{field_prefix}{field}"),
            message,
        })
    };
    if !is_event_type_name(&event.event_type) {
        problem("event_type", "must match ^[A-Za-z0-9_.:-]{1,128}$".into());
    }
    if let Some(id) = &event.id
        && !ids::is_client_id(id)
    {
        problem("id", "must match ^[a-z0-9-]{1,50}$".into());
    }
    if json_depth::exceeds(event.payload.get().as_bytes(), MAX_PAYLOAD_DEPTH) {
        problem(
            "payload",
            format!("must not nest arrays and objects more than {MAX_PAYLOAD_DEPTH} levels deep"),
        );
    }
    let published_at = match event.published_at.as_deref().map(parse_rfc3339) {
        None => received_at,
        Some(Ok(ms)) => ms,
        Some(Err(message)) => {
            problem("published_at", message);
            received_at
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if let Some(validator) = state
        .schemas
        .validator(&*state.catalog, tenant, &event.event_type)
        .await?
    {
        let payload: serde_json::Value = serde_json::from_str(event.payload.get())
            .map_err(|e| ApiError::bad_request(format!("payload: {e}")))?;
        let violations =
            schemas::violations(&validator, &payload, &format!("{field_prefix}payload"));
        if !violations.is_empty() {
            let mut error = ApiError::validation(violations);
            error.status = StatusCode::UNPROCESSABLE_ENTITY;
            error.code = "schema_violation";
            error.message = format!(
                "the payload does not satisfy the schema of `{}`: {}",
                event.event_type, error.message
            );
            return Err(error);
        }
    }
    Ok(NewEvent {
        id: event.id,
        event_type: event.event_type,
        published_at,
        received_at,
        payload: event.payload,
    })
}
