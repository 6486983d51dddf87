//! `LocalOwnership`: leases within one process. One node owns everything, so a claim only
//! waits for a stopping worker of the same webhook to let go; leases are never lost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use crate::storage::{Lease, Ownership, StorageResult, WebhookRef};

pub struct LocalOwnership {
    shared: Arc<Shared>,
    /// One node owns everything from the start: this never moves.
    changes: watch::Sender<u64>,
}

impl Default for LocalOwnership {
    fn default() -> Self {
        LocalOwnership {
            shared: Arc::default(),
            changes: watch::channel(0).0,
        }
    }
}

#[derive(Default)]
struct Shared {
    /// The webhooks leased now, with the token of their current lease.
    held: Mutex<HashMap<WebhookRef, u64>>,
    next_fence: Mutex<u64>,
    released: Notify,
}

/// Gives the lease back when dropped.
struct Release {
    shared: Arc<Shared>,
    webhook: WebhookRef,
    /// Keeps the `lost` channel open: a local lease is never lost.
    _never_lost: watch::Sender<bool>,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.shared
            .held
            .lock()
            .expect("leases")
            .remove(&self.webhook);
        self.shared.released.notify_waiters();
    }
}

#[async_trait]
impl Ownership for LocalOwnership {
    async fn claim(&self, webhook: &WebhookRef) -> StorageResult<Option<Lease>> {
        loop {
            // Registered before checking, so a release in between is not missed.
            let released = self.shared.released.notified();
            {
                let mut held = self.shared.held.lock().expect("leases");
                if !held.contains_key(webhook) {
                    let fence = {
                        let mut next = self.shared.next_fence.lock().expect("fence");
                        *next += 1;
                        *next
                    };
                    held.insert(webhook.clone(), fence);
                    let (never_lost, lost) = watch::channel(false);
                    let release = Release {
                        shared: self.shared.clone(),
                        webhook: webhook.clone(),
                        _never_lost: never_lost,
                    };
                    return Ok(Some(Lease::new(webhook.clone(), fence, lost, release)));
                }
            }
            released.await;
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
