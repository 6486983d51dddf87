//! Export to object storage: webhooks whose `destination` is `s3` receive their events as
//! NDJSON files in an S3-compatible bucket instead of HTTP calls (NewStore's S3
//! integrations). Which events a webhook takes is `delivery::selection`, shared with HTTP.
//!
//! Modules: `batcher` (file assembly and rotation; pure), `uploader` (the object_store S3
//! client and one file's upload), `worker` (cursor, retries and records of one webhook). The
//! delivery `Dispatcher` starts an export worker instead of an HTTP worker for these
//! webhooks and talks to it with the same `Control` messages.

pub mod batcher;
pub mod uploader;
mod worker;

use std::sync::Arc;

use tokio::{sync::mpsc, task::JoinHandle};

pub use worker::ExportError;

use crate::{context::EngineContext, delivery::Control, model::webhook::Webhook, storage::Lease};

/// Starts the export worker of a running s3 webhook.
pub fn spawn(
    ctx: Arc<EngineContext>,
    tenant: String,
    webhook: Arc<Webhook>,
    control: mpsc::UnboundedReceiver<Control>,
    lease: Lease,
) -> Result<JoinHandle<()>, ExportError> {
    let worker = worker::ExportWorker::new(ctx, tenant, webhook)?;
    Ok(tokio::spawn(worker.run(control, lease)))
}
