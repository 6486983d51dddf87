//! `/{tenant}/v1/event-types`: the catalog (Front Systems `WebhooksTypes`) and JSON Schemas.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{ApiJson, ListQuery, Page, TenantAuth},
};
use crate::{
    api::ApiState,
    iso::{format_millis, now_millis},
    model::{problems::FieldError, webhook::is_event_type_name},
    schemas,
    storage::catalog::EventType,
};

pub fn routes() -> Routes {
    Routes::new()
        .routes(routes!(create_event_type, list_event_types))
        .routes(routes!(get_event_type, put_event_type, delete_event_type))
        .routes(routes!(get_schema))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateEventType {
    name: String,
    description: Option<String>,
    /// A JSON Schema that ingested payloads of this type must satisfy.
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateEventType {
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// Accepted for read-modify-write; must equal the path's name when given.
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct EventTypeView {
    name: String,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    created_at: String,
    updated_at: String,
}

fn view(et: EventType) -> EventTypeView {
    EventTypeView {
        name: et.name,
        description: et.description,
        schema: et.schema,
        created_at: format_millis(et.created_at),
        updated_at: format_millis(et.updated_at),
    }
}

fn check(name: &str, schema: Option<&Value>) -> ApiResult<()> {
    let mut errors = Vec::new();
    if !is_event_type_name(name) {
        errors.push(FieldError {
            field: "name".into(),
            message: "must match ^[A-Za-z0-9_.:-]{1,128}$".into(),
        });
    }
    // The document declares an object (or null): a boolean schema would take every
    // payload (`true`, the same as none) or refuse every one (`false`), never what a
    // catalog entry means.
    if let Some(schema) = schema.filter(|s| !s.is_null()) {
        let checked = match schema {
            Value::Object(_) => schemas::compile(schema),
            _ => Err("must be a JSON Schema object, or null for none".into()),
        };
        if let Err(message) = checked {
            errors.push(FieldError {
                field: "schema".into(),
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

#[utoipa::path(post, path = "/{tenant}/v1/event-types", tag = "event-types", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = CreateEventType,
    responses((status = 201, body = EventTypeView), (status = 400), (status = 409)))]
async fn create_event_type(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    ApiJson(body): ApiJson<CreateEventType>,
) -> ApiResult<(StatusCode, Json<EventTypeView>)> {
    check(&body.name, body.schema.as_ref())?;
    let now = now_millis();
    let et = EventType {
        name: body.name,
        description: body.description,
        schema: body.schema,
        created_at: now,
        updated_at: now,
    };
    if !state.catalog.create_event_type(&auth.tenant, &et).await? {
        return Err(ApiError::conflict(format!(
            "event type `{}` already exists; PUT updates it",
            et.name
        )));
    }
    state.schemas.invalidate(&auth.tenant, &et.name);
    Ok((StatusCode::CREATED, Json(view(et))))
}

#[utoipa::path(get, path = "/{tenant}/v1/event-types", tag = "event-types", security(("bearer" = [])),
    params(("tenant" = String, Path), ListQuery),
    responses((status = 200, description = "`{data: [event type], iterator, done}`")))]
async fn list_event_types(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<EventTypeView>>> {
    let (items, done) = state
        .catalog
        .event_types_page(&auth.tenant, query.iterator.as_deref(), query.limit()?)
        .await?;
    Ok(Json(Page::keyed(items, done, |e| e.name.clone()).map(view)))
}

async fn existing(state: &ApiState, tenant: &str, name: &str) -> ApiResult<EventType> {
    state
        .catalog
        .event_type(tenant, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event type `{name}`")))
}

#[utoipa::path(get, path = "/{tenant}/v1/event-types/{name}", tag = "event-types", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EventTypeView), (status = 404)))]
async fn get_event_type(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<EventTypeView>> {
    Ok(Json(view(existing(&state, &auth.tenant, &name).await?)))
}

#[utoipa::path(get, path = "/{tenant}/v1/event-types/{name}/schema", tag = "event-types",
    security(("bearer" = [])), params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "The JSON Schema"), (status = 404)))]
async fn get_schema(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    existing(&state, &auth.tenant, &name)
        .await?
        .schema
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("event type `{name}` has no schema")))
}

/// Creates or replaces the type (the name comes from the path).
#[utoipa::path(put, path = "/{tenant}/v1/event-types/{name}", tag = "event-types", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path)), request_body = UpdateEventType,
    responses((status = 200, body = EventTypeView), (status = 400)))]
async fn put_event_type(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateEventType>,
) -> ApiResult<Json<EventTypeView>> {
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: "must equal the name in the path (event types cannot be renamed)".into(),
        }]));
    }
    check(&name, body.schema.as_ref())?;
    let now = now_millis();
    let created_at = state
        .catalog
        .event_type(&auth.tenant, &name)
        .await?
        .map_or(now, |e| e.created_at);
    let et = EventType {
        name,
        description: body.description,
        schema: body.schema,
        created_at,
        updated_at: now,
    };
    state.catalog.put_event_type(&auth.tenant, &et).await?;
    state.schemas.invalidate(&auth.tenant, &et.name);
    Ok(Json(view(et)))
}

#[utoipa::path(delete, path = "/{tenant}/v1/event-types/{name}", tag = "event-types",
    security(("bearer" = [])), params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn delete_event_type(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if !state.catalog.delete_event_type(&auth.tenant, &name).await? {
        return Err(ApiError::not_found(format!("no event type `{name}`")));
    }
    state.schemas.invalidate(&auth.tenant, &name);
    Ok(StatusCode::NO_CONTENT)
}
