//! The per-tenant append-only event log.
//!
//! Event bodies live in append-only segment files (`segments`, records in `record`'s
//! binary layout); sled keeps only the indexes (`keys`): seq → where the record is, id →
//! seq, and type+time → seq. Ingest appends to an in-memory buffer (`wal`) and waits for
//! the group committer (`commit`), whose round writes the buffer, `fdatasync`s it, indexes
//! it and advances each tenant's *durable* watermark. Readers (webhook cursors, the API)
//! never see past that watermark, so nothing is delivered that a crash could take back.
//!
//! sled itself is flushed lazily by a second group committer (management writes wait on
//! it). After each of its flushes the log records a checkpoint: the segment position up to
//! which the index is durable. Opening the log re-indexes the segments from there, which
//! restores whatever index entries the crash took.

mod commit;
mod keys;
mod record;
mod segments;
mod wal;

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

pub use commit::{DurabilityError, GroupCommit};

use self::{
    segments::{Extent, Position, Segments},
    wal::{Prepared, Wal},
};
use crate::{iso::EpochMillis, store::StoreError};

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
    /// The client's id (idempotency key) or a generated one.
    pub id: String,
    pub client_supplied_id: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    #[error("event log file error: {0}")]
    Io(#[from] std::io::Error),
    #[error("event log record {0:?} is unreadable: {1}")]
    Record(Extent, record::RecordError),
    #[error("event log is inconsistent: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        LogError::Store(StoreError::Sled(e))
    }
}

/// The sled key of the checkpoint (outside every tenant's key space: tenant ids are
/// never empty, so no tenant key starts with `\0`).
const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";

/// How often the index is checkpointed while events arrive.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub struct EventLog {
    index: sled::Tree,
    segments: Arc<Segments>,
    wal: Arc<Wal>,
    /// Makes appended events durable (segment files).
    appends: Arc<GroupCommit>,
    /// Makes everything else in sled durable, and checkpoints the index.
    store: Arc<GroupCommit>,
    /// The last checkpoint known durable: segments before it are not needed to recover.
    checkpointed: Arc<Mutex<Position>>,
}

/// A page of a time-ordered listing and where the next page starts.
pub struct TimePage {
    pub events: Vec<(u64, StoredEvent)>,
    pub next: Option<String>,
}

