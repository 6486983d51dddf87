//! The REST API (`/admin/v1`, `/{tenant}/v1`, operations). One file per resource; every
//! route is registered through utoipa so `/openapi.json` always lists all of them.

pub mod error;
pub mod extract;

pub use state::ApiState;

mod delivery_views;
mod dialects;
mod event_types;
mod events;
mod messages;
mod ops;
mod plugins;
mod query_names;
mod state;
#[cfg(test)]
mod stored_payload_reads;
mod subscriptions;
mod tenants;
mod webhook_messages;
mod webhooks;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, middleware};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "Hookgate", description = "Self-hosted webhook gateway: durable ingest, WASM plugins, signed delivery."),
    modifiers(&BearerAuth),
    tags(
        (name = "admin", description = "Tenants and their API keys (admin token)"),
        (name = "event-types", description = "Event type catalog and JSON Schemas"),
        (name = "webhooks", description = "Webhooks (integrations) and their lifecycle"),
        (name = "events", description = "Ingest and message queries"),
        (name = "plugins", description = "WebAssembly plugins: versions, secrets, dry runs"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its OpenAPI operation, and the document they make.
fn parts(plugin_upload_limit: usize) -> (Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::routes())
        .merge(event_types::routes())
        .merge(webhooks::routes())
        .merge(webhook_messages::routes())
        .merge(subscriptions::routes())
        .merge(events::routes())
        .merge(messages::routes())
        .merge(plugins::routes(plugin_upload_limit))
        .merge(ops::routes())
        .split_for_parts()
}

/// The whole HTTP surface.
pub fn router(state: Arc<ApiState>) -> Router {
    let (router, openapi) = parts(state.config.plugin_max_component_bytes);
    let query_names = Arc::new(query_names::QueryNames::from_document(&openapi));
    let document = openapi.to_json().expect("the OpenAPI document serializes");
    let _ = state.openapi.set(document);
    router
        .route_layer(middleware::from_fn_with_state(
            query_names,
            query_names::refuse_unknown,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(error::envelope))
        .with_state(state)
}

/// Routes of one resource, registered with their OpenAPI operations.
type Routes = OpenApiRouter<Arc<ApiState>>;

/// Whether the tenant has uploaded a plugin of this name (webhooks may only attach those).
pub(crate) async fn plugin_exists(state: &ApiState, tenant: &str, name: &str) -> bool {
    plugins::exists(state, tenant, name).await
}
