//! `/{tenant}/v1/webhooks`: create, read, replace, patch, delete, start and stop.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde_json::Value;
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{ApiJson, ListQuery, Page, TenantAuth},
};
use hookgate_signing::{DestinationPolicy, config::secret_scope, transport::check_ip};

use crate::{
    api::ApiState,
    delivery::ledger,
    ids,
    iso::now_millis,
    model::destination::flatten_nested,
    model::problems::FieldError,
    model::webhook::{
        ValidationContext, Webhook, WebhookSpec, WebhookStatus, check_client_id, parse_spec,
    },
    storage::WebhookRef,
};

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(
            get_webhook,
            replace_webhook,
            patch_webhook,
            delete_webhook
        ))
        .routes(routes!(start_webhook))
        .routes(routes!(stop_webhook))
        .routes(routes!(rotate_secret))
}

/// The API view of a webhook: flat fields, every secret shown as its hint (written in a
/// masking scope, so a new secret field is masked by its type alone).
pub fn view(webhook: &Webhook) -> Value {
    secret_scope::masked(|| webhook.to_view())
}

pub fn destination_policy(state: &ApiState) -> DestinationPolicy {
    DestinationPolicy {
        allow_private: state.config.allow_private_destinations,
    }
}

/// Validates the spec, then resolves the URL's host: a name that resolves to a refused
/// address is a 400 now rather than a failed delivery later. (Each attempt checks again
/// on the address it actually connects to, so a later DNS change cannot bypass this.)
async fn validate(state: &ApiState, tenant: &str, spec: &WebhookSpec) -> ApiResult<()> {
    // The attached names that exist, read first: validation itself is pure.
    let mut existing_plugins = std::collections::HashSet::new();
    for attachment in &spec.plugins {
        if crate::api::plugin_exists(state, tenant, &attachment.plugin).await {
            existing_plugins.insert(attachment.plugin.as_str());
        }
    }
    let known_plugin = |name: &str| existing_plugins.contains(name);
    let policy = destination_policy(state);
    spec.validate(&ValidationContext {
        known_plugin: &known_plugin,
        policy,
        now: now_millis(),
    })
    .map_err(ApiError::validation)?;
    if policy.allow_private {
        return Ok(());
    }
    let http = spec.destination.http();
    let Some(url) = http.and_then(|http| url::Url::parse(&http.url).ok()) else {
        return Ok(());
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Ok(());
    };
    let lookup = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
    )
    .await;
    // A name that does not resolve yet is accepted: it may exist by the first delivery.
    if let Ok(Ok(addresses)) = lookup {
        for address in addresses {
            if let Err(refused) = check_ip(address.ip(), &policy) {
                return Err(ApiError::validation(vec![FieldError {
                    field: "url".into(),
                    message: format!("`{host}` resolves to {}: {refused}", address.ip()),
                }]));
            }
        }
    }
    Ok(())
}

/// Create, PUT and PATCH take the reference platforms' spellings (`dialects`) and the
/// destination's settings flat (the contract) or inside `destination` (the nested form);
/// this makes every body Hookgate's flat form before anything else reads it (masked
/// secrets restored, a patch merged, the spec parsed). Responses stay flat.
fn accept_nested(body: &mut Value) -> ApiResult<()> {
    super::dialects::webhook_body(body).map_err(ApiError::validation)?;
    flatten_nested(body).map_err(ApiError::validation)
}

pub async fn existing(state: &ApiState, tenant: &str, id: &str) -> ApiResult<Webhook> {
    state
        .catalog
        .webhook(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook `{id}`")))
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    request_body(content = Object, description = "A webhook; see API.md for every field"),
    responses((status = 201, description = "The webhook, secrets masked"), (status = 400),
              (status = 409, description = "The id is taken"),
              (status = 429, description = "The tenant has the maximum number of webhooks")))]
