//! Plugins in the delivery path: turns a webhook's plugin attachments into sandbox calls
//! (`hookgate_plugin_host`) and their outcome into something the delivery worker can act
//! on. The worker needs two functions:
//!
//! - [`prepare`] once per (event, webhook), when the cursor takes the event. Filters run
//!   in attachment order on the default envelope; any `false` drops the event
//!   ([`Prepared::Filtered`]: record the delivery as `filtered` with the reason). Then
//!   transforms run in order, each on the previous one's output (body, headers and event
//!   type), and [`Prepared::Send`] carries the resulting body (only when it differs from
//!   the envelope) and the headers the transforms set. Store both on the delivery: retries
//!   must send exactly the same bytes without running the plugins again.
//!   [`Prepared::Failed`] means a plugin failed (trap, timeout, memory, bad output, its
//!   own error, or it no longer exists): fail that event for this webhook with the reason.
//! - [`authenticate`] on every attempt, after built-in authentication: runs each attached
//!   plugin's `authenticate` hook in order on the request about to be sent (each sees the
//!   headers the previous ones added) and returns the headers to add, or the reason the
//!   attempt must not be sent.
//!
//! Every reason names the plugin, its version, the hook and the sandbox's error code, e.g.
//! ``plugin `erp` v2 (transform): timeout: plugin exceeded its time limit``.
//!
//! Rules that hold for every call made here:
//! - An attachment without a pinned version runs the latest version at the time of the
//!   call: [`resolve`] reads it once per event, and the worker uses that [`Resolution`]
//!   for the event's `prepare` and its first attempt's `authenticate`, so one event sees
//!   one version (a retry resolves again).
//! - Each plugin gets its attachment's `config` serialized as JSON (`null` when absent),
//!   and reads only the secrets its own tenant stored for its own name.
//! - Hooks a component does not export are skipped, and so are hooks that said they are
//!   defaults (SDK plugins export all three; the ones an author did not write say so on
//!   their first call and are not called again: `LoadedPlugin::runs_hook`).
//! - Time, memory, input and output limits are the runtime's, per call, each call in a
//!   fresh sandbox; the calls of one `prepare` (or `authenticate`) run one after another in
//!   one [`PluginRuntime::with_slot`] task: inline on the async worker when a slot is free
//!   (each call then cut off after a few milliseconds and, if it had not finished, the
//!   whole task run again on a blocking thread with the full time limit), otherwise on a
//!   blocking thread. A slow or looping plugin thus holds an async worker only briefly,
//!   and then runs only on blocking threads for a while.
//! - An `authenticate` request is built only when some attached plugin's hook runs.
//! - Headers a plugin returns may not be ones the gateway owns on the wire (framing,
//!   hop-by-hop, `webhook-id`/`-timestamp`/`-signature`): the same names a webhook's own
//!   `headers` may not set.
//!
//! The dry-run endpoint (`api::plugins`) uses the same resolution, config and secrets
//! ([`resolve_version`], [`secrets_for`], [`config_string`]), so a dry run behaves as a
//! delivery would.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hookgate_plugin_host::{
    CallContext, Event, Hook, LoadedPlugin, PluginError, PluginRuntime, SecretSource, Slot,
};
pub use hookgate_plugin_host::{Header, OutgoingRequest};

use crate::{
    context::EngineContext,
    model::{
        destination::RESERVED_HEADERS,
        webhook::{PluginAttachment, Webhook},
    },
    storage::StoredEvent,
    storage::{Catalog, ComponentStore, StorageResult, catalog::PluginVersion},
};

/// What [`prepare`] decided for one event and one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Deliver it.
    Send {
        /// The outgoing body when a transform changed it; `None`: the default envelope.
        /// Store it on the delivery so retries are identical.
        body: Option<String>,
        /// Headers the transforms set, in order; also stored with the delivery.
        headers: Vec<(String, String)>,
    },
    /// A filter plugin dropped it, e.g. ``plugin `only-large` v2 dropped it``.
    Filtered { reason: String },
    /// A plugin failed; the event fails for this webhook with this reason.
    Failed { reason: String },
}

