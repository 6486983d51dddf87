//! Sterling-style subscriptions: `/{tenant}/v1/events/{event_type}/subscription`. The same
//! relation as a webhook's `event_types`, seen from the event type.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{ApiJson, TenantAuth},
};
use crate::{api::ApiState, iso::now_millis, model::webhook::is_event_type_name};

pub fn routes() -> Routes {
    Routes::new().routes(routes!(
        add_subscribers,
        list_subscribers,
        remove_subscribers
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Subscribers {
    webhooks: Vec<String>,
}

fn check_type(event_type: &str) -> ApiResult<()> {
    if is_event_type_name(event_type) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{event_type}` is not a valid event type name"
        )))
    }
}

/// Webhooks that list `event_type` explicitly (webhooks with no list take every type but
/// are not subscriptions of any one type).
async fn subscribers(state: &ApiState, tenant: &str, event_type: &str) -> ApiResult<Subscribers> {
    let webhooks = state
        .catalog
        .all_webhooks_of(tenant)
        .await?
        .into_iter()
        .filter(|w| w.spec.event_types.iter().any(|t| t == event_type))
        .map(|w| w.id)
        .collect();
    Ok(Subscribers { webhooks })
}

#[utoipa::path(post, path = "/{tenant}/v1/events/{event_type}/subscription", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("event_type" = String, Path)),
    request_body = Subscribers,
    responses((status = 200, body = Subscribers, description = "All subscribers after the change"), (status = 404)))]
async fn add_subscribers(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_type)): Path<(String, String)>,
    ApiJson(body): ApiJson<Subscribers>,
) -> ApiResult<Json<Subscribers>> {
    check_type(&event_type)?;
    change(&state, &auth.tenant, &event_type, &body.webhooks, true).await?;
    Ok(Json(subscribers(&state, &auth.tenant, &event_type).await?))
}

#[utoipa::path(get, path = "/{tenant}/v1/events/{event_type}/subscription", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("event_type" = String, Path)),
    responses((status = 200, body = Subscribers)))]
async fn list_subscribers(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_type)): Path<(String, String)>,
) -> ApiResult<Json<Subscribers>> {
    check_type(&event_type)?;
    Ok(Json(subscribers(&state, &auth.tenant, &event_type).await?))
}

#[utoipa::path(delete, path = "/{tenant}/v1/events/{event_type}/subscription", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("event_type" = String, Path)),
    request_body = Subscribers,
    responses((status = 200, body = Subscribers, description = "Remaining subscribers"), (status = 404),
              (status = 409, description = "The webhook would be left with no types, which means all types")))]
async fn remove_subscribers(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, event_type)): Path<(String, String)>,
    ApiJson(body): ApiJson<Subscribers>,
) -> ApiResult<Json<Subscribers>> {
    check_type(&event_type)?;
    change(&state, &auth.tenant, &event_type, &body.webhooks, false).await?;
    Ok(Json(subscribers(&state, &auth.tenant, &event_type).await?))
}

/// Adds or removes `event_type` on each listed webhook; checks them all before changing any.
async fn change(
    state: &Arc<ApiState>,
    tenant: &str,
    event_type: &str,
    ids: &[String],
    subscribe: bool,
) -> ApiResult<()> {
    let _serialized = state.webhook_writes.lock().await;
    let mut webhooks = Vec::with_capacity(ids.len());
    for id in ids {
        let webhook = super::webhooks::existing(state, tenant, id).await?;
        let types = &webhook.spec.event_types;
        if !subscribe && types.len() == 1 && types[0] == event_type {
            return Err(ApiError::conflict(format!(
                "webhook `{id}` subscribes only to `{event_type}`; with no types left it would \
                 receive every type. Stop or delete it, or give it other types first"
            )));
        }
        webhooks.push(webhook);
    }
    let mut changed = Vec::new();
    for mut webhook in webhooks {
        let types = &mut webhook.spec.event_types;
        let present = types.iter().any(|t| t == event_type);
        match (subscribe, present) {
            (true, false) => types.push(event_type.to_string()),
            (false, true) => types.retain(|t| t != event_type),
            _ => continue,
        }
        webhook.updated_at = now_millis();
        state.catalog.put_webhook(tenant, &webhook).await?;
        changed.push(webhook.id);
    }
    drop(_serialized);
    for id in changed {
        state.delivery.webhook_changed(tenant, &id).await;
    }
    Ok(())
}
