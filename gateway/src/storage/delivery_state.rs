//! Delivery state: what each webhook has done with the events of its tenant's log.
//!
//! Per webhook: a cursor (every event with seq ≤ it is resolved or has a record), the
//! statistics, one `Delivery` record per event it took, the `Attempt`s of each, a retry
//! index ("due": pending records by the time their next attempt is due), the rejected list
//! and the integration log. Its one writer is the worker that runs the webhook (and, while
//! no worker runs it, the delivery core on behalf of the API); it writes a pass's changes
//! as one [`OutcomeSet`].

use std::collections::HashSet;

use async_trait::async_trait;

use super::StorageResult;
use crate::{
    delivery::records::{Attempt, Delivery, LogEntry, Stats},
    iso::EpochMillis,
};

/// The webhook whose state a call reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookRef {
    pub tenant: String,
    pub webhook: String,
}

impl WebhookRef {
    pub fn new(tenant: &str, webhook: &str) -> WebhookRef {
        WebhookRef {
            tenant: tenant.to_string(),
            webhook: webhook.to_string(),
        }
    }
}

/// A record written by an [`OutcomeSet`], with the due time it had before (its retry entry
/// goes when the new record is no longer due then).
#[derive(Debug, Clone)]
pub struct RecordChange {
    pub delivery: Delivery,
    pub replaces_due: Option<EpochMillis>,
}

/// The changes of one worker pass to one webhook's state. Within a set a later change to
/// the same record, attempt or rejected entry replaces an earlier one.
///
/// A set is one unit against a crash, in this sense: what a crash can leave is the whole
/// set, none of it, or (the embedded backend) a part whose every piece is safe: new
/// entries that point at records the crash lost (a retry entry, an attempt, a rejected
/// mark without its new record), or the new state with some of the entries it replaces
/// still there (an old retry entry, an old rejected mark). Stale retry entries are never
/// returned by [`DeliveryState::due`]. Never may a crash keep a record and lose its retry
/// entry, nor keep the removal of an entry and lose what replaced it.
///
/// The due index is derived, never written by hand: a record that is `Pending` with a
/// `next_attempt_at` is due then, and `replaces_due` names the entry it leaves.
#[derive(Debug, Default)]
pub struct OutcomeSet {
    pub records: Vec<RecordChange>,
    /// (seq, attempt number, attempt).
    pub attempts: Vec<(u64, u32, Attempt)>,
    /// (seq, in the list): `true` adds it to the rejected list, `false` takes it out.
    pub rejected: Vec<(u64, bool)>,
    pub log: Vec<LogEntry>,
    pub stats: Option<Stats>,
    pub cursor: Option<u64>,
    /// The fencing token of the writer's [`Lease`](super::Lease), when a worker writes: a
    /// backend whose leases span nodes refuses the whole set with
    /// [`StorageError::Fenced`](super::StorageError::Fenced) once that lease was replaced.
    /// `None` for what the API writes (start position, recover, the log), which no lease
    /// guards in either backend.
    pub fence: Option<u64>,
}

impl OutcomeSet {
    /// Writes `delivery`; `replaces_due` is the due time it was stored with, if any.
    pub fn record(&mut self, delivery: Delivery, replaces_due: Option<EpochMillis>) {
        self.records.push(RecordChange {
            delivery,
            replaces_due,
        });
    }

    pub fn attempt(&mut self, seq: u64, number: u32, attempt: Attempt) {
        self.attempts.push((seq, number, attempt));
    }

    pub fn reject(&mut self, seq: u64) {
        self.rejected.push((seq, true));
    }

    pub fn unreject(&mut self, seq: u64) {
        self.rejected.push((seq, false));
    }

    pub fn log(&mut self, entry: LogEntry) {
        self.log.push(entry);
    }

    pub fn stats(&mut self, stats: Stats) {
        self.stats = Some(stats);
    }

    pub fn cursor(&mut self, cursor: u64) {
        self.cursor = Some(cursor);
    }

    /// Written by the holder of the lease with this token (see [`Self::fence`]).
    pub fn fenced_by(&mut self, token: u64) {
        self.fence = Some(token);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.attempts.is_empty()
            && self.rejected.is_empty()
            && self.log.is_empty()
            && self.stats.is_none()
            && self.cursor.is_none()
    }
}

/// A page of the rejected list: seqs in order, and whether the list ends with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPage {
    pub seqs: Vec<u64>,
    pub done: bool,
}

/// Every webhook's delivery state.
///
/// Durability: [`apply`](Self::apply) returns once its changes are visible to every read
/// and become durable within a short bound (the embedded backend: a fraction of a second);
/// a crash inside that bound loses at most the newest sets, which re-delivers events (at
/// least once) but never loses one, because the cursor only passes events whose records
/// were applied first. [`sync`](Self::sync) waits until everything applied so far is
/// durable: callers that answer a client (the API) use it.
#[async_trait]
pub trait DeliveryState: Send + Sync + 'static {
    async fn apply(&self, webhook: &WebhookRef, outcomes: OutcomeSet) -> StorageResult<()>;

    /// Waits until everything applied so far is durable.
    async fn sync(&self) -> StorageResult<()>;

    /// `None` until the webhook first stores one.
    async fn cursor(&self, webhook: &WebhookRef) -> StorageResult<Option<u64>>;

    /// The defaults until the webhook first stores some.
    async fn stats(&self, webhook: &WebhookRef) -> StorageResult<Stats>;

    async fn delivery(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Option<Delivery>>;

    /// The attempts of one delivery, oldest first.
    async fn attempts(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Vec<Attempt>>;

    /// Which of `seqs` (ascending) have a record, in order. The worker asks this for each
    /// batch of events it reads: a backend answers it from those seqs alone, whatever
    /// else the webhook recorded.
    async fn recorded_among(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<Vec<u64>>;

    /// Up to `limit` records with seq > `after` (all when `None`), in seq order.
    async fn deliveries_after(
        &self,
        webhook: &WebhookRef,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>>;

    /// When the earliest pending retry is due, if any is.
    async fn earliest_due(&self, webhook: &WebhookRef) -> StorageResult<Option<EpochMillis>>;

    /// Up to `limit` records due by `now` (pending, `next_attempt_at ≤ now`), earliest
    /// first, leaving out the seqs in `exclude` (being sent).
    async fn due(
        &self,
        webhook: &WebhookRef,
        now: EpochMillis,
        limit: usize,
        exclude: &HashSet<u64>,
    ) -> StorageResult<Vec<Delivery>>;

    /// Up to `limit` seqs of the rejected list after `after`, in order.
    async fn rejected(
        &self,
        webhook: &WebhookRef,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<RejectedPage>;

    async fn is_rejected(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<bool>;

    /// The integration log, newest first; a backend keeps at least the newest
    /// `records::LOG_ENTRIES_KEPT`.
    async fn log_entries(&self, webhook: &WebhookRef) -> StorageResult<Vec<LogEntry>>;

    /// Retention: removes the records, attempts, retry and rejected entries of `seqs`.
    async fn purge(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<()>;

    /// Removes everything stored for the webhook (it was deleted).
    async fn forget(&self, webhook: &WebhookRef) -> StorageResult<()>;
}
