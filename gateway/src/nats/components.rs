//! [`NatsComponents`]: plugin components in the `HG_PLUGINS` Object Store, by sha256
//! (chunked, so a component may be larger than a NATS message).

use async_nats::jetstream::{
    self,
    object_store::{self, DeleteErrorKind, GetErrorKind, ObjectStore},
};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{Nats, unavailable};
use crate::storage::{ComponentStore, StorageResult};

pub const PLUGINS_BUCKET: &str = "HG_PLUGINS";

pub struct NatsComponents {
    store: ObjectStore,
}

impl NatsComponents {
    pub async fn open(nats: &Nats) -> StorageResult<NatsComponents> {
        let store = match nats.jetstream.get_object_store(PLUGINS_BUCKET).await {
            Ok(store) => store,
            Err(_) => nats
                .jetstream
                .create_object_store(object_store::Config {
                    bucket: PLUGINS_BUCKET.into(),
                    description: Some("Hookgate plugin components by sha256".into()),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: nats.replicas,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?,
        };
        Ok(NatsComponents { store })
    }
}

#[async_trait]
impl ComponentStore for NatsComponents {
    async fn put(&self, sha256: &str, wasm: Bytes) -> StorageResult<()> {
        let mut reader = wasm.as_ref();
        self.store
            .put(sha256, &mut reader)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, sha256: &str) -> StorageResult<Option<Bytes>> {
        let mut object = match self.store.get(sha256).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let mut wasm = Vec::new();
        object.read_to_end(&mut wasm).await.map_err(unavailable)?;
        Ok(Some(wasm.into()))
    }

    async fn delete(&self, sha256: &str) -> StorageResult<()> {
        match self.store.delete(sha256).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