impl EventLog {
    /// Opens the log in `dir`, re-indexing what the last run wrote after its checkpoint.
    pub fn open(db: &sled::Db, index: sled::Tree, dir: &Path) -> Result<EventLog, LogError> {
        let segments = Arc::new(Segments::open(dir)?);
        let next = recover(&segments, &index)?;
        db.flush()?;
        index.insert(CHECKPOINT_KEY, &next.encode())?;
        db.flush()?;

        let wal = Arc::new(Wal::new(index.clone(), next));
        let checkpointed = Arc::new(Mutex::new(next));
        let store = {
            let (db, index, wal, checkpointed) =
                (db.clone(), index.clone(), wal.clone(), checkpointed.clone());
            let mut pending_checkpoint: Option<Position> = None;
            GroupCommit::start(
                "hookgate-store-flusher",
                Box::new(move || {
                    let upto = wal.indexed_upto();
                    db.flush().map_err(|e| e.to_string())?;
                    // The checkpoint written by the previous round is durable now.
                    if let Some(done) = pending_checkpoint.take() {
                        *checkpointed.lock().expect("checkpointed") = done;
                    }
                    // Everything indexed before this flush is durable in sled, so recovery
                    // may start at `upto`; the key itself is durable after the next round.
                    index
                        .insert(CHECKPOINT_KEY, &upto.encode())
                        .map_err(|e| e.to_string())?;
                    pending_checkpoint = Some(upto);
                    Ok(())
                }),
            )
        };
        let appends = {
            let (wal, store) = (wal.clone(), store.clone());
            let mut writer = segments.writer();
            let mut last_checkpoint = Instant::now();
            GroupCommit::start(
                "hookgate-log-flusher",
                Box::new(move || {
                    wal.flush_round(&mut writer)?;
                    if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                        last_checkpoint = Instant::now();
                        store.request();
                    }
                    Ok(())
                }),
            )
        };
        Ok(EventLog {
            index,
            segments,
            wal,
            appends,
            store,
            checkpointed,
        })
    }

    /// The group committer of sled, for other writers (management API) that must be
    /// durable before they answer.
    pub fn commit(&self) -> &Arc<GroupCommit> {
        &self.store
    }

    /// The group committer of event appends (its metrics are the ingest flush figures).
    pub fn appends(&self) -> &Arc<GroupCommit> {
        &self.appends
    }

    /// Appends events and returns once they are on disk. Events whose client id is already
    /// in the log (or earlier in the same batch) are reported as duplicates, not written.
    pub async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError> {
        // Encode before taking the buffer lock: the lock covers only seq assignment, the
        // idempotency check and copying the records.
        let prepared = events
            .into_iter()
            .map(|event| {
                let client_supplied_id = event.client_supplied_id;
                Prepared::new(
                    StoredEvent {
                        id: event.id,
                        event_type: event.event_type,
                        published_at: event.published_at,
                        received_at: event.received_at,
                        payload: event.payload,
                    },
                    client_supplied_id,
                )
            })
            .collect();
        let outcomes = self.wal.append(tenant, prepared)?;
        self.appends.wait_durable().await?;
        Ok(outcomes)
    }

    /// Highest sequence number of `tenant` that is on disk (0: none).
    pub fn durable_seq(&self, tenant: &str) -> Result<u64, LogError> {
        Ok(self
            .wal
            .watermarks
            .of(&self.index, tenant)?
            .load(Ordering::Acquire))
    }

    /// Bumps after every append round; delivery waits on it for new events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appends.subscribe()
    }

    /// The event an index entry points at; `None` if retention removed its segment.
    fn read(&self, tenant: &str, seq: u64, extent: &[u8]) -> Result<Option<StoredEvent>, LogError> {
        let extent = Extent::decode(extent).ok_or_else(|| {
            LogError::Corrupt(format!("index entry of {tenant}/{seq} is malformed"))
        })?;
        let Some(bytes) = self.segments.read(extent)? else {
            return Ok(None);
        };
        let decoded = record::decode(&bytes).map_err(|e| LogError::Record(extent, e))?;
        if decoded.tenant != tenant || decoded.seq != seq {
            return Err(LogError::Corrupt(format!(
                "index entry of {tenant}/{seq} points at {}/{}",
                decoded.tenant, decoded.seq
            )));
        }
        Ok(Some(decoded.event))
    }

    /// Durable events with seq > `after`, in order, at most `limit`.
    pub fn read_after(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredEvent)>, LogError> {
        let durable = self.durable_seq(tenant)?;
        let mut out = Vec::new();
        if after >= durable {
            return Ok(out);
        }
        let range = keys::event(tenant, after + 1)..=keys::event(tenant, durable);
        for entry in self.index.range(range).take(limit) {
            let (key, extent) = entry?;
            let seq = keys::seq_of_event_key(&key);
            if let Some(event) = self.read(tenant, seq, &extent)? {
                out.push((seq, event));
            }
        }
        Ok(out)
    }

    pub fn event_by_seq(&self, tenant: &str, seq: u64) -> Result<Option<StoredEvent>, LogError> {
        match self.index.get(keys::event(tenant, seq))? {
            Some(extent) => self.read(tenant, seq, &extent),
            None => Ok(None),
        }
    }

    pub fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(u64, StoredEvent)>, LogError> {
        let Some(seq) = self.index.get(keys::id(tenant, id))? else {
            return Ok(None);
        };
        let seq = keys::decode_seq(&seq);
        Ok(self.event_by_seq(tenant, seq)?.map(|e| (seq, e)))
    }

    /// Events of one type published in `[from, to]`, oldest first. `after` is the opaque
    /// `next` of the previous page.
    pub fn by_time(
        &self,
        tenant: &str,
        event_type: &str,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TimePage, LogError> {
        let index_key = |published, seq| keys::by_type(tenant, event_type, published, seq);
        let start = match after.and_then(keys::parse_position) {
            Some((published, seq)) => index_key(published, seq.saturating_add(1)),
            None => index_key(from, 0),
        };
        let end = index_key(to, u64::MAX);
        let mut events = Vec::new();
        let mut last = None;
        for entry in self.index.range(start..=end) {
            let (key, _) = entry?;
            let (published, seq) = keys::position_of_index_key(&key);
            if events.len() == limit {
                return Ok(TimePage {
                    events,
                    next: last.map(|(p, s)| keys::format_position(p, s)),
                });
            }
            if let Some(event) = self.event_by_seq(tenant, seq)? {
                events.push((seq, event));
                last = Some((published, seq));
            }
        }
        Ok(TimePage { events, next: None })
    }

    /// The oldest events of a tenant received before `cutoff`, at most `limit`.
    pub fn oldest_before(
        &self,
        tenant: &str,
        cutoff: EpochMillis,
        limit: usize,
    ) -> Result<Vec<(u64, StoredEvent)>, LogError> {
        let mut old = Vec::new();
        for entry in self
            .index
            .scan_prefix(keys::events_prefix(tenant))
            .take(limit)
        {
            let (key, extent) = entry?;
            let seq = keys::seq_of_event_key(&key);
            let Some(event) = self.read(tenant, seq, &extent)? else {
                // Its segment is gone already: only the index entry is left to remove.
                self.index.remove(&key)?;
                continue;
            };
            if event.received_at >= cutoff {
                break;
            }
            old.push((seq, event));
        }
        Ok(old)
    }

    /// Removes one event's index entries (retention). Its bytes go with its segment file
    /// (`remove_segments_before`).
    pub fn remove(&self, tenant: &str, seq: u64, event: &StoredEvent) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        batch.remove(keys::event(tenant, seq));
        batch.remove(keys::id(tenant, &event.id));
        batch.remove(keys::by_type(
            tenant,
            &event.event_type,
            event.published_at,
            seq,
        ));
        self.index.apply_batch(batch)?;
        Ok(())
    }

    /// Deletes segment files last written before `cutoff` (every event in them is older)
    /// that recovery no longer needs; returns how many went.
    pub fn remove_segments_before(&self, cutoff: EpochMillis) -> Result<usize, LogError> {
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_millis(cutoff.max(0) as u64);
        let keep_from = self.checkpointed.lock().expect("checkpointed").segment;
        Ok(self.segments.remove_older_than(keep_from, cutoff)?)
    }

    /// Stops both committers after a last round each, and checkpoints the index so the
    /// next start re-indexes nothing (graceful shutdown).
    pub fn shutdown(&self) {
        self.appends.shutdown();
        self.store.request();
        self.store.shutdown();
        let upto = self.wal.indexed_upto();
        if let Err(error) = self
            .index
            .insert(CHECKPOINT_KEY, &upto.encode())
            .and_then(|_| self.index.flush())
        {
            tracing::error!(%error, "final checkpoint of the event index failed");
        }
    }
}

