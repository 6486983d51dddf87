//! The event log: per tenant, events in the order they were accepted, numbered by a seq
//! that grows with every event and is never reused (the embedded backend counts 1, 2, 3…
//! per tenant; a backend whose numbering is shared by tenants leaves gaps, so callers must
//! not count events by subtracting seqs), readable by seq, by id and by type and publish
//! time, and trimmed by retention. The durable events of a tenant are always a prefix of
//! its seqs: no event becomes readable before one with a smaller seq.
//!
//! Durability: [`append`](EventLog::append) returns once its events are durable (the
//! embedded backend: `fdatasync`ed; a replicated one: stored at its replication factor);
//! readers never see past the durable watermark ([`durable_seq`](EventLog::durable_seq)),
//! so nothing is delivered that a crash could take back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::StorageResult;
use crate::iso::EpochMillis;

/// One event as stored in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub published_at: EpochMillis,
    pub received_at: EpochMillis,
    pub payload: Box<RawValue>,
}

/// An event the API validated and wants appended.
pub struct NewEvent {
    /// The client's id (idempotency key); without one the log generates an id.
    pub id: Option<String>,
    pub event_type: String,
    pub published_at: EpochMillis,
    pub received_at: EpochMillis,
    pub payload: Box<RawValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: String,
    pub seq: u64,
    /// True when the id was already in the log: nothing was written.
    pub duplicate: bool,
}

/// A page of a time-ordered listing and where the next page starts.
pub struct TimePage {
    pub events: Vec<(u64, StoredEvent)>,
    pub next: Option<String>,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events and returns once they are durable. An event whose client id is
    /// already in the log (for as long as retention keeps it, or earlier in the same
    /// batch) is reported as a duplicate with the first one's seq, not written.
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> StorageResult<Vec<Appended>>;

    /// The highest seq of `tenant` that is durable (0: none).
    async fn durable_seq(&self, tenant: &str) -> StorageResult<u64>;

    /// The wake-up for readers of `tenant`: its value changes after new events of the
    /// tenant became durable (a backend may also move it for other tenants' events; the
    /// embedded one does, where a look costs a lock, not a network request).
    fn subscribe(&self, tenant: &str) -> watch::Receiver<u64>;

    /// Durable events with seq > `after`, in order, at most `limit`.
    async fn read_after(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>>;

    /// `None` when there is no such durable event (or retention removed it).
    async fn event_by_seq(&self, tenant: &str, seq: u64) -> StorageResult<Option<StoredEvent>>;

    async fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> StorageResult<Option<(u64, StoredEvent)>>;

    /// Events of one type published in `[from, to]`, oldest first (by publish time, then
    /// seq). `after` is the opaque `next` of the previous page.
    async fn by_time(
        &self,
        tenant: &str,
        event_type: &str,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<TimePage>;

    /// Retention: the oldest events of a tenant received before `cutoff`, about `limit`
    /// of them (a backend may return whole groups of events it removes together).
    async fn oldest_before(
        &self,
        tenant: &str,
        cutoff: EpochMillis,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>>;

    /// Retention: removes `events`, as [`oldest_before`](Self::oldest_before) returned them.
    async fn remove(&self, tenant: &str, events: &[(u64, StoredEvent)]) -> StorageResult<()>;

    /// Retention: frees the space of everything removed that was received before
    /// `cutoff`; returns how many storage units (segment files...) went.
    async fn compact(&self, cutoff: EpochMillis) -> StorageResult<usize>;

    /// Forgets every event of `tenant` (it was deleted), durably.
    async fn forget_tenant(&self, tenant: &str) -> StorageResult<()>;

    /// The backend's own figures for `/metrics`, in Prometheus text format.
    fn render_metrics(&self, out: &mut String);

    /// Stops accepting appends and makes everything durable (graceful shutdown).
    fn close(&self);
}
