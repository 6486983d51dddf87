//! Tenants and their API keys.
//!
//! An API key is `hgk_<key_id>_<secret>`. Only SHA-256 of the secret is stored: the secret
//! is 32 random bytes, so a slow password hash would add latency to every request without
//! adding safety (nobody can brute-force 256 bits). The key id makes lookup one `get`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Store, StoreError, codec};
use crate::{ids, iso::EpochMillis};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: Option<String>,
    pub created_at: EpochMillis,
}

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

const KEY_PREFIX: &str = "hgk_";

impl Store {
    /// Creates the tenant and its first key. `None` when the id is taken.
    pub fn create_tenant(&self, tenant: &Tenant) -> Result<Option<IssuedKey>, StoreError> {
        let value = codec::encode(tenant)?;
        let inserted = self
            .tenants
            .compare_and_swap(tenant.id.as_bytes(), None as Option<&[u8]>, Some(value))?
            .is_ok();
        if !inserted {
            return Ok(None);
        }
        self.issue_key(&tenant.id, tenant.created_at).map(Some)
    }

    pub fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        codec::get(&self.tenants, id.as_bytes())
    }

    pub fn tenants_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Tenant>, bool), StoreError> {
        codec::page(&self.tenants, b"", after, limit)
    }

    /// Removes the tenant and everything it owns. Returns false when it did not exist.
    pub fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        if self.tenants.remove(id.as_bytes())?.is_none() {
            return Ok(false);
        }
        for key in self.keys_of(id)? {
            self.api_keys.remove(key.key_id.as_bytes())?;
        }
        let prefix = codec::tenant_prefix(id);
        for tree in [&self.event_types, &self.webhooks, &self.event_index] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        Ok(true)
    }

    pub fn issue_key(&self, tenant: &str, now: EpochMillis) -> Result<IssuedKey, StoreError> {
        let key_id = ids::random_token(6);
        let secret = ids::random_token(32);
        let record = ApiKeyRecord {
            key_id: key_id.clone(),
            tenant: tenant.to_string(),
            secret_sha256: sha256_hex(&secret),
            created_at: now,
        };
        self.api_keys
            .insert(key_id.as_bytes(), codec::encode(&record)?)?;
        Ok(IssuedKey {
            api_key: format!("{KEY_PREFIX}{key_id}_{secret}"),
            key_id,
        })
    }

    pub fn keys_of(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for value in self.api_keys.iter().values() {
            let record: ApiKeyRecord = codec::decode(&value?)?;
            if record.tenant == tenant {
                keys.push(record);
            }
        }
        Ok(keys)
    }

    /// Revokes a key of `tenant`. False when no such key belongs to that tenant.
    pub fn revoke_key(&self, tenant: &str, key_id: &str) -> Result<bool, StoreError> {
        match codec::get::<ApiKeyRecord>(&self.api_keys, key_id.as_bytes())? {
            Some(record) if record.tenant == tenant => {
                self.api_keys.remove(key_id.as_bytes())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The tenant a presented key belongs to, if the key is valid.
    pub fn authenticate_key(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let Some((key_id, secret)) = presented
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let Some(record) = codec::get::<ApiKeyRecord>(&self.api_keys, key_id.as_bytes())? else {
            return Ok(None);
        };
        let matches: bool = sha256_hex(secret)
            .as_bytes()
            .ct_eq(record.secret_sha256.as_bytes())
            .into();
        Ok(matches.then_some(record.tenant))
    }
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
