//! The delivery engine: turns the event log into deliveries to each webhook's destination.
//!
//! `Dispatcher` keeps one `worker::Worker` task per running webhook it holds a lease on
//! (`storage::Ownership`) and is told by the API, through `DeliveryControl`, when a webhook
//! changes. Modules: `worker` (the delivery core: cursor, selection, plugins, limits,
//! outcome records, statistics, lifecycle; its per-event and batched flows), `sink` (where
//! deliveries go: `http`, `s3`), `batcher` (file assembly for batched sinks; pure),
//! `policy` (classification, schedule, Retry-After; pure), `envelope` (the default body;
//! pure), `selection` (which events a webhook takes), `records` (what is stored),
//! `ledger` (start position, recover, rejected removal), `lifecycle` (integration log,
//! status changes), `retention` (purging old data).
//!
//! Workers, their attempts and the HTTP client's connections run on a tokio runtime of
//! their own (`Dispatcher::new`, given it by `main.rs`), apart from the one serving the
//! API. Sharing one, an attempt's every hop (task, connection, back to the worker) waited
//! in the run queue behind dozens of busy ingest connections, and with `max_in_flight`
//! requests per webhook that wait bounded one webhook's deliveries/s. On their own
//! threads the OS scheduler shares the CPU between ingest and delivery instead
//! (docs/PERFORMANCE.md, session 5).

pub mod batcher;
pub mod envelope;
pub mod ledger;
pub mod lifecycle;
pub mod policy;
pub mod records;
pub mod retention;
pub mod selection;
pub mod sink;
mod worker;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::{
    runtime::Handle,
    sync::{broadcast, mpsc, oneshot},
    task::JoinHandle,
};

pub use worker::Control;

use crate::{
    context::EngineContext,
    model::webhook::{Webhook, WebhookStatus},
    storage::{Ownership, StorageResult, WebhookRef},
};
use records::Attempt;

struct Running {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
    /// Its destination takes files (the batched flow), not single events.
    batched: bool,
}

type WorkerKey = (String, String);

/// The first wait before a worker that failed on storage starts again, and the longest.
const RESTART_FIRST_WAIT: Duration = Duration::from_millis(500);
const RESTART_MAX_WAIT: Duration = Duration::from_secs(30);

/// What the API asks of the delivery core about running webhooks. The local
/// implementation is the [`Dispatcher`]; in a cluster the request travels to the node
/// that owns the webhook.
#[async_trait]
pub trait DeliveryControl: Send + Sync + 'static {
    /// The webhook's stored configuration or status changed: its worker reloads, starts or
    /// stops to match.
    async fn webhook_changed(&self, tenant: &str, id: &str);
    /// Stops the webhook's worker and returns once its in-flight attempts are recorded
    /// (before its delivery state is removed).
    async fn stop_and_wait(&self, tenant: &str, id: &str);
    /// Retries were scheduled for the webhook by someone else (recover): look again.
    async fn wake(&self, tenant: &str, id: &str);
    /// Sends one stored message of the webhook now; returns the recorded attempt.
    async fn send_now(
        &self,
        tenant: &str,
        webhook: &Webhook,
        seq: u64,
    ) -> Result<Attempt, SendError>;
    /// Trigger Now (CloudBlue): sends a `hookgate.test` event through the webhook as it
    /// is configured (plugins, signature, statistics); returns the recorded attempt.
    async fn trigger(&self, tenant: &str, webhook: &Webhook) -> Result<Attempt, SendError>;
    /// How many webhooks have a live worker on this node.
    fn workers_here(&self) -> usize;
}

