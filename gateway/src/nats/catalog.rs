//! The catalog on JetStream: one KV bucket, `HG_CATALOG`, a key per record:
//!
//! | key | value |
//! |---|---|
//! | `tenant.<tenant>` | [`Tenant`] |
//! | `key.<key id>` | [`ApiKeyRecord`] |
//! | `et.<tenant>.<name>` | [`EventType`] |
//! | `wh.<tenant>.<id>` | [`Webhook`], every secret sealed with the master key |
//! | `pl.<tenant>.<name>` | [`PluginRecord`]: the head and every version of one name |
//! | `sec.<tenant>.<name>` | the secrets of one plugin name, by key, values sealed |
//!
//! (names escaped into tokens by `subjects::token`). A write returns after the bucket's
//! ack, which comes once it is stored at the replication factor. Changes that must be one
//! unit (a new version and its head; a secret and its neighbours) are one key, updated
//! with compare-and-set on its revision, so two nodes uploading at once cannot hand out
//! the same version number.
//!
//! `plugin_generation` moves on this node's own changes and, through a watch on the
//! plugin keys, on every other node's.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_nats::jetstream::{
    self,
    kv::{self, Operation},
};
use async_trait::async_trait;
use futures_util::StreamExt;
use hookgate_signing::{
    MasterKey,
    config::secret_scope::{opened, sealed},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use super::{
    Nats,
    subjects::{token, untoken},
    unavailable,
};
use crate::{
    iso::EpochMillis,
    model::webhook::Webhook,
    storage::{
        Catalog, StorageError, StorageResult,
        catalog::{
            ApiKeyRecord, EventType, NewPluginVersion, Page, PluginHead, PluginSecret,
            PluginVersion, Tenant,
        },
    },
};

pub const CATALOG_BUCKET: &str = "HG_CATALOG";

/// How often a compare-and-set write is tried again when another node changed the key
/// in between.
const CAS_ATTEMPTS: usize = 32;

/// One plugin name: its head and every version, oldest first, as one value so that a new
/// version and its number are one compare-and-set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PluginRecord {
    head: PluginHead,
    versions: Vec<PluginVersion>,
}

type Secrets = BTreeMap<String, PluginSecret>;

pub struct NatsCatalog {
    /// For the inboxes of listings.
    client: async_nats::Client,
    kv: kv::Store,
    master_key: Arc<MasterKey>,
    generation: Arc<AtomicU64>,
    /// Every webhook written, by any process (see `Catalog::webhook_writes`).
    webhook_writes: broadcast::Sender<(String, String)>,
}

/// Webhook writes a slow follower may fall behind by before it misses some (and then
/// looks at every webhook instead).
const WEBHOOK_WRITES_BUFFERED: usize = 4096;

fn tenant_key(tenant: &str) -> String {
    format!("tenant.{}", token(tenant))
}

fn api_key_key(key_id: &str) -> String {
    format!("key.{}", token(key_id))
}

fn scoped(kind: &str, tenant: &str, name: &str) -> String {
    format!("{kind}.{}.{}", token(tenant), token(name))
}

fn scope_prefix(kind: &str, tenant: &str) -> String {
    format!("{kind}.{}.", token(tenant))
}

fn corrupt(key: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("catalog record {key}: {error}"))
}

