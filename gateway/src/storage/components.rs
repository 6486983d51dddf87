//! Where plugin components (the `.wasm` bytes tenants upload) are kept for every node.
//!
//! The embedded backend has none: its plugin runtime's cache directory in `data_dir` is
//! the one place they live. In a cluster a node's `data_dir` holds only caches, so the
//! bytes go to a store every node reads: an upload puts them there before its version is
//! recorded, and a node that meets a version whose bytes it lacks fetches and compiles
//! them once (`pipeline::load`).

use async_trait::async_trait;
use bytes::Bytes;

use super::StorageResult;

#[async_trait]
pub trait ComponentStore: Send + Sync + 'static {
    /// Stores `wasm` under its digest; durable when it returns.
    async fn put(&self, sha256: &str, wasm: Bytes) -> StorageResult<()>;
    /// The bytes stored under `sha256`, if any.
    async fn get(&self, sha256: &str) -> StorageResult<Option<Bytes>>;
    /// Removes the bytes of `sha256` (no version of any tenant uses them); removing what
    /// is not there is not an error.
    async fn delete(&self, sha256: &str) -> StorageResult<()>;
}