/// Runs the workers of this process: one per running webhook it holds a lease on.
pub struct Dispatcher {
    /// Itself, for the tasks that restart workers.
    me: Weak<Dispatcher>,
    ctx: Arc<EngineContext>,
    ownership: Arc<dyn Ownership>,
    workers: Mutex<HashMap<WorkerKey, Running>>,
    /// Per webhook, serializes starting, reloading and stopping its worker, each reading
    /// the catalog under it: a start that read the configuration before a change, and
    /// the change's reload that found no worker yet, would otherwise leave a worker
    /// with the old configuration (and the reload waiting for its lease).
    serial: Mutex<HashMap<WorkerKey, Arc<tokio::sync::Mutex<()>>>>,
    /// The runtime workers run on (see the module's note).
    runtime: Handle,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    /// The node that runs the webhook cannot be reached now; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl Dispatcher {
    /// A dispatcher whose workers will run on `runtime`, each under a lease of `ownership`.
    pub fn new(
        ctx: Arc<EngineContext>,
        ownership: Arc<dyn Ownership>,
        runtime: Handle,
    ) -> Arc<Dispatcher> {
        Arc::new_cyclic(|me| Dispatcher {
            me: me.clone(),
            ctx,
            ownership,
            workers: Mutex::default(),
            serial: Mutex::default(),
            runtime,
        })
    }

