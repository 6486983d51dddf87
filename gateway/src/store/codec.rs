//! Key and value encoding shared by the store modules.

use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

/// `tenant \0 rest`.
pub fn tenant_key(tenant: &str, rest: &str) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(rest.as_bytes());
    key
}

/// `tenant \0`: the prefix of every key of one tenant in a tenant-scoped tree.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 24);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// First byte of a value in the compact format. No JSON text starts with it.
const COMPACT: u8 = 0;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(value)?)
}

/// A record type stored in the compact format: those written on every delivery (a
/// `Delivery`, an `Attempt`), where a third of the JSON's size and a fraction of its CPU
/// matter because sled copies the node a key lands in on every insert.
///
/// Implement it only for types postcard reads back field for field; postcard is not
/// self-describing, so no `skip_serializing_if`, `flatten`, untagged enums or
/// `serde_json::Value`. A type that breaks this would lose data, not fail to compile.
pub trait CompactRecord: Serialize + DeserializeOwned {}

/// Encodes a [`CompactRecord`] as postcard behind a marker byte.
pub fn encode_compact<T: CompactRecord>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_extend(value, vec![COMPACT])?)
}

/// Reads either format.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&COMPACT, compact)) => Ok(postcard::from_bytes(compact)?),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

pub(crate) fn get<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    tree.get(key)?.map(|bytes| decode(&bytes)).transpose()
}

/// Values of a tenant-scoped tree whose key (after the prefix) follows `after`, in key
/// order, at most `limit`. Returns the items and the last key part for the next page.
pub(crate) fn page<T: DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, bool), StoreError> {
    let start = match after {
        Some(after) => {
            let mut k = prefix.to_vec();
            k.extend_from_slice(after.as_bytes());
            k.push(0); // strictly after `after`
            k
        }
        None => prefix.to_vec(),
    };
    let mut items = Vec::new();
    let mut iter = tree.range(start..);
    for entry in iter.by_ref() {
        let (key, value) = entry?;
        if !key.starts_with(prefix) {
            return Ok((items, true));
        }
        if items.len() == limit {
            return Ok((items, false));
        }
        items.push(decode(&value)?);
    }
    Ok((items, true))
}