impl NatsCatalog {
    pub async fn open(nats: &Nats, master_key: Arc<MasterKey>) -> StorageResult<NatsCatalog> {
        nats.jetstream
            .create_or_update_key_value(kv::Config {
                bucket: CATALOG_BUCKET.into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: nats.replicas,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        // Reads go to the stream's leader. A direct get may be answered by a replica that
        // has not applied the newest write yet (nats-server has no read-after-write for
        // them, nats-server#6557), and then a node told "the webhook changed" by another
        // one read the old configuration: seen under load, a worker kept the old URL
        // after a PATCH through the other node.
        let mut stream = nats
            .jetstream
            .get_stream(format!("KV_{CATALOG_BUCKET}"))
            .await
            .map_err(unavailable)?;
        let mut config = stream.info().await.map_err(unavailable)?.config.clone();
        if config.allow_direct {
            config.allow_direct = false;
            nats.jetstream
                .update_stream(config)
                .await
                .map_err(unavailable)?;
        }
        let kv = nats
            .jetstream
            .get_key_value(CATALOG_BUCKET)
            .await
            .map_err(unavailable)?;
        let generation = Arc::new(AtomicU64::new(1));
        let mut changes = kv
            .watch_many(["pl.>", "sec.>"])
            .await
            .map_err(unavailable)?;
        let moved = Arc::downgrade(&generation);
        tokio::spawn(async move {
            while changes.next().await.is_some() {
                let Some(generation) = moved.upgrade() else {
                    return;
                };
                generation.fetch_add(1, Ordering::SeqCst);
            }
        });
        let (webhook_writes, _) = broadcast::channel(WEBHOOK_WRITES_BUFFERED);
        let mut written = kv.watch("wh.>").await.map_err(unavailable)?;
        let sender = webhook_writes.clone();
        tokio::spawn(async move {
            while let Some(entry) = written.next().await {
                let Ok(entry) = entry else { continue };
                if entry.operation != Operation::Put {
                    continue;
                }
                let Some((tenant, id)) = entry
                    .key
                    .strip_prefix("wh.")
                    .and_then(|rest| rest.split_once('.'))
                else {
                    continue;
                };
                if let (Some(tenant), Some(id)) = (untoken(tenant), untoken(id)) {
                    // No receiver (yet) is not an error: nobody follows them.
                    let _ = sender.send((tenant, id));
                }
            }
        });
        Ok(NatsCatalog {
            client: nats.client.clone(),
            kv,
            master_key,
            generation,
            webhook_writes,
        })
    }

    fn plugins_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> StorageResult<Option<T>> {
        Ok(self.entry(key).await?.map(|(value, _)| value))
    }

    /// The value and its revision (for compare-and-set).
    async fn entry<T: DeserializeOwned>(&self, key: &str) -> StorageResult<Option<(T, u64)>> {
        let Some(entry) = self.kv.entry(key).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if entry.operation != Operation::Put {
            return Ok(None);
        }
        let value = serde_json::from_slice(&entry.value).map_err(|e| corrupt(key, e))?;
        Ok(Some((value, entry.revision)))
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> StorageResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt(key, e))?;
        self.kv.put(key, bytes.into()).await.map_err(unavailable)?;
        Ok(())
    }

    /// Creates `key` only when absent; false when it exists.
    async fn create<T: Serialize>(&self, key: &str, value: &T) -> StorageResult<bool> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt(key, e))?;
        match self.kv.create(key, bytes.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes `key`; false when it did not exist.
    async fn delete(&self, key: &str) -> StorageResult<bool> {
        if self
            .kv
            .entry(key)
            .await
            .map_err(unavailable)?
            .is_none_or(|e| e.operation != Operation::Put)
        {
            return Ok(false);
        }
        self.kv.delete(key).await.map_err(unavailable)?;
        Ok(true)
    }

    /// Reads `key`, lets `change` make its new value (`None`: delete it; `Err`: leave it),
    /// and writes that only if nobody changed the key meanwhile, trying again if someone
    /// did. Returns what `change` returned with the value it wrote.
    async fn update<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> StorageResult<(Option<T>, R)>,
    ) -> StorageResult<R>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.kv.entry(key).await.map_err(unavailable)?;
            let (revision, value) = match &current {
                Some(entry) if entry.operation == Operation::Put => (
                    Some(entry.revision),
                    Some(serde_json::from_slice::<T>(&entry.value).map_err(|e| corrupt(key, e))?),
                ),
                Some(entry) => (Some(entry.revision), None),
                None => (None, None),
            };
            let existed = value.is_some();
            let (new, result) = change(value)?;
            let written = match (new, revision) {
                (Some(new), Some(revision)) => {
                    let bytes = serde_json::to_vec(&new).map_err(|e| corrupt(key, e))?;
                    self.kv
                        .update(key, bytes.into(), revision)
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            (
                                e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                unavailable(e),
                            )
                        })
                }
                (Some(new), None) => {
                    let bytes = serde_json::to_vec(&new).map_err(|e| corrupt(key, e))?;
                    self.kv
                        .create(key, bytes.into())
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            (
                                e.kind() == kv::CreateErrorKind::AlreadyExists,
                                unavailable(e),
                            )
                        })
                }
                (None, Some(revision)) if existed => self
                    .kv
                    .delete_expect_revision(key, Some(revision))
                    .await
                    .map_err(|e| (true, unavailable(e))),
                (None, _) => Ok(()),
            };
            match written {
                Ok(()) => return Ok(result),
                // Someone else wrote the key first: read it again.
                Err((true, _)) => continue,
                Err((false, error)) => return Err(error),
            }
        }
        Err(StorageError::Unavailable(format!(
            "catalog record {key} changed {CAS_ATTEMPTS} times while being updated"
        )))
    }

    /// Every key that starts with `prefix` (which ends with `.`), with the name it holds
    /// (the rest of the key, unescaped), in name order: the order the embedded backend
    /// lists in.
    ///
    /// The server filters: an ordered consumer on the bucket's stream, for the prefix's
    /// subjects only, last message per key, headers only. (`Store::keys` lists every key
    /// of the bucket and left the filtering here: with 10,000 webhooks, creating one read
    /// all 10,000 keys to count the tenant's own, and creation slowed to 30/s.) Not a
    /// batched direct get: a deleted key's marker has an empty payload, which ends a batch.
    async fn keys_with_prefix(&self, prefix: &str) -> StorageResult<Vec<(String, String)>> {
        debug_assert!(prefix.ends_with('.'), "a prefix is whole tokens: {prefix}");
        let consumer = self
            .kv
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("{}{prefix}>", self.kv.prefix),
                headers_only: true,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut keys = Vec::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(unavailable)?;
                let pending = message.info().map_err(unavailable)?.pending;
                let removed = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("KV-Operation"))
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                if !removed && let Some(key) = message.subject.strip_prefix(&self.kv.prefix) {
                    keys.push(key.to_string());
                }
                if pending == 0 {
                    break;
                }
            }
        }
        let mut named: Vec<(String, String)> = keys
            .into_iter()
            .filter_map(|key| Some((untoken(&key[prefix.len()..])?, key)))
            .collect();
        named.sort_unstable();
        Ok(named)
    }

    /// The values under `prefix` whose name comes after `after`, in name order, at most
    /// `limit`; and whether the listing ends with them.
    async fn page<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<T>> {
        let keys: Vec<(String, String)> = self
            .keys_with_prefix(prefix)
            .await?
            .into_iter()
            .filter(|(name, _)| after.is_none_or(|after| name.as_str() > after))
            .collect();
        let mut values = Vec::new();
        for (_, key) in keys.iter().take(limit) {
            if let Some(value) = self.get(key).await? {
                values.push(value);
            }
        }
        Ok((values, keys.len() <= limit))
    }

    async fn all<T: DeserializeOwned>(&self, prefix: &str) -> StorageResult<Vec<T>> {
        Ok(self.page(prefix, None, usize::MAX).await?.0)
    }

    async fn sealed_webhook(&self, webhook: &Webhook) -> StorageResult<serde_json::Value> {
        sealed(&self.master_key, || serde_json::to_value(webhook))
            .map_err(|e| corrupt(&webhook.id, e))
    }

    fn open_webhook(&self, key: &str, value: serde_json::Value) -> StorageResult<Webhook> {
        opened(&self.master_key, || serde_json::from_value(value)).map_err(|e| corrupt(key, e))
    }
}

