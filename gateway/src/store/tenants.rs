//! Tenants and their API keys: `tenants` (id → [`Tenant`]) and `api_keys` (key id →
//! [`ApiKeyRecord`]).

use super::{Store, StoreError, codec};
use crate::storage::catalog::{ApiKeyRecord, Tenant};

impl Store {
    pub(super) fn insert_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        let value = codec::encode(tenant)?;
        Ok(self
            .tenants
            .compare_and_swap(tenant.id.as_bytes(), None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    pub(super) fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        codec::get(&self.tenants, id.as_bytes())
    }

    pub(super) fn tenants_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Tenant>, bool), StoreError> {
        codec::page(&self.tenants, b"", after, limit)
    }

    /// Removes the tenant, its keys, event types and webhooks. False when it did not exist.
    pub(super) fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        if self.tenants.remove(id.as_bytes())?.is_none() {
            return Ok(false);
        }
        for key in self.keys_of(id)? {
            self.api_keys.remove(key.key_id.as_bytes())?;
        }
        let prefix = codec::tenant_prefix(id);
        for tree in [&self.event_types, &self.webhooks] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        Ok(true)
    }

    pub(super) fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.api_keys
            .insert(record.key_id.as_bytes(), codec::encode(record)?)?;
        Ok(())
    }

    pub(super) fn key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        codec::get(&self.api_keys, key_id.as_bytes())
    }

    pub(super) fn keys_of(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for value in self.api_keys.iter().values() {
            let record: ApiKeyRecord = codec::decode(&value?)?;
            if record.tenant == tenant {
                keys.push(record);
            }
        }
        Ok(keys)
    }

    pub(super) fn delete_key(&self, key_id: &str) -> Result<bool, StoreError> {
        Ok(self.api_keys.remove(key_id.as_bytes())?.is_some())
    }
}
