//! `EmbeddedCatalog`: the catalog in sled. Each write is a sled change followed by a
//! group-commit round covering it (`wait_durable`), which is the trait's durability
//! contract; reads are sled lookups.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::{
    iso::EpochMillis,
    log::GroupCommit,
    model::webhook::Webhook,
    storage::{
        StorageError, StorageResult,
        catalog::{
            ApiKeyRecord, Catalog, EventType, NewPluginVersion, Page, PluginHead, PluginSecret,
            PluginVersion, Tenant,
        },
    },
};

pub struct EmbeddedCatalog {
    store: Store,
    /// sled's group committer (shared with the event index and delivery state).
    commit: Arc<GroupCommit>,
}

impl EmbeddedCatalog {
    pub(super) fn new(store: Store, commit: Arc<GroupCommit>) -> EmbeddedCatalog {
        EmbeddedCatalog { store, commit }
    }

    /// A change's result, returned once the change is durable.
    async fn durable<T>(&self, result: Result<T, StoreError>) -> StorageResult<T> {
        let value = result?;
        self.commit
            .wait_durable()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(value)
    }
}

#[async_trait]
impl Catalog for EmbeddedCatalog {
    async fn check(&self) -> StorageResult<()> {
        self.store.tenants.get(b"\0readyz-probe")?;
        Ok(())
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StorageResult<bool> {
        self.durable(self.store.insert_tenant(tenant)).await
    }

    async fn tenant(&self, id: &str) -> StorageResult<Option<Tenant>> {
        Ok(self.store.tenant(id)?)
    }

    async fn tenants_page(&self, after: Option<&str>, limit: usize) -> StorageResult<Page<Tenant>> {
        Ok(self.store.tenants_page(after, limit)?)
    }

    async fn delete_tenant(&self, id: &str) -> StorageResult<bool> {
        // One removal per record: off the async workers.
        let (store, id) = (self.store.clone(), id.to_string());
        let removed = tokio::task::spawn_blocking(move || store.delete_tenant(&id))
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        self.durable(removed).await
    }

    async fn insert_key(&self, record: &ApiKeyRecord) -> StorageResult<()> {
        self.durable(self.store.insert_key(record)).await
    }

    async fn key(&self, key_id: &str) -> StorageResult<Option<ApiKeyRecord>> {
        Ok(self.store.key(key_id)?)
    }

    async fn keys_of(&self, tenant: &str) -> StorageResult<Vec<ApiKeyRecord>> {
        Ok(self.store.keys_of(tenant)?)
    }

    async fn delete_key(&self, key_id: &str) -> StorageResult<bool> {
        self.durable(self.store.delete_key(key_id)).await
    }

    async fn event_type(&self, tenant: &str, name: &str) -> StorageResult<Option<EventType>> {
        Ok(self.store.event_type(tenant, name)?)
    }

    async fn create_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<bool> {
        self.durable(self.store.create_event_type(tenant, event_type))
            .await
    }

    async fn put_event_type(&self, tenant: &str, event_type: &EventType) -> StorageResult<()> {
        self.durable(self.store.put_event_type(tenant, event_type))
            .await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> StorageResult<bool> {
        self.durable(self.store.delete_event_type(tenant, name))
            .await
    }

    async fn event_types_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<EventType>> {
        Ok(self.store.event_types_page(tenant, after, limit)?)
    }

    async fn webhook(&self, tenant: &str, id: &str) -> StorageResult<Option<Webhook>> {
        Ok(self.store.webhook(tenant, id)?)
    }

    async fn create_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<bool> {
        self.durable(self.store.create_webhook(tenant, webhook))
            .await
    }

    async fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> StorageResult<()> {
        self.durable(self.store.put_webhook(tenant, webhook)).await
    }

    async fn delete_webhook(&self, tenant: &str, id: &str) -> StorageResult<bool> {
        self.durable(self.store.delete_webhook(tenant, id)).await
    }

    async fn webhooks_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<Webhook>> {
        Ok(self.store.webhooks_page(tenant, after, limit)?)
    }

    async fn all_webhooks_of(&self, tenant: &str) -> StorageResult<Vec<Webhook>> {
        Ok(self.store.all_webhooks_of(tenant)?)
    }

    async fn all_webhook_ids(&self) -> StorageResult<Vec<(String, String)>> {
        Ok(self.store.all_webhook_ids()?)
    }

    async fn count_webhooks(&self, tenant: &str) -> StorageResult<usize> {
        Ok(self.store.count_webhooks(tenant))
    }

    async fn add_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        component: NewPluginVersion,
        now: EpochMillis,
    ) -> StorageResult<PluginVersion> {
        self.durable(self.store.add_plugin_version(tenant, name, &component, now))
            .await
    }

    async fn plugin_head(&self, tenant: &str, name: &str) -> StorageResult<Option<PluginHead>> {
        Ok(self.store.plugin_head(tenant, name)?)
    }

    async fn plugin_heads_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginHead>> {
        Ok(self.store.plugin_heads_page(tenant, after, limit)?)
    }

    async fn plugin_versions(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>> {
        Ok(self.store.plugin_versions(tenant, name)?)
    }

    async fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>> {
        Ok(self.store.plugin_version(tenant, name, version)?)
    }

    async fn latest_plugin_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<Option<PluginVersion>> {
        Ok(self.store.latest_plugin_version(tenant, name)?)
    }

    async fn delete_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> StorageResult<Option<PluginVersion>> {
        self.durable(self.store.delete_plugin_version(tenant, name, version))
            .await
    }

    async fn delete_plugin(&self, tenant: &str, name: &str) -> StorageResult<Vec<PluginVersion>> {
        self.durable(self.store.delete_plugin(tenant, name)).await
    }

    async fn delete_tenant_plugins(&self, tenant: &str) -> StorageResult<BTreeSet<String>> {
        self.durable(self.store.delete_tenant_plugins(tenant)).await
    }

    async fn count_plugin_versions(&self, tenant: &str) -> StorageResult<usize> {
        Ok(self.store.count_plugin_versions(tenant))
    }

    async fn all_plugin_digests(&self) -> StorageResult<BTreeSet<String>> {
        Ok(self.store.all_plugin_digests()?)
    }

    async fn plugin_digest_in_use(&self, sha256: &str) -> StorageResult<bool> {
        Ok(self.store.plugin_digest_in_use(sha256)?)
    }

    fn plugin_generation(&self) -> u64 {
        self.store.plugin_generation()
    }

    async fn restore_plugin(
        &self,
        tenant: &str,
        head: &PluginHead,
        versions: &[PluginVersion],
        secrets: &[PluginSecret],
    ) -> StorageResult<()> {
        self.durable(self.store.restore_plugin(tenant, head, versions, secrets))
            .await
    }

    async fn put_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
        value: &str,
        now: EpochMillis,
    ) -> StorageResult<(PluginSecret, bool)> {
        self.durable(self.store.put_plugin_secret(tenant, name, key, value, now))
            .await
    }

    async fn plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<Option<PluginSecret>> {
        Ok(self.store.plugin_secret(tenant, name, key)?)
    }

    async fn plugin_secret_values(
        &self,
        tenant: &str,
        name: &str,
    ) -> StorageResult<BTreeMap<String, String>> {
        Ok(self.store.plugin_secret_values(tenant, name)?)
    }

    async fn plugin_secrets_page(
        &self,
        tenant: &str,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Page<PluginSecret>> {
        Ok(self.store.plugin_secrets_page(tenant, name, after, limit)?)
    }

    async fn delete_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> StorageResult<bool> {
        self.durable(self.store.delete_plugin_secret(tenant, name, key))
            .await
    }

    async fn close(&self) -> StorageResult<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        Ok(())
    }
}