/// A webhook's attachments resolved to versions, loaded plugins, configs (serialized) and
/// secrets handles: what its hooks need, made once per event (by [`resolve`]) and shared
/// by that event's [`prepare`] and its first attempt's [`authenticate`],
/// so one event sees one version of each plugin. Cheap to clone.
#[derive(Clone)]
pub struct Resolution {
    /// The tenant whose plugins these are: its calls share that tenant's sandbox slots.
    tenant: Arc<str>,
    calls: Arc<Vec<Call>>,
}

impl Resolution {
    /// Whether any attached plugin's `hook` can do something ([`LoadedPlugin::runs_hook`]).
    pub fn runs(&self, hook: Hook) -> bool {
        self.calls.iter().any(|p| p.plugin.runs_hook(hook))
    }

    /// Whether a filter or transform runs: events need [`prepare`].
    pub fn prepares(&self) -> bool {
        self.runs(Hook::Filter) || self.runs(Hook::Transform)
    }

    /// The label of the first plugin whose `hook` runs.
    fn first(&self, hook: Hook) -> Option<&str> {
        self.calls
            .iter()
            .find(|p| p.plugin.runs_hook(hook))
            .map(|p| p.label.as_str())
    }
}

/// Resolves `webhook`'s attachments (none: no store reads at all). `Err`: a plugin no
/// longer exists or cannot be loaded; the event fails for this webhook with that reason.
pub async fn resolve(
    ctx: &EngineContext,
    tenant: &str,
    webhook: &Webhook,
) -> Result<Resolution, String> {
    let mut calls = Vec::with_capacity(webhook.spec.plugins.len());
    for attachment in &webhook.spec.plugins {
        calls.push(resolve_one(ctx, tenant, attachment).await?);
    }
    Ok(Resolution {
        tenant: tenant.into(),
        calls: Arc::new(calls),
    })
}

/// One plugin ready to call.
struct Call {
    /// ``plugin `name` vN``.
    label: String,
    plugin: Arc<LoadedPlugin>,
    config: String,
    secrets: Arc<dyn SecretSource>,
}

impl Call {
    fn failure(&self, hook: Hook, error: &PluginError) -> String {
        format!("{} ({hook}): {}: {error}", self.label, error.code())
    }

    fn context(&self) -> CallContext {
        CallContext::new(self.secrets.clone())
    }
}

