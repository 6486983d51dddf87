//! The tenants' plugin versions: upload (validate, compile, record), delete (refused while
//! a webhook uses the version), and a dry run of one hook on a sample event. The HTTP
//! routes (`api/plugins.rs`) parse requests and shape responses; the rules are here.
//!
//! Compiling happens in the plugin runtime (`hookgate_plugin_host`) on a blocking thread.
//! The records (`storage::Catalog`) and the runtime's loaded set are kept in step: a version
//! is recorded only once its component is compiled and loaded, and a compiled artifact
//! leaves the runtime only when no version of any tenant uses its digest.

use bytes::Bytes;
use hookgate_plugin_host::{Hook, PluginArtifact, PluginRuntime, UploadError};
use serde_json::Value;

use crate::{
    iso::now_millis,
    pipeline,
    plugin_trial::{self, Trial, TrialInput},
    storage::StoredEvent,
    storage::{
        Catalog, ComponentStore, StorageError,
        catalog::{NewPluginVersion, PluginVersion},
    },
};

/// Serializes what must not interleave between uploads and deletes: recording a version
/// versus releasing a digest from the runtime (compiles themselves run outside it). One
/// process has one runtime, so a process-wide lock is the right scope.
static PLUGIN_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no plugin `{0}`")]
    NoPlugin(String),
    #[error("plugin `{name}` has no version {version}")]
    NoVersion { name: String, version: u32 },
    #[error("a tenant may store at most {0} plugin versions; delete old versions first")]
    VersionLimit(usize),
    /// A webhook uses what was to be deleted; the message names them.
    #[error("{0}")]
    InUse(String),
    #[error(transparent)]
    Invalid(#[from] UploadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// What the registry works with: the records, the runtime, the per-tenant version bound,
/// and the lock that serializes webhook changes (a delete must not race an attachment).
pub struct Registry<'a> {
    pub catalog: &'a dyn Catalog,
    pub runtime: &'a PluginRuntime,
    /// Where components are kept for every node (cluster mode).
    pub components: Option<&'a dyn ComponentStore>,
    pub max_versions_per_tenant: usize,
    pub webhook_writes: &'a tokio::sync::Mutex<()>,
}

/// A dry run's input: the event (wrapped in the default envelope, as a delivery would be),
/// the attachment's config, and for authenticate the URL of the request the plugin sees.
pub struct DryRunInput {
    pub event: StoredEvent,
    pub config: Value,
    pub hook: Hook,
    /// The latest when `None`.
    pub version: Option<u32>,
    pub url: Option<String>,
}

/// What a dry run did: which version ran, and the trial call's result, log lines and
/// what it used.
pub struct DryRun {
    pub version: u32,
    pub trial: Trial,
}

