//! The append path: records go into an in-memory buffer under one short lock, and the
//! group committer's round writes the buffer to the newest segment, `fdatasync`s it, and
//! only then indexes the records in sled and advances each tenant's durable watermark.
//!
//! Indexing after the sync is what makes sled safe to flush lazily: an index entry only
//! ever points at a record that is already on disk, so whatever prefix of the index sled
//! recovers after a crash is correct, and what it lost is rebuilt from the segments
//! (`EventLog::open`). The watermark moves after the index, so a reader that sees seq `n`
//! as durable always finds it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use super::{
    Appended, LogError, keys,
    record::EncodedEvent,
    runs::OpenRuns,
    segments::{Extent, Position, SegmentWriter},
};
use crate::{ids, store::StoreError};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Durable watermarks by tenant: the highest seq whose record is on disk and indexed.
#[derive(Default)]
pub(crate) struct Watermarks {
    tenants: RwLock<HashMap<String, Arc<AtomicU64>>>,
}

impl Watermarks {
    /// The tenant's watermark; created from the index, which only holds durable records.
    pub fn of(&self, index: &sled::Tree, tenant: &str) -> Result<Arc<AtomicU64>, LogError> {
        if let Some(mark) = self.tenants.read().expect("watermarks").get(tenant) {
            return Ok(mark.clone());
        }
        let mut tenants = self.tenants.write().expect("watermarks");
        if let Some(mark) = tenants.get(tenant) {
            return Ok(mark.clone());
        }
        let mark = Arc::new(AtomicU64::new(last_indexed_seq(index, tenant)?));
        tenants.insert(tenant.to_string(), mark.clone());
        Ok(mark)
    }
}

fn last_indexed_seq(index: &sled::Tree, tenant: &str) -> Result<u64, LogError> {
    Ok(
        match index.scan_prefix(keys::events_prefix(tenant)).next_back() {
            Some(entry) => {
                let (key, extents) = entry?;
                keys::seq_of_event_key(&key) + Extent::count(&extents).saturating_sub(1)
            }
            None => 0,
        },
    )
}

/// Append state of one tenant, only touched under the buffer lock.
struct TenantAppend {
    next_seq: u64,
    /// Client ids appended but not yet indexed, so a repeat is caught before it is durable.
    unindexed_ids: HashMap<String, u64>,
    /// Index runs of this round.
    runs: OpenRuns,
}

/// One contiguous run of records for one segment.
struct Chunk {
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Buffer {
    tenants: HashMap<String, TenantAppend>,
    /// Tenants with open index runs in this round.
    touched: Vec<String>,
    chunks: Vec<Chunk>,
    /// Index entries of the buffered records, applied after they are synced.
    index: Vec<(Vec<u8>, Vec<u8>)>,
    /// Highest seq per tenant in the buffer.
    tails: HashMap<String, u64>,
    /// Client ids to forget from `unindexed_ids` once indexed.
    settled_ids: Vec<(String, String, u64)>,
    /// Where the next record goes.
    next: Position,
}

/// What one flush round takes out of the buffer.
struct Round {
    chunks: Vec<Chunk>,
    index: Vec<(Vec<u8>, Vec<u8>)>,
    tails: HashMap<String, u64>,
    settled_ids: Vec<(String, String, u64)>,
    end: Position,
}

/// An event ready to append: its encoded record and the fields the indexes need.
pub struct Prepared {
    pub encoded: EncodedEvent,
    /// The client's id (idempotency key); `None` gets a generated id carrying the seq.
    pub client_id: Option<String>,
    pub event_type: String,
    pub published_at: i64,
}

pub(crate) struct Wal {
    buffer: Mutex<Buffer>,
    index: sled::Tree,
    pub watermarks: Watermarks,
    /// Set when a write or sync failed: the buffer's records are lost, so nothing more is
    /// accepted until a restart recovers from what is on disk (as Postgres does).
    poisoned: AtomicBool,
    /// Every record before this position is indexed (a checkpoint candidate).
    indexed_upto: Mutex<Position>,
}

impl Wal {
    pub fn new(index: sled::Tree, next: Position) -> Wal {
        Wal {
            buffer: Mutex::new(Buffer {
                next,
                ..Buffer::default()
            }),
            index,
            watermarks: Watermarks::default(),
            poisoned: AtomicBool::new(false),
            indexed_upto: Mutex::new(next),
        }
    }

    pub fn indexed_upto(&self) -> Position {
        *self.indexed_upto.lock().expect("indexed_upto")
    }