    /// Starts a worker for every running webhook and the background tasks.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        self.start_unclaimed().await?;
        self.follow_ownership();
        self.follow_webhook_writes();
        self.runtime.spawn(retention::run(self.ctx.clone()));
        Ok(())
    }

    /// Follows the ownership: when this node gains webhooks (a replicated backend's
    /// shards moved to it), starts the running ones it has no worker for. Runs until the
    /// dispatcher is dropped.
    fn follow_ownership(self: &Arc<Self>) {
        let mut changes = self.ownership.changes();
        let dispatcher = Arc::downgrade(self);
        self.runtime.spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(dispatcher) = dispatcher.upgrade() else {
                    return;
                };
                if let Err(error) = dispatcher.start_unclaimed().await {
                    tracing::error!(%error, "cannot start the webhooks this node gained");
                }
            }
        });
    }

    /// Follows the webhooks other processes write (a cluster's catalog; see
    /// `Catalog::webhook_writes`): starts those this node should run and does not. The
    /// API's changes reach the node running a webhook by `DeliveryControl`; this is how
    /// webhooks written without it (`hookgate migrate`) start, and a safety net for a
    /// change whose notice was lost.
    fn follow_webhook_writes(self: &Arc<Self>) {
        let Some(mut writes) = self.ctx.catalog.webhook_writes() else {
            return;
        };
        let dispatcher = Arc::downgrade(self);
        self.runtime.spawn(async move {
            loop {
                let written = writes.recv().await;
                let Some(dispatcher) = dispatcher.upgrade() else {
                    return;
                };
                match written {
                    // Its own task: a claim may wait for a stopping worker's lease.
                    Ok((tenant, id)) => {
                        tokio::spawn(async move {
                            if let Err(error) = dispatcher.start_written(&tenant, &id).await {
                                tracing::warn!(%tenant, webhook = %id, %error, "cannot start a webhook written elsewhere");
                            }
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "missed webhook writes; looking at every webhook");
                        if let Err(error) = dispatcher.start_unclaimed().await {
                            tracing::error!(%error, "cannot start the webhooks written elsewhere");
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Starts a webhook another process wrote if it is running, has no worker here, and
    /// has its delivery state: a webhook being created has none until its creator wrote
    /// its start position, and the creator then tells the node that should run it.
    async fn start_written(&self, tenant: &str, id: &str) -> StorageResult<()> {
        if self.running(tenant, id).is_some() {
            return Ok(());
        }
        if self
            .ctx
            .deliveries
            .cursor(&WebhookRef::new(tenant, id))
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.start_if_running(tenant, id, 0).await
    }

    /// Starts a worker for every running webhook that has none here.
    async fn start_unclaimed(&self) -> anyhow::Result<()> {
        let catalog = &self.ctx.catalog;
        for tenant in catalog.tenants_page(None, usize::MAX).await?.0 {
            for webhook in catalog.all_webhooks_of(&tenant.id).await? {
                if webhook.status == WebhookStatus::Running
                    && self.running(&tenant.id, &webhook.id).is_none()
                {
                    self.start_if_running(&tenant.id, &webhook.id, 0).await?;
                }
            }
        }
        Ok(())
    }

    /// Stops the webhook's worker and waits for it, under its `serial` lock.
    async fn stop_locked(&self, tenant: &str, id: &str) {
        let running = self
            .workers
            .lock()
            .expect("workers")
            .remove(&(tenant.to_string(), id.to_string()));
        if let Some(running) = running {
            let _ = running.control.send(Control::Stop);
            let _ = running.task.await;
        }
    }

    fn serial(&self, tenant: &str, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut serial = self.serial.lock().expect("serial");
        serial
            .entry((tenant.to_string(), id.to_string()))
            .or_default()
            .clone()
    }

    /// Starts the webhook's worker if it is running (as the catalog says now) and has
    /// none here. `failures`: see `spawn_locked`.
    async fn start_if_running(&self, tenant: &str, id: &str, failures: u32) -> StorageResult<()> {
        let serial = self.serial(tenant, id);
        let _serial = serial.lock().await;
        if self.running(tenant, id).is_some() {
            return Ok(());
        }
        if let Some(webhook) = self.ctx.catalog.webhook(tenant, id).await?
            && webhook.status == WebhookStatus::Running
        {
            self.spawn_locked(tenant, Arc::new(webhook), failures).await;
        }
        Ok(())
    }

    /// Starts a worker, under the webhook's `serial` lock; its predecessors failed on
    /// storage `failures` times in a row (each failure waits twice as long before the
    /// next start, see `restart_later`).
    async fn spawn_locked(&self, tenant: &str, webhook: Arc<Webhook>, failures: u32) {
        let key = (tenant.to_string(), webhook.id.clone());
        let lease = match self
            .ownership
            .claim(&WebhookRef::new(tenant, &webhook.id))
            .await
        {
            Ok(Some(lease)) => lease,
            Ok(None) => return, // another node runs it
            Err(error) => {
                tracing::error!(tenant, webhook = %key.1, %error, "cannot claim the webhook");
                return;
            }
        };
        let (control, receiver) = mpsc::unbounded_channel();
        let batched = sink::is_batched(&webhook);
        let me = self.me.clone();
        let task =
            worker::Worker::new(self.ctx.clone(), tenant.to_string(), webhook).map(|worker| {
                let key = key.clone();
                self.runtime.spawn(async move {
                    let started = Instant::now();
                    let exit = worker.run(receiver, lease).await;
                    if let (worker::Exit::StorageFailed, Some(me)) = (exit, me.upgrade()) {
                        // A worker that ran a while before failing starts the count over.
                        let failures = match started.elapsed() > RESTART_MAX_WAIT {
                            true => 0,
                            false => failures + 1,
                        };
                        me.restart_later(key, failures);
                    }
                })
            });
        match task {
            Ok(task) => {
                let running = Running {
                    control,
                    task,
                    batched,
                };
                self.workers.lock().expect("workers").insert(key, running);
            }
            Err(error) => {
                tracing::error!(tenant, webhook = %key.1, %error, "cannot start delivery")
            }
        }
    }

    /// Starts a worker that stopped on a storage failure again, after a wait that doubles
    /// with each failure in a row: the store may be back by then (a cluster that regained
    /// quorum), and a store that is not is not asked by every webhook at once.
    fn restart_later(&self, (tenant, id): WorkerKey, failures: u32) {
        let wait = RESTART_FIRST_WAIT
            .saturating_mul(1 << failures.min(8))
            .min(RESTART_MAX_WAIT);
        tracing::warn!(%tenant, webhook = %id, ?wait, "delivery stopped on a storage failure; starting it again after a wait");
        let me = self.me.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(me) = me.upgrade() else { return };
            if me.start_if_running(&tenant, &id, failures).await.is_err() {
                me.restart_later((tenant, id), failures + 1);
            }
        });
    }

    fn control(&self, tenant: &str, id: &str) -> Option<mpsc::UnboundedSender<Control>> {
        self.running(tenant, id).map(|(control, _)| control)
    }

    /// The control channel of a live worker, and whether its flow is the batched one.
    fn running(&self, tenant: &str, id: &str) -> Option<(mpsc::UnboundedSender<Control>, bool)> {
        let workers = self.workers.lock().expect("workers");
        workers
            .get(&(tenant.to_string(), id.to_string()))
            .filter(|r| !r.task.is_finished())
            .map(|r| (r.control.clone(), r.batched))
    }

    /// Stops every worker (graceful shutdown): in-flight attempts are recorded first.
    pub async fn shutdown(&self) {
        let running: Vec<_> = self.workers.lock().expect("workers").drain().collect();
        for (_, running) in &running {
            let _ = running.control.send(Control::Stop);
        }
        for (_, running) in running {
            let _ = running.task.await;
        }
    }
}

#[async_trait]
impl DeliveryControl for Dispatcher {
    async fn webhook_changed(&self, tenant: &str, id: &str) {
        let serial = self.serial(tenant, id);
        let _serial = serial.lock().await;
        let stored = self.ctx.catalog.webhook(tenant, id).await.ok().flatten();
        match stored {
            Some(webhook) if webhook.status == WebhookStatus::Running => {
                let batched = sink::is_batched(&webhook);
                let webhook = Arc::new(webhook);
                match self.running(tenant, id) {
                    // A destination of the same shape: the worker reloads in place.
                    Some((control, running_batched)) if running_batched == batched => {
                        let (done, reloaded) = oneshot::channel();
                        if control.send(Control::Reload(webhook, done)).is_ok() {
                            // An event ingested after this call returns must see the
                            // change (a worker that stops meanwhile answers nothing).
                            let _ = reloaded.await;
                        }
                    }
                    _ => {
                        self.stop_locked(tenant, id).await;
                        self.spawn_locked(tenant, webhook, 0).await;
                    }
                }
            }
            _ => self.stop_locked(tenant, id).await,
        }
    }

    async fn stop_and_wait(&self, tenant: &str, id: &str) {
        let serial = self.serial(tenant, id);
        let _serial = serial.lock().await;
        self.stop_locked(tenant, id).await
    }

    async fn wake(&self, tenant: &str, id: &str) {
        if let Some(control) = self.control(tenant, id) {
            let _ = control.send(Control::Wake);
        }
    }

    fn workers_here(&self) -> usize {
        let workers = self.workers.lock().expect("workers");
        workers.values().filter(|r| !r.task.is_finished()).count()
    }

    async fn send_now(
        &self,
        tenant: &str,
        webhook: &Webhook,
        seq: u64,
    ) -> Result<Attempt, SendError> {
        let webhook_ref = WebhookRef::new(tenant, &webhook.id);
        if self
            .ctx
            .deliveries
            .delivery(&webhook_ref, seq)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?
            .is_none()
        {
            return Err(SendError::NotFound(format!(
                "webhook `{}` has no message for this event",
                webhook.id
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.to_worker(tenant, webhook, Control::SendNow { seq, reply })
            .await?;
        answered(answer).await
    }

    async fn trigger(&self, tenant: &str, webhook: &Webhook) -> Result<Attempt, SendError> {
        let (reply, answer) = oneshot::channel();
        self.to_worker(tenant, webhook, Control::Trigger { reply })
            .await?;
        answered(answer).await
    }
}

impl Dispatcher {
    /// Hands `message` to the webhook's worker. A stopped webhook gets a short-lived worker
    /// for it (under a lease like any worker), so one code path records outcomes.
    async fn to_worker(
        &self,
        tenant: &str,
        webhook: &Webhook,
        message: Control,
    ) -> Result<(), SendError> {
        if let Some(control) = self.control(tenant, &webhook.id) {
            return control
                .send(message)
                .map_err(|_| SendError::Failed("the webhook is stopping".into()));
        }
        let worker = worker::Worker::new(
            self.ctx.clone(),
            tenant.to_string(),
            Arc::new(webhook.clone()),
        )
        .map_err(SendError::Failed)?;
        let lease = self
            .ownership
            .claim(&WebhookRef::new(tenant, &webhook.id))
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?
            .ok_or_else(|| SendError::Failed("another node runs this webhook".into()))?;
        let (control, receiver) = mpsc::unbounded_channel();
        control.send(message).expect("receiver alive");
        control.send(Control::Stop).expect("receiver alive");
        self.runtime.spawn(worker.run_once(receiver, lease));
        Ok(())
    }
}

/// The attempt a worker answered with.
async fn answered(
    answer: oneshot::Receiver<Result<Attempt, String>>,
) -> Result<Attempt, SendError> {
    answer
        .await
        .map_err(|_| SendError::Failed("the attempt was interrupted".into()))?
        .map_err(SendError::Failed)
}