/// Re-indexes every intact record after the durable checkpoint (index entries are
/// idempotent), and returns where the next record goes: always a fresh segment, so a torn
/// tail of the last one is never appended to.
fn recover(segments: &Segments, index: &sled::Tree) -> Result<Position, LogError> {
    let checkpoint = index
        .get(CHECKPOINT_KEY)?
        .and_then(|v| Position::decode(&v))
        .unwrap_or_default();
    let existing = segments.list()?;
    let mut reindexed = 0usize;
    for &segment in existing.iter().filter(|s| **s >= checkpoint.segment) {
        let from = if segment == checkpoint.segment {
            checkpoint.offset
        } else {
            0
        };
        let mut batch = sled::Batch::default();
        segments.scan(segment, from, |extent, decoded| {
            let (tenant, seq, event) = (&decoded.tenant, decoded.seq, &decoded.event);
            batch.insert(keys::event(tenant, seq), &extent.encode());
            batch.insert(keys::id(tenant, &event.id), &seq.to_be_bytes());
            batch.insert(
                keys::by_type(tenant, &event.event_type, event.published_at, seq),
                &[],
            );
            reindexed += 1;
        })?;
        index.apply_batch(batch)?;
    }
    if reindexed > 0 {
        tracing::info!(
            reindexed,
            "event log: re-indexed records written after the last checkpoint"
        );
    }
    Ok(Position {
        segment: existing.last().map_or(1, |last| last + 1),
        offset: 0,
    })
}
