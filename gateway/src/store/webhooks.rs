//! Persisted webhooks. Every secret field (any `SecretString`: authentication, TLS key,
//! `query_key`, S3 secret key) is sealed with the master key here, on the way to disk,
//! and opened on the way back: callers only ever handle plaintext, the disk only ever
//! holds ciphertext.

use hookgate_signing::config::secret_scope::{opened, sealed};

use super::{Store, StoreError, codec};
use crate::model::webhook::Webhook;

impl Store {
    pub(super) fn webhook(&self, tenant: &str, id: &str) -> Result<Option<Webhook>, StoreError> {
        opened(&self.master_key, || {
            codec::get(&self.webhooks, &codec::tenant_key(tenant, id))
        })
    }

    /// The stored form: every `SecretString` of the webhook sealed, whatever field it is.
    fn encode_sealed(&self, webhook: &Webhook) -> Result<Vec<u8>, StoreError> {
        sealed(&self.master_key, || codec::encode(webhook))
    }

    /// Inserts only when absent; false when the id is taken.
    pub(super) fn create_webhook(
        &self,
        tenant: &str,
        webhook: &Webhook,
    ) -> Result<bool, StoreError> {
        let key = codec::tenant_key(tenant, &webhook.id);
        let value = self.encode_sealed(webhook)?;
        Ok(self
            .webhooks
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    pub(super) fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<(), StoreError> {
        self.webhooks.insert(
            codec::tenant_key(tenant, &webhook.id),
            self.encode_sealed(webhook)?,
        )?;
        Ok(())
    }

    pub(super) fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .webhooks
            .remove(codec::tenant_key(tenant, id))?
            .is_some())
    }

    pub(super) fn webhooks_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Webhook>, bool), StoreError> {
        opened(&self.master_key, || {
            codec::page(&self.webhooks, &codec::tenant_prefix(tenant), after, limit)
        })
    }

    pub(super) fn all_webhooks_of(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        let mut all = Vec::new();
        for value in self
            .webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .values()
        {
            all.push(opened(&self.master_key, || codec::decode(&value?))?);
        }
        Ok(all)
    }

    /// `(tenant, webhook id)` of every webhook, without decoding them.
    pub(super) fn all_webhook_ids(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut ids = Vec::new();
        for key in self.webhooks.iter().keys() {
            let key = key?;
            let text = String::from_utf8_lossy(&key);
            if let Some((tenant, id)) = text.split_once('\0') {
                ids.push((tenant.to_string(), id.to_string()));
            }
        }
        Ok(ids)
    }

    pub(super) fn count_webhooks(&self, tenant: &str) -> usize {
        self.webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .count()
    }
}
