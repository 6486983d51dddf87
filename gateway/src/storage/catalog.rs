//! The catalog: what tenants configured. Tenants and their API keys, event types,
//! webhooks, plugin versions and plugin secrets.
//!
//! Durability is the trait's contract, not the caller's chore: every method that changes
//! something returns only once the change is durable (the embedded backend waits for a
//! group-commit round covering it; a replicated one for its quorum). So a route answers
//! 2xx right after the call, and a caller that got an error knows nothing was
//! acknowledged. Reads see every change that returned.
//!
//! Secrets: every `SecretString` of a webhook and every plugin secret is sealed with the
//! master key inside the backend, on the way to its storage, and opened on the way back;
//! callers handle plaintext, storage only ever holds ciphertext.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use hookgate_plugin_host::Hook;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::StorageResult;
use crate::{ids, iso::EpochMillis, model::webhook::Webhook};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: Option<String>,
    pub created_at: EpochMillis,
}

/// An API key as stored. An API key is `hgk_<key_id>_<secret>`; only SHA-256 of the secret
/// is kept. The secret is 32 random bytes, so a slow password hash would add latency to
/// every request without adding safety (nobody brute-forces 256 bits); the key id makes
/// the lookup one read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant: String,
    pub secret_sha256: String,
    pub created_at: EpochMillis,
}

/// A freshly issued key: the only time the full key exists outside the caller.
pub struct IssuedKey {
    pub key_id: String,
    pub api_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// One name a tenant uploaded plugins under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginHead {
    pub name: String,
    /// The highest version number ever given under this name: a number is never reused
    /// while the name exists, even after its version was deleted.
    pub last_version: u32,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// One uploaded component under a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginVersion {
    pub name: String,
    pub version: u32,
    /// Hex sha256 of the component: its identity in the runtime's compiled cache.
    pub sha256: String,
    pub size: u64,
    pub exports: Vec<Hook>,
    pub created_at: EpochMillis,
}

/// What an upload records: the component's identity and what it exports.
#[derive(Debug, Clone)]
pub struct NewPluginVersion {
    pub sha256: String,
    pub size: u64,
    pub exports: Vec<Hook>,
}

/// A secret a plugin may read with `secret(key)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginSecret {
    pub key: String,
    /// Sealed with the master key (`enc:v1:…`); never returned by the API.
    pub value: String,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

/// A page of a listing in key order, and whether the listing ends with it.
pub type Page<T> = (Vec<T>, bool);

const KEY_PREFIX: &str = "hgk_";

