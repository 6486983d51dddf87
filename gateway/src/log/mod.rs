//! The per-tenant append-only event log.
//!
//! Every accepted event gets the next sequence number of its tenant and is written in one
//! atomic sled batch together with its indexes (by id, and by type and time).
//! Appends of one tenant are serialized by a short lock around that batch, so the visible
//! sequence numbers are always a gap-free prefix. Readers (webhook cursors) only read up
//! to the tenant's *durable* sequence, which the group committer advances after each flush,
//! so nothing is ever delivered that a crash could take back.

mod commit;
mod keys;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

pub use commit::{DurabilityError, GroupCommit};

use crate::{
    iso::EpochMillis,
    store::{StoreError, codec_decode, codec_encode},
};

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
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        LogError::Store(StoreError::Sled(e))
    }
}

/// Append state of one tenant's log.
#[derive(Default)]
pub(crate) struct TenantLog {
    /// Next sequence number; held while a batch is written so seqs appear in order.
    next_seq: Mutex<u64>,
    /// Highest seq written (visible, maybe not yet flushed).
    inserted: AtomicU64,
    /// Highest seq known to be on disk.
    durable: AtomicU64,
}

/// Tenant logs by tenant id, shared with the group committer that advances `durable`.
#[derive(Default)]
pub(crate) struct Registry {
    tenants: RwLock<HashMap<String, Arc<TenantLog>>>,
}

impl Registry {
    fn snapshot_inserted(&self) -> Vec<(Arc<TenantLog>, u64)> {
        let tenants = self.tenants.read().expect("registry lock");
        tenants
            .values()
            .map(|t| (t.clone(), t.inserted.load(Ordering::Acquire)))
            .collect()
    }
}

pub struct EventLog {
    tree: sled::Tree,
    registry: Arc<Registry>,
    commit: Arc<GroupCommit>,
}

/// A page of a time-ordered listing and where the next page starts.
pub struct TimePage {
    pub events: Vec<(u64, StoredEvent)>,
    pub next: Option<String>,
}

impl EventLog {
    pub fn open(db: &sled::Db, tree: sled::Tree) -> EventLog {
        let registry = Arc::new(Registry::default());
        let commit = GroupCommit::start(db.clone(), registry.clone());
        EventLog {
            tree,
            registry,
            commit,
        }
    }

    /// The group committer, for other writers (management API) that must be durable
    /// before they answer.
    pub fn commit(&self) -> &Arc<GroupCommit> {
        &self.commit
    }

    /// Appends events and returns once they are on disk. Events whose client id is already
    /// in the log (or earlier in the same batch) are reported as duplicates, not written.
    pub async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError> {
        let outcomes = self.write(tenant, events)?;
        self.commit.wait_durable().await?;
        Ok(outcomes)
    }

    fn write(&self, tenant: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        let log = self.tenant_log(tenant)?;
        // Encode before taking the lock: the stored value does not contain the seq, so the
        // lock only covers the idempotency check, seq assignment and the batch write.
        let encoded = events
            .into_iter()
            .map(|event| {
                let stored = StoredEvent {
                    id: event.id,
                    event_type: event.event_type,
                    published_at: event.published_at,
                    received_at: event.received_at,
                    payload: event.payload,
                };
                Ok((codec_encode(&stored)?, stored, event.client_supplied_id))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut next_seq = log.next_seq.lock().expect("append lock");
        let mut batch = sled::Batch::default();
        let mut outcomes = Vec::with_capacity(encoded.len());
        let mut in_batch: HashMap<String, u64> = HashMap::new();
        for (value, stored, client_supplied_id) in encoded {
            if client_supplied_id {
                let existing = match in_batch.get(&stored.id) {
                    Some(seq) => Some(*seq),
                    None => self
                        .tree
                        .get(keys::id(tenant, &stored.id))?
                        .map(|v| keys::decode_seq(&v)),
                };
                if let Some(seq) = existing {
                    outcomes.push(Appended {
                        id: stored.id,
                        seq,
                        duplicate: true,
                    });
                    continue;
                }
            }
            let seq = *next_seq;
            *next_seq += 1;
            batch.insert(keys::event(tenant, seq), value);
            batch.insert(keys::id(tenant, &stored.id), &seq.to_be_bytes());
            batch.insert(
                keys::by_type(tenant, &stored.event_type, stored.published_at, seq),
                &[],
            );
            if client_supplied_id {
                in_batch.insert(stored.id.clone(), seq);
            }
            outcomes.push(Appended {
                id: stored.id,
                seq,
                duplicate: false,
            });
        }
        self.tree.apply_batch(batch)?;
        log.inserted.store(*next_seq - 1, Ordering::Release);
        Ok(outcomes)
    }

    fn tenant_log(&self, tenant: &str) -> Result<Arc<TenantLog>, LogError> {
        if let Some(log) = self.registry.tenants.read().expect("registry").get(tenant) {
            return Ok(log.clone());
        }
        let mut tenants = self.registry.tenants.write().expect("registry");
        if let Some(log) = tenants.get(tenant) {
            return Ok(log.clone());
        }
        // Everything sled has after a restart is on disk, so the last stored seq is durable.
        let last = match self
            .tree
            .scan_prefix(keys::events_prefix(tenant))
            .next_back()
        {
            Some(entry) => keys::seq_of_event_key(&entry?.0),
            None => 0,
        };
        let log = Arc::new(TenantLog {
            next_seq: Mutex::new(last + 1),
            inserted: AtomicU64::new(last),
            durable: AtomicU64::new(last),
        });
        tenants.insert(tenant.to_string(), log.clone());
        Ok(log)
    }

    /// Highest sequence number of `tenant` that is on disk (0: none).
    pub fn durable_seq(&self, tenant: &str) -> Result<u64, LogError> {
        Ok(self.tenant_log(tenant)?.durable.load(Ordering::Acquire))
    }

    /// Bumps after every successful flush; delivery waits on it for new events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.commit.subscribe()
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
        for entry in self.tree.range(range).take(limit) {
            let (key, value) = entry?;
            out.push((keys::seq_of_event_key(&key), codec_decode(&value)?));
        }
        Ok(out)
    }

    pub fn event_by_seq(&self, tenant: &str, seq: u64) -> Result<Option<StoredEvent>, LogError> {
        match self.tree.get(keys::event(tenant, seq))? {
            Some(value) => Ok(Some(codec_decode(&value)?)),
            None => Ok(None),
        }
    }

    pub fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(u64, StoredEvent)>, LogError> {
        let Some(seq) = self.tree.get(keys::id(tenant, id))? else {
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
        for entry in self.tree.range(start..=end) {
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
            .tree
            .scan_prefix(keys::events_prefix(tenant))
            .take(limit)
        {
            let (key, value) = entry?;
            let event: StoredEvent = codec_decode(&value)?;
            if event.received_at >= cutoff {
                break;
            }
            old.push((keys::seq_of_event_key(&key), event));
        }
        Ok(old)
    }

    /// Removes one event and its index entries (retention).
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
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Stops the group committer after a last flush (graceful shutdown).
    pub fn shutdown(&self) {
        self.commit.shutdown();
    }
}