/// A call made, for the metrics: hook, outcome code (`ok` or the error's), duration.
type Made = (Hook, &'static str, Duration);

fn made<T>(hook: Hook, result: &Result<T, PluginError>, elapsed: Duration) -> Made {
    let outcome = match result {
        Ok(_) => "ok",
        Err(error) => error.code(),
    };
    (hook, outcome, elapsed)
}

/// Runs the filters, then the transforms, of the resolved plugins on one event.
/// `envelope_body` is the default outgoing body (`delivery::envelope::body`).
///
/// Only hooks that can do something are called ([`LoadedPlugin::runs_hook`]): a plugin's
/// default hooks (keep, identity) are skipped once they have said so. All the calls of one
/// event run one after another in one [`PluginRuntime::with_slot`] task (inline on this
/// thread when they are quick, else on a blocking thread), each with a fresh sandbox.
pub async fn prepare(
    ctx: &EngineContext,
    tenant: &str,
    resolution: &Resolution,
    event: &StoredEvent,
    envelope_body: Vec<u8>,
) -> Prepared {
    let mut prepared = prepare_batch(ctx, tenant, resolution, vec![(event, envelope_body)]).await;
    prepared.pop().expect("one result per event")
}

impl Prepared {
    fn unchanged() -> Self {
        Prepared::Send {
            body: None,
            headers: Vec::new(),
        }
    }
}

/// The body of [`prepare`], on the plugin slot's thread. May run twice (see `with_slot`),
/// so it only reads `event`.
fn run_filters_and_transforms(
    slot: &Slot<'_>,
    calls: &[Call],
    event: &Event,
) -> (Prepared, Vec<Made>) {
    let mut made = Vec::with_capacity(calls.len());
    for p in calls.iter().filter(|p| p.plugin.runs_hook(Hook::Filter)) {
        let report = slot.call_filter(&p.plugin, &p.config, event, p.context());
        made.push(self::made(Hook::Filter, &report.result, report.elapsed));
        match report.result {
            Ok(true) => {}
            Ok(false) => {
                let reason = format!("{} dropped it", p.label);
                return (Prepared::Filtered { reason }, made);
            }
            Err(error) => {
                let reason = p.failure(Hook::Filter, &error);
                return (Prepared::Failed { reason }, made);
            }
        }
    }

    // The last transform's output; `None` while the event is the original.
    let mut current: Option<Event> = None;
    for p in calls.iter().filter(|p| p.plugin.runs_hook(Hook::Transform)) {
        let input = current.as_ref().unwrap_or(event);
        let report = slot.call_transform(&p.plugin, &p.config, input, p.context());
        // Checked per plugin so that the reason names the one that broke it.
        let result = report.result.and_then(|output| {
            check_transform_output(&output)?;
            Ok(output)
        });
        made.push(self::made(Hook::Transform, &result, report.elapsed));
        match result {
            Ok(output) => current = Some(output),
            Err(error) => {
                let reason = p.failure(Hook::Transform, &error);
                return (Prepared::Failed { reason }, made);
            }
        }
    }

    let Some(current) = current else {
        return (Prepared::unchanged(), made);
    };
    let body = (current.body != event.body)
        .then(|| String::from_utf8(current.body).expect("checked after each transform"));
    let headers = current
        .headers
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    (Prepared::Send { body, headers }, made)
}

/// Runs every resolved plugin's `authenticate` hook, in order, on the request about to be
/// sent; returns the headers to add. Each plugin sees the headers earlier ones added.
/// `request` is made only when a plugin's `authenticate` hook runs: with none (no plugin,
/// or only plugins whose hook is the SDK's default) this costs nothing. Default hooks are skipped and the calls share
/// one `with_slot` task, as in [`prepare`].
pub async fn authenticate(
    ctx: &EngineContext,
    resolution: &Resolution,
    request: impl FnOnce() -> OutgoingRequest,
) -> Result<Vec<(String, String)>, String> {
    let Some(first) = resolution.first(Hook::Authenticate) else {
        return Ok(Vec::new());
    };
    let request = request();
    in_slot(ctx, resolution, first, move |slot, calls| {
        run_authenticate(slot, calls, &request)
    })
    .await?
}

/// How long one `with_slot` task of [`prepare_batch`] runs calls back to back before it
/// lets other tasks have the async worker.
const BATCH_SLICE: Duration = Duration::from_millis(1);

/// [`prepare`] for several events of one webhook: one result per event, in
/// order. The calls run back to back in as few `with_slot` tasks as [`BATCH_SLICE`]
/// allows. Each call still gets a fresh sandbox; what the batch saves is cache misses:
/// run right after one another, calls find the engine's tables, the plugin's code and
/// its pooled memory slot still in the CPU's caches, while a call between unrelated work
/// (HTTP, the store) costs about half as much again (docs/PERFORMANCE.md).
pub async fn prepare_batch(
    ctx: &EngineContext,
    tenant: &str,
    resolution: &Resolution,
    events: Vec<(&StoredEvent, Vec<u8>)>,
) -> Vec<Prepared> {
    let Some(first) = resolution
        .first(Hook::Filter)
        .or(resolution.first(Hook::Transform))
    else {
        return vec![Prepared::unchanged(); events.len()];
    };
    let events: Arc<Vec<Event>> = Arc::new(
        events
            .into_iter()
            .map(|(event, body)| plugin_event(tenant, event, body))
            .collect(),
    );
    let mut prepared = Vec::with_capacity(events.len());
    while prepared.len() < events.len() {
        let from = prepared.len();
        let slice = {
            let events = events.clone();
            in_slot(ctx, resolution, first, move |slot, calls| {
                let started = Instant::now();
                let mut out = Vec::new();
                let mut made = Vec::new();
                for event in &events[from..] {
                    let (result, calls_made) = run_filters_and_transforms(slot, calls, event);
                    out.push(result);
                    made.extend(calls_made);
                    if slot.abandoned() || started.elapsed() >= BATCH_SLICE {
                        break;
                    }
                }
                (out, made)
            })
            .await
        };
        match slice {
            Ok(out) => prepared.extend(out),
            Err(reason) => prepared.resize(events.len(), Prepared::Failed { reason }),
        }
        if prepared.len() < events.len() {
            tokio::task::yield_now().await;
        }
    }
    prepared
}

/// Runs `work` (one hook over the resolved calls) in one `with_slot` task and records the
/// calls it made. `Err`: the slot itself failed; the reason names `first`, the plugin
/// whose hook would have run first.
async fn in_slot<T: Send + 'static>(
    ctx: &EngineContext,
    resolution: &Resolution,
    first: &str,
    work: impl Fn(&Slot<'_>, &[Call]) -> (T, Vec<Made>) + Send + 'static,
) -> Result<T, String> {
    let calls = resolution.calls.clone();
    match ctx
        .plugins
        .with_slot(&resolution.tenant, move |slot| work(slot, &calls))
        .await
    {
        Ok((value, made)) => {
            for (hook, outcome, elapsed) in made {
                record(ctx, hook, outcome, elapsed);
            }
            Ok(value)
        }
        Err(error) => Err(format!("{first}: {}: {error}", error.code())),
    }
}

/// What [`authenticate`] returns: the headers to add, or why the attempt must not be sent.
type Authenticated = Result<Vec<(String, String)>, String>;

/// The body of [`authenticate`], on the plugin slot's thread. May run twice (see
/// `with_slot`), so it only reads `request`.
fn run_authenticate(
    slot: &Slot<'_>,
    calls: &[Call],
    request: &OutgoingRequest,
) -> (Authenticated, Vec<Made>) {
    let mut made = Vec::with_capacity(calls.len());
    let mut added = Vec::new();
    // The request with the headers added so far, once there are any.
    let mut current: Option<OutgoingRequest> = None;
    for p in calls
        .iter()
        .filter(|p| p.plugin.runs_hook(Hook::Authenticate))
    {
        let input = current.as_ref().unwrap_or(request);
        let report = slot.call_authenticate(&p.plugin, &p.config, input, p.context());
        let result = report.result.and_then(|headers| {
            check_plugin_headers(&headers)?;
            Ok(headers)
        });
        made.push(self::made(Hook::Authenticate, &result, report.elapsed));
        match result {
            Ok(headers) => {
                if !headers.is_empty() {
                    current
                        .get_or_insert_with(|| request.clone())
                        .headers
                        .extend(headers.iter().cloned());
                }
                added.extend(headers.into_iter().map(|h| (h.name, h.value)));
            }
            Err(error) => return (Err(p.failure(Hook::Authenticate, &error)), made),
        }
    }
    (Ok(added), made)
}

/// The event as plugins see it, with `body` as its outgoing body.
pub(crate) fn plugin_event(tenant: &str, event: &StoredEvent, body: Vec<u8>) -> Event {
    Event {
        id: event.id.clone(),
        tenant: tenant.to_string(),
        event_type: event.event_type.clone(),
        published_at_ms: event.published_at.max(0) as u64,
        headers: Vec::new(),
        body,
    }
}

/// What the gateway requires of plugin headers beyond the sandbox's own checks (names are
/// HTTP tokens, values printable, no framing headers): none of the names it owns.
pub(crate) fn check_plugin_headers(headers: &[Header]) -> Result<(), PluginError> {
    match headers
        .iter()
        .find(|h| RESERVED_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()))
    {
        Some(h) => Err(PluginError::InvalidOutput(format!(
            "header `{}` is set by the gateway, not by plugins",
            h.name
        ))),
        None => Ok(()),
    }
}

