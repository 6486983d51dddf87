//! `PluginRuntime`: the gateway's one handle on the sandbox. Owns the engine, the linker
//! with the host imports, the on-disk cache, the map of loaded plugins and the slots that
//! bound concurrent calls.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{Event, Header, OutgoingRequest, hookgate};
use crate::cache::{ArtifactCache, is_digest};
use crate::call::{self, CallReport, Deadline, Sandbox};
use crate::cpu::thread_cpu_time;
use crate::engine::{self, EpochTicker};
use crate::host::{CallContext, CallState};
use crate::limits::CallLimits;
use crate::plugin::CompiledPlugin;
use crate::slots::FairSlots;
use crate::{
    Hook, LoadError, LoadedPlugin, PluginError, RuntimeConfig, UploadError, validate, wasi,
};

/// What [`PluginRuntime::compile`] made of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginArtifact {
    /// Hex sha256 of the uploaded bytes: pass it to [`PluginRuntime::load`].
    pub sha256: String,
    /// Size of the upload in bytes.
    pub size: usize,
    /// Hooks the component exports (type-checked). Components built with the SDK export
    /// all three; those it does not override behave neutrally.
    pub exports: Vec<Hook>,
}

/// How often plugins were compiled versus taken from the compiled cache, since this
/// runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Components compiled from WebAssembly (uploads, and loads whose cache was missing or
    /// made by an incompatible engine).
    pub compiled: u64,
    /// Loads served by deserializing our cached compiled artifact.
    pub cache_hits: u64,
    /// Loads served from memory.
    pub memory_hits: u64,
}

/// Where the call sequences of [`PluginRuntime::with_slot`] ran, since this runtime
/// started: a sequence that leaves the caller's thread costs a hop to a blocking thread and
/// back, so a rising `blocking` share means plugins run slow (or all slots are busy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    /// Sequences that ran inline, on the caller's (async worker) thread.
    pub inline: u64,
    /// Sequences that ran on a blocking thread: no slot was free at once, a plugin was
    /// barred from running inline, or an inline run was cut off and made again.
    pub blocking: u64,
    /// Of those, inline runs cut off at the inline deadline (or at a call of a plugin
    /// barred from running inline) and made again.
    pub abandoned: u64,
}

#[derive(Default)]
struct Counters {
    compiled: AtomicU64,
    cache_hits: AtomicU64,
    memory_hits: AtomicU64,
    inline_runs: AtomicU64,
    blocking_runs: AtomicU64,
    abandoned_runs: AtomicU64,
}

/// Validates, compiles, caches and runs plugins. Create one per process and share it
/// (`Arc<PluginRuntime>` or a clone: clones share everything).
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Sandbox,
    linker: Linker<CallState>,
    cache: ArtifactCache,
    /// By sha256: the compiled code, and each tenant's handle on it.
    loaded: RwLock<HashMap<String, Loaded>>,
    /// The pool slots usable by calls, shared fairly between tenants.
    slots: Arc<FairSlots>,
    /// Upload probes use the one extra pool slot, one at a time.
    probe_slot: Mutex<()>,
    counters: Counters,
    _ticker: EpochTicker,
}

impl Drop for Inner {
    /// Calls still waiting for a slot fail instead of waiting for good.
    fn drop(&mut self) {
        self.slots.close();
    }
}

/// One compiled component and the tenants' handles on it.
struct Loaded {
    code: Arc<CompiledPlugin>,
    tenants: HashMap<String, Arc<LoadedPlugin>>,
}

impl Loaded {
    fn new(code: Arc<CompiledPlugin>) -> Self {
        Loaded {
            code,
            tenants: HashMap::new(),
        }
    }

