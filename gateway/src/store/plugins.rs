//! Tenant plugins: the versions of each named plugin and the secrets a tenant stored for
//! it. The compiled code itself lives in the plugin runtime's cache (`{data_dir}/plugins`),
//! keyed by sha256; these records say which tenant calls which digest by which name.
//!
//! Trees and keys (tenant-scoped, `tenant \0 rest`; plugin names match
//! `^[a-z0-9-]{1,50}$`, so `\0` never occurs inside one):
//! - `plugin_heads`: `tenant \0 name` → [`PluginHead`], one per plugin name. Its counter
//!   hands out version numbers, so a number is never reused while the name exists, even
//!   after its version was deleted.
//! - `plugins`: `tenant \0 name \0 version` (u32 big-endian, so a prefix scan yields
//!   versions in order and the last one is the latest) → [`PluginVersion`].
//! - `plugin_secrets`: `tenant \0 name \0 key` → [`PluginSecret`], the value sealed with the
//!   master key. Only [`Store::plugin_secret_values`] ever opens one.
//!
//! Invariant: a head exists exactly while its name has at least one version (uploading
//! creates both in one transaction; deleting the last version deletes the name).

use std::collections::{BTreeMap, BTreeSet};

use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError},
};

use super::{Store, StoreError, codec};
use crate::{
    iso::EpochMillis,
    storage::catalog::{NewPluginVersion, PluginHead, PluginSecret, PluginVersion},
};

/// `tenant \0 name \0`: the prefix of one plugin's versions or secrets.
fn name_prefix(tenant: &str, name: &str) -> Vec<u8> {
    let mut key = codec::tenant_key(tenant, name);
    key.push(0);
    key
}