/// A transform's output must also have a UTF-8 body: deliveries store it as text.
pub(crate) fn check_transform_output(event: &Event) -> Result<(), PluginError> {
    if std::str::from_utf8(&event.body).is_err() {
        return Err(PluginError::InvalidOutput(
            "the transformed body is not UTF-8 text".into(),
        ));
    }
    check_plugin_headers(&event.headers)
}

fn record(ctx: &EngineContext, hook: Hook, outcome: &'static str, elapsed: Duration) {
    ctx.metrics
        .plugin_call(hook.name(), outcome, elapsed.as_micros() as u64);
}

/// One attachment as a call: its version (the pinned one, or the latest right now), the
/// loaded plugin, its config as a string and its secrets.
async fn resolve_one(
    ctx: &EngineContext,
    tenant: &str,
    attachment: &PluginAttachment,
) -> Result<Call, String> {
    let name = &attachment.plugin;
    let record = resolve_version(&*ctx.catalog, tenant, name, attachment.version)
        .await
        .map_err(|e| format!("plugin `{name}`: cannot read its record: {e}"))?
        .ok_or_else(|| match attachment.version {
            Some(v) => format!("plugin `{name}` v{v} does not exist"),
            None => format!("plugin `{name}` does not exist"),
        })?;
    let plugin = load(&ctx.plugins, ctx.components.as_deref(), tenant, &record).await?;
    Ok(Call {
        label: format!("plugin `{name}` v{}", record.version),
        plugin,
        config: config_string(&attachment.config),
        secrets: secrets_for(&*ctx.catalog, tenant, name)
            .await
            .map_err(|e| format!("plugin `{name}`: cannot read its secrets: {e}"))?,
    })
}