    /// `tenant`'s handle, made on first use.
    fn handle(&mut self, tenant: &str) -> Arc<LoadedPlugin> {
        if let Some(handle) = self.tenants.get(tenant) {
            return handle.clone();
        }
        let handle = Arc::new(LoadedPlugin::new(self.code.clone(), tenant));
        self.tenants.insert(tenant.to_owned(), handle.clone());
        handle
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot use plugin cache directory: {0}")]
    CacheDir(#[source] std::io::Error),
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
}

impl PluginRuntime {
    /// Builds the engine, the host linker and the epoch ticker, and opens the cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let cache = ArtifactCache::open(&config.cache_dir).map_err(RuntimeError::CacheDir)?;
        let mut pool_config = config.clone();
        // One slot more than calls may use, reserved for upload probes.
        pool_config.max_concurrent_calls = config.max_concurrent_calls.max(1) + 1;
        let engine =
            engine::build(&pool_config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        let link = |linker: &mut Linker<CallState>| -> wasmtime::Result<()> {
            hookgate::plugin::host::add_to_linker::<_, HasSelf<CallState>>(linker, |state| state)?;
            hookgate::plugin::types::add_to_linker::<_, HasSelf<CallState>>(linker, |state| state)?;
            wasi::add_to_linker(linker)
        };
        link(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let (tick, deadline_ticks) = engine::epoch_schedule(config.call_timeout);
        let ticker = EpochTicker::start(engine.clone(), tick).map_err(RuntimeError::Ticker)?;
        let slots = FairSlots::new(
            config.max_concurrent_calls.max(1) as usize,
            config.max_calls_per_tenant as usize,
        );
        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                sandbox: Sandbox {
                    engine,
                    config,
                    deadline_ticks,
                    tick,
                },
                linker,
                cache,
                loaded: RwLock::new(HashMap::new()),
                slots,
                probe_slot: Mutex::new(()),
                counters: Counters::default(),
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.sandbox.config
    }

    /// Validates an uploaded component, compiles it, writes `{sha256}.wasm` and
    /// `{sha256}.cwasm` to the cache and keeps it loaded. Blocking and CPU-heavy (tens to
    /// hundreds of milliseconds): call it from `spawn_blocking`.
    ///
    /// Refuses, with a reason for the uploader: files over the size cap, anything that is
    /// not a component (core modules included), imports outside the `hookgate:plugin`
    /// world and the denied WASI subset, components not exporting
    /// `hookgate:plugin/hooks@0.1.0` with correctly typed hooks, and components that
    /// cannot even be instantiated within the call limits.
    pub fn compile(&self, wasm: &[u8]) -> Result<PluginArtifact, UploadError> {
        let inner = &self.inner;
        validate::check_size(wasm, inner.sandbox.config.max_component_bytes)?;
        validate::check_is_component(wasm)?;
        let sha256 = hex::encode(Sha256::digest(wasm));

        let started = Instant::now();
        let component = Component::from_binary(&inner.sandbox.engine, wasm)
            .map_err(|e| UploadError::Invalid(format!("{e:#}")))?;
        inner.counters.compiled.fetch_add(1, Ordering::Relaxed);
        validate::check_imports(&inner.sandbox.engine, &component)?;
        let plugin = CompiledPlugin::link(&sha256, &inner.linker, &component)
            .map_err(UploadError::WorldMismatch)?;
        inner.probe(&plugin)?;

        let compiled = component
            .serialize()
            .map_err(|e| UploadError::Cache(format!("{e:#}")))?;
        inner
            .cache
            .write_source(&sha256, wasm)
            .map_err(|e| UploadError::Cache(e.to_string()))?;
        inner
            .cache
            .write_compiled(&sha256, &compiled)
            .map_err(|e| UploadError::Cache(e.to_string()))?;
        tracing::info!(%sha256, size = wasm.len(), ms = started.elapsed().as_millis() as u64, "compiled plugin");

        let artifact = PluginArtifact {
            sha256: sha256.clone(),
            size: wasm.len(),
            exports: plugin.exports(),
        };
        // Code compiled earlier from the same bytes stays: tenants' handles point at it.
        inner
            .loaded
            .write()
            .expect("plugin map poisoned")
            .entry(sha256)
            .or_insert_with(|| Loaded::new(Arc::new(plugin)));
        Ok(artifact)
    }

    /// `tenant`'s handle on the plugin with this sha256, ready to call. Tenants that
    /// uploaded the same bytes share the compiled code but never a handle: what calls of
    /// one tenant learn (hooks that proved neutral, inline bans) does not touch another's.
    ///
    /// The code comes from memory, else is deserialized from our cached `.cwasm`, else
    /// (cache missing, or written by an incompatible engine) recompiled from the cached
    /// `.wasm`, which also rewrites the `.cwasm`. Blocking (file I/O; a recompile takes as
    /// long as an upload) unless the code is in memory: call at startup
    /// ([`preload`](Self::preload)) or from `spawn_blocking`.
    pub fn load(&self, tenant: &str, sha256: &str) -> Result<Arc<LoadedPlugin>, LoadError> {
        let inner = &self.inner;
        if !is_digest(sha256) {
            return Err(LoadError::BadDigest(sha256.to_owned()));
        }
        if let Some(handle) = inner
            .loaded
            .read()
            .expect("plugin map poisoned")
            .get(sha256)
            .and_then(|loaded| loaded.tenants.get(tenant))
        {
            inner.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(handle.clone());
        }
        self.preload(sha256)?;
        let mut loaded = inner.loaded.write().expect("plugin map poisoned");
        match loaded.get_mut(sha256) {
            Some(entry) => Ok(entry.handle(tenant)),
            // Removed by a concurrent `remove` between the two locks.
            None => Err(LoadError::NotFound(sha256.to_owned())),
        }
    }

    /// Makes the compiled code of `sha256` ready in memory (no tenant handle): at startup,
    /// so that the first delivery does not pay for it. Blocking, as [`load`](Self::load).
    pub fn preload(&self, sha256: &str) -> Result<(), LoadError> {
        let inner = &self.inner;
        if !is_digest(sha256) {
            return Err(LoadError::BadDigest(sha256.to_owned()));
        }
        if inner
            .loaded
            .read()
            .expect("plugin map poisoned")
            .contains_key(sha256)
        {
            inner.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let component = match inner.deserialize(sha256) {
            Some(component) => {
                inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%sha256, "loaded plugin from the compiled cache");
                component
            }
            None => inner.recompile(sha256)?,
        };
        let invalid = |reason| LoadError::Invalid {
            sha256: sha256.to_owned(),
            reason,
        };
        let code =
            Arc::new(CompiledPlugin::link(sha256, &inner.linker, &component).map_err(invalid)?);
        let mut loaded = inner.loaded.write().expect("plugin map poisoned");
        loaded
            .entry(sha256.to_owned())
            .or_insert_with(|| Loaded::new(code));
        Ok(())
    }

    /// Forgets `tenant`'s handle on a plugin (its versions with these bytes are deleted);
    /// the compiled code stays for other tenants. Calls holding the handle finish normally.
    pub fn forget(&self, tenant: &str, sha256: &str) {
        if let Some(loaded) = self
            .inner
            .loaded
            .write()
            .expect("plugin map poisoned")
            .get_mut(sha256)
        {
            loaded.tenants.remove(tenant);
        }
    }

    /// Forgets a plugin for every tenant and deletes its cached files (when no version of
    /// any tenant uses these bytes any more). Calls holding a handle finish normally.
    pub fn remove(&self, sha256: &str) -> Result<(), LoadError> {
        if !is_digest(sha256) {
            return Err(LoadError::BadDigest(sha256.to_owned()));
        }
        self.inner
            .loaded
            .write()
            .expect("plugin map poisoned")
            .remove(sha256);
        self.inner
            .cache
            .remove(sha256)
            .map_err(|e| LoadError::Cache(e.to_string()))
    }

    /// The component bytes uploaded under `sha256`, as the cache keeps them: what a
    /// migration copies to where a cluster keeps components.
    pub fn component_bytes(&self, sha256: &str) -> Result<Vec<u8>, LoadError> {
        if !is_digest(sha256) {
            return Err(LoadError::BadDigest(sha256.to_owned()));
        }
        self.inner
            .cache
            .read_source(sha256)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => LoadError::NotFound(sha256.to_owned()),
                _ => LoadError::Cache(e.to_string()),
            })
    }

    /// Compile and cache counters, e.g. to show that a restart reused compiled plugins.
    pub fn cache_stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            compiled: c.compiled.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Where [`with_slot`](Self::with_slot) sequences ran.
    pub fn run_stats(&self) -> RunStats {
        let c = &self.inner.counters;
        RunStats {
            inline: c.inline_runs.load(Ordering::Relaxed),
            blocking: c.blocking_runs.load(Ordering::Relaxed),
            abandoned: c.abandoned_runs.load(Ordering::Relaxed),
        }
    }

    /// Runs the plugin's `filter` hook on a blocking thread once a slot is free.
    /// `Ok(false)` means drop the event for this webhook.
    pub async fn call_filter(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
        event: Event,
        ctx: CallContext,
    ) -> CallReport<bool> {
        let config = config.to_owned();
        self.on_blocking_thread(plugin, move |sb, plugin| {
            call::filter(sb, plugin, &config, &event, ctx, Deadline::Full)
        })
        .await
    }

    /// Runs the plugin's `transform` hook on a blocking thread once a slot is free. The
    /// result keeps the event's id and tenant (checked) and fits the output limit.
    pub async fn call_transform(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
        event: Event,
        ctx: CallContext,
    ) -> CallReport<Event> {
        let config = config.to_owned();
        self.on_blocking_thread(plugin, move |sb, plugin| {
            call::transform(sb, plugin, &config, &event, ctx, Deadline::Full)
        })
        .await
    }

    /// Runs the plugin's `authenticate` hook on a blocking thread once a slot is free.
    /// Returns headers to add to this attempt (names and values checked).
    pub async fn call_authenticate(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
        request: OutgoingRequest,
        ctx: CallContext,
    ) -> CallReport<Vec<Header>> {
        let config = config.to_owned();
        self.on_blocking_thread(plugin, move |sb, plugin| {
            call::authenticate(sb, plugin, &config, &request, ctx, Deadline::Full)
        })
        .await
    }

    /// Like [`call_filter`](Self::call_filter) but on the current thread, which it may
    /// occupy for up to the call timeout: for threads that may block (never an async
    /// executor's). Does not wait for a slot: fails with [`PluginError::Busy`] when all
    /// are taken.
    pub fn call_filter_blocking(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        event: &Event,
        ctx: CallContext,
    ) -> CallReport<bool> {
        self.on_this_thread(plugin, |sb| {
            call::filter(sb, plugin, config, event, ctx, Deadline::Full)
        })
    }

    /// Blocking [`call_transform`](Self::call_transform); see
    /// [`call_filter_blocking`](Self::call_filter_blocking).
    pub fn call_transform_blocking(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        event: &Event,
        ctx: CallContext,
    ) -> CallReport<Event> {
        self.on_this_thread(plugin, |sb| {
            call::transform(sb, plugin, config, event, ctx, Deadline::Full)
        })
    }

    /// Blocking [`call_authenticate`](Self::call_authenticate); see
    /// [`call_filter_blocking`](Self::call_filter_blocking).
    pub fn call_authenticate_blocking(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        request: &OutgoingRequest,
        ctx: CallContext,
    ) -> CallReport<Vec<Header>> {
        self.on_this_thread(plugin, |sb| {
            call::authenticate(sb, plugin, config, request, ctx, Deadline::Full)
        })
    }

    /// Runs `work`, a sequence of calls made through the [`Slot`] (a webhook's filters, then
    /// its transforms), once per sequence rather than once per call:
    ///
    /// 1. Inline, on the caller's thread (an async worker), when a sandbox slot is free
    ///    right away. Each call then has a short deadline (`engine::INLINE_TICKS`: 2–4 ms
    ///    by default) instead of the full time limit, so the worker is held no longer than
    ///    that per call. Typical calls take tens of microseconds; skipping the hop to a
    ///    blocking thread and back (waking a thread, then the task: on a busy machine more
    ///    than the call itself) is the point.
    /// 2. Otherwise — no free slot, a call interrupted at the inline deadline, or a plugin
    ///    that may not run inline (it was interrupted recently, or a call proved slow:
    ///    `LoadedPlugin::inline_allowed`) — `work` runs again from the start on a blocking
    ///    thread once a slot is free, with the full time limit for each call. What the
    ///    inline run returned is dropped: calls are side-effect free (fresh store, read-only
    ///    host functions), so running them again gives the same result.
    ///
    /// Each call gets a fresh store and all the per-call limits either way. `work` must
    /// only make plugin calls and cheap bookkeeping (it may run twice, and holds a slot and
    /// a thread while it runs).
    pub async fn with_slot<T, F>(&self, tenant: &str, work: F) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: Fn(&Slot<'_>) -> T + Send + 'static,
    {
        let counters = &self.inner.counters;
        if let Some(done) = self.inline(tenant, &work) {
            counters.inline_runs.fetch_add(1, Ordering::Relaxed);
            return done;
        }
        counters.blocking_runs.fetch_add(1, Ordering::Relaxed);
        let Some(permit) = self.inner.slots.acquire(tenant).await else {
            return Err(PluginError::Host("plugin runtime is shutting down".into()));
        };
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&Slot {
                sandbox: &inner.sandbox,
                inline: None,
            })
        });
        task.await
            .map_err(|err| PluginError::Host(format!("plugin call task failed: {err}")))
    }

    /// Step 1 of [`with_slot`](Self::with_slot): `None` when `work` must run on a blocking
    /// thread instead. A panic in `work` fails it as a panic on a blocking thread would,
    /// instead of unwinding through the caller's task.
    fn inline<T>(
        &self,
        tenant: &str,
        work: &impl Fn(&Slot<'_>) -> T,
    ) -> Option<Result<T, PluginError>> {
        let _permit = self.inner.slots.try_acquire(tenant)?;
        let slot = Slot {
            sandbox: &self.inner.sandbox,
            inline: Some(Cell::new(false)),
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&slot))) {
            Ok(_) if slot.abandoned() => {
                let counters = &self.inner.counters;
                counters.abandoned_runs.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(done) => Some(Ok(done)),
            Err(_) => Some(Err(PluginError::Host(
                "plugin call task failed: it panicked".into(),
            ))),
        }
    }

    /// A plugin may spin until its deadline, so calls never run on an async worker: they
    /// wait for a slot (bounding instances and blocking threads alike), then run on
    /// tokio's blocking pool.
    async fn on_blocking_thread<T: Send + 'static>(
        &self,
        plugin: &Arc<LoadedPlugin>,
        run: impl FnOnce(&Sandbox, &LoadedPlugin) -> CallReport<T> + Send + 'static,
    ) -> CallReport<T> {
        let waited = Instant::now();
        let Some(permit) = self.inner.slots.acquire(plugin.tenant()).await else {
            return CallReport::failed(
                PluginError::Host("plugin runtime is shutting down".into()),
                waited.elapsed(),
            );
        };
        let inner = self.inner.clone();
        let plugin = plugin.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            run(&inner.sandbox, &plugin)
        });
        match task.await {
            Ok(report) => report,
            Err(err) => CallReport::failed(
                PluginError::Host(format!("plugin call task failed: {err}")),
                waited.elapsed(),
            ),
        }
    }

    fn on_this_thread<T>(
        &self,
        plugin: &LoadedPlugin,
        run: impl FnOnce(&Sandbox) -> CallReport<T>,
    ) -> CallReport<T> {
        match self.inner.slots.try_acquire(plugin.tenant()) {
            Some(_permit) => run(&self.inner.sandbox),
            None => CallReport::failed(PluginError::Busy, std::time::Duration::ZERO),
        }
    }
}

