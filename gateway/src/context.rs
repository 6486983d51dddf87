//! What the engines (delivery workers, export workers, the plugin pipeline, retention)
//! work with: storage, the sandbox, metrics and the configuration. Built once by
//! `app::open` and shared; the API holds its own handles to the same services next to its
//! HTTP-only state (`api::ApiState`), so the engines never import the API or the wiring.

use std::sync::Arc;

use hookgate_plugin_host::PluginRuntime;

use crate::{
    config::Config,
    metrics::Metrics,
    storage::{Catalog, DeliveryState, EventLog},
};

pub struct EngineContext {
    pub config: Arc<Config>,
    pub catalog: Arc<dyn Catalog>,
    pub log: Arc<dyn EventLog>,
    pub deliveries: Arc<dyn DeliveryState>,
    pub metrics: Arc<Metrics>,
    /// The WebAssembly sandbox for tenant plugins (called through `crate::pipeline`).
    pub plugins: PluginRuntime,
    /// Where plugin components are kept for every node (cluster mode); `None` when the
    /// runtime's own cache directory is that place (embedded).
    pub components: Option<Arc<dyn crate::storage::ComponentStore>>,
    /// Serializes webhook writes (shared with the API): a status the gateway decides
    /// (disabled, completed) must not interleave with an update.
    pub webhook_writes: Arc<tokio::sync::Mutex<()>>,
}