impl Registry<'_> {
    /// The plugin's versions, oldest first; `NoPlugin` when it has none.
    pub async fn versions_of(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, RegistryError> {
        let versions = self.catalog.plugin_versions(tenant, name).await?;
        if versions.is_empty() {
            return Err(RegistryError::NoPlugin(name.to_string()));
        }
        Ok(versions)
    }

    /// Validates, compiles and records a new version of `name` (versions count 1, 2, 3…).
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        wasm: Bytes,
    ) -> Result<PluginVersion, RegistryError> {
        // Before compiling, so a tenant at its limit costs no compile; again under the
        // lock, where concurrent uploads are counted.
        self.check_version_limit(tenant).await?;
        let artifact = self.compile(wasm.clone()).await?;

        let _writes = PLUGIN_WRITES.lock().await;
        self.check_version_limit(tenant).await?;
        // A delete that released this digest (its last other user) may have run between
        // the compile and this lock; then the component is gone from the runtime: compile
        // again. Otherwise this is a lookup in memory.
        if self.runtime.preload(&artifact.sha256).is_err() {
            self.compile(wasm.clone()).await?;
        }
        // Before the version names it: any node that sees the version can fetch it.
        if let Some(components) = self.components {
            components.put(&artifact.sha256, wasm).await?;
        }
        let component = NewPluginVersion {
            sha256: artifact.sha256,
            size: artifact.size as u64,
            exports: artifact.exports,
        };
        Ok(self
            .catalog
            .add_plugin_version(tenant, name, component, now_millis())
            .await?)
    }

    /// A tenant's plugin versions are bounded: each keeps its component and compiled code
    /// on disk and in memory.
    async fn check_version_limit(&self, tenant: &str) -> Result<(), RegistryError> {
        let limit = self.max_versions_per_tenant;
        if self.catalog.count_plugin_versions(tenant).await? >= limit {
            return Err(RegistryError::VersionLimit(limit));
        }
        Ok(())
    }

    /// Compiles on a blocking thread: tens to hundreds of milliseconds of CPU.
    async fn compile(&self, wasm: Bytes) -> Result<PluginArtifact, RegistryError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&wasm))
            .await
            .map_err(|e| RegistryError::Runtime(e.to_string()))?
            .map_err(RegistryError::from)
    }

    /// Deletes a plugin: every version and its secrets. Refused while any webhook of the
    /// tenant has it attached.
    pub async fn delete_plugin(&self, tenant: &str, name: &str) -> Result<(), RegistryError> {
        let _writes = PLUGIN_WRITES.lock().await;
        let _webhooks = self.webhook_writes.lock().await;
        let versions = self.versions_of(tenant, name).await?;
        let latest = versions.last().map_or(0, |v| v.version);
        let users = self.blocking_webhooks(tenant, name, None, latest).await?;
        if !users.is_empty() {
            return Err(RegistryError::InUse(format!(
                "plugin `{name}` is attached to webhooks {}; detach it first",
                users.join(", ")
            )));
        }
        let removed = self.catalog.delete_plugin(tenant, name).await?;
        self.release_digests(tenant, &removed).await
    }

    /// Deletes one version. Refused while a webhook pins it, or follows the latest
    /// version and this is the latest. Deleting the only version deletes the plugin (with
    /// its secrets). Version numbers are not reused while the plugin exists.
    pub async fn delete_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<(), RegistryError> {
        let _writes = PLUGIN_WRITES.lock().await;
        let _webhooks = self.webhook_writes.lock().await;
        let versions = self.versions_of(tenant, name).await?;
        if !versions.iter().any(|v| v.version == version) {
            return Err(RegistryError::NoVersion {
                name: name.to_string(),
                version,
            });
        }
        let latest = versions.last().map_or(0, |v| v.version);
        let users = self
            .blocking_webhooks(tenant, name, Some(version), latest)
            .await?;
        if !users.is_empty() {
            return Err(RegistryError::InUse(format!(
                "plugin `{name}` v{version} is used by webhooks {}; detach or re-pin them first",
                users.join(", ")
            )));
        }
        let removed = if versions.len() == 1 {
            self.catalog.delete_plugin(tenant, name).await?
        } else {
            self.catalog
                .delete_plugin_version(tenant, name, version)
                .await?
                .into_iter()
                .collect()
        };
        self.release_digests(tenant, &removed).await
    }

    /// Deletes every plugin of a tenant that is being deleted, with the compiled artifacts
    /// no other tenant uses.
    pub async fn delete_tenant_plugins(&self, tenant: &str) -> Result<(), RegistryError> {
        // Under the plugin write lock: another tenant's upload of the same bytes must not
        // find its compiled code deleted between its compile and its stored version.
        let _writes = PLUGIN_WRITES.lock().await;
        for digest in self.catalog.delete_tenant_plugins(tenant).await? {
            self.release_digest(tenant, &digest).await?;
        }
        Ok(())
    }

    /// The webhooks of `tenant` whose attachments of `name` block deleting `version`
    /// (`None`: the whole plugin), with why.
    async fn blocking_webhooks(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        latest: u32,
    ) -> Result<Vec<String>, RegistryError> {
        let mut users = Vec::new();
        for webhook in self.catalog.all_webhooks_of(tenant).await? {
            for attachment in webhook.spec.plugins.iter().filter(|a| a.plugin == name) {
                let blocks = match (version, attachment.version) {
                    (None, _) => true,
                    (Some(v), None) => v == latest,
                    (Some(v), Some(pinned)) => v == pinned,
                };
                if blocks {
                    users.push(match attachment.version {
                        None => format!("`{}` (follows the latest version)", webhook.id),
                        Some(pinned) => format!("`{}` (pins v{pinned})", webhook.id),
                    });
                }
            }
        }
        users.dedup();
        Ok(users)
    }

    async fn release_digests(
        &self,
        tenant: &str,
        removed: &[PluginVersion],
    ) -> Result<(), RegistryError> {
        for version in removed {
            self.release_digest(tenant, &version.sha256).await?;
        }
        Ok(())
    }

    /// Drops `tenant`'s handle on a digest, and the compiled artifact once no version of
    /// any tenant uses it.
    async fn release_digest(&self, tenant: &str, digest: &str) -> Result<(), RegistryError> {
        self.runtime.forget(tenant, digest);
        if self.catalog.plugin_digest_in_use(digest).await? {
            return Ok(());
        }
        if let Err(error) = self.runtime.remove(digest) {
            tracing::warn!(sha256 = %digest, %error, "could not remove a compiled plugin");
        }
        if let Some(components) = self.components {
            components.delete(digest).await?;
        }
        Ok(())
    }

    /// Runs one hook of a plugin on a sample event with the given config and the tenant's
    /// real secrets for this plugin, exactly as a delivery would. Nothing is stored or
    /// sent. A plugin that fails is a `DryRun` whose `result` says how; `Err` is about the
    /// request (no such plugin or version).
    pub async fn dry_run(
        &self,
        tenant: &str,
        name: &str,
        input: DryRunInput,
    ) -> Result<DryRun, RegistryError> {
        let record = pipeline::resolve_version(self.catalog, tenant, name, input.version)
            .await?
            .ok_or_else(|| match input.version {
                Some(version) => RegistryError::NoVersion {
                    name: name.to_string(),
                    version,
                },
                None => RegistryError::NoPlugin(name.to_string()),
            })?;
        let plugin = pipeline::load(self.runtime, self.components, tenant, &record)
            .await
            .map_err(RegistryError::Runtime)?;
        let secrets = pipeline::secrets_for(self.catalog, tenant, name).await?;
        let trial = plugin_trial::run(
            self.runtime,
            &plugin,
            tenant,
            TrialInput {
                hook: input.hook,
                event: input.event,
                config: input.config,
                secrets,
                url: input.url,
            },
        )
        .await;
        Ok(DryRun {
            version: record.version,
            trial,
        })
    }
}
