//! Compiled JSON Schemas of event types, cached so ingest validates without re-reading or
//! re-compiling the schema for every event. Writers to the catalog invalidate entries.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use serde_json::Value;

use crate::{
    model::problems::FieldError,
    storage::{Catalog, StorageResult},
};

type Key = (String, String);

#[derive(Default)]
pub struct SchemaCache {
    /// `None` caches "this type has no schema" so unknown types cost one lookup too.
    compiled: RwLock<HashMap<Key, Option<Arc<jsonschema::Validator>>>>,
}

/// Compiles a schema, or says why it is not one.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

impl SchemaCache {
    pub async fn validator(
        &self,
        catalog: &dyn Catalog,
        tenant: &str,
        event_type: &str,
    ) -> StorageResult<Option<Arc<jsonschema::Validator>>> {
        let key = (tenant.to_string(), event_type.to_string());
        if let Some(hit) = self.compiled.read().expect("schema cache").get(&key) {
            return Ok(hit.clone());
        }
        let validator = catalog
            .event_type(tenant, event_type)
            .await?
            .and_then(|et| et.schema)
            .and_then(|schema| compile(&schema).ok())
            .map(Arc::new);
        self.compiled
            .write()
            .expect("schema cache")
            .insert(key, validator.clone());
        Ok(validator)
    }

    pub fn invalidate(&self, tenant: &str, event_type: &str) {
        self.compiled
            .write()
            .expect("schema cache")
            .remove(&(tenant.to_string(), event_type.to_string()));
    }

    pub fn invalidate_tenant(&self, tenant: &str) {
        self.compiled
            .write()
            .expect("schema cache")
            .retain(|(t, _), _| t != tenant);
    }
}

/// Every violation of `instance`, located by JSON pointer under `field_prefix`.
pub fn violations(
    validator: &jsonschema::Validator,
    instance: &Value,
    field_prefix: &str,
) -> Vec<FieldError> {
    validator
        .iter_errors(instance)
        .take(50)
        .map(|e| FieldError {
            field: format!("{field_prefix}{}", e.instance_path),
            message: e.to_string(),
        })
        .collect()
}