impl Inner {
    /// Instantiates a freshly linked plugin once, under the call limits, and type-checks
    /// every exported hook. Runs only the component's own initializers, never a hook.
    fn probe(&self, plugin: &CompiledPlugin) -> Result<(), UploadError> {
        let _slot = self
            .probe_slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let config = &self.sandbox.config;
        let limits = CallLimits::new(config.memory_limit_bytes, 100_000);
        let mut store = wasmtime::Store::new(
            &self.sandbox.engine,
            CallState::new(
                CallContext::default(),
                limits,
                0,
                Instant::now() + config.call_timeout,
            ),
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.sandbox.deadline_ticks);
        if let Some(fuel) = config.fuel_per_call {
            let _ = store.set_fuel(fuel);
        }
        let instance = plugin.pre.instantiate(&mut store).map_err(|e| {
            UploadError::Invalid(format!(
                "cannot be instantiated within the sandbox limits: {e:#}"
            ))
        })?;
        for hook in Hook::ALL {
            let Some(index) = plugin.hooks[hook.index()] else {
                continue;
            };
            let typed = match hook {
                Hook::Filter => instance
                    .get_typed_func::<(&str, &Event), (Result<bool, String>,)>(&mut store, index)
                    .map(drop),
                Hook::Transform => instance
                    .get_typed_func::<(&str, &Event), (Result<Event, String>,)>(&mut store, index)
                    .map(drop),
                Hook::Authenticate => instance
                    .get_typed_func::<(&str, &OutgoingRequest), (Result<Vec<Header>, String>,)>(
                        &mut store, index,
                    )
                    .map(drop),
            };
            typed.map_err(|e| {
                UploadError::WorldMismatch(format!("hook {hook} has the wrong type: {e:#}"))
            })?;
        }
        Ok(())
    }