fn version_key(tenant: &str, name: &str, version: u32) -> Vec<u8> {
    let mut key = name_prefix(tenant, name);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn secret_key(tenant: &str, name: &str, key: &str) -> Vec<u8> {
    let mut k = name_prefix(tenant, name);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Unwraps a multi-tree transaction's error into ours.
fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

fn abort(error: serde_json::Error) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(StoreError::Codec(error))
}

impl Store {
    /// Records a new version of `name` (creating the name on its first upload) and returns
    /// it. The version number and both records are written in one transaction.
    pub(super) fn add_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        component: &NewPluginVersion,
        now: EpochMillis,
    ) -> Result<PluginVersion, StoreError> {
        let head_key = codec::tenant_key(tenant, name);
        (&self.plugin_heads, &self.plugins)
            .transaction(|(heads, versions)| {
                let mut head = match heads.get(&head_key)? {
                    Some(bytes) => serde_json::from_slice::<PluginHead>(&bytes).map_err(abort)?,
                    None => PluginHead {
                        name: name.to_string(),
                        last_version: 0,
                        created_at: now,
                        updated_at: now,
                    },
                };
                head.last_version += 1;
                head.updated_at = now;
                let version = PluginVersion {
                    name: name.to_string(),
                    version: head.last_version,
                    sha256: component.sha256.clone(),
                    size: component.size,
                    exports: component.exports.clone(),
                    created_at: now,
                };
                heads.insert(
                    head_key.as_slice(),
                    serde_json::to_vec(&head).map_err(abort)?,
                )?;
                versions.insert(
                    version_key(tenant, name, version.version),
                    serde_json::to_vec(&version).map_err(abort)?,
                )?;
                Ok(version)
            })
            .map_err(transaction_error)
            .inspect(|_| self.plugins_changed())
    }

    pub(super) fn plugin_head(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<PluginHead>, StoreError> {
        codec::get(&self.plugin_heads, &codec::tenant_key(tenant, name))
    }

    /// The tenant's plugin names after `after`, in name order.
    pub(super) fn plugin_heads_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<PluginHead>, bool), StoreError> {
        codec::page(
            &self.plugin_heads,
            &codec::tenant_prefix(tenant),
            after,
            limit,
        )
    }

    /// Every version of `name`, oldest first.
    pub(super) fn plugin_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, StoreError> {
        self.plugins
            .scan_prefix(name_prefix(tenant, name))
            .values()
            .map(|value| codec::decode(&value?))
            .collect()
    }

    pub(super) fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<PluginVersion>, StoreError> {
        codec::get(&self.plugins, &version_key(tenant, name, version))
    }

    /// The highest existing version of `name`: what an attachment without a pinned version
    /// runs. `None` when the tenant has no plugin of that name.
    pub(super) fn latest_plugin_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<PluginVersion>, StoreError> {
        self.plugins
            .scan_prefix(name_prefix(tenant, name))
            .values()
            .next_back()
            .transpose()?
            .map(|value| codec::decode(&value))
            .transpose()
    }

    /// Removes one version. The caller deletes the whole name instead when this is its
    /// last version (see the module invariant).
    pub(super) fn delete_plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<PluginVersion>, StoreError> {
        let removed = self.plugins.remove(version_key(tenant, name, version))?;
        self.plugins_changed();
        removed.map(|value| codec::decode(&value)).transpose()
    }

    /// Removes a plugin name with all its versions and secrets, in one transaction. Returns
    /// the removed versions (empty when the name did not exist).
    pub(super) fn delete_plugin(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginVersion>, StoreError> {
        let prefix = name_prefix(tenant, name);
        let removed = self.plugin_versions(tenant, name)?;
        let version_keys: Vec<sled::IVec> = self
            .plugins
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()?;
        let secret_keys: Vec<sled::IVec> = self
            .plugin_secrets
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()?;
        let head_key = codec::tenant_key(tenant, name);
        (&self.plugin_heads, &self.plugins, &self.plugin_secrets)
            .transaction(|(heads, versions, secrets)| {
                heads.remove(head_key.as_slice())?;
                for key in &version_keys {
                    versions.remove(key)?;
                }
                for key in &secret_keys {
                    secrets.remove(key)?;
                }
                Ok(())
            })
            .map_err(transaction_error)?;
        self.plugins_changed();
        Ok(removed)
    }

    /// Writes a plugin name as given (see `Catalog::restore_plugin`): what the name had
    /// goes, then the secrets (sealed here), versions and head as one transaction.
    pub(super) fn restore_plugin(
        &self,
        tenant: &str,
        head: &PluginHead,
        versions: &[PluginVersion],
        secrets: &[PluginSecret],
    ) -> Result<(), StoreError> {
        self.delete_plugin(tenant, &head.name)?;
        let sealed: Vec<PluginSecret> = secrets
            .iter()
            .map(|secret| PluginSecret {
                value: self.master_key.seal(&secret.value),
                ..secret.clone()
            })
            .collect();
        let head_key = codec::tenant_key(tenant, &head.name);
        (&self.plugin_heads, &self.plugins, &self.plugin_secrets)
            .transaction(|(heads, stored_versions, stored_secrets)| {
                for secret in &sealed {
                    stored_secrets.insert(
                        secret_key(tenant, &head.name, &secret.key),
                        serde_json::to_vec(secret).map_err(abort)?,
                    )?;
                }
                for version in versions {
                    stored_versions.insert(
                        version_key(tenant, &head.name, version.version),
                        serde_json::to_vec(version).map_err(abort)?,
                    )?;
                }
                heads.insert(
                    head_key.as_slice(),
                    serde_json::to_vec(head).map_err(abort)?,
                )?;
                Ok(())
            })
            .map_err(transaction_error)?;
        self.plugins_changed();
        Ok(())
    }

    /// Removes every plugin record of a tenant (when the tenant is deleted). Returns the
    /// digests those records used, for the caller to release from the runtime.
    pub(super) fn delete_tenant_plugins(
        &self,
        tenant: &str,
    ) -> Result<BTreeSet<String>, StoreError> {
        let prefix = codec::tenant_prefix(tenant);
        let mut digests = BTreeSet::new();
        for value in self.plugins.scan_prefix(&prefix).values() {
            digests.insert(codec::decode::<PluginVersion>(&value?)?.sha256);
        }
        for tree in [&self.plugin_heads, &self.plugins, &self.plugin_secrets] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        self.plugins_changed();
        Ok(digests)
    }

    /// How many plugin versions (all names together) the tenant stores.
    pub(super) fn count_plugin_versions(&self, tenant: &str) -> usize {
        self.plugins
            .scan_prefix(codec::tenant_prefix(tenant))
            .keys()
            .count()
    }

    /// Every digest some version of some tenant uses: what the runtime loads at startup.
    pub(super) fn all_plugin_digests(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut digests = BTreeSet::new();
        for value in self.plugins.iter().values() {
            digests.insert(codec::decode::<PluginVersion>(&value?)?.sha256);
        }
        Ok(digests)
    }

    /// Whether any version of any tenant still uses this digest. Identical uploads share one
    /// compiled artifact, so it may only leave the cache when this is false. A full scan:
    /// it runs only on deletes, and plugin versions number in the hundreds, not millions.
    pub(super) fn plugin_digest_in_use(&self, sha256: &str) -> Result<bool, StoreError> {
        for value in self.plugins.iter().values() {
            if codec::decode::<PluginVersion>(&value?)?.sha256 == sha256 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores (or replaces) a secret, sealing the value. Returns the record and whether it
    /// was created.
    pub(super) fn put_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
        value: &str,
        now: EpochMillis,
    ) -> Result<(PluginSecret, bool), StoreError> {
        let db_key = secret_key(tenant, name, key);
        let created_at =
            codec::get::<PluginSecret>(&self.plugin_secrets, &db_key)?.map(|s| s.created_at);
        let secret = PluginSecret {
            key: key.to_string(),
            value: self.master_key.seal(value),
            created_at: created_at.unwrap_or(now),
            updated_at: now,
        };
        self.plugin_secrets
            .insert(db_key, codec::encode(&secret)?)?;
        self.plugins_changed();
        Ok((secret, created_at.is_none()))
    }

    /// The record of a secret; its `value` stays sealed.
    pub(super) fn plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<PluginSecret>, StoreError> {
        codec::get(&self.plugin_secrets, &secret_key(tenant, name, key))
    }

    /// The plaintext of every secret of plugin `name` of `tenant`: the one place a plugin
    /// secret is opened.
    pub(super) fn plugin_secret_values(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut values = BTreeMap::new();
        for value in self
            .plugin_secrets
            .scan_prefix(name_prefix(tenant, name))
            .values()
        {
            let secret: PluginSecret = codec::decode(&value?)?;
            let plaintext = self
                .master_key
                .open(&secret.value)
                .map_err(|e| StoreError::Secret(e.to_string()))?;
            values.insert(secret.key, plaintext);
        }
        Ok(values)
    }

    pub(super) fn plugin_secrets_page(
        &self,
        tenant: &str,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<PluginSecret>, bool), StoreError> {
        codec::page(
            &self.plugin_secrets,
            &name_prefix(tenant, name),
            after,
            limit,
        )
    }

    pub(super) fn delete_plugin_secret(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let removed = self
            .plugin_secrets
            .remove(secret_key(tenant, name, key))?
            .is_some();
        self.plugins_changed();
        Ok(removed)
    }
}
