//! Sinks: where a webhook's deliveries go, and nothing else. A sink turns what the worker
//! hands it into I/O against one destination and reports what happened as an [`Attempt`];
//! the worker (`delivery::worker`) owns everything around it — cursor, selection,
//! plugins, limits, retries, records, statistics and lifecycle.
//!
//! Two shapes, because destinations take events in two ways:
//! - [`EventSink`]: one event per call (HTTP; SQS, AMQP, Kafka or NATS would be too). The
//!   worker runs up to `max_in_flight` calls at once and retries each event on its own.
//! - [`BatchSink`]: files of many events (S3). The worker assembles the files
//!   (`delivery::batcher`), sends one at a time in log order and retries the oldest.
//!
//! [`Sink::build`] is the one place that maps a webhook's destination to its sink: a new
//! destination is a module here plus an arm there (docs/ARCHITECTURE.md, "Add a
//! destination").

pub mod http;
pub mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hookgate_signing::DestinationPolicy;

use super::{
    batcher::{Naming, Rotation, Sealed},
    records::Attempt,
};
use crate::model::webhook::{Destination, Webhook};

/// One event to hand to an [`EventSink`].
pub struct Outgoing<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub tenant: &'a str,
    pub body: Bytes,
    /// Headers set for this event: by transforms, and by authenticate plugins.
    pub extra_headers: Vec<(String, String)>,
    /// For a POST signed with a JWT: what the token carries besides its own claims (the
    /// webhook's facts, `envelope::Trigger::claims`).
    pub claims: Option<serde_json::Value>,
}

/// What one call of a sink produced.
pub struct Sent {
    pub attempt: Attempt,
    /// `Retry-After` as the destination sent it.
    pub retry_after: Option<String>,
    /// Why the destination did not take it, in words for the integration log; `None` when
    /// it answered with success.
    pub failure: Option<String>,
}

/// The request an [`EventSink`] would send, before the gateway signs it: what
/// authenticate plugins see and sign.
pub struct Preview {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A destination that takes one event per call.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    fn preview(&self, outgoing: &Outgoing<'_>) -> Preview;
    async fn send(&self, webhook_id: &str, outgoing: Outgoing<'_>) -> Sent;
}

/// A destination that takes files of many events. Calls come one at a time.
#[async_trait]
pub trait BatchSink: Send + Sync + 'static {
    /// When a file is closed, and how files are named.
    fn layout(&self) -> (Rotation, Naming);
    /// Sends one file (the same key again when retried, so a retry after an unnoticed
    /// success overwrites rather than duplicates).
    async fn send(&self, webhook_id: &str, file: &Sealed) -> Sent;
}

/// A webhook's sink, in the shape its destination takes events.
#[derive(Clone)]
pub enum Sink {
    PerEvent(Arc<dyn EventSink>),
    Batched(Arc<dyn BatchSink>),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid webhook configuration: {0}")]
pub struct SinkError(pub String);

impl Sink {
    /// The sink of `webhook`'s destination, refusing private addresses unless `policy`
    /// allows them.
    pub fn build(
        tenant: &str,
        webhook: &Webhook,
        policy: DestinationPolicy,
    ) -> Result<Sink, SinkError> {
        Ok(match &webhook.spec.destination {
            Destination::Http(destination) => Sink::PerEvent(Arc::new(http::HttpSink::new(
                destination,
                webhook.spec.max_in_flight,
                policy,
            )?)),
            Destination::S3(s3) => Sink::Batched(Arc::new(s3::S3Sink::new(s3, tenant, policy)?)),
        })
    }
}

/// Whether a webhook's destination takes files: decided from its configuration alone, so
/// the dispatcher knows without building the sink.
pub fn is_batched(webhook: &Webhook) -> bool {
    matches!(webhook.spec.destination, Destination::S3(_))
}
