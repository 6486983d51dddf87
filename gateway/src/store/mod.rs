//! The embedded backend's sled side: one `Store` owning the typed trees, the catalog and
//! delivery state on top of them, and [`open`], which wires them with the segment log into
//! one [`Embedded`]. Each resource module here knows its tree's key layout; nothing
//! outside `store` (and `log`, whose index lives here too) names sled or builds a key.
//!
//! Key layout: tenant-scoped trees use `tenant \0 rest`. Tenant ids match
//! `^[a-z0-9-]{1,50}$`, so the separator never occurs inside one and prefix scans
//! over `tenant \0` see exactly one tenant.

pub mod catalog;
mod codec;
pub mod deliveries;
mod event_types;
mod ownership;
mod plugins;
mod tenants;
mod webhooks;
mod writes;

use std::{path::Path, sync::Arc};

use anyhow::Context;

pub use codec::{
    CompactRecord, decode as codec_decode, encode as codec_encode,
    encode_compact as codec_encode_compact, tenant_key, tenant_prefix,
};
pub use writes::Writes;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is unreadable: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("stored record is unreadable: {0}")]
    CompactCodec(#[from] postcard::Error),
    #[error("a stored secret cannot be opened with this master key: {0}")]
    Secret(String),
}

/// sled's page cache, in bytes. sled counts the on-disk size of the cached pages, not their
/// size in memory, so RSS runs well above it. Issue 3 caps RSS at 300 MiB with 1,000,000
/// pending deliveries (`bench/run-backlog.sh`, 1 KiB events). With event bodies in segment
/// files sled holds the event index and delivery state: 128 MiB peaked at 278 MiB while
/// draining, 64 MiB at 213 MiB at the same drain rate (9,100/s) and ingest rate. (With
/// bodies still in sled: 256 MiB peaked at 366 MiB, 128 MiB at 246 MiB.)
pub const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Handles to every tree. Cloning is cheap (sled handles are reference counted).
#[derive(Clone)]
pub(crate) struct Store {
    pub db: sled::Db,
    pub tenants: sled::Tree,
    pub api_keys: sled::Tree,
    pub event_types: sled::Tree,
    pub webhooks: sled::Tree,
    /// The event log's index (the events themselves are in segment files; see `crate::log`).
    pub event_index: sled::Tree,
    /// Delivery state of every webhook (see `deliveries`).
    pub deliveries: sled::Tree,
    /// Tenant plugins: names, versions and their secrets (see `plugins`).
    pub plugin_heads: sled::Tree,
    pub plugins: sled::Tree,
    pub plugin_secrets: sled::Tree,
    /// Seals secret fields on the way in and opens them on the way out: nothing outside
    /// the store ever sees a sealed value, and nothing on disk is a plaintext secret.
    pub master_key: std::sync::Arc<hookgate_signing::MasterKey>,
    /// Bumped whenever a plugin version is added or removed: whoever caches which version
    /// an attachment runs (delivery workers) resolves again when it moves.
    plugin_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    fn open(dir: &Path, master_key: hookgate_signing::MasterKey) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            // Durability comes from our own group commit (crate::log::commit); sled's
            // periodic background flush would only add fsyncs that nobody waits for.
            .flush_every_ms(None)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .open()?;
        Ok(Store {
            tenants: db.open_tree("tenants")?,
            api_keys: db.open_tree("api_keys")?,
            event_types: db.open_tree("event_types")?,
            webhooks: db.open_tree("webhooks")?,
            event_index: db.open_tree("event_index")?,
            deliveries: db.open_tree("deliveries")?,
            plugin_heads: db.open_tree("plugin_heads")?,
            plugins: db.open_tree("plugins")?,
            plugin_secrets: db.open_tree("plugin_secrets")?,
            master_key: std::sync::Arc::new(master_key),
            plugin_generation: Default::default(),
            db,
        })
    }

    /// Changes whenever a plugin version is added or removed (see `plugin_generation`).
    fn plugin_generation(&self) -> u64 {
        self.plugin_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn plugins_changed(&self) {
        self.plugin_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Blocks until everything written so far is on disk.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The embedded backend: the segment log, and sled for the catalog and delivery state.
pub struct Embedded {
    pub catalog: Arc<catalog::EmbeddedCatalog>,
    pub log: Arc<crate::log::SegmentLog>,
    pub deliveries: Arc<deliveries::EmbeddedDeliveryState>,
    pub ownership: Arc<ownership::LocalOwnership>,
}

/// Opens (or creates) the embedded backend in `data_dir`, re-indexing what the last run
/// wrote after its checkpoint. Delivery state's flush task runs on `delivery_runtime`.
pub fn open(
    data_dir: &Path,
    master_key: hookgate_signing::MasterKey,
    delivery_runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Embedded> {
    let store = Store::open(data_dir, master_key)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let log = crate::log::SegmentLog::open(
        &store.db,
        store.event_index.clone(),
        &data_dir.join("segments"),
    )
    .context("cannot open the event log")?;
    let commit = log.commit().clone();
    Ok(Embedded {
        deliveries: Arc::new(deliveries::EmbeddedDeliveryState::new(
            store.deliveries.clone(),
            commit.clone(),
            delivery_runtime,
        )),
        catalog: Arc::new(catalog::EmbeddedCatalog::new(store, commit)),
        ownership: Arc::default(),
        log: Arc::new(log),
    })
}
