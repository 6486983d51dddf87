//! Ownership: exactly one worker runs a webhook at a time. A worker starts only with a
//! [`Lease`] on its webhook and stops as soon as the lease is lost; the embedded backend
//! hands out leases within one process, a replicated one across nodes (renewed, expiring,
//! and fenced: a holder that lost its lease cannot write the webhook's delivery state).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::{sync::watch, time::Instant};

use super::{StorageResult, WebhookRef};

#[async_trait]
pub trait Ownership: Send + Sync + 'static {
    /// Claims `webhook` for this node: waits while a worker of this node still holds it
    /// (one that is stopping), and returns `None` when another node holds it (its owner
    /// runs it; this node is told when that changes).
    async fn claim(&self, webhook: &WebhookRef) -> StorageResult<Option<Lease>>;

    /// Moves whenever this node may have gained webhooks it could not claim before (a
    /// replicated backend's shards moved): the dispatcher then claims again. A backend
    /// that owns everything from the start never moves it.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The right to run one webhook's worker, released when dropped.
pub struct Lease {
    webhook: WebhookRef,
    fence: u64,
    lost: watch::Receiver<bool>,
    /// Until when the grantor last renewed it, for a lease that others may take over once
    /// its holder stops renewing (`None`: it never expires).
    valid_until: Option<ValidUntil>,
    _release: Box<dyn Send + Sync>,
}

/// The end of a renewable lease's validity, moved forward by its grantor on each renewal
/// (one for every lease of a node).
pub type ValidUntil = Arc<Mutex<Instant>>;

impl Lease {
    /// A lease on `webhook` with fencing token `fence` (grows with every grant of the
    /// webhook), lost when `lost` turns true, and given back by dropping `release`.
    pub fn new(
        webhook: WebhookRef,
        fence: u64,
        lost: watch::Receiver<bool>,
        release: impl Send + Sync + 'static,
    ) -> Lease {
        Lease {
            webhook,
            fence,
            lost,
            valid_until: None,
            _release: Box::new(release),
        }
    }

    /// The lease is valid only until `valid_until` unless renewed: a holder that could not
    /// renew it (hung, paused, cut off) treats it as lost before anyone may take it over.
    pub fn expiring(mut self, valid_until: ValidUntil) -> Lease {
        self.valid_until = Some(valid_until);
        self
    }

    pub fn webhook(&self) -> &WebhookRef {
        &self.webhook
    }

    /// Later grants of the same webhook carry larger tokens.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Lost, or not renewed in time: the holder must act on it no more (check before
    /// each send, since a paused process learns of a takeover only later).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.is_lapsed()
    }

    /// Not renewed in time (the grantor could not reach its store), though nobody is
    /// known to have taken it: the holder may get it again once renewal resumes.
    pub fn is_lapsed(&self) -> bool {
        self.valid_until
            .as_ref()
            .is_some_and(|until| Instant::now() >= *until.lock().expect("validity"))
    }

    /// Resolves once the lease is lost (expired, taken over); never for a lease that is
    /// not, so a worker can `select!` on it.
    pub async fn lost(&mut self) {
        if self.lost.wait_for(|lost| *lost).await.is_err() {
            // The grantor is gone without revoking: the lease can no longer be lost.
            std::future::pending::<()>().await;
        }
    }
}
