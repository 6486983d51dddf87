//! Persisted webhooks. The record is the validated `model::webhook::Webhook`; secrets in
//! it are sealed by the API layer before they reach this module.

use super::{Store, StoreError, codec};
use crate::model::webhook::Webhook;

impl Store {
    pub fn webhook(&self, tenant: &str, id: &str) -> Result<Option<Webhook>, StoreError> {
        codec::get(&self.webhooks, &codec::tenant_key(tenant, id))
    }

    /// Inserts only when absent; false when the id is taken.
    pub fn create_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<bool, StoreError> {
        let key = codec::tenant_key(tenant, &webhook.id);
        Ok(self
            .webhooks
            .compare_and_swap(key, None as Option<&[u8]>, Some(codec::encode(webhook)?))?
            .is_ok())
    }

    pub fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<(), StoreError> {
        self.webhooks.insert(
            codec::tenant_key(tenant, &webhook.id),
            codec::encode(webhook)?,
        )?;
        Ok(())
    }

    pub fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .webhooks
            .remove(codec::tenant_key(tenant, id))?
            .is_some())
    }

    pub fn webhooks_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Webhook>, bool), StoreError> {
        codec::page(&self.webhooks, &codec::tenant_prefix(tenant), after, limit)
    }

    pub fn all_webhooks_of(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        let mut all = Vec::new();
        for value in self
            .webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .values()
        {
            all.push(codec::decode(&value?)?);
        }
        Ok(all)
    }

    pub fn count_webhooks(&self, tenant: &str) -> usize {
        self.webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .count()
    }
}
