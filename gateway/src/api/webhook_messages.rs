//! Messages of one webhook (Front Systems), resend and recover, the rejected list
//! (NewStore), statistics and the integration log (CloudBlue, NewStore), and "Trigger Now".

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::routes;

use super::{
    Routes, delivery_views, dialects,
    error::{ApiError, ApiResult},
    extract::{ApiJson, ListQuery, Page, TenantAuth, page_limit, time_bound},
    webhooks::existing,
};
use crate::{
    api::ApiState,
    delivery::{SendError, ledger, records::MessageStatus},
    iso::{Bound, EpochMillis, format_millis, parse_rfc3339},
    model::{problems::FieldError, webhook::Webhook},
    storage::WebhookRef,
};

/// A filtered page scans at most this many records, then returns what it found with an
/// iterator, so one request never walks a huge history.
const SCAN_BUDGET: usize = 20_000;

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(webhook_messages))
        .routes(routes!(resend))
        .routes(routes!(recover))
        .routes(routes!(rejected_list))
        .routes(routes!(rejected_one, rejected_delete))
        .routes(routes!(rejected_retry))
        .routes(routes!(stats))
        .routes(routes!(integration_log))
        .routes(routes!(trigger_test))
}

fn send_error(error: SendError) -> ApiError {
    match error {
        SendError::NotFound(message) => ApiError::not_found(message),
        SendError::Failed(message) => ApiError::conflict(message),
        SendError::Unavailable(message) => ApiError::unavailable(message),
    }
}

/// The seq of an event id, or 404.
async fn seq_of(state: &ApiState, tenant: &str, event_id: &str) -> ApiResult<u64> {
    state
        .log
        .event_by_id(tenant, event_id)
        .await?
        .map(|(seq, _)| seq)
        .ok_or_else(|| ApiError::not_found(format!("no event `{event_id}`")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MessageQuery {
    /// RFC 3339, a date (its start, UTC) or epoch millis: messages created at or after.
    from: Option<String>,
    /// RFC 3339, a date (its end, UTC) or epoch millis: messages created at or before.
    to: Option<String>,
    /// true: delivered only; false: not delivered (pending, failed, rejected); filtered
    /// messages are listed only without `success`.
    success: Option<bool>,
    /// Include each message's payload.
    include_payload: Option<bool>,
    /// Include the attempts as `runs`.
    include_runs: Option<bool>,
    /// Front Systems' spelling of `include_payload`.
    #[serde(rename = "includePayload")]
    include_payload_front: Option<bool>,
    /// Front Systems' spelling of `include_runs`.
    #[serde(rename = "includeRuns")]
    include_runs_front: Option<bool>,
    limit: Option<usize>,
    iterator: Option<String>,
}

/// What a message listing shows beyond the record itself.
#[derive(Clone, Copy)]
pub struct Detail {
    pub payload: bool,
    pub runs: bool,
}

/// Records read per page while a listing scans a webhook's messages.
const SCAN_PAGE: usize = 256;

/// Walks a webhook's deliveries in seq order, keeping those `keep` accepts.
pub async fn scan_deliveries(
    state: &ApiState,
    (tenant, webhook_id): (&str, &str),
    iterator: Option<&str>,
    limit: usize,
    keep: impl Fn(&crate::delivery::records::Delivery) -> bool,
    detail: Detail,
) -> ApiResult<Page<delivery_views::MessageView>> {
    let after = match iterator {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request("`iterator` is not one this API returned"))?,
        ),
    };
    let webhook = WebhookRef::new(tenant, webhook_id);
    let mut data = Vec::new();
    let mut last_seen = after;
    let mut scanned = 0;
    loop {
        let records = state
            .deliveries
            .deliveries_after(&webhook, last_seen, SCAN_PAGE)
            .await?;
        if records.is_empty() {
            break;
        }
        for delivery in records {
            if data.len() == limit || scanned == SCAN_BUDGET {
                return Ok(Page {
                    data,
                    iterator: last_seen.map(|s: u64| s.to_string()),
                    done: false,
                });
            }
            scanned += 1;
            last_seen = Some(delivery.seq);
            if keep(&delivery) {
                data.push(
                    delivery_views::message(
                        state,
                        tenant,
                        webhook_id,
                        &delivery,
                        detail.payload,
                        detail.runs,
                    )
                    .await?,
                );
            }
        }
    }
    Ok(Page {
        data,
        iterator: None,
        done: true,
    })
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}/messages", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path), MessageQuery),
    responses((status = 200, description = "`{data: [message], iterator, done}` in ingest order",
        body = Page<delivery_views::MessageView>), (status = 400), (status = 404)))]