/// The tenants' configuration. See the module documentation for durability and secrets.
///
/// Invariant of the plugin records: a plugin name (its [`PluginHead`]) exists exactly
/// while it has at least one version; [`add_plugin_version`](Self::add_plugin_version)
/// creates both as one change and a caller deletes the name, not its last version.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Whether the backend can serve reads now (`/readyz`).
    async fn check(&self) -> StorageResult<()>;

    // Tenants and keys.

    /// Creates the tenant record alone; false when the id is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> StorageResult<bool>;
    async fn tenant(&self, id: &str) -> StorageResult<Option<Tenant>>;
    async fn tenants_page(&self, after: Option<&str>, limit: usize) -> StorageResult<Page<Tenant>>;
    /// Removes the tenant with its keys, event types and webhooks (its plugins go through
    /// [`delete_tenant_plugins`](Self::delete_tenant_plugins), its delivery state and
    /// events through their own stores). False when it did not exist.
    async fn delete_tenant(&self, id: &str) -> StorageResult<bool>;
    async fn insert_key(&self, record: &ApiKeyRecord) -> StorageResult<()>;
    async fn key(&self, key_id: &str) -> StorageResult<Option<ApiKeyRecord>>;
    async fn keys_of(&self, tenant: &str) -> StorageResult<Vec<ApiKeyRecord>>;
    async fn delete_key(&self, key_id: &str) -> StorageResult<bool>;

    /// Creates the tenant and its first key. `None` when the id is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> StorageResult<Option<IssuedKey>> {
        if !self.insert_tenant(tenant).await? {
            return Ok(None);
        }
        self.issue_key(&tenant.id, tenant.created_at)
            .await
            .map(Some)
    }

    async fn issue_key(&self, tenant: &str, now: EpochMillis) -> StorageResult<IssuedKey> {
        let key_id = ids::random_token(6);
        let secret = ids::random_token(32);
        let record = ApiKeyRecord {
            key_id: key_id.clone(),
            tenant: tenant.to_string(),
            secret_sha256: sha256_hex(&secret),
            created_at: now,
        };
        self.insert_key(&record).await?;
        Ok(IssuedKey {
            api_key: format!("{KEY_PREFIX}{key_id}_{secret}"),
            key_id,
        })
    }

    /// Revokes a key of `tenant`. False when no such key belongs to that tenant.
    async fn revoke_key(&self, tenant: &str, key_id: &str) -> StorageResult<bool> {
        match self.key(key_id).await? {
            Some(record) if record.tenant == tenant => self.delete_key(key_id).await,
            _ => Ok(false),
        }
    }

    /// The tenant a presented key belongs to, if the key is valid.
    async fn authenticate_key(&self, presented: &str) -> StorageResult<Option<String>> {
        let Some((key_id, secret)) = presented
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let Some(record) = self.key(key_id).await? else {
            return Ok(None);
        };
        let matches: bool = sha256_hex(secret)
            .as_bytes()
            .ct_eq(record.secret_sha256.as_bytes())
            .into();
        Ok(matches.then_some(record.tenant))
    }

    // Event types.

    async fn event_type(&self, tenant: &str, name: &str) -> StorageResult<Option<EventType>>;
    /// Inserts only when absent; false when the name is taken.
    async fn create_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<bool>;
    async fn put_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<()>;
    async fn delete_event_type(&self, tenant: &str, name: &str) -> StorageResult<bool>;
    async fn event_types_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<EventType>>;

    // Webhooks.

    async fn webhook(&self, tenant: &str, id: &str) -> StorageResult<Option<Webhook>>;
    /// Inserts only when absent; false when the id is taken.
    async fn create_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<bool>;
    async fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<()>;
    async fn delete_webhook(&self, tenant: &str, id: &str) -> StorageResult<bool>;
    async fn webhooks_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<Webhook>>;
    async fn all_webhooks_of(&self, tenant: &str) -> StorageResult<Vec<Webhook>>;
    /// `(tenant, webhook id)` of every webhook, without reading the webhooks.
    async fn all_webhook_ids(&self) -> StorageResult<Vec<(String, String)>>;
    async fn count_webhooks(&self, tenant: &str) -> StorageResult<usize>;
    /// The webhooks written from now on by any process sharing this catalog (every node
    /// of a cluster, `hookgate migrate`), as `(tenant, id)`, for a node to start those it
    /// should run. `None` when this process is the catalog's only writer (embedded): its
    /// own writes reach the dispatcher directly. A receiver that lags has missed some.
    fn webhook_writes(&self) -> Option<tokio::sync::broadcast::Receiver<(String, String)>> {
        None
    }

    // Plugins.

    /// Records a new version of `name` (creating the name on its first upload) and
    /// returns it: the next version number and both records, as one change.
    async fn add_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        component: NewPluginVersion,
        now: EpochMillis,
    ) -> StorageResult<PluginVersion>;
    async fn plugin_head(&self, tenant: &str, name: &str) -> StorageResult<Option<PluginHead>>;
    async fn plugin_heads_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginHead>>;
    /// Every version of `name`, oldest first.
    async fn plugin_versions(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>>;
    async fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>>;
    /// The highest existing version of `name`: what an attachment without a pinned
    /// version runs.
    async fn latest_plugin_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<Option<PluginVersion>>;
    /// Removes one version that is not the name's last (see the trait's invariant).
    async fn delete_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>>;
    /// Removes a plugin name with all its versions and secrets, as one change. Returns the
    /// removed versions (empty when the name did not exist).
    async fn delete_plugin(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>>;
    /// Removes every plugin record of a tenant; returns the digests they used.
    async fn delete_tenant_plugins(&self, tenant: &str) -> StorageResult<BTreeSet<String>>;
    /// How many plugin versions (all names together) the tenant stores.
    async fn count_plugin_versions(&self, tenant: &str) -> StorageResult<usize>;
    /// Every digest some version of some tenant uses.
    async fn all_plugin_digests(&self) -> StorageResult<BTreeSet<String>>;
    /// Whether any version of any tenant still uses this digest.
    async fn plugin_digest_in_use(&self, sha256: &str) -> StorageResult<bool>;
    /// Changes whenever a plugin version or secret is added, changed or removed, on any
    /// node: whoever caches what an attachment runs with (delivery workers: the version
    /// and the secrets) resolves again when it moves.
    fn plugin_generation(&self) -> u64;

    /// Writes a plugin name as another catalog holds it (`hookgate migrate`): its head and
    /// versions with their numbers and times kept, and its secrets (`value` in plaintext
    /// here, sealed on the way in), replacing whatever the name had. The versions go last,
    /// so a name that exists has its secrets.
    async fn restore_plugin(
        &self,
        tenant: &str,
        head: &PluginHead,
        versions: &[PluginVersion],
        secrets: &[PluginSecret],
    ) -> StorageResult<()>;

    // Plugin secrets.

    /// Stores (or replaces) a secret, sealing the value. Returns the record and whether it
    /// was created.
    async fn put_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
        value: &str,
        now: EpochMillis,
    ) -> StorageResult<(PluginSecret, bool)>;
    /// The record of a secret; its `value` stays sealed.
    async fn plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<Option<PluginSecret>>;
    /// The plaintext of every secret of plugin `name` of `tenant`, by key: what that plugin
    /// (and only it) may read; the one place a plugin secret is opened.
    async fn plugin_secret_values(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<BTreeMap<String, String>>;
    async fn plugin_secrets_page(
        &self,
        tenant: &str,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginSecret>>;
    async fn delete_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<bool>;

    /// Makes everything durable and lets go of the backend (at shutdown).
    async fn close(&self) -> StorageResult<()>;
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