    /// Our cached compiled artifact, if present and made by a compatible engine.
    fn deserialize(&self, sha256: &str) -> Option<Component> {
        let path = self.cache.compiled_path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be a wasmtime artifact and maps it.
        // The cache directory is the gateway's own; `.cwasm` files in it are only ever the
        // output of `Component::serialize` on our engine (see cache.rs), written by atomic
        // rename so a mapped file is never modified in place. Tenant bytes are never
        // passed here. Wasmtime still checks version and engine settings and refuses a
        // mismatch, in which case we recompile.
        match unsafe { Component::deserialize_file(&self.sandbox.engine, &path) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(%sha256, error = %format!("{err:#}"), "compiled plugin unusable; recompiling");
                None
            }
        }
    }

    /// Compiles the cached `.wasm` again and rewrites the `.cwasm`.
    fn recompile(&self, sha256: &str) -> Result<Component, LoadError> {
        let wasm = match self.cache.read_source(sha256) {
            Ok(wasm) => wasm,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::NotFound(sha256.to_owned()));
            }
            Err(e) => return Err(LoadError::Cache(e.to_string())),
        };
        let invalid = |reason: String| LoadError::Invalid {
            sha256: sha256.to_owned(),
            reason,
        };
        if hex::encode(Sha256::digest(&wasm)) != sha256 {
            return Err(invalid("cached component does not match its digest".into()));
        }
        let started = Instant::now();
        let component = Component::from_binary(&self.sandbox.engine, &wasm)
            .map_err(|e| invalid(format!("{e:#}")))?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        let compiled = component
            .serialize()
            .map_err(|e| LoadError::Cache(format!("{e:#}")))?;
        self.cache
            .write_compiled(sha256, &compiled)
            .map_err(|e| LoadError::Cache(e.to_string()))?;
        tracing::info!(%sha256, ms = started.elapsed().as_millis() as u64, "recompiled plugin into the cache");
        Ok(component)
    }
}