async fn webhook_messages(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<MessageQuery>,
) -> ApiResult<Json<Page<delivery_views::MessageView>>> {
    existing(&state, &auth.tenant, &id).await?;
    let mut errors = Vec::new();
    let mut bound = |value: Option<&String>, field, side| {
        time_bound(value.map(String::as_str), field, side)
            .map_err(|e| errors.push(e))
            .unwrap_or_default()
    };
    let from = bound(query.from.as_ref(), "from", Bound::Start);
    let to = bound(query.to.as_ref(), "to", Bound::End);
    let mut detail = |ours, theirs| {
        dialects::either(ours, theirs)
            .map_err(|e| errors.push(e))
            .unwrap_or_default()
            .unwrap_or(false)
    };
    let detail = Detail {
        payload: detail(
            ("include_payload", query.include_payload),
            ("includePayload", query.include_payload_front),
        ),
        runs: detail(
            ("include_runs", query.include_runs),
            ("includeRuns", query.include_runs_front),
        ),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let success = query.success;
    let page = scan_deliveries(
        &state,
        (&auth.tenant, &id),
        query.iterator.as_deref(),
        page_limit(query.limit).map_err(|e| ApiError::validation(vec![e]))?,
        |d| {
            (from..=to).contains(&d.created_at)
                && success.is_none_or(|s| match d.status {
                    MessageStatus::Delivered => s,
                    // Never meant for this receiver: neither a success nor a failure to
                    // look into (Front Systems' `success=false` lists what to resend).
                    MessageStatus::Filtered => false,
                    _ => !s,
                })
        },
        detail,
    )
    .await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/messages/{event_id}/resend", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "The attempt just made"), (status = 404), (status = 409)))]
async fn resend(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id, event_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let webhook = existing(&state, &auth.tenant, &id).await?;
    let seq = seq_of(&state, &auth.tenant, &event_id).await?;
    let attempt = state
        .delivery
        .send_now(&auth.tenant, &webhook, seq)
        .await
        .map_err(send_error)?;
    Ok(Json(attempt.view()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    /// RFC 3339: failed messages created at or after this time are re-queued.
    since: String,
    until: Option<String>,
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/recover", tag = "events",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)), request_body = RecoverRequest,
    responses((status = 202, description = "`{recovered: n}`: re-queued with a fresh retry schedule"), (status = 404)))]
async fn recover(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RecoverRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let webhook = existing(&state, &auth.tenant, &id).await?;
    if crate::delivery::sink::is_batched(&webhook) {
        return Err(ApiError::conflict(
            "recover applies to http webhooks; an s3 webhook retries its file until it is uploaded",
        ));
    }
    let mut errors = Vec::new();
    let since = parse_rfc3339(&body.since).map_err(|message| {
        errors.push(FieldError {
            field: "since".into(),
            message,
        })
    });
    let until = match body.until.as_deref().map(parse_rfc3339) {
        None => Ok(EpochMillis::MAX),
        Some(result) => result.map_err(|message| {
            errors.push(FieldError {
                field: "until".into(),
                message,
            })
        }),
    };
    let (Ok(since), Ok(until)) = (since, until) else {
        return Err(ApiError::validation(errors));
    };
    let webhook = WebhookRef::new(&auth.tenant, &id);
    let recovered = ledger::recover(&*state.deliveries, &webhook, since, until).await?;
    state.deliveries.sync().await?;
    state.delivery.wake(&auth.tenant, &id).await;
    Ok((StatusCode::ACCEPTED, Json(json!({"recovered": recovered}))))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}/rejected", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("id" = String, Path), ListQuery),
    responses((status = 200, description = "`{data: [{id, created_at}], iterator, done}`"), (status = 404)))]
async fn rejected_list(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Value>>> {
    existing(&state, &auth.tenant, &id).await?;
    let webhook = WebhookRef::new(&auth.tenant, &id);
    let after = query
        .iterator
        .as_deref()
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request("`iterator` is not one this API returned"))
        })
        .transpose()?;
    let page = state
        .deliveries
        .rejected(&webhook, after, query.limit()?)
        .await?;
    let (seqs, done) = (page.seqs, page.done);
    let mut data = Vec::new();
    for seq in &seqs {
        if let Some(d) = state.deliveries.delivery(&webhook, *seq).await? {
            data.push(json!({"id": d.event_id, "created_at": format_millis(d.updated_at)}));
        }
    }
    Ok(Json(Page {
        data,
        iterator: if done {
            None
        } else {
            seqs.last().map(u64::to_string)
        },
        done,
    }))
}