/// The stored version an attachment runs: the pinned one, or the latest right now.
pub(crate) async fn resolve_version(
    catalog: &dyn Catalog,
    tenant: &str,
    name: &str,
    version: Option<u32>,
) -> StorageResult<Option<PluginVersion>> {
    match version {
        Some(version) => catalog.plugin_version(tenant, name, version).await,
        None => catalog.latest_plugin_version(tenant, name).await,
    }
}

/// `tenant`'s handle on the runtime's plugin for a stored version. The code of every
/// stored version is loaded at startup and at upload, so this is a map lookup; only if a
/// cache file vanished meanwhile does it read (or recompile) from disk. In a cluster, a
/// version uploaded through another node meanwhile has its bytes only in `components`:
/// fetched and compiled here once, then cached like an upload.
pub(crate) async fn load(
    runtime: &PluginRuntime,
    components: Option<&dyn ComponentStore>,
    tenant: &str,
    record: &PluginVersion,
) -> Result<Arc<LoadedPlugin>, String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "plugin `{}` v{}: cannot be loaded: {e}",
            record.name, record.version
        )
    };
    match (runtime.load(tenant, &record.sha256), components) {
        (Ok(plugin), _) => Ok(plugin),
        (Err(error), None) => Err(cannot(&error)),
        (Err(_), Some(components)) => {
            fetch_component(runtime, components, &record.sha256)
                .await
                .map_err(|e| cannot(&e))?;
            runtime.load(tenant, &record.sha256).map_err(|e| cannot(&e))
        }
    }
}

/// Brings the component of `sha256` from `components` into the runtime (compiled and
/// cached), on a blocking thread.
async fn fetch_component(
    runtime: &PluginRuntime,
    components: &dyn ComponentStore,
    sha256: &str,
) -> Result<(), String> {
    let wasm = components
        .get(sha256)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "its component is not in the cluster's store".to_string())?;
    let runtime = runtime.clone();
    let artifact = tokio::task::spawn_blocking(move || runtime.compile(&wasm))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if artifact.sha256 != sha256 {
        return Err(format!(
            "the stored component's digest is {}",
            artifact.sha256
        ));
    }
    Ok(())
}

/// The attachment config as the string a hook receives.
pub(crate) fn config_string(config: &serde_json::Value) -> String {
    serde_json::to_string(config).expect("a JSON value serializes")
}

/// The secrets plugin `name` of `tenant` may read: that tenant's, for that name, nothing
/// else. Read (and opened) once per resolution: a secret change moves the catalog's plugin
/// generation, so workers resolve again, and a plugin's `secret(key)` never waits on
/// storage inside its call.
pub(crate) async fn secrets_for(
    catalog: &dyn Catalog,
    tenant: &str,
    name: &str,
) -> StorageResult<Arc<dyn SecretSource>> {
    Ok(Arc::new(catalog.plugin_secret_values(tenant, name).await?))
}

