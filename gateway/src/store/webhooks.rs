//! Persisted webhooks. Every secret field (authentication, TLS key, `query_key`, S3
//! secret key) is sealed with the master key here, on the way to disk, and opened on the
//! way back: callers only ever handle plaintext, the disk only ever holds ciphertext.

use hookgate_signing::secret_box::is_sealed;

use super::{Store, StoreError, codec};
use crate::model::webhook::{Destination, Webhook};

impl Store {
    pub fn webhook(&self, tenant: &str, id: &str) -> Result<Option<Webhook>, StoreError> {
        codec::get(&self.webhooks, &codec::tenant_key(tenant, id))?
            .map(|w| self.open_secrets(w))
            .transpose()
    }

    fn seal_secrets(&self, webhook: &Webhook) -> Webhook {
        let key = &self.master_key;
        let mut sealed = webhook.clone();
        let spec = &mut sealed.spec;
        spec.authentication.seal_secrets(key);
        if let Some(tls) = &mut spec.tls {
            tls.seal_secrets(key);
        }
        let seal = |value: &mut String| {
            if !is_sealed(value) {
                *value = key.seal(value);
            }
        };
        if let Some(query_key) = &mut spec.query_key {
            seal(query_key);
        }
        if let Destination::S3(s3) = &mut spec.destination {
            seal(&mut s3.secret_access_key);
        }
        sealed
    }

    fn open_secrets(&self, mut webhook: Webhook) -> Result<Webhook, StoreError> {
        let key = &self.master_key;
        let secret_error = |e: &dyn std::fmt::Display| StoreError::Secret(e.to_string());
        let spec = &mut webhook.spec;
        spec.authentication
            .open_secrets(key)
            .map_err(|e| secret_error(&e))?;
        if let Some(tls) = &mut spec.tls {
            tls.open_secrets(key).map_err(|e| secret_error(&e))?;
        }
        let open = |value: &mut String| -> Result<(), StoreError> {
            if is_sealed(value) {
                *value = key.open(value).map_err(|e| secret_error(&e))?;
            }
            Ok(())
        };
        if let Some(query_key) = &mut spec.query_key {
            open(query_key)?;
        }
        if let Destination::S3(s3) = &mut spec.destination {
            open(&mut s3.secret_access_key)?;
        }
        Ok(webhook)
    }

    /// Inserts only when absent; false when the id is taken.
    pub fn create_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<bool, StoreError> {
        let key = codec::tenant_key(tenant, &webhook.id);
        let value = codec::encode(&self.seal_secrets(webhook))?;
        Ok(self
            .webhooks
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    pub fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<(), StoreError> {
        self.webhooks.insert(
            codec::tenant_key(tenant, &webhook.id),
            codec::encode(&self.seal_secrets(webhook))?,
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
        let (page, done) =
            codec::page(&self.webhooks, &codec::tenant_prefix(tenant), after, limit)?;
        let opened = page
            .into_iter()
            .map(|w| self.open_secrets(w))
            .collect::<Result<_, _>>()?;
        Ok((opened, done))
    }

    pub fn all_webhooks_of(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        let mut all = Vec::new();
        for value in self
            .webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .values()
        {
            all.push(self.open_secrets(codec::decode(&value?)?)?);
        }
        Ok(all)
    }

    /// `(tenant, webhook id)` of every webhook, without decoding them.
    pub fn all_webhook_ids(&self) -> Result<Vec<(String, String)>, StoreError> {
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

    pub fn count_webhooks(&self, tenant: &str) -> usize {
        self.webhooks
            .scan_prefix(codec::tenant_prefix(tenant))
            .count()
    }
}
