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
//!   call (resolved once per `prepare`/`authenticate`, so one event sees one version).
//! - Each plugin gets its attachment's `config` serialized as JSON (`null` when absent),
//!   and reads only the secrets its own tenant stored for its own name.
//! - Hooks a component does not export are skipped (SDK plugins export all three; the
//!   ones an author did not write are neutral).
//! - Time, memory, input and output limits are the runtime's, per call; a call runs on a
//!   blocking thread once a sandbox slot is free, never on the async worker.
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

pub use hookgate_plugin_host::OutgoingRequest;
use hookgate_plugin_host::{
    CallContext, Event, Header, Hook, LoadedPlugin, PluginError, PluginRuntime, SecretSource,
};

use crate::{
    app::AppState,
    log::StoredEvent,
    model::webhook::{PluginAttachment, Webhook},
    store::{Store, StoreError, plugins::PluginVersion},
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

/// Header names a plugin may not set: the gateway owns them on the wire. Kept equal to the
/// names a webhook's custom `headers` may not use (`model::webhook`).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// One attachment, resolved to a version and ready to call.
pub(crate) struct Resolved {
    pub name: String,
    pub version: u32,
    pub plugin: Arc<LoadedPlugin>,
    pub config: String,
    pub secrets: Arc<dyn SecretSource>,
}

impl Resolved {
    fn label(&self) -> String {
        format!("plugin `{}` v{}", self.name, self.version)
    }

    fn failure(&self, hook: Hook, error: &PluginError) -> String {
        format!("{} ({hook}): {}: {error}", self.label(), error.code())
    }

    fn context(&self) -> CallContext {
        CallContext::new(self.secrets.clone())
    }
}

/// Runs the filters, then the transforms, of `webhook`'s plugins on one event.
/// `envelope_body` is the default outgoing body (`delivery::envelope::body`).
pub async fn prepare(
    state: &AppState,
    tenant: &str,
    webhook: &Webhook,
    event: &StoredEvent,
    envelope_body: Vec<u8>,
) -> Prepared {
    let attachments = &webhook.spec.plugins;
    if attachments.is_empty() {
        return Prepared::Send {
            body: None,
            headers: Vec::new(),
        };
    }
    let resolved = match resolve_all(state, tenant, attachments) {
        Ok(resolved) => resolved,
        Err(reason) => return Prepared::Failed { reason },
    };
    let mut current = plugin_event(tenant, event, envelope_body);

    for p in resolved
        .iter()
        .filter(|p| p.plugin.exports_hook(Hook::Filter))
    {
        let report = state
            .plugins
            .call_filter(&p.plugin, &p.config, current.clone(), p.context())
            .await;
        let result = report.result;
        record(
            state,
            Hook::Filter,
            result.as_ref().map(drop),
            report.elapsed,
        );
        match result {
            Ok(true) => {}
            Ok(false) => {
                return Prepared::Filtered {
                    reason: format!("{} dropped it", p.label()),
                };
            }
            Err(error) => {
                return Prepared::Failed {
                    reason: p.failure(Hook::Filter, &error),
                };
            }
        }
    }

    let original_body = current.body.clone();
    for p in resolved
        .iter()
        .filter(|p| p.plugin.exports_hook(Hook::Transform))
    {
        let report = state
            .plugins
            .call_transform(&p.plugin, &p.config, current, p.context())
            .await;
        // Checked per plugin so that the reason names the one that broke it.
        let result = report.result.and_then(|output| {
            check_transform_output(&output)?;
            Ok(output)
        });
        record(
            state,
            Hook::Transform,
            result.as_ref().map(drop),
            report.elapsed,
        );
        current = match result {
            Ok(output) => output,
            Err(error) => {
                return Prepared::Failed {
                    reason: p.failure(Hook::Transform, &error),
                };
            }
        };
    }

    let body = (current.body != original_body)
        .then(|| String::from_utf8(current.body).expect("checked after each transform"));
    Prepared::Send {
        body,
        headers: current
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect(),
    }
}

/// Runs every attached plugin's `authenticate` hook, in order, on the request about to be
/// sent; returns the headers to add. Each plugin sees the headers earlier ones added.
pub async fn authenticate(
    state: &AppState,
    tenant: &str,
    webhook: &Webhook,
    mut request: OutgoingRequest,
) -> Result<Vec<(String, String)>, String> {
    let attachments = &webhook.spec.plugins;
    if attachments.is_empty() {
        return Ok(Vec::new());
    }
    let resolved = resolve_all(state, tenant, attachments)?;
    let signers: Vec<&Resolved> = resolved
        .iter()
        .filter(|p| p.plugin.exports_hook(Hook::Authenticate))
        .collect();
    let mut added = Vec::new();
    for (i, p) in signers.iter().enumerate() {
        // The last signer gets the request itself rather than a copy of the body.
        let input = if i + 1 == signers.len() {
            std::mem::replace(&mut request, empty_request())
        } else {
            request.clone()
        };
        let report = state
            .plugins
            .call_authenticate(&p.plugin, &p.config, input, p.context())
            .await;
        let result = report.result.and_then(|headers| {
            check_plugin_headers(&headers)?;
            Ok(headers)
        });
        record(
            state,
            Hook::Authenticate,
            result.as_ref().map(drop),
            report.elapsed,
        );
        let headers = result.map_err(|error| p.failure(Hook::Authenticate, &error))?;
        request.headers.extend(headers.iter().cloned());
        added.extend(headers.into_iter().map(|h| (h.name, h.value)));
    }
    Ok(added)
}

fn empty_request() -> OutgoingRequest {
    OutgoingRequest {
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
    }
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

fn record(state: &AppState, hook: Hook, outcome: Result<(), &PluginError>, elapsed: Duration) {
    let outcome = match outcome {
        Ok(()) => "ok",
        Err(error) => error.code(),
    };
    state
        .metrics
        .plugin_call(hook.name(), outcome, elapsed.as_micros() as u64);
}

fn resolve_all(
    state: &AppState,
    tenant: &str,
    attachments: &[PluginAttachment],
) -> Result<Vec<Resolved>, String> {
    attachments
        .iter()
        .map(|attachment| resolve(state, tenant, attachment))
        .collect()
}

fn resolve(
    state: &AppState,
    tenant: &str,
    attachment: &PluginAttachment,
) -> Result<Resolved, String> {
    let name = &attachment.plugin;
    let record = resolve_version(&state.store, tenant, name, attachment.version)
        .map_err(|e| format!("plugin `{name}`: cannot read its record: {e}"))?
        .ok_or_else(|| match attachment.version {
            Some(v) => format!("plugin `{name}` v{v} does not exist"),
            None => format!("plugin `{name}` does not exist"),
        })?;
    let plugin = load(&state.plugins, &record)?;
    Ok(Resolved {
        name: name.clone(),
        version: record.version,
        plugin,
        config: config_string(&attachment.config),
        secrets: secrets_for(&state.store, tenant, name),
    })
}

/// The stored version an attachment runs: the pinned one, or the latest right now.
pub(crate) fn resolve_version(
    store: &Store,
    tenant: &str,
    name: &str,
    version: Option<u32>,
) -> Result<Option<PluginVersion>, StoreError> {
    match version {
        Some(version) => store.plugin_version(tenant, name, version),
        None => store.latest_plugin_version(tenant, name),
    }
}

/// The runtime's loaded plugin for a stored version. Every stored version is loaded at
/// startup and at upload, so this is a map lookup; only if a cache file vanished meanwhile
/// does it read (or recompile) from disk.
pub(crate) fn load(
    runtime: &PluginRuntime,
    record: &PluginVersion,
) -> Result<Arc<LoadedPlugin>, String> {
    runtime.load(&record.sha256).map_err(|e| {
        format!(
            "plugin `{}` v{}: cannot be loaded: {e}",
            record.name, record.version
        )
    })
}

/// The attachment config as the string a hook receives.
pub(crate) fn config_string(config: &serde_json::Value) -> String {
    serde_json::to_string(config).expect("a JSON value serializes")
}

/// The secrets plugin `name` of `tenant` may read: that tenant's, for that name, nothing
/// else.
pub(crate) fn secrets_for(store: &Store, tenant: &str, name: &str) -> Arc<dyn SecretSource> {
    Arc::new(PluginSecrets {
        store: store.clone(),
        tenant: tenant.to_string(),
        plugin: name.to_string(),
    })
}

/// Reads secrets from the store on the call's blocking thread, only when the plugin asks.
struct PluginSecrets {
    store: Store,
    tenant: String,
    plugin: String,
}

impl SecretSource for PluginSecrets {
    fn get(&self, key: &str) -> Option<String> {
        match self
            .store
            .plugin_secret_value(&self.tenant, &self.plugin, key)
        {
            Ok(value) => value,
            Err(error) => {
                // The plugin sees a missing secret; the operator sees why.
                tracing::error!(tenant = %self.tenant, plugin = %self.plugin, key, %error, "cannot read a plugin secret");
                None
            }
        }
    }
}

/// Loads every stored plugin version into the runtime at startup, so that the first
/// delivery does not pay for it and a restart shows whether the compiled cache was reused
/// (it should be: `compiled` stays 0 unless cache files were lost or the engine changed).
/// A version that cannot be loaded is logged and skipped; its calls fail with the reason.
pub fn load_stored_plugins(store: &Store, runtime: &PluginRuntime) -> Result<(), StoreError> {
    let started = Instant::now();
    let digests = store.all_plugin_digests()?;
    let mut failed = 0;
    for sha256 in &digests {
        if let Err(error) = runtime.load(sha256) {
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
