//! Message queries over the event log.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json, value::RawValue};
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{Page, TenantAuth, page_limit, time_bound},
};
use super::{delivery_views, dialects};
use crate::{
    api::ApiState,
    delivery::records::{Delivery, MessageStatus, TEST_SEQ},
    iso::{Bound, EpochMillis, format_millis},
    model::{problems::FieldError, webhook::is_event_type_name},
    storage::StoredEvent,
    storage::WebhookRef,
};

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(messages_of_type))
        .routes(routes!(messages_of_type_and_webhook))
        .routes(routes!(message))
        .routes(routes!(message_attempts))
        .routes(routes!(message_attempt))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TimeRangeQuery {
    /// RFC 3339, a date, or epoch millis (or seconds); default: the beginning.
    start_date: Option<String>,
    /// RFC 3339, a date, or epoch millis (or seconds), inclusive; default: now and later.
    end_date: Option<String>,
    /// Sterling's spelling of `start_date`.
    #[serde(rename = "startDate")]
    start_date_sterling: Option<String>,
    /// Sterling's spelling of `end_date`.
    #[serde(rename = "endDate")]
    end_date_sterling: Option<String>,
    /// Page size, default 50, at most 1000.
    limit: Option<usize>,
    iterator: Option<String>,
}

/// One end of the range, in Hookgate's spelling or Sterling's (`theirs`), never both.
fn either_bound(
    ours: (&str, Option<&str>),
    theirs: (&str, Option<&str>),
    bound: Bound,
) -> Result<EpochMillis, FieldError> {
    let (field, _) = if ours.1.is_some() { ours } else { theirs };
    let value = dialects::either(ours, theirs)?;
    time_bound(value, field, bound)
}

/// The deliveries of one event to every webhook of the tenant that took it.
async fn deliveries_of(
    state: &ApiState,
    tenant: &str,
    seq: u64,
) -> ApiResult<Vec<(String, Delivery)>> {
    let mut found = Vec::new();
    for webhook in state.catalog.all_webhooks_of(tenant).await? {
        let webhook_ref = WebhookRef::new(tenant, &webhook.id);
        if let Some(delivery) = state.deliveries.delivery(&webhook_ref, seq).await? {
            found.push((webhook.id, delivery));
        }
    }
    Ok(found)
}

/// An event with its delivery state: `status` sums up every webhook's outcome. The
/// payload is the stored `RawValue`, written out verbatim (see `delivery_views`).
#[derive(Debug, Serialize)]
struct EventMessage {
    id: String,
    event_type: String,
    status: &'static str,
    published_at: String,
    created_at: String,
    updated_at: String,
    payload: Box<RawValue>,
    deliveries: Vec<delivery_views::MessageView>,
}

async fn event_message(
    state: &ApiState,
    tenant: &str,
    seq: u64,
    event: StoredEvent,
) -> ApiResult<EventMessage> {
    let deliveries = deliveries_of(state, tenant, seq).await?;
    let records: Vec<Delivery> = deliveries.iter().map(|(_, d)| d.clone()).collect();
    let updated = records
        .iter()
        .map(|d| d.updated_at)
        .max()
        .unwrap_or(event.received_at);
    let mut views = Vec::with_capacity(deliveries.len());
    for (webhook, d) in &deliveries {
        views.push(delivery_views::message(state, tenant, webhook, d, false, false).await?);
    }
    Ok(EventMessage {
        id: event.id,
        event_type: event.event_type,
        status: delivery_views::aggregate_status(&records),
        published_at: format_millis(event.published_at),
        created_at: format_millis(event.received_at),
        updated_at: format_millis(updated),
        payload: event.payload,
        deliveries: views,
    })
}

#[utoipa::path(get, path = "/{tenant}/v1/events/{event_type}/messages", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_type" = String, Path), TimeRangeQuery),
    responses((status = 200, description = "`{data: [message], iterator, done}`, oldest first"), (status = 400)))]