/// The calls of one [`PluginRuntime::with_slot`] task: synchronous, on the task's thread,
/// within its sandbox slot.
pub struct Slot<'a> {
    sandbox: &'a Sandbox,
    /// `Some` on an inline run: whether a call was interrupted at the inline deadline or
    /// could not run inline (then the run is abandoned and made again on a blocking
    /// thread, and every further call of this run fails at once).
    inline: Option<Cell<bool>>,
}

impl Slot<'_> {
    /// [`PluginRuntime::call_filter`] on this slot.
    pub fn call_filter(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        event: &Event,
        ctx: CallContext,
    ) -> CallReport<bool> {
        self.call(plugin, |deadline| {
            call::filter(self.sandbox, plugin, config, event, ctx, deadline)
        })
    }

    /// [`PluginRuntime::call_transform`] on this slot.
    pub fn call_transform(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        event: &Event,
        ctx: CallContext,
    ) -> CallReport<Event> {
        self.call(plugin, |deadline| {
            call::transform(self.sandbox, plugin, config, event, ctx, deadline)
        })
    }

    /// [`PluginRuntime::call_authenticate`] on this slot.
    pub fn call_authenticate(
        &self,
        plugin: &LoadedPlugin,
        config: &str,
        request: &OutgoingRequest,
        ctx: CallContext,
    ) -> CallReport<Vec<Header>> {
        self.call(plugin, |deadline| {
            call::authenticate(self.sandbox, plugin, config, request, ctx, deadline)
        })
    }

    /// Whether this run is abandoned (inline only): its results are dropped and it runs
    /// again on a blocking thread, so callers may stop early.
    pub fn abandoned(&self) -> bool {
        self.inline.as_ref().is_some_and(Cell::get)
    }

    /// One call with this slot's deadline, and what it teaches about running the plugin
    /// inline (see [`PluginRuntime::with_slot`]).
    fn call<T>(
        &self,
        plugin: &LoadedPlugin,
        run: impl FnOnce(Deadline) -> CallReport<T>,
    ) -> CallReport<T> {
        let sb = self.sandbox;
        let Some(interrupted) = &self.inline else {
            // Judged by CPU used: on a busy machine the wall time of a quick call includes
            // whatever time its thread spent descheduled.
            let cpu_before = thread_cpu_time();
            let report = run(Deadline::Full);
            let used = thread_cpu_time().saturating_sub(cpu_before);
            let inline_budget = sb.tick * engine::INLINE_TICKS as u32;
            plugin.observed(
                used >= inline_budget || matches!(report.result, Err(PluginError::Timeout)),
            );
            return report;
        };
        if interrupted.get() || !plugin.inline_allowed() {
            interrupted.set(true);
            return CallReport::failed(PluginError::Busy, Duration::ZERO);
        }
        let report = run(Deadline::Inline);
        if matches!(report.result, Err(PluginError::Timeout)) {
            interrupted.set(true);
            plugin.suspect_slow(sb.config.call_timeout);
        }
        report
    }
}
