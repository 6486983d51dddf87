//! The API's state: handles to the services the routes use, and what only HTTP needs
//! (the schema cache, the admin token, readiness, the OpenAPI document). Built by
//! `app::open`; the engines never see it.

use std::sync::{Arc, OnceLock, atomic::AtomicBool};

use crate::{
    config::Config,
    delivery::DeliveryControl,
    metrics::Metrics,
    schemas::SchemaCache,
    storage::{Catalog, DeliveryState, EventLog},
};

pub struct ApiState {
    pub config: Arc<Config>,
    /// Tenants, keys, event types, webhooks, plugins and secrets; writes are durable when
    /// they return.
    pub catalog: Arc<dyn Catalog>,
    pub log: Arc<dyn EventLog>,
    /// Every webhook's delivery state (cursors, records, attempts, retries, stats).
    pub deliveries: Arc<dyn DeliveryState>,
    /// The delivery core, for what concerns running webhooks (start, stop, send now).
    pub delivery: Arc<dyn DeliveryControl>,
    pub metrics: Arc<Metrics>,
    /// The WebAssembly sandbox for tenant plugins (uploads, dry runs).
    pub plugins: hookgate_plugin_host::PluginRuntime,
    /// Plugin components for every node (cluster mode), as in `EngineContext`.
    pub components: Option<Arc<dyn crate::storage::ComponentStore>>,
    pub schemas: SchemaCache,
    pub admin_token_sha256: Vec<u8>,
    /// Serializes webhook writes (creation against the per-tenant limit, plugin deletes
    /// against attachments); shared with the engines.
    pub webhook_writes: Arc<tokio::sync::Mutex<()>>,
    pub ready: AtomicBool,
    /// The OpenAPI document, generated from the router at startup.
    pub openapi: OnceLock<String>,
}