/// The key `/readyz` writes (see `check`).
const READY_KEY: &str = "ready";

/// How long `/readyz` waits for the cluster to answer.
const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait]
impl Catalog for NatsCatalog {
    /// A write to the bucket (one key, history 1): stored only while a quorum of its
    /// servers is up, so a cluster that cannot take writes is not ready. (Reads and
    /// stream info may still be answered then, by a replica or a leader that has not yet
    /// stepped down.) Bounded, so that a probe learns it before its own timeout.
    async fn check(&self) -> StorageResult<()> {
        let written = self.kv.put(READY_KEY, bytes::Bytes::from_static(b"1"));
        match tokio::time::timeout(READY_CHECK_TIMEOUT, written).await {
            Ok(written) => written.map(|_| ()).map_err(unavailable),
            Err(_) => Err(unavailable("the cluster did not store a write in time")),
        }
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StorageResult<bool> {
        self.create(&tenant_key(&tenant.id), tenant).await
    }

    async fn tenant(&self, id: &str) -> StorageResult<Option<Tenant>> {
        self.get(&tenant_key(id)).await
    }

    async fn tenants_page(&self, after: Option<&str>, limit: usize) -> StorageResult<Page<Tenant>> {
        self.page("tenant.", after, limit).await
    }

    async fn delete_tenant(&self, id: &str) -> StorageResult<bool> {
        if !self.delete(&tenant_key(id)).await? {
            return Ok(false);
        }
        for key in self.keys_of(id).await? {
            self.delete(&api_key_key(&key.key_id)).await?;
        }
        for kind in ["et", "wh"] {
            for (_, key) in self.keys_with_prefix(&scope_prefix(kind, id)).await? {
                self.delete(&key).await?;
            }
        }
        Ok(true)
    }

    async fn insert_key(&self, record: &ApiKeyRecord) -> StorageResult<()> {
        self.put(&api_key_key(&record.key_id), record).await
    }

    async fn key(&self, key_id: &str) -> StorageResult<Option<ApiKeyRecord>> {
        self.get(&api_key_key(key_id)).await
    }

    async fn keys_of(&self, tenant: &str) -> StorageResult<Vec<ApiKeyRecord>> {
        let all: Vec<ApiKeyRecord> = self.all("key.").await?;
        Ok(all.into_iter().filter(|k| k.tenant == tenant).collect())
    }

    async fn delete_key(&self, key_id: &str) -> StorageResult<bool> {
        self.delete(&api_key_key(key_id)).await
    }

    async fn event_type(&self, tenant: &str, name: &str) -> StorageResult<Option<EventType>> {
        self.get(&scoped("et", tenant, name)).await
    }

    async fn create_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<bool> {
        self.create(&scoped("et", tenant, &event_type.name), event_type)
            .await
    }

    async fn put_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<()> {
        self.put(&scoped("et", tenant, &event_type.name), event_type)
            .await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> StorageResult<bool> {
        self.delete(&scoped("et", tenant, name)).await
    }

    async fn event_types_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<EventType>> {
        self.page(&scope_prefix("et", tenant), after, limit).await
    }

    async fn webhook(&self, tenant: &str, id: &str) -> StorageResult<Option<Webhook>> {
        let key = scoped("wh", tenant, id);
        match self.get::<serde_json::Value>(&key).await? {
            Some(value) => self.open_webhook(&key, value).map(Some),
            None => Ok(None),
        }
    }

    async fn create_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<bool> {
        let value = self.sealed_webhook(webhook).await?;
        self.create(&scoped("wh", tenant, &webhook.id), &value)
            .await
    }

    async fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<()> {
        let value = self.sealed_webhook(webhook).await?;
        self.put(&scoped("wh", tenant, &webhook.id), &value).await
    }

    async fn delete_webhook(&self, tenant: &str, id: &str) -> StorageResult<bool> {
        self.delete(&scoped("wh", tenant, id)).await
    }

    async fn webhooks_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<Webhook>> {
        let prefix = scope_prefix("wh", tenant);
        let (values, done) = self
            .page::<serde_json::Value>(&prefix, after, limit)
            .await?;
        let webhooks = values
            .into_iter()
            .map(|value| self.open_webhook(&prefix, value))
            .collect::<StorageResult<_>>()?;
        Ok((webhooks, done))
    }

    async fn all_webhooks_of(&self, tenant: &str) -> StorageResult<Vec<Webhook>> {
        Ok(self.webhooks_page(tenant, None, usize::MAX).await?.0)
    }

    async fn all_webhook_ids(&self) -> StorageResult<Vec<(String, String)>> {
        // `wh.<tenant>.<id>`: the name after `wh.` is `<tenant>.<id>` unescaped as one; split
        // the key itself, whose tokens hold no dots.
        let mut ids = Vec::new();
        for (_, key) in self.keys_with_prefix("wh.").await? {
            let (tenant, id) = key["wh.".len()..]
                .split_once('.')
                .and_then(|(tenant, id)| Some((untoken(tenant)?, untoken(id)?)))
                .ok_or_else(|| corrupt(&key, "not a webhook key"))?;
            ids.push((tenant, id));
        }
        Ok(ids)
    }

    fn webhook_writes(&self) -> Option<broadcast::Receiver<(String, String)>> {
        Some(self.webhook_writes.subscribe())
    }

    async fn count_webhooks(&self, tenant: &str) -> StorageResult<usize> {
        Ok(self
            .keys_with_prefix(&scope_prefix("wh", tenant))
            .await?
            .len())
    }

    async fn add_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        component: NewPluginVersion,
        now: EpochMillis,
    ) -> StorageResult<PluginVersion> {
        let added = self
            .update(
                &scoped("pl", tenant, name),
                |record: Option<PluginRecord>| {
                    let mut record = record.unwrap_or_else(|| PluginRecord {
                        head: PluginHead {
                            name: name.to_string(),
                            last_version: 0,
                            created_at: now,
                            updated_at: now,
                        },
                        versions: Vec::new(),
                    });
                    record.head.last_version += 1;
                    record.head.updated_at = now;
                    let version = PluginVersion {
                        name: name.to_string(),
                        version: record.head.last_version,
                        sha256: component.sha256.clone(),
                        size: component.size,
                        exports: component.exports.clone(),
                        created_at: now,
                    };
                    record.versions.push(version.clone());
                    Ok((Some(record), version))
                },
            )
            .await?;
        self.plugins_changed();
        Ok(added)
    }

    async fn plugin_head(&self, tenant: &str, name: &str) -> StorageResult<Option<PluginHead>> {
        Ok(self
            .get::<PluginRecord>(&scoped("pl", tenant, name))
            .await?
            .map(|record| record.head))
    }

    async fn plugin_heads_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginHead>> {
        let (records, done) = self
            .page::<PluginRecord>(&scope_prefix("pl", tenant), after, limit)
            .await?;
        Ok((records.into_iter().map(|r| r.head).collect(), done))
    }

    async fn plugin_versions(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>> {
        Ok(self
            .get::<PluginRecord>(&scoped("pl", tenant, name))
            .await?
            .map(|record| record.versions)
            .unwrap_or_default())
    }

    async fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>> {
        Ok(self
            .plugin_versions(tenant, name)
            .await?
            .into_iter()
            .find(|v| v.version == version))
    }

    async fn latest_plugin_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<Option<PluginVersion>> {
        Ok(self.plugin_versions(tenant, name).await?.pop())
    }

    async fn delete_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>> {
        let removed = self
            .update(
                &scoped("pl", tenant, name),
                |record: Option<PluginRecord>| {
                    let Some(mut record) = record else {
                        return Ok((None, None));
                    };
                    let removed = record
                        .versions
                        .iter()
                        .position(|v| v.version == version)
                        .map(|at| record.versions.remove(at));
                    Ok((Some(record), removed))
                },
            )
            .await?;
        self.plugins_changed();
        Ok(removed)
    }

    async fn delete_plugin(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>> {
        let removed = self
            .update(
                &scoped("pl", tenant, name),
                |record: Option<PluginRecord>| {
                    Ok((None, record.map(|r| r.versions).unwrap_or_default()))
                },
            )
            .await?;
        // The secrets second: a crash in between leaves secrets of a name without
        // versions, which a plugin may have anyway (they can be set before an upload).
        self.delete(&scoped("sec", tenant, name)).await?;
        self.plugins_changed();
        Ok(removed)
    }

    async fn delete_tenant_plugins(&self, tenant: &str) -> StorageResult<BTreeSet<String>> {
        let mut digests = BTreeSet::new();
        for (_, key) in self.keys_with_prefix(&scope_prefix("pl", tenant)).await? {
            if let Some(record) = self.get::<PluginRecord>(&key).await? {
                digests.extend(record.versions.into_iter().map(|v| v.sha256));
            }
            self.delete(&key).await?;
        }
        for (_, key) in self.keys_with_prefix(&scope_prefix("sec", tenant)).await? {
            self.delete(&key).await?;
        }
        self.plugins_changed();
        Ok(digests)
    }

    async fn count_plugin_versions(&self, tenant: &str) -> StorageResult<usize> {
        let records: Vec<PluginRecord> = self.all(&scope_prefix("pl", tenant)).await?;
        Ok(records.iter().map(|r| r.versions.len()).sum())
    }

    async fn all_plugin_digests(&self) -> StorageResult<BTreeSet<String>> {
        let records: Vec<PluginRecord> = self.all("pl.").await?;
        Ok(records
            .into_iter()
            .flat_map(|r| r.versions.into_iter().map(|v| v.sha256))
            .collect())
    }

    async fn plugin_digest_in_use(&self, sha256: &str) -> StorageResult<bool> {
        Ok(self.all_plugin_digests().await?.contains(sha256))
    }

    fn plugin_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    async fn restore_plugin(
        &self,
        tenant: &str,
        head: &PluginHead,
        versions: &[PluginVersion],
        secrets: &[PluginSecret],
    ) -> StorageResult<()> {
        let sealed: Secrets = secrets
            .iter()
            .map(|secret| {
                let sealed = PluginSecret {
                    value: self.master_key.seal(&secret.value),
                    ..secret.clone()
                };
                (secret.key.clone(), sealed)
            })
            .collect();
        // Secrets first: the name exists (its `pl` key) only once they are there.
        let secrets_key = scoped("sec", tenant, &head.name);
        if sealed.is_empty() {
            self.delete(&secrets_key).await?;
        } else {
            self.put(&secrets_key, &sealed).await?;
        }
        let record = PluginRecord {
            head: head.clone(),
            versions: versions.to_vec(),
        };
        self.put(&scoped("pl", tenant, &head.name), &record).await?;
        self.plugins_changed();
        Ok(())
    }

    async fn put_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
        value: &str,
        now: EpochMillis,
    ) -> StorageResult<(PluginSecret, bool)> {
        let sealed_value = self.master_key.seal(value);
        let stored = self
            .update(&scoped("sec", tenant, name), |secrets: Option<Secrets>| {
                let mut secrets = secrets.unwrap_or_default();
                let created_at = secrets.get(key).map(|s| s.created_at);
                let secret = PluginSecret {
                    key: key.to_string(),
                    value: sealed_value.clone(),
                    created_at: created_at.unwrap_or(now),
                    updated_at: now,
                };
                secrets.insert(key.to_string(), secret.clone());
                Ok((Some(secrets), (secret, created_at.is_none())))
            })
            .await?;
        self.plugins_changed();
        Ok(stored)
    }

    async fn plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<Option<PluginSecret>> {
        Ok(self
            .get::<Secrets>(&scoped("sec", tenant, name))
            .await?
            .and_then(|mut secrets| secrets.remove(key)))
    }

    async fn plugin_secret_values(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<BTreeMap<String, String>> {
        let secrets: Secrets = self
            .get(&scoped("sec", tenant, name))
            .await?
            .unwrap_or_default();
        secrets
            .into_iter()
            .map(|(key, secret)| {
                let value = self
                    .master_key
                    .open(&secret.value)
                    .map_err(|e| corrupt(&key, e))?;
                Ok((key, value))
            })
            .collect()
    }

    async fn plugin_secrets_page(
        &self,
        tenant: &str,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginSecret>> {
        let secrets: Secrets = self
            .get(&scoped("sec", tenant, name))
            .await?
            .unwrap_or_default();
        let mut rest: Vec<PluginSecret> = secrets
            .into_values()
            .filter(|s| after.is_none_or(|after| s.key.as_str() > after))
            .collect();
        let done = rest.len() <= limit;
        rest.truncate(limit);
        Ok((rest, done))
    }

    async fn delete_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<bool> {
        let removed = self
            .update(&scoped("sec", tenant, name), |secrets: Option<Secrets>| {
                let Some(mut secrets) = secrets else {
                    return Ok((None, false));
                };
                let removed = secrets.remove(key).is_some();
                let left = (!secrets.is_empty()).then_some(secrets);
                Ok((left, removed))
            })
            .await?;
        if removed {
            self.plugins_changed();
        }
        Ok(removed)
    }

    async fn close(&self) -> StorageResult<()> {
        Ok(())
    }
}
