//! The event-type catalog of each tenant, with optional JSON Schemas.

use super::{Store, StoreError, codec};
use crate::storage::catalog::EventType;

impl Store {
    pub(super) fn event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventType>, StoreError> {
        codec::get(&self.event_types, &codec::tenant_key(tenant, name))
    }

    /// Inserts only when absent; false when the name is taken.
    pub(super) fn create_event_type(
        &self,
        tenant: &str,
        et: &EventType,
    ) -> Result<bool, StoreError> {
        let key = codec::tenant_key(tenant, &et.name);
        Ok(self
            .event_types
            .compare_and_swap(key, None as Option<&[u8]>, Some(codec::encode(et)?))?
            .is_ok())
    }

    pub(super) fn put_event_type(&self, tenant: &str, et: &EventType) -> Result<(), StoreError> {
        self.event_types
            .insert(codec::tenant_key(tenant, &et.name), codec::encode(et)?)?;
        Ok(())
    }

    pub(super) fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .event_types
            .remove(codec::tenant_key(tenant, name))?
            .is_some())
    }

    pub(super) fn event_types_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventType>, bool), StoreError> {
        codec::page(
            &self.event_types,
            &codec::tenant_prefix(tenant),
            after,
            limit,
        )
    }
}
