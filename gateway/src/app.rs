//! Wiring: opens the store, builds the shared state and the router, serves until a
//! shutdown signal, then drains in-flight requests and flushes the storage backend.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::{
    api::ApiState,
    config::{Config, StorageKind},
    context::EngineContext,
    delivery::{DeliveryControl, Dispatcher},
    schemas::SchemaCache,
};

/// The running parts, as `open` wires them.
pub struct App {
    pub api: Arc<ApiState>,
    pub engine: Arc<EngineContext>,
    pub dispatcher: Arc<Dispatcher>,
}

/// Opens everything under `config.data_dir` and wires the parts; the delivery engine will
/// run on `delivery_runtime`.
pub async fn open(config: Config, delivery_runtime: tokio::runtime::Handle) -> anyhow::Result<App> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let master_key = hookgate_signing::secret_box::MasterKey::from_config_or_file(
        config.master_key.as_deref(),
        &config.data_dir.join("master_key"),
    )
    .context("cannot load the master key")?;
    let backend = match config.storage {
        StorageKind::Embedded => {
            let embedded = crate::store::open(&config.data_dir, master_key, &delivery_runtime)?;
            Backend {
                catalog: embedded.catalog,
                log: embedded.log,
                deliveries: embedded.deliveries,
                ownership: embedded.ownership,
                components: None,
                cluster: None,
            }
        }
        StorageKind::Nats => {
            let node = node_id(&config)?;
            let nats = crate::nats::open(&config, Arc::new(master_key), &node).await?;
            tracing::info!(node = %node, "cluster mode: storage on NATS JetStream");
            Backend {
                catalog: nats.catalog,
                log: nats.log,
                deliveries: nats.deliveries,
                ownership: nats.ownership.clone(),
                components: Some(nats.components),
                cluster: Some((nats.nats, nats.ownership)),
            }
        }
    };
    let admin_token = admin_token(&config)?;
    let plugins = hookgate_plugin_host::PluginRuntime::new(
        config.plugin_runtime(config.data_dir.join("plugins")),
    )
    .context("cannot start the plugin runtime")?;
    crate::pipeline::load_stored_plugins(
        &*backend.catalog,
        &plugins,
        backend.components.as_deref(),
    )
    .await?;
    let engine = Arc::new(EngineContext {
        config: Arc::new(config),
        catalog: backend.catalog,
        log: backend.log,
        deliveries: backend.deliveries,
        metrics: Default::default(),
        plugins,
        components: backend.components,
        webhook_writes: Default::default(),
    });
    let dispatcher = Dispatcher::new(engine.clone(), backend.ownership, delivery_runtime);
    // In a cluster, the API's requests about a webhook go to the node that runs it.
    let delivery: Arc<dyn DeliveryControl> = match backend.cluster {
        Some((nats, ownership)) => crate::nats::NatsControl::start(
            nats,
            ownership,
            engine.catalog.clone(),
            dispatcher.clone(),
        )
        .await
        .context("cannot listen for control requests on NATS")?,
        None => dispatcher.clone(),
    };
    let api = Arc::new(ApiState {
        config: engine.config.clone(),
        catalog: engine.catalog.clone(),
        log: engine.log.clone(),
        deliveries: engine.deliveries.clone(),
        delivery,
        metrics: engine.metrics.clone(),
        plugins: engine.plugins.clone(),
        components: engine.components.clone(),
        schemas: SchemaCache::default(),
        admin_token_sha256: Sha256::digest(admin_token.as_bytes()).to_vec(),
        webhook_writes: engine.webhook_writes.clone(),
        ready: AtomicBool::new(true),
        openapi: Default::default(),
    });
    Ok(App {
        api,
        engine,
        dispatcher,
    })
}

/// The storage backend's parts, whichever it is.
struct Backend {
    catalog: Arc<dyn crate::storage::Catalog>,
    log: Arc<dyn crate::storage::EventLog>,
    deliveries: Arc<dyn crate::storage::DeliveryState>,
    ownership: Arc<dyn crate::storage::Ownership>,
    components: Option<Arc<dyn crate::storage::ComponentStore>>,
    /// Cluster mode: the connection and this node's shards, for control across nodes.
    cluster: Option<(Arc<crate::nats::Nats>, Arc<crate::nats::NatsOwnership>)>,
}

/// This node's name in a cluster: made once and kept in `data_dir`, so a restarted node
/// takes its own shards back at once instead of waiting out its old heartbeat.
fn node_id(config: &Config) -> anyhow::Result<String> {
    let path = config.data_dir.join("node_id");
    if path.exists() {
        let id = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(id.trim().to_string());
    }
    let id = format!("node-{}", crate::ids::random_token(6));
    write_private(&path, &id)?;
    Ok(id)
}

/// The configured admin token, or the one stored in `data_dir`, or a new one (stored 0600).
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        tracing::info!("admin token: taken from the configuration (HOOKGATE_ADMIN_TOKEN)");
        return Ok(token.clone());
    }
    let path = config.data_dir.join("admin_token");
    if path.exists() {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        tracing::info!(path = %path.display(), "admin token: stored in this file");
        return Ok(token.trim().to_string());
    }
    let token = format!("hga_{}", crate::ids::random_token(32));
    write_private(&path, &token)?;
    tracing::info!(path = %path.display(), "admin token: generated and stored in this file");
    Ok(token)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Serves until SIGINT/SIGTERM; then stops accepting, finishes in-flight requests and
/// flushes the store. The delivery engine runs on `delivery_runtime`, apart from the API.
pub async fn serve(config: Config, delivery_runtime: tokio::runtime::Handle) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = open(config, delivery_runtime).await?;
    let router = crate::api::router(app.api.clone());
    app.dispatcher.start().await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "hookgate is listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shutting down: flushing the store");
    app.api.ready.store(false, Ordering::Release);
    app.dispatcher.shutdown().await;
    app.engine.log.close();
    app.engine
        .catalog
        .close()
        .await
        .context("final flush failed")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: no new connections, draining requests");
}