    /// Buffers the events; a client id already in the log (or earlier in this call) is
    /// reported as a duplicate and not written. Durability is the caller's next step.
    pub fn append(&self, tenant: &str, events: Vec<Prepared>) -> Result<Vec<Appended>, LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(super::DurabilityError::Flush(
                "an earlier write to the event log failed; restart the gateway".into(),
            )
            .into());
        }
        let mut buffer = self.buffer.lock().expect("wal buffer");
        let buffer = &mut *buffer;
        if !buffer.tenants.contains_key(tenant) {
            let next_seq = last_indexed_seq(&self.index, tenant)? + 1;
            buffer.tenants.insert(
                tenant.to_string(),
                TenantAppend {
                    next_seq,
                    unindexed_ids: HashMap::new(),
                    runs: OpenRuns::default(),
                },
            );
        }
        let state = buffer.tenants.get_mut(tenant).expect("tenant state");
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            if let Some(id) = &event.client_id {
                let existing = match state.unindexed_ids.get(id) {
                    Some(seq) => Some(*seq),
                    None => self
                        .index
                        .get(keys::id(tenant, id))
                        .map_err(StoreError::from)?
                        .map(|v| keys::decode_seq(&v)),
                };
                if let Some(seq) = existing {
                    outcomes.push(Appended {
                        id: id.clone(),
                        seq,
                        duplicate: true,
                    });
                    continue;
                }
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            let id = match event.client_id {
                Some(id) => {
                    // Only client ids need an index entry: a generated id carries its seq.
                    state.unindexed_ids.insert(id.clone(), seq);
                    buffer
                        .settled_ids
                        .push((tenant.to_string(), id.clone(), seq));
                    buffer
                        .index
                        .push((keys::id(tenant, &id), seq.to_be_bytes().to_vec()));
                    id
                }
                None => ids::generate_event_id(seq),
            };

            let len = event.encoded.record_len(tenant, &id) as u64;
            if buffer.next.offset > 0 && buffer.next.offset + len > SEGMENT_BYTES {
                buffer.next = Position {
                    segment: buffer.next.segment + 1,
                    offset: 0,
                };
            }
            let at = buffer.next;
            match buffer.chunks.last_mut() {
                Some(chunk)
                    if chunk.segment == at.segment
                        && chunk.offset + chunk.bytes.len() as u64 == at.offset => {}
                _ => buffer.chunks.push(Chunk {
                    segment: at.segment,
                    offset: at.offset,
                    bytes: Vec::with_capacity(64 * 1024),
                }),
            }
            let chunk = buffer.chunks.last_mut().expect("chunk");
            event
                .encoded
                .write_record(tenant, seq, &id, &mut chunk.bytes);
            buffer.next.offset += len;

            let extent = Extent {
                at,
                len: len as u32,
            };
            if state.runs.is_empty() {
                buffer.touched.push(tenant.to_string());
            }
            state.runs.add(
                tenant,
                seq,
                extent,
                &event.event_type,
                event.published_at,
                &mut buffer.index,
            );
            outcomes.push(Appended {
                id,
                seq,
                duplicate: false,
            });
        }
        if let Some(last) = outcomes
            .iter()
            .filter(|o| !o.duplicate)
            .map(|o| o.seq)
            .max()
        {
            buffer.tails.insert(tenant.to_string(), last);
        }
        Ok(outcomes)
    }

    fn take_round(&self) -> Round {
        let mut buffer = self.buffer.lock().expect("wal buffer");
        let buffer = &mut *buffer;
        for tenant in buffer.touched.drain(..) {
            if let Some(state) = buffer.tenants.get_mut(&tenant) {
                state.runs.close(&tenant, &mut buffer.index);
            }
        }
        Round {
            chunks: std::mem::take(&mut buffer.chunks),
            index: std::mem::take(&mut buffer.index),
            tails: std::mem::take(&mut buffer.tails),
            settled_ids: std::mem::take(&mut buffer.settled_ids),
            end: buffer.next,
        }
    }

    /// One group-commit round: write and sync what is buffered, index it, publish it.
    pub fn flush_round(&self, writer: &mut SegmentWriter) -> Result<(), String> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err("the event log is read-only after a failed write".into());
        }
        let round = self.take_round();
        if round.chunks.is_empty() {
            return Ok(());
        }
        let written = round
            .chunks
            .iter()
            .try_for_each(|chunk| writer.write(chunk.segment, chunk.offset, &chunk.bytes))
            .and_then(|()| writer.sync());
        if let Err(error) = written {
            self.poisoned.store(true, Ordering::Release);
            return Err(format!("writing the event log: {error}"));
        }
        // One insert per key, not a sled batch: each `apply_batch` seals sled's log buffer
        // twice, and every seal is a small write on sled's thread pool, which wakes all of
        // its idle threads (`notify_all`). Atomicity is not needed here: nothing reads the
        // round before the watermarks move below, and after a crash `recover` re-indexes
        // every record past the checkpoint, whatever part of a round reached the index.
        for (key, value) in round.index {
            if let Err(error) = self.index.insert(key, value) {
                self.poisoned.store(true, Ordering::Release);
                return Err(format!("indexing the event log: {error}"));
            }
        }
        if !round.settled_ids.is_empty() {
            let mut buffer = self.buffer.lock().expect("wal buffer");
            for (tenant, id, seq) in round.settled_ids {
                if let Some(state) = buffer.tenants.get_mut(&tenant)
                    && state.unindexed_ids.get(&id) == Some(&seq)
                {
                    state.unindexed_ids.remove(&id);
                }
            }
        }
        for (tenant, seq) in round.tails {
            match self.watermarks.of(&self.index, &tenant) {
                Ok(mark) => {
                    mark.fetch_max(seq, Ordering::AcqRel);
                }
                Err(error) => return Err(format!("reading the event index: {error}")),
            }
        }
        *self.indexed_upto.lock().expect("indexed_upto") = round.end;
        Ok(())
    }
}
