//! Message queries over the event log.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{Page, TenantAuth},
};
use crate::{
    app::AppState,
    iso::{EpochMillis, format_millis, parse_time_param},
    log::StoredEvent,
    model::{problems::FieldError, webhook::is_event_type_name},
};

pub fn routes() -> Routes {
    Routes::new().routes(routes!(messages_of_type))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct TimeRangeQuery {
    /// RFC 3339 or epoch millis; default: the beginning.
    start_date: Option<String>,
    /// RFC 3339 or epoch millis; default: now and later.
    end_date: Option<String>,
    /// Page size, default 50, at most 1000.
    limit: Option<usize>,
    iterator: Option<String>,
}

fn time_bound(
    value: Option<&str>,
    field: &str,
    default: EpochMillis,
) -> Result<EpochMillis, FieldError> {
    match value {
        None => Ok(default),
        Some(text) => parse_time_param(text).map_err(|message| FieldError {
            field: field.into(),
            message,
        }),
    }
}

/// A message as the message routes show it.
pub fn message_view(event: &StoredEvent) -> Value {
    json!({
        "id": event.id,
        "event_type": event.event_type,
        "status": "received",
        "published_at": format_millis(event.published_at),
        "created_at": format_millis(event.received_at),
        "updated_at": format_millis(event.received_at),
        "payload": event.payload,
    })
}

#[utoipa::path(get, path = "/{tenant}/v1/events/{event_type}/messages", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_type" = String, Path), TimeRangeQuery),
    responses((status = 200, description = "`{data: [message], iterator, done}`, oldest first"), (status = 400)))]
async fn messages_of_type(
    State(state): State<Arc<AppState>>,
    auth: TenantAuth,
    Path((_, event_type)): Path<(String, String)>,
    Query(query): Query<TimeRangeQuery>,
) -> ApiResult<Json<Page<Value>>> {
    if !is_event_type_name(&event_type) {
        return Err(ApiError::bad_request(format!(
            "`{event_type}` is not a valid event type name"
        )));
    }
    let limit = query.limit.unwrap_or(50);
    let mut errors = Vec::new();
    if !(1..=1000).contains(&limit) {
        errors.push(FieldError {
            field: "limit".into(),
            message: "must be between 1 and 1000".into(),
        });
    }
    let from = time_bound(query.start_date.as_deref(), "start_date", EpochMillis::MIN)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let to = time_bound(query.end_date.as_deref(), "end_date", EpochMillis::MAX)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let page = state.log.by_time(
        &auth.tenant,
        Some(&event_type),
        from,
        to,
        query.iterator.as_deref(),
        limit,
    )?;
    Ok(Json(Page {
        data: page.events.iter().map(|(_, e)| message_view(e)).collect(),
        done: page.next.is_none(),
        iterator: page.next,
    }))
}
