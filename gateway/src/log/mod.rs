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
mod runs;
mod segments;
mod wal;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

pub use commit::{DurabilityError, GroupCommit};

use self::{
    runs::OpenRuns,
    segments::{Extent, Position, Segments},
    wal::{Prepared, Wal},
};
use crate::{
    ids,
    iso::EpochMillis,
    storage::{
        StorageError, StorageResult,
        event_log::{Appended, EventLog, NewEvent, StoredEvent, TimePage},
    },
    store::StoreError,
};

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

#[derive(Clone)]
pub struct SegmentLog {
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

impl SegmentLog {
    /// Opens the log in `dir`, re-indexing what the last run wrote after its checkpoint.
    pub fn open(db: &sled::Db, index: sled::Tree, dir: &Path) -> Result<SegmentLog, LogError> {
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
        Ok(SegmentLog {
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
            .map(|event| Prepared {
                encoded: record::EncodedEvent::new(
                    &event.event_type,
                    event.published_at,
                    event.received_at,
                    &event.payload,
                ),
                client_id: event.id,
                event_type: event.event_type,
                published_at: event.published_at,
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

    /// The event a run entry points at; `None` if retention removed its segment.
    fn read(
        &self,
        tenant: &str,
        seq: u64,
        extent: Extent,
    ) -> Result<Option<StoredEvent>, LogError> {
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

    /// Where the record of `seq` is: found in the run entry at or before it.
    fn extent_of(&self, tenant: &str, seq: u64) -> Result<Option<Extent>, LogError> {
        let runs = keys::events_prefix(tenant)..=keys::event(tenant, seq);
        let Some(entry) = self.index.range(runs).next_back() else {
            return Ok(None);
        };
        let (key, run) = entry?;
        Ok(Extent::nth(&run, seq - keys::seq_of_event_key(&key)))
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
        // Start at the run holding `after + 1`, which may begin before it.
        let first = match self
            .index
            .range(keys::events_prefix(tenant)..=keys::event(tenant, after + 1))
            .next_back()
        {
            Some(entry) => keys::seq_of_event_key(&entry?.0),
            None => after + 1,
        };
        let mut next = after + 1;
        for entry in self
            .index
            .range(keys::event(tenant, first)..=keys::event(tenant, durable))
        {
            let (key, run) = entry?;
            let run_first = keys::seq_of_event_key(&key);
            // Runs rebuilt by recovery may overlap older ones; each seq is read once.
            for seq in next.max(run_first)..run_first + Extent::count(&run) {
                if seq > durable || out.len() == limit {
                    return Ok(out);
                }
                let extent = Extent::nth(&run, seq - run_first).expect("seq inside its run");
                if let Some(event) = self.read(tenant, seq, extent)? {
                    out.push((seq, event));
                }
                next = seq + 1;
            }
        }
        Ok(out)
    }

    pub fn event_by_seq(&self, tenant: &str, seq: u64) -> Result<Option<StoredEvent>, LogError> {
        if seq == 0 || seq > self.durable_seq(tenant)? {
            return Ok(None);
        }
        match self.extent_of(tenant, seq)? {
            Some(extent) => self.read(tenant, seq, extent),
            None => Ok(None),
        }
    }

    pub fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(u64, StoredEvent)>, LogError> {
        let seq = match ids::seq_of_event_id(id) {
            Some(seq) => seq,
            None => match self.index.get(keys::id(tenant, id))? {
                Some(seq) => keys::decode_seq(&seq),
                None => return Ok(None),
            },
        };
        // A generated id names its seq; the event there must also carry that id.
        Ok(self
            .event_by_seq(tenant, seq)?
            .filter(|event| event.id == id)
            .map(|event| (seq, event)))
    }

    /// Events of one type published in `[from, to]`, oldest first (by publish time, then
    /// seq). `after` is the opaque `next` of the previous page.
    pub fn by_time(
        &self,
        tenant: &str,
        event_type: &str,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TimePage, LogError> {
        let after = after.and_then(keys::parse_position);
        let first_bucket =
            runs::bucket_of(after.map_or(from, |(published, _)| published.max(from)));
        let range = keys::by_type(tenant, event_type, first_bucket, 0)
            ..=keys::by_type(tenant, event_type, runs::bucket_of(to), u64::MAX);
        let mut page = TimePage {
            events: Vec::new(),
            next: None,
        };
        // Entries of one bucket come from several runs in no particular order: collect the
        // bucket, sort it, then take from it.
        let mut bucket: Vec<(EpochMillis, u64)> = Vec::new();
        let mut current = None;
        for entry in self.index.range(range) {
            let (key, run) = entry?;
            let (key_bucket, _) = keys::position_of_index_key(&key);
            if current != Some(key_bucket) {
                if self.take_bucket(tenant, &mut bucket, from, to, after, limit, &mut page)? {
                    return Ok(page);
                }
                current = Some(key_bucket);
            }
            bucket.extend(runs::type_entries(&run));
        }
        self.take_bucket(tenant, &mut bucket, from, to, after, limit, &mut page)?;
        Ok(page)
    }

    /// Moves the events of one bucket's entries into `page`; true when the page is full.
    #[allow(clippy::too_many_arguments)]
    fn take_bucket(
        &self,
        tenant: &str,
        bucket: &mut Vec<(EpochMillis, u64)>,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<(EpochMillis, u64)>,
        limit: usize,
        page: &mut TimePage,
    ) -> Result<bool, LogError> {
        bucket.sort_unstable();
        bucket.dedup();
        for &(published, seq) in bucket.iter() {
            if published < from || published > to || after.is_some_and(|a| (published, seq) <= a) {
                continue;
            }
            if page.events.len() == limit {
                let (p, s) = page
                    .events
                    .last()
                    .map(|(seq, e)| (e.published_at, *seq))
                    .expect("limit > 0");
                page.next = Some(keys::format_position(p, s));
                return Ok(true);
            }
            if let Some(event) = self.event_by_seq(tenant, seq)? {
                page.events.push((seq, event));
            }
        }
        bucket.clear();
        Ok(false)
    }

    /// The oldest events of a tenant received before `cutoff`: whole runs (their index
    /// entries go together), as long as they total at most `limit` (at least one run).
    pub fn oldest_before(
        &self,
        tenant: &str,
        cutoff: EpochMillis,
        limit: usize,
    ) -> Result<Vec<(u64, StoredEvent)>, LogError> {
        let mut old = Vec::new();
        for entry in self.index.scan_prefix(keys::events_prefix(tenant)) {
            let (key, run) = entry?;
            let first = keys::seq_of_event_key(&key);
            let count = Extent::count(&run);
            if !old.is_empty() && old.len() + count as usize > limit {
                break;
            }
            let mut events = Vec::with_capacity(count as usize);
            for n in 0..count {
                let extent = Extent::nth(&run, n).expect("n inside the run");
                if let Some(event) = self.read(tenant, first + n, extent)? {
                    events.push((first + n, event));
                }
            }
            // A run goes only when all of it is expired (its last event is the newest).
            if events.last().is_some_and(|(_, e)| e.received_at >= cutoff) {
                break;
            }
            if events.is_empty() {
                // Its segment is gone already: only the index entry is left to remove.
                self.index.remove(&key)?;
                continue;
            }
            old.extend(events);
        }
        Ok(old)
    }

    /// Removes the index entries of `events` (retention): pass whole runs, as
    /// `oldest_before` returns them. Their bytes go with their segment files
    /// (`remove_segments_before`).
    pub fn remove(&self, tenant: &str, events: &[(u64, StoredEvent)]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        let removed: HashSet<u64> = events.iter().map(|(seq, _)| *seq).collect();
        let mut buckets = BTreeSet::new();
        for (seq, event) in events {
            // Only run starts have an extent entry; removing an absent key is harmless.
            batch.remove(keys::event(tenant, *seq));
            if ids::seq_of_event_id(&event.id).is_none() {
                batch.remove(keys::id(tenant, &event.id));
            }
            buckets.insert((
                event.event_type.as_str(),
                runs::bucket_of(event.published_at),
            ));
        }
        for (event_type, bucket) in buckets {
            let range = keys::by_type(tenant, event_type, bucket, 0)
                ..=keys::by_type(tenant, event_type, bucket, u64::MAX);
            for entry in self.index.range(range) {
                let (key, run) = entry?;
                let mut kept = Vec::with_capacity(run.len());
                for (published, seq) in runs::type_entries(&run) {
                    if !removed.contains(&seq) {
                        runs::encode_type_entry(published, seq, &mut kept);
                    }
                }
                if kept.is_empty() {
                    batch.remove(key);
                } else if kept.len() != run.len() {
                    batch.insert(key, kept);
                }
            }
        }
        self.index.apply_batch(batch)?;
        Ok(())
    }

    /// Forgets every event of `tenant` (the tenant was deleted): its index entries go, one
    /// removal each off the async workers, durably; the bytes go with their segment files.
    pub async fn forget_tenant(&self, tenant: &str) -> Result<(), LogError> {
        let (index, prefix) = (self.index.clone(), crate::store::tenant_prefix(tenant));
        tokio::task::spawn_blocking(move || -> Result<(), sled::Error> {
            for key in index.scan_prefix(&prefix).keys() {
                index.remove(key?)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| LogError::Io(std::io::Error::other(e)))??;
        self.store.wait_durable().await?;
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
    // Per tenant: the last seq seen and its open runs (runs only cover consecutive seqs).
    let mut tenants: HashMap<String, (u64, OpenRuns)> = HashMap::new();
    for &segment in existing.iter().filter(|s| **s >= checkpoint.segment) {
        let from = if segment == checkpoint.segment {
            checkpoint.offset
        } else {
            0
        };
        let mut batch = sled::Batch::default();
        let mut index_entries = Vec::new();
        segments.scan(segment, from, |extent, decoded| {
            let (tenant, seq, event) = (&decoded.tenant, decoded.seq, &decoded.event);
            if ids::seq_of_event_id(&event.id).is_none() {
                batch.insert(keys::id(tenant, &event.id), &seq.to_be_bytes());
            }
            let (last, open) = tenants.entry(tenant.clone()).or_insert_with(|| {
                // The first seq of a tenant seen here replaces the extent runs the index
                // kept from there on (type runs are de-duplicated when read).
                for stale in index
                    .range(keys::event(tenant, seq)..keys::event(tenant, u64::MAX))
                    .keys()
                    .flatten()
                {
                    batch.remove(stale);
                }
                (seq - 1, OpenRuns::default())
            });
            if *last + 1 != seq {
                open.close(tenant, &mut index_entries);
            }
            *last = seq;
            open.add(
                tenant,
                seq,
                extent,
                &event.event_type,
                event.published_at,
                &mut index_entries,
            );
            reindexed += 1;
        })?;
        for (tenant, (_, open)) in tenants.iter_mut() {
            open.close(tenant, &mut index_entries);
        }
        for (key, value) in index_entries {
            batch.insert(key, value);
        }
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

impl From<LogError> for StorageError {
    fn from(error: LogError) -> StorageError {
        match error {
            LogError::Store(StoreError::Sled(e)) => StorageError::Unavailable(e.to_string()),
            e @ (LogError::Durability(_) | LogError::Io(_)) => {
                StorageError::Unavailable(e.to_string())
            }
            e => StorageError::Corrupt(e.to_string()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Unavailable(e.to_string()))?
        .map_err(StorageError::from)
}

/// The trait is the way in from outside the backend; each method is the inherent one.
#[async_trait::async_trait]
impl EventLog for SegmentLog {
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> StorageResult<Vec<Appended>> {
        Ok(SegmentLog::append(self, tenant, events).await?)
    }

    async fn durable_seq(&self, tenant: &str) -> StorageResult<u64> {
        Ok(SegmentLog::durable_seq(self, tenant)?)
    }

    fn subscribe(&self, _tenant: &str) -> watch::Receiver<u64> {
        SegmentLog::subscribe(self)
    }

    async fn read_after(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>> {
        Ok(SegmentLog::read_after(self, tenant, after, limit)?)
    }

    async fn event_by_seq(&self, tenant: &str, seq: u64) -> StorageResult<Option<StoredEvent>> {
        Ok(SegmentLog::event_by_seq(self, tenant, seq)?)
    }

    async fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> StorageResult<Option<(u64, StoredEvent)>> {
        Ok(SegmentLog::event_by_id(self, tenant, id)?)
    }

    async fn by_time(
        &self,
        tenant: &str,
        event_type: &str,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<TimePage> {
        Ok(SegmentLog::by_time(
            self, tenant, event_type, from, to, after, limit,
        )?)
    }

    /// Whole runs (their index entries go together), as long as they total at most
    /// `limit` (at least one run). Retention reads segment files and removes index entries
    /// one by one: off the async workers.
    async fn oldest_before(
        &self,
        tenant: &str,
        cutoff: EpochMillis,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>> {
        let (log, tenant) = (self.clone(), tenant.to_string());
        blocking(move || log.oldest_before(&tenant, cutoff, limit)).await
    }

    async fn remove(&self, tenant: &str, events: &[(u64, StoredEvent)]) -> StorageResult<()> {
        let (log, tenant, events) = (self.clone(), tenant.to_string(), events.to_vec());
        blocking(move || log.remove(&tenant, &events)).await
    }

    async fn compact(&self, cutoff: EpochMillis) -> StorageResult<usize> {
        let log = self.clone();
        blocking(move || log.remove_segments_before(cutoff)).await
    }

    async fn forget_tenant(&self, tenant: &str) -> StorageResult<()> {
        Ok(SegmentLog::forget_tenant(self, tenant).await?)
    }

    /// Group-commit rounds: count and total time; their ratio is the fsync latency that
    /// every durable write waits for (`log`: event appends, `store`: everything else).
    fn render_metrics(&self, out: &mut String) {
        for (name, commit) in [("log", &self.appends), ("store", &self.store)] {
            let flushes = commit.flush_count.load(Ordering::Relaxed);
            let seconds = commit.flush_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.push_str(&format!(
                "# HELP hookgate_{name}_flushes Group-commit flushes of the {name}.\n\
                 # TYPE hookgate_{name}_flushes counter\n\
                 hookgate_{name}_flushes_total {flushes}\n\
                 # HELP hookgate_{name}_flush_seconds Time spent in group-commit flushes of the {name}.\n\
                 # TYPE hookgate_{name}_flush_seconds counter\n\
                 hookgate_{name}_flush_seconds_total {seconds}\n"
            ));
        }
    }

    fn close(&self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, client_id: bool) -> NewEvent {
        NewEvent {
            id: client_id.then(|| format!("order-{n}")),
            event_type: if n.is_multiple_of(2) { "even" } else { "odd" }.into(),
            published_at: 1_000 + n as i64,
            received_at: 1_000 + n as i64,
            payload: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
        }
    }

    fn open(db: &sled::Db, dir: &Path) -> SegmentLog {
        SegmentLog::open(db, db.open_tree("index").unwrap(), &dir.join("segments")).unwrap()
    }

    /// Reads the whole log of `tenant` the way a webhook cursor does, in small pages.
    fn read_all(log: &SegmentLog, tenant: &str) -> Vec<u64> {
        let (mut seqs, mut after) = (Vec::new(), 0);
        loop {
            let page = log.read_after(tenant, after, 100).unwrap();
            let Some((last, _)) = page.last() else {
                return seqs;
            };
            after = *last;
            seqs.extend(page.iter().map(|(seq, event)| {
                let n: serde_json::Value = serde_json::from_str(event.payload.get()).unwrap();
                assert_eq!(
                    n["n"].as_u64().unwrap() + 1,
                    *seq,
                    "seq {seq} reads its own event"
                );
                *seq
            }));
        }
    }

    #[tokio::test]
    async fn a_lost_index_is_rebuilt_from_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let log = open(&db, dir.path());
        // 700 events in batches larger than a run, some with client ids.
        let mut ids = Vec::new();
        for batch in 0..2 {
            let events = (batch * 350..(batch + 1) * 350).map(|n| event(n, n.is_multiple_of(7)));
            let appended = log.append("acme", events.collect()).await.unwrap();
            ids.extend(appended.into_iter().map(|a| (a.seq, a.id)));
        }
        log.append("other", vec![event(0, false)]).await.unwrap();
        let expected: Vec<u64> = (1..=700).collect();
        assert_eq!(read_all(&log, "acme"), expected);
        log.shutdown();
        drop(log);

        // As if the crash came before sled kept any of the index: it is rebuilt whole.
        db.drop_tree("index").unwrap();
        let log = open(&db, dir.path());
        assert_eq!(log.durable_seq("acme").unwrap(), 700);
        assert_eq!(read_all(&log, "acme"), expected);
        assert_eq!(read_all(&log, "other"), vec![1]);
        for (seq, id) in &ids {
            let (found, event) = log.event_by_id("acme", id).unwrap().expect(id);
            assert_eq!((found, event.id.as_str()), (*seq, id.as_str()));
        }
        assert!(
            log.event_by_id("other", &ids[1].1).unwrap().is_none(),
            "ids are per tenant"
        );
        // Pages of the type index: in (published, seq) order, each event once, across
        // buckets (events are published 1 ms apart from 1,000 ms on).
        let (mut odd, mut next) = (Vec::new(), None);
        loop {
            let page = log
                .by_time("acme", "odd", 1_001, 1_600, next.as_deref(), 40)
                .unwrap();
            odd.extend(page.events.iter().map(|(seq, _)| *seq));
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        let expected_odd: Vec<u64> = (1..=700).filter(|s| s % 2 == 0 && *s <= 601).collect();
        assert_eq!(
            odd, expected_odd,
            "n odd = seq even, published 1,001..=1,600"
        );

        // Re-indexing over an index that has part of it (a stale checkpoint) makes
        // overlapping runs; every event is still read exactly once.
        log.index
            .insert(CHECKPOINT_KEY, &Position::default().encode())
            .unwrap();
        log.shutdown();
        log.index
            .insert(CHECKPOINT_KEY, &Position::default().encode())
            .unwrap();
        drop(log);
        let log = open(&db, dir.path());
        assert_eq!(read_all(&log, "acme"), expected);
        let appended = log.append("acme", vec![event(700, false)]).await.unwrap();
        assert_eq!(appended[0].seq, 701, "seqs continue after recovery");
        assert!(
            log.append("acme", vec![event(7, true)]).await.unwrap()[0].duplicate,
            "client ids stay idempotent after recovery"
        );

        // Retention takes whole runs of the oldest events and removes every index entry.
        let old = log.oldest_before("acme", 1_300, 1000).unwrap();
        assert!(!old.is_empty() && old.iter().all(|(_, e)| e.received_at < 1_300));
        log.remove("acme", &old).unwrap();
        let left = read_all(&log, "acme");
        assert_eq!(left.len(), 701 - old.len());
        assert!(left.iter().all(|seq| !old.iter().any(|(s, _)| s == seq)));
        let gone = &old[0].1;
        assert!(log.event_by_id("acme", &gone.id).unwrap().is_none());
        let even = log
            .by_time("acme", "even", 0, i64::MAX, None, 1000)
            .unwrap();
        assert!(
            even.events
                .iter()
                .all(|(seq, _)| !old.iter().any(|(s, _)| s == seq))
        );
        assert_eq!(
            even.events.len() + old.iter().filter(|(s, _)| s % 2 == 1).count(),
            351
        );
    }
}