async fn messages_of_type(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_type)): Path<(String, String)>,
    Query(query): Query<TimeRangeQuery>,
) -> ApiResult<Json<Page<EventMessage>>> {
    if !is_event_type_name(&event_type) {
        return Err(ApiError::bad_request(format!(
            "`{event_type}` is not a valid event type name"
        )));
    }
    let mut errors = Vec::new();
    let limit = page_limit(query.limit)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let from = either_bound(
        ("start_date", query.start_date.as_deref()),
        ("startDate", query.start_date_sterling.as_deref()),
        Bound::Start,
    )
    .map_err(|e| errors.push(e))
    .unwrap_or_default();
    let to = either_bound(
        ("end_date", query.end_date.as_deref()),
        ("endDate", query.end_date_sterling.as_deref()),
        Bound::End,
    )
    .map_err(|e| errors.push(e))
    .unwrap_or_default();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let page = state
        .log
        .by_time(
            &auth.tenant,
            &event_type,
            from,
            to,
            query.iterator.as_deref(),
            limit,
        )
        .await?;
    let mut data = Vec::with_capacity(page.events.len());
    for (seq, event) in page.events {
        data.push(event_message(&state, &auth.tenant, seq, event).await?);
    }
    Ok(Json(Page {
        data,
        done: page.next.is_none(),
        iterator: page.next,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FailedToSendQuery {
    /// true: failed or rejected messages; false: delivered ones; absent: all.
    failed_to_send: Option<bool>,
    /// Sterling's spelling of `failed_to_send`.
    #[serde(rename = "failedToSend")]
    failed_to_send_sterling: Option<bool>,
    limit: Option<usize>,
    iterator: Option<String>,
}

#[utoipa::path(get, path = "/{tenant}/v1/events/{event_type}/webhook/{webhook_id}/messages", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_type" = String, Path), ("webhook_id" = String, Path), FailedToSendQuery),
    responses((status = 200, description = "`{data: [message], iterator, done}`",
        body = Page<delivery_views::MessageView>), (status = 400), (status = 404)))]
async fn messages_of_type_and_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_type, webhook_id)): Path<(String, String, String)>,
    Query(query): Query<FailedToSendQuery>,
) -> ApiResult<Json<Page<delivery_views::MessageView>>> {
    super::webhooks::existing(&state, &auth.tenant, &webhook_id).await?;
    let limit = page_limit(query.limit).map_err(|e| ApiError::validation(vec![e]))?;
    let failed_to_send = dialects::either(
        ("failed_to_send", query.failed_to_send),
        ("failedToSend", query.failed_to_send_sterling),
    )
    .map_err(|e| ApiError::validation(vec![e]))?;
    let page = super::webhook_messages::scan_deliveries(
        &state,
        (&auth.tenant, &webhook_id),
        query.iterator.as_deref(),
        limit,
        |d| {
            let failed = matches!(d.status, MessageStatus::Failed | MessageStatus::Rejected);
            d.event_type == event_type
                && match failed_to_send {
                    None => true,
                    Some(true) => failed,
                    Some(false) => d.status == MessageStatus::Delivered,
                }
        },
        super::webhook_messages::Detail {
            payload: true,
            runs: false,
        },
    )
    .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/{tenant}/v1/messages/{event_id}", tag = "events", security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "The event with `status` and its `deliveries` per webhook"), (status = 404)))]
async fn message(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_id)): Path<(String, String)>,
) -> ApiResult<Json<EventMessage>> {
    let (seq, event) = state
        .log
        .event_by_id(&auth.tenant, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event `{event_id}`")))?;
    Ok(Json(event_message(&state, &auth.tenant, seq, event).await?))
}

#[utoipa::path(get, path = "/{tenant}/v1/messages/{event_id}/attempts", tag = "events", security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "`{data: [attempt]}` across webhooks, oldest first"), (status = 404)))]
async fn message_attempts(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let attempts = attempts_of(&state, &auth.tenant, &event_id).await?;
    let data: Vec<Value> = attempts.iter().map(|a| a.view()).collect();
    Ok(Json(json!({"data": data})))
}

/// Every attempt at one event, across the tenant's webhooks, oldest first. An event in
/// no log may be one of Trigger Now's, whose attempts are kept under `TEST_SEQ`.
async fn attempts_of(
    state: &ApiState,
    tenant: &str,
    event_id: &str,
) -> ApiResult<Vec<crate::delivery::records::Attempt>> {
    let logged = state.log.event_by_id(tenant, event_id).await?;
    let seq = logged.as_ref().map_or(TEST_SEQ, |(seq, _)| *seq);
    let mut attempts = Vec::new();
    for webhook in state.catalog.all_webhooks_of(tenant).await? {
        let webhook_ref = WebhookRef::new(tenant, &webhook.id);
        attempts.extend(state.deliveries.attempts(&webhook_ref, seq).await?);
    }
    if logged.is_none() {
        // The test slots hold other tests too.
        attempts.retain(|a| a.event_id == event_id);
        if attempts.is_empty() {
            return Err(ApiError::not_found(format!("no event `{event_id}`")));
        }
    }
    attempts.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    Ok(attempts)
}

/// One attempt, as the statistics' `last_success`/`last_failure` name it (CloudBlue's
/// link from the statistics to the response).
#[utoipa::path(get, path = "/{tenant}/v1/messages/{event_id}/attempts/{attempt_id}", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("event_id" = String, Path), ("attempt_id" = String, Path)),
    responses((status = 200, description = "The attempt: request outcome, response headers and body"), (status = 404)))]
async fn message_attempt(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    attempts_of(&state, &auth.tenant, &event_id)
        .await?
        .into_iter()
        .find(|a| a.id == attempt_id)
        .map(|a| Json(a.view()))
        .ok_or_else(|| ApiError::not_found(format!("no attempt `{attempt_id}` at `{event_id}`")))
}
