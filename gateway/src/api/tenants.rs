//! `/admin/v1/tenants`: tenants and their API keys (admin token only).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{Admin, ApiJson, ListQuery, Page},
};
use crate::{
    api::ApiState,
    ids,
    iso::{format_millis, now_millis},
    model::problems::FieldError,
    storage::catalog::Tenant,
};

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, delete_tenant))
        .routes(routes!(issue_key))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    /// `^[a-z0-9-]{1,50}$`
    id: String,
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TenantCreated {
    id: String,
    name: Option<String>,
    /// Shown once; only its hash is stored.
    api_key: String,
    key_id: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
struct TenantView {
    id: String,
    name: Option<String>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
struct KeyView {
    key_id: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
struct TenantDetail {
    #[serde(flatten)]
    tenant: TenantView,
    keys: Vec<KeyView>,
}

#[derive(Serialize, ToSchema)]
struct KeyIssued {
    key_id: String,
    /// Shown once.
    api_key: String,
}

fn view(t: Tenant) -> TenantView {
    TenantView {
        id: t.id,
        name: t.name,
        created_at: format_millis(t.created_at),
    }
}

async fn existing(state: &ApiState, tenant: &str) -> ApiResult<Tenant> {
    state
        .catalog
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant `{tenant}`")))
}

#[utoipa::path(post, path = "/admin/v1/tenants", tag = "admin", security(("bearer" = [])),
    request_body = CreateTenant,
    responses((status = 201, body = TenantCreated), (status = 400), (status = 401), (status = 409)))]
async fn create_tenant(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    if !ids::is_client_id(&body.id) {
        return Err(ApiError::validation(vec![FieldError {
            field: "id".into(),
            message: "must match ^[a-z0-9-]{1,50}$".into(),
        }]));
    }
    // `admin`, `healthz`... would shadow operational routes at `/{tenant}/v1`.
    if ["admin", "healthz", "readyz", "metrics", "openapi.json"].contains(&body.id.as_str()) {
        return Err(ApiError::validation(vec![FieldError {
            field: "id".into(),
            message: format!("`{}` is reserved", body.id),
        }]));
    }
    let tenant = Tenant {
        id: body.id,
        name: body.name,
        created_at: now_millis(),
    };
    let issued = state
        .catalog
        .create_tenant(&tenant)
        .await?
        .ok_or_else(|| ApiError::conflict(format!("tenant `{}` already exists", tenant.id)))?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            created_at: format_millis(tenant.created_at),
            id: tenant.id,
            name: tenant.name,
            api_key: issued.api_key,
            key_id: issued.key_id,
        }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/tenants", tag = "admin", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, description = "`{data: [tenant], iterator, done}`")))]
async fn list_tenants(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<TenantView>>> {
    let (tenants, done) = state
        .catalog
        .tenants_page(query.iterator.as_deref(), query.limit()?)
        .await?;
    Ok(Json(Page::keyed(tenants, done, |t| t.id.clone()).map(view)))
}

#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}", tag = "admin", security(("bearer" = [])),
    params(("tenant" = String, Path)), responses((status = 200, body = TenantDetail), (status = 404)))]
async fn get_tenant(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantDetail>> {
    let found = existing(&state, &tenant).await?;
    let keys = state
        .catalog
        .keys_of(&tenant)
        .await?
        .into_iter()
        .map(|k| KeyView {
            key_id: k.key_id,
            created_at: format_millis(k.created_at),
        })
        .collect();
    Ok(Json(TenantDetail {
        tenant: view(found),
        keys,
    }))
}

#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}", tag = "admin", security(("bearer" = [])),
    params(("tenant" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_tenant(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    if state.catalog.tenant(&tenant).await?.is_none() {
        return Err(ApiError::not_found(format!("no tenant `{tenant}`")));
    }
    // Workers first, so no attempt writes records of a tenant being removed; then their
    // delivery state.
    for webhook in state.catalog.all_webhooks_of(&tenant).await? {
        state.delivery.stop_and_wait(&tenant, &webhook.id).await;
        let webhook_ref = crate::storage::WebhookRef::new(&tenant, &webhook.id);
        state.deliveries.forget(&webhook_ref).await?;
    }
    super::plugins::registry(&state)
        .delete_tenant_plugins(&tenant)
        .await?;
    state.catalog.delete_tenant(&tenant).await?;
    state.log.forget_tenant(&tenant).await?;
    state.schemas.invalidate_tenant(&tenant);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/keys", tag = "admin", security(("bearer" = [])),
    params(("tenant" = String, Path)), responses((status = 201, body = KeyIssued), (status = 404)))]
async fn issue_key(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    Path(tenant): Path<String>,
) -> ApiResult<(StatusCode, Json<KeyIssued>)> {
    existing(&state, &tenant).await?;
    let issued = state.catalog.issue_key(&tenant, now_millis()).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyIssued {
            key_id: issued.key_id,
            api_key: issued.api_key,
        }),
    ))
}

#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/keys/{key_id}", tag = "admin",
    security(("bearer" = [])), params(("tenant" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn revoke_key(
    State(state): State<Arc<ApiState>>,
    _: Admin,
    Path((tenant, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if !state.catalog.revoke_key(&tenant, &key_id).await? {
        return Err(ApiError::not_found(format!(
            "no key `{key_id}` for tenant `{tenant}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