/// The webhook and the seq of one of its rejected events, or 404.
async fn rejected_seq(
    state: &ApiState,
    tenant: &str,
    id: &str,
    event_id: &str,
) -> ApiResult<(Webhook, u64)> {
    let webhook = existing(state, tenant, id).await?;
    let seq = seq_of(state, tenant, event_id).await?;
    if !state
        .deliveries
        .is_rejected(&WebhookRef::new(tenant, id), seq)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "event `{event_id}` is not in the rejected list of `{id}`"
        )));
    }
    Ok((webhook, seq))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}/rejected/{event_id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "`{id, tenant, event_type, published_at, payload}`"), (status = 404)))]
async fn rejected_one(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id, event_id)): Path<(String, String, String)>,
) -> ApiResult<Json<delivery_views::EventView>> {
    let (_, seq) = rejected_seq(&state, &auth.tenant, &id, &event_id).await?;
    let event = state
        .log
        .event_by_seq(&auth.tenant, seq)
        .await?
        .ok_or_else(|| ApiError::not_found("the event is no longer stored"))?;
    Ok(Json(delivery_views::event(&auth.tenant, event)))
}

#[utoipa::path(delete, path = "/{tenant}/v1/webhooks/{id}/rejected/{event_id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path), ("event_id" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn rejected_delete(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id, event_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (_, seq) = rejected_seq(&state, &auth.tenant, &id, &event_id).await?;
    let webhook = WebhookRef::new(&auth.tenant, &id);
    ledger::unreject(&*state.deliveries, &webhook, seq).await?;
    state.deliveries.sync().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/rejected/{event_id}/retry", tag = "webhooks",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, description = "The attempt: the endpoint took it and the event left the list"),
        (status = 404), (status = 502, description = "The endpoint did not take it (NewStore): the event stays in the list; the message names the attempt")))]
async fn rejected_retry(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id, event_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (webhook, seq) = rejected_seq(&state, &auth.tenant, &id, &event_id).await?;
    let attempt = state
        .delivery
        .send_now(&auth.tenant, &webhook, seq)
        .await
        .map_err(send_error)?;
    if !matches!(attempt.status_code, Some(200..=299)) {
        let answer = match (attempt.status_code, &attempt.error) {
            (Some(code), _) => format!("answered {code}"),
            (None, Some(error)) => format!("failed: {error}"),
            (None, None) => "gave no answer".into(),
        };
        return Err(ApiError::bad_gateway(format!(
            "the endpoint {answer}; `{event_id}` stays in the rejected list (attempt `{}`)",
            attempt.id
        )));
    }
    Ok(Json(attempt.view()))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}/stats", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "CloudBlue statistics"), (status = 404)))]
async fn stats(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    existing(&state, &auth.tenant, &id).await?;
    let stats = state
        .deliveries
        .stats(&WebhookRef::new(&auth.tenant, &id))
        .await?;
    Ok(Json(stats.view()))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}/log", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "`{entries: [{action, reason, created_at}]}`, newest first"), (status = 404)))]
async fn integration_log(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    existing(&state, &auth.tenant, &id).await?;
    let entries: Vec<Value> = state
        .deliveries
        .log_entries(&WebhookRef::new(&auth.tenant, &id))
        .await?
        .into_iter()
        .map(|e| json!({"action": e.action, "reason": e.reason, "created_at": format_millis(e.created_at)}))
        .collect();
    Ok(Json(json!({"entries": entries})))
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The attempt (event type `hookgate.test`)"), (status = 404)))]
async fn trigger_test(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let webhook = existing(&state, &auth.tenant, &id).await?;
    let attempt = state
        .delivery
        .trigger(&auth.tenant, &webhook)
        .await
        .map_err(send_error)?;
    Ok(Json(attempt.view()))
}