/// Loads every stored plugin version into the runtime at startup, so that the first
/// delivery does not pay for it and a restart shows whether the compiled cache was reused
/// (it should be: `compiled` stays 0 unless cache files were lost or the engine changed).
/// A version that cannot be loaded is logged and skipped; its calls fail with the reason.
pub async fn load_stored_plugins(
    catalog: &dyn Catalog,
    runtime: &PluginRuntime,
    components: Option<&dyn ComponentStore>,
) -> StorageResult<()> {
    let started = Instant::now();
    let digests = catalog.all_plugin_digests().await?;
    let mut failed = 0;
    for sha256 in &digests {
        let mut loaded = runtime.preload(sha256).map_err(|e| e.to_string());
        if loaded.is_err()
            && let Some(components) = components
        {
            loaded = fetch_component(runtime, components, sha256).await;
        }
        if let Err(error) = loaded {
            failed += 1;
            tracing::error!(%sha256, %error, "cannot load a stored plugin; its calls will fail until it is uploaded again");
        }
    }
    let stats = runtime.cache_stats();
    // The counts are in the message text too, so they read the same in text and JSON logs.
    tracing::info!(
        plugins = digests.len(),
        from_cache = stats.cache_hits,
        compiled = stats.compiled,
        failed,
        ms = started.elapsed().as_millis() as u64,
        "plugins loaded at startup: {} from the compiled cache, {} compiled, {} failed",
        stats.cache_hits,
        stats.compiled,
        failed
    );
    Ok(())
}

