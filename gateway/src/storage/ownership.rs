//! Ownership: exactly one worker runs a webhook at a time. A worker starts only with a
//! [`Lease`] on its webhook and stops as soon as the lease is lost; the embedded backend
//! hands out leases within one process, a replicated one across nodes (renewed, expiring,
//! and fenced: a holder that lost its lease cannot write the webhook's delivery state).

use async_trait::async_trait;
use tokio::sync::watch;

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
    _release: Box<dyn Send + Sync>,
}

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
            _release: Box::new(release),
        }
    }

    pub fn webhook(&self) -> &WebhookRef {
        &self.webhook
    }

    /// Later grants of the same webhook carry larger tokens.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
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