async fn create_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    accept_nested(&mut body)?;
    let mut spec = parse_spec(body).map_err(ApiError::validation)?;
    if let Some(id) = &spec.id {
        check_client_id(id).map_err(ApiError::validation)?;
    }
    let id = spec.id.clone().unwrap_or_else(|| ids::generate("whk"));
    spec.id = Some(id.clone());
    // A standard_webhooks secret is generated when absent and shown in this answer only.
    let generated_secret = spec
        .destination
        .http_mut()
        .and_then(|http| http.authentication.prepare_new());
    validate(&state, &auth.tenant, &spec).await?;
    let _serialized = state.webhook_writes.lock().await;
    let limit = state.config.max_webhooks_per_tenant;
    if state.catalog.count_webhooks(&auth.tenant).await? >= limit {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "webhook_limit_reached",
            format!("a tenant may have at most {limit} webhooks; delete one first"),
        ));
    }
    let now = now_millis();
    let webhook = Webhook {
        id,
        status: if spec.enabled {
            WebhookStatus::Running
        } else {
            WebhookStatus::Stopped
        },
        created_at: now,
        updated_at: now,
        spec,
    };
    if !state.catalog.create_webhook(&auth.tenant, &webhook).await? {
        return Err(ApiError::conflict(format!(
            "webhook `{}` already exists",
            webhook.id
        )));
    }
    let webhook_ref = WebhookRef::new(&auth.tenant, &webhook.id);
    let start = ledger::start_position(&*state.log, &auth.tenant, &webhook).await?;
    ledger::created(&*state.deliveries, &webhook_ref, start).await?;
    state.deliveries.sync().await?;
    state
        .delivery
        .webhook_changed(&auth.tenant, &webhook.id)
        .await;
    let mut shown = view(&webhook);
    if let Some(secret) = generated_secret {
        shown["authentication"]["secret"] = Value::String(secret);
    }
    Ok((StatusCode::CREATED, Json(shown)))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ListQuery),
    responses((status = 200, description = "`{data: [webhook], iterator, done}`")))]
async fn list_webhooks(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Value>>> {
    let (items, done) = state
        .catalog
        .webhooks_page(&auth.tenant, query.iterator.as_deref(), query.limit()?)
        .await?;
    Ok(Json(
        Page::keyed(items, done, |w| w.id.clone()).map(|w| view(&w)),
    ))
}

#[utoipa::path(get, path = "/{tenant}/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The webhook, secrets masked"), (status = 404)))]
async fn get_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&existing(&state, &auth.tenant, &id).await?)))
}

/// Stores a new spec for an existing webhook; masked secrets sent back keep their values.
async fn update(
    state: &Arc<ApiState>,
    tenant: &str,
    current: Webhook,
    mut body: Value,
) -> ApiResult<Json<Value>> {
    secret_scope::restore_masked(&mut body, &current.spec).map_err(ApiError::internal)?;
    let mut spec = parse_spec(body).map_err(ApiError::validation)?;
    if spec.id.as_deref().is_some_and(|id| id != current.id) {
        return Err(ApiError::validation(vec![FieldError {
            field: "id".into(),
            message: "must equal the id in the path (webhooks cannot be renamed)".into(),
        }]));
    }
    spec.id = Some(current.id.clone());
    current
        .spec
        .check_update(&spec)
        .map_err(|e| ApiError::validation(vec![e]))?;
    validate(state, tenant, &spec).await?;
    let status = match (current.status, spec.enabled) {
        (WebhookStatus::Completed | WebhookStatus::Disabled, _) => current.status,
        (_, true) => WebhookStatus::Running,
        (_, false) => WebhookStatus::Stopped,
    };
    let webhook = Webhook {
        status,
        updated_at: now_millis(),
        spec,
        ..current
    };
    state.catalog.put_webhook(tenant, &webhook).await?;
    state.delivery.webhook_changed(tenant, &webhook.id).await;
    Ok(Json(view(&webhook)))
}

#[utoipa::path(put, path = "/{tenant}/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    request_body(content = Object, description = "The whole webhook (fields left out take their defaults)"),
    responses((status = 200, description = "The webhook"), (status = 400), (status = 404)))]
async fn replace_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    accept_nested(&mut body)?;
    let current = existing(&state, &auth.tenant, &id).await?;
    update(&state, &auth.tenant, current, body).await
}