/// `prepare` and `authenticate` with real components from `plugins/` (built once per test
/// process, as the plugin host's tests do) on a real `AppState`, without the worker.
#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        sync::OnceLock,
    };

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        config::Config,
        model::webhook::{Webhook, WebhookStatus, parse_spec},
    };

    fn plugin_dir() -> &'static Path {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        BUILT.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let target_dir = root.join("plugins/target");
            let output = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(root.join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo build for plugins/");
            assert!(
                output.status.success(),
                "building plugins/ failed (is the wasm32-wasip2 target installed?):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            target_dir.join("wasm32-wasip2/release")
        })
    }

    struct Fixture {
        ctx: Arc<EngineContext>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            admin_token: Some("test-admin-token".into()),
            ..Config::default()
        };
        Fixture {
            ctx: crate::app::open(config, tokio::runtime::Handle::current())
                .await
                .unwrap()
                .engine,
            _dir: dir,
        }
    }

    /// Uploads the plugin crate `crate_name` as `name` of tenant `acme`, as the API does.
    async fn upload(ctx: &EngineContext, name: &str, crate_name: &str) -> PluginVersion {
        let path = plugin_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
        let artifact = ctx.plugins.compile(&std::fs::read(path).unwrap()).unwrap();
        ctx.catalog
            .add_plugin_version(
                "acme",
                name,
                crate::storage::catalog::NewPluginVersion {
                    sha256: artifact.sha256,
                    size: artifact.size as u64,
                    exports: artifact.exports,
                },
                0,
            )
            .await
            .unwrap()
    }

    fn webhook(plugins: Value) -> Webhook {
        let spec =
            parse_spec(json!({"url": "https://example.com/hook", "plugins": plugins})).unwrap();
        Webhook {
            id: "w1".into(),
            status: WebhookStatus::Running,
            created_at: 0,
            updated_at: 0,
            spec,
        }
    }

    fn event(total: f64) -> StoredEvent {
        let payload = json!({"order_id": "SO-1", "currency": "EUR", "total": total,
                             "lines": [{"sku": "A-1", "quantity": 2, "unit_price": 9.5}]});
        StoredEvent {
            id: "e-1".into(),
            event_type: "order.created".into(),
            published_at: 1_795_341_600_000,
            received_at: 1_795_341_600_000,
            payload: serde_json::value::to_raw_value(&payload).unwrap(),
        }
    }

    async fn prepare_for(ctx: &EngineContext, plugins: Value, total: f64) -> Prepared {
        let event = event(total);
        let body = crate::delivery::envelope::body("acme", &event, None, None);
        // As the worker does: resolve, then prepare with that resolution.
        match resolve(ctx, "acme", &webhook(plugins)).await {
            Ok(resolution) => prepare(ctx, "acme", &resolution, &event, body).await,
            Err(reason) => Prepared::Failed { reason },
        }
    }

    #[tokio::test]
    async fn no_plugins_send_the_envelope_unchanged() {
        let f = fixture().await;
        let prepared = prepare_for(&f.ctx, json!([]), 1.0).await;
        assert_eq!(
            prepared,
            Prepared::Send {
                body: None,
                headers: vec![]
            }
        );
    }

    #[tokio::test]
    async fn filters_then_transforms_in_order() {
        let f = fixture().await;
        upload(&f.ctx, "large", "field-filter").await;
        upload(&f.ctx, "erp", "erp-transform").await;
        let plugins = json!([
            {"plugin": "large", "config": [{"path": "/payload/total", "op": "gte", "value": 100}]},
            {"plugin": "erp"},
        ]);
        assert_eq!(
            prepare_for(&f.ctx, plugins.clone(), 50.0).await,
            Prepared::Filtered {
                reason: "plugin `large` v1 dropped it".into()
            }
        );
        let Prepared::Send { body, headers } = prepare_for(&f.ctx, plugins, 250.0).await else {
            panic!("expected Send");
        };
        let body: Value = serde_json::from_str(&body.expect("the transform changed it")).unwrap();
        assert_eq!(body["record_type"], "ERP_ORDER_NEW");
        assert_eq!(body["records"][0]["amount"], 19.0);
        assert_eq!(
            headers,
            [("X-ERP-Record-Type".to_string(), "ERP_ORDER_NEW".to_string())]
        );

        // A plugin whose transform is the identity leaves the body to the envelope.
        let unchanged = prepare_for(&f.ctx, json!([{"plugin": "large", "config": []}]), 1.0).await;
        assert_eq!(
            unchanged,
            Prepared::Send {
                body: None,
                headers: vec![]
            }
        );
    }

    #[tokio::test]
    async fn a_later_transform_sees_the_earlier_ones_event() {
        let f = fixture().await;
        upload(&f.ctx, "erp", "erp-transform").await;
        // Maps only the renamed type: it acts (and fails on the ERP body) only if it sees
        // the event type the first transform set.
        let plugins = json!([
            {"plugin": "erp"},
            {"plugin": "erp", "config": {"event_types": {"ERP_ORDER_NEW": "AGAIN"}}},
        ]);
        let Prepared::Failed { reason } = prepare_for(&f.ctx, plugins, 1.0).await else {
            panic!("expected Failed");
        };
        assert!(
            reason.starts_with("plugin `erp` v1 (transform): plugin_error: "),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn failures_name_plugin_version_hook_and_code() {
        let f = fixture().await;
        upload(&f.ctx, "ok", "field-filter").await;
        upload(&f.ctx, "loop", "hostile-infinite-loop").await;
        upload(&f.ctx, "loop", "hostile-infinite-loop").await;
        let plugins = json!([{"plugin": "ok", "config": []}, {"plugin": "loop", "version": 2}]);
        let started = Instant::now();
        let Prepared::Failed { reason } = prepare_for(&f.ctx, plugins, 1.0).await else {
            panic!("expected Failed");
        };
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            reason,
            "plugin `loop` v2 (filter): timeout: plugin exceeded its time limit"
        );

        let missing = prepare_for(&f.ctx, json!([{"plugin": "gone"}]), 1.0).await;
        assert_eq!(
            missing,
            Prepared::Failed {
                reason: "plugin `gone` does not exist".into()
            }
        );
        let missing = prepare_for(&f.ctx, json!([{"plugin": "ok", "version": 4}]), 1.0).await;
        assert_eq!(
            missing,
            Prepared::Failed {
                reason: "plugin `ok` v4 does not exist".into()
            }
        );
        let text = f.ctx.metrics.render();
        assert!(
            text.contains(r#"hookgate_plugin_calls_total{hook="filter",outcome="timeout"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn unpinned_attachments_follow_the_latest_version() {
        let f = fixture().await;
        upload(&f.ctx, "shape", "erp-transform").await;
        upload(&f.ctx, "shape", "stateful-counter").await;
        let latest = prepare_for(
            &f.ctx,
            json!([{"plugin": "shape", "config": {"a": 1}}]),
            1.0,
        )
        .await;
        let Prepared::Send {
            body: Some(body), ..
        } = latest
        else {
            panic!("expected a transformed body: {latest:?}");
        };
        assert_eq!(body, r#"{"calls":1,"config":"{\"a\":1}"}"#);
        let pinned = prepare_for(&f.ctx, json!([{"plugin": "shape", "version": 1}]), 1.0).await;
        let Prepared::Send {
            body: Some(body), ..
        } = pinned
        else {
            panic!("expected a transformed body: {pinned:?}");
        };
        assert!(body.contains("ERP_ORDER_NEW"), "{body}");
    }

    #[tokio::test]
    async fn authenticate_collects_headers_with_scoped_secrets() {
        let f = fixture().await;
        upload(&f.ctx, "signer", "custom-signer").await;
        upload(&f.ctx, "echo", "stateful-counter").await;
        f.ctx
            .catalog
            .put_plugin_secret("acme", "signer", "key", "s3cret", 0)
            .await
            .unwrap();
        let request = || OutgoingRequest {
            method: "POST".into(),
            url: "https://example.com/hook".into(),
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let hook = webhook(json!([
            {"plugin": "signer", "config": {"secret": "key"}},
            {"plugin": "echo", "config": "key"},
        ]));
        let resolution = resolve(&f.ctx, "acme", &hook).await.unwrap();
        let headers = authenticate(&f.ctx, &resolution, request).await.unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-Acme-Signature",
                "x-calls",
                "x-secret",
                "x-sha256",
                "x-now-ms"
            ]
        );
        let signature = &headers[0].1;
        let (t, s) = signature
            .strip_prefix("t=")
            .and_then(|r| r.split_once(",s="))
            .unwrap();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(b"{}");
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        mac.update(&signed);
        assert_eq!(s, hex::encode(mac.finalize().into_bytes()));
        // `echo` asked for the same key name: it sees only its own secrets.
        assert_eq!(headers[2], ("x-secret".into(), "<none>".into()));

        let unsigned = webhook(json!([{"plugin": "signer", "config": {"secret": "nope"}}]));
        let resolution = resolve(&f.ctx, "acme", &unsigned).await.unwrap();
        let error = authenticate(&f.ctx, &resolution, request)
            .await
            .unwrap_err();
        assert!(
            error.starts_with("plugin `signer` v1 (authenticate): plugin_error: "),
            "{error}"
        );
    }

    /// On a multi-threaded runtime, as in the gateway: calls run inline on its workers,
    /// where WASI output (the allocation failure message the memory bomb writes to stderr)
    /// must not block on the runtime, and a loop is moved off the worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_plugins_fail_cleanly_on_runtime_workers() {
        let f = fixture().await;
        upload(&f.ctx, "bomb", "hostile-memory-bomb").await;
        upload(&f.ctx, "loop", "hostile-infinite-loop").await;
        upload(&f.ctx, "ok", "field-filter").await;
        for round in 0..3 {
            let bomb = prepare_for(&f.ctx, json!([{"plugin": "bomb"}]), 1.0).await;
            assert_eq!(
                bomb,
                Prepared::Failed {
                    reason: "plugin `bomb` v1 (transform): memory_limit: plugin exceeded its memory limit".into()
                },
                "round {round}"
            );
            let looped = prepare_for(&f.ctx, json!([{"plugin": "loop"}]), 1.0).await;
            assert_eq!(
                looped,
                Prepared::Failed {
                    reason: "plugin `loop` v1 (filter): timeout: plugin exceeded its time limit"
                        .into()
                },
                "round {round}"
            );
            let ok = prepare_for(&f.ctx, json!([{"plugin": "ok", "config": []}]), 1.0).await;
            assert_eq!(ok, Prepared::unchanged(), "round {round}");
        }
    }

    #[test]
    fn plugins_cannot_set_headers_the_gateway_owns() {
        let header = |name: &str| Header {
            name: name.into(),
            value: "x".into(),
        };
        assert!(check_plugin_headers(&[header("X-Custom"), header("Authorization")]).is_ok());
        for name in ["Webhook-Id", "webhook-signature", "Host", "Content-Length"] {
            let error = check_plugin_headers(&[header(name)]).unwrap_err();
            assert_eq!(error.code(), "invalid_output", "{name}");
        }
    }
}