#[utoipa::path(patch, path = "/{tenant}/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    request_body(content = Object, description = "A JSON merge patch (RFC 7396)"),
    responses((status = 200, description = "The webhook"), (status = 400), (status = 404)))]
async fn patch_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
    ApiJson(mut patch): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let current = existing(&state, &auth.tenant, &id).await?;
    let mut merged = serde_json::to_value(&current.spec).expect("spec serializes");
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    accept_nested(&mut patch)?;
    merge_patch(&mut merged, patch);
    update(&state, &auth.tenant, current, merged).await
}

/// RFC 7396: objects merge recursively, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            merge_patch(target.entry(key).or_insert(Value::Null), value);
        }
    }
}

#[utoipa::path(delete, path = "/{tenant}/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn delete_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if !state.catalog.delete_webhook(&auth.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no webhook `{id}`")));
    }
    // Only once the worker has recorded its last attempt can its records go.
    state.delivery.stop_and_wait(&auth.tenant, &id).await;
    let webhook_ref = WebhookRef::new(&auth.tenant, &id);
    state.deliveries.forget(&webhook_ref).await?;
    state.deliveries.sync().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_running(
    state: &Arc<ApiState>,
    tenant: &str,
    id: &str,
    running: bool,
) -> ApiResult<Json<Value>> {
    let mut webhook = existing(state, tenant, id).await?;
    if webhook.status == WebhookStatus::Completed {
        return Err(ApiError::conflict(format!(
            "webhook `{id}` is a temporary webhook that completed its window"
        )));
    }
    webhook.spec.enabled = running;
    webhook.status = if running {
        WebhookStatus::Running
    } else {
        WebhookStatus::Stopped
    };
    webhook.updated_at = now_millis();
    state.catalog.put_webhook(tenant, &webhook).await?;
    // NewStore's actions and reasons.
    let (action, reason) = if running {
        ("integration_started", "Started via API.")
    } else {
        ("integration_stopped", "Stopped via API.")
    };
    log_action(state, tenant, id, action, Some(reason.into())).await;
    state.deliveries.sync().await?;
    state.delivery.webhook_changed(tenant, id).await;
    Ok(Json(view(&webhook)))
}

/// Appends to the integration log; a failure here must not fail the request. The caller
/// makes it durable (`DeliveryState::sync`) before it answers.
pub async fn log_action(
    state: &ApiState,
    tenant: &str,
    id: &str,
    action: &str,
    reason: Option<String>,
) {
    let webhook = WebhookRef::new(tenant, id);
    crate::delivery::lifecycle::log(&*state.deliveries, &webhook, action, reason).await;
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/start", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The webhook with `status: running`"), (status = 404), (status = 409)))]
async fn start_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set_running(&state, &auth.tenant, &id, true).await
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/stop", tag = "webhooks", security(("bearer" = [])),
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The webhook with `status: stopped`"), (status = 404), (status = 409)))]
async fn stop_webhook(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    set_running(&state, &auth.tenant, &id, false).await
}

#[utoipa::path(post, path = "/{tenant}/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    security(("bearer" = [])), params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "`{secret}`: the new secret, shown once. For standard_webhooks the old one stays valid for 24 hours"),
              (status = 404), (status = 409, description = "The authentication type has no rotatable secret")))]
async fn rotate_secret(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let serialized = state.webhook_writes.lock().await;
    let mut webhook = existing(&state, &auth.tenant, &id).await?;
    let Some(http) = webhook.spec.destination.http_mut() else {
        return Err(ApiError::conflict(
            "an s3 destination has no signing secret to rotate",
        ));
    };
    let secret = http
        .authentication
        .rotate(jiff::Timestamp::now())
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    webhook.updated_at = now_millis();
    state.catalog.put_webhook(&auth.tenant, &webhook).await?;
    log_action(&state, &auth.tenant, &id, "secret_rotated", None).await;
    state.deliveries.sync().await?;
    drop(serialized);
    state.delivery.webhook_changed(&auth.tenant, &id).await;
    Ok(Json(serde_json::json!({"secret": secret})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
