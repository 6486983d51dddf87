//! The embedded backend of [`DeliveryState`]: every webhook's delivery state in the one
//! `deliveries` tree. A pass's [`OutcomeSet`] is written with `Writes`: new state first,
//! removals last, so a crash in between can leave a stale retry entry (which `due` skips
//! and removes) but never lose a retry.
//!
//! Keys start with `tenant \0 webhook \0` and a tag:
//! - `c`                 → cursor: every event with seq ≤ it is resolved or has a record
//! - `s`                 → Stats
//! - `d seq`             → Delivery
//! - `a seq n`           → Attempt number n (u32) of that delivery
//! - `q due seq`         → () pending retry due at `due` (millis)
//! - `r seq`             → () in the rejected list
//! - `l time n`          → LogEntry
//!
//! Durability: writes are not flushed one by one. `apply` marks the state dirty and a
//! task group-commits sled every `FLUSH_EVERY` while it is (a lost record only means a
//! duplicate delivery after a crash); `sync` waits for a commit round.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;

use super::{StoreError, Writes, codec};
use crate::{
    delivery::records::{
        Attempt, Delivery, LOG_ENTRIES_KEPT, LogEntry, MessageStatus, REJECTED_KEPT, Stats,
    },
    iso::EpochMillis,
    log::GroupCommit,
    storage::{DeliveryState, OutcomeSet, RejectedPage, StorageError, StorageResult, WebhookRef},
};

const CURSOR: u8 = b'c';
const STATS: u8 = b's';
const DELIVERY: u8 = b'd';
const ATTEMPT: u8 = b'a';
const DUE: u8 = b'q';
const REJECTED: u8 = b'r';
const LOG: u8 = b'l';

/// How long an applied outcome may stay in memory only.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Key builder for one webhook's part of the tree.
struct WebhookKeys {
    prefix: Vec<u8>,
}

impl WebhookKeys {
    fn new(webhook: &WebhookRef) -> WebhookKeys {
        let mut prefix = codec::tenant_prefix(&webhook.tenant);
        prefix.extend_from_slice(webhook.webhook.as_bytes());
        prefix.push(0);
        WebhookKeys { prefix }
    }

    fn tagged(&self, tag: u8) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 21);
        key.extend_from_slice(&self.prefix);
        key.push(tag);
        key
    }

    fn with_seq(&self, tag: u8, seq: u64) -> Vec<u8> {
        let mut key = self.tagged(tag);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    fn delivery(&self, seq: u64) -> Vec<u8> {
        self.with_seq(DELIVERY, seq)
    }

    fn attempts_of(&self, seq: u64) -> Vec<u8> {
        self.with_seq(ATTEMPT, seq)
    }

    fn attempt(&self, seq: u64, n: u32) -> Vec<u8> {
        let mut key = self.attempts_of(seq);
        key.extend_from_slice(&n.to_be_bytes());
        key
    }

    fn due(&self, due: EpochMillis, seq: u64) -> Vec<u8> {
        let mut key = self.with_seq(DUE, due.max(0) as u64);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    fn rejected(&self, seq: u64) -> Vec<u8> {
        self.with_seq(REJECTED, seq)
    }

    fn log(&self, at: EpochMillis, n: u32) -> Vec<u8> {
        let mut key = self.with_seq(LOG, at.max(0) as u64);
        key.extend_from_slice(&n.to_be_bytes());
        key
    }
}

fn tail_u64(key: &[u8], from_end: usize) -> u64 {
    let n = key.len() - from_end;
    u64::from_be_bytes(key[n..n + 8].try_into().expect("8 bytes"))
}

/// A due key's (due millis, seq).
fn parse_due_key(key: &[u8]) -> (EpochMillis, u64) {
    (tail_u64(key, 16) as EpochMillis, tail_u64(key, 8))
}

fn seq_of_tail(key: &[u8]) -> u64 {
    tail_u64(key, 8)
}

/// A due entry is live only while its record is pending for exactly that time; anything
/// else (a crash between a set's writes, a resolved record) is stale.
fn is_live(delivery: &Delivery, due: EpochMillis) -> bool {
    delivery.status == MessageStatus::Pending && delivery.next_attempt_at == Some(due)
}

impl From<StoreError> for StorageError {
    fn from(error: StoreError) -> StorageError {
        match error {
            StoreError::Sled(e) => StorageError::Unavailable(e.to_string()),
            other => StorageError::Corrupt(other.to_string()),
        }
    }
}

impl From<sled::Error> for StorageError {
    fn from(error: sled::Error) -> StorageError {
        StorageError::Unavailable(error.to_string())
    }
}

pub struct EmbeddedDeliveryState {
    tree: sled::Tree,
    commit: Arc<GroupCommit>,
    dirty: Arc<AtomicBool>,
}

impl EmbeddedDeliveryState {
    /// The state in `tree`, made durable by `commit` (sled's group committer); the flush
    /// task runs on `runtime`.
    pub fn new(
        tree: sled::Tree,
        commit: Arc<GroupCommit>,
        runtime: &tokio::runtime::Handle,
    ) -> EmbeddedDeliveryState {
        let dirty = Arc::new(AtomicBool::new(false));
        runtime.spawn(flush_while_dirty(dirty.clone(), commit.clone()));
        EmbeddedDeliveryState {
            tree,
            commit,
            dirty,
        }
    }

    fn encode_set(&self, keys: &WebhookKeys, set: OutcomeSet) -> Result<Writes, StoreError> {
        // A crash keeps a prefix of the inserts (`Writes`), so what points at a record
        // (its retry entry, its attempts, its rejected mark) goes before the record: a
        // record whose retry entry a crash lost would never be retried, nor delivered
        // again (it has a record). The other way round, a retry entry without its record
        // is stale and dropped by `due`, and the event, which no record covers and no
        // cursor passed, is read again.
        let mut writes = Writes::default();
        let mut records = Vec::with_capacity(set.records.len());
        for change in set.records {
            let delivery = change.delivery;
            let seq = delivery.seq;
            let due_now = (delivery.status == MessageStatus::Pending)
                .then_some(delivery.next_attempt_at)
                .flatten();
            if let Some(old) = change.replaces_due
                && Some(old) != due_now
            {
                writes.remove(keys.due(old, seq));
            }
            if let Some(due) = due_now {
                writes.insert(keys.due(due, seq), Vec::new());
            }
            records.push((keys.delivery(seq), codec::encode_compact(&delivery)?));
        }
        for (seq, number, attempt) in set.attempts {
            writes.insert(keys.attempt(seq, number), codec::encode_compact(&attempt)?);
        }
        for (seq, listed) in set.rejected {
            match listed {
                true => writes.insert(keys.rejected(seq), Vec::new()),
                false => writes.remove(keys.rejected(seq)),
            }
        }
        for (key, record) in records {
            writes.insert(key, record);
        }
        for entry in &set.log {
            // Orders entries of the same millisecond (a stop and a start in quick
            // succession) as they were written; a random tie-breaker listed them either way.
            static WRITTEN: AtomicU32 = AtomicU32::new(0);
            let n = WRITTEN.fetch_add(1, Ordering::Relaxed);
            writes.insert(keys.log(entry.created_at, n), codec::encode(entry)?);
        }
        if let Some(stats) = &set.stats {
            writes.insert(keys.tagged(STATS), codec::encode(stats)?);
        }
        if let Some(cursor) = set.cursor {
            writes.insert(keys.tagged(CURSOR), cursor.to_be_bytes().to_vec());
        }
        Ok(writes)
    }

    /// Keeps only the newest `kept` entries under `tag` (the integration log, the
    /// rejected list: both keyed oldest first).
    fn trim(&self, keys: &WebhookKeys, tag: u8, kept: usize) -> Result<(), StoreError> {
        let prefix = keys.tagged(tag);
        let count = self.tree.scan_prefix(&prefix).count();
        if count > kept {
            for key in self.tree.scan_prefix(&prefix).keys().take(count - kept) {
                self.tree.remove(key?)?;
            }
        }
        Ok(())
    }

    fn purge_blocking(tree: &sled::Tree, keys: &WebhookKeys, seqs: &[u64]) -> StorageResult<()> {
        for &seq in seqs {
            if let Some(delivery) = codec::get::<Delivery>(tree, &keys.delivery(seq))?
                && let Some(due) = delivery.next_attempt_at
            {
                tree.remove(keys.due(due, seq))?;
            }
            tree.remove(keys.delivery(seq))?;
            tree.remove(keys.rejected(seq))?;
            for key in tree.scan_prefix(keys.attempts_of(seq)).keys() {
                tree.remove(key?)?;
            }
        }
        Ok(())
    }
}

/// Group-commits sled whenever delivery state was written since the last round, which
/// bounds what a crash can lose to about `FLUSH_EVERY`.
async fn flush_while_dirty(dirty: Arc<AtomicBool>, commit: Arc<GroupCommit>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tick.tick().await;
        if dirty.swap(false, Ordering::AcqRel)
            && let Err(error) = commit.wait_durable().await
        {
            tracing::error!(%error, "flushing delivery state failed");
        }
    }
}

#[async_trait]
impl DeliveryState for EmbeddedDeliveryState {
    async fn apply(&self, webhook: &WebhookRef, outcomes: OutcomeSet) -> StorageResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let keys = WebhookKeys::new(webhook);
        let logged = !outcomes.log.is_empty();
        let listed = outcomes.rejected.iter().any(|(_, listed)| *listed);
        self.encode_set(&keys, outcomes)?.apply(&self.tree)?;
        if logged {
            self.trim(&keys, LOG, LOG_ENTRIES_KEPT)?;
        }
        if listed {
            self.trim(&keys, REJECTED, REJECTED_KEPT)?;
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    async fn sync(&self) -> StorageResult<()> {
        self.commit
            .wait_durable()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))
    }

    async fn cursor(&self, webhook: &WebhookRef) -> StorageResult<Option<u64>> {
        let key = WebhookKeys::new(webhook).tagged(CURSOR);
        Ok(self
            .tree
            .get(key)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    async fn stats(&self, webhook: &WebhookRef) -> StorageResult<Stats> {
        let key = WebhookKeys::new(webhook).tagged(STATS);
        Ok(codec::get(&self.tree, &key)?.unwrap_or_default())
    }

    async fn delivery(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Option<Delivery>> {
        Ok(codec::get(
            &self.tree,
            &WebhookKeys::new(webhook).delivery(seq),
        )?)
    }

    async fn attempts(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Vec<Attempt>> {
        let prefix = WebhookKeys::new(webhook).attempts_of(seq);
        let mut attempts = Vec::new();
        for value in self.tree.scan_prefix(prefix).values() {
            attempts.push(codec::decode(&value?)?);
        }
        Ok(attempts)
    }

    /// One range read from the first seq to the last (the seqs of a batch are close).
    async fn recorded_among(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<Vec<u64>> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        let keys = WebhookKeys::new(webhook);
        let mut recorded = Vec::new();
        for key in self
            .tree
            .range(keys.delivery(first)..=keys.delivery(last))
            .keys()
        {
            let seq = seq_of_tail(&key?);
            if seqs.binary_search(&seq).is_ok() {
                recorded.push(seq);
            }
        }
        Ok(recorded)
    }

    async fn deliveries_after(
        &self,
        webhook: &WebhookRef,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>> {
        let keys = WebhookKeys::new(webhook);
        let prefix = keys.tagged(DELIVERY);
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(seq) => keys.delivery(seq + 1),
            None => prefix.clone(),
        };
        let mut deliveries = Vec::new();
        for entry in self.tree.range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) || deliveries.len() == limit {
                break;
            }
            deliveries.push(codec::decode(&value)?);
        }
        Ok(deliveries)
    }

    async fn earliest_due(&self, webhook: &WebhookRef) -> StorageResult<Option<EpochMillis>> {
        let prefix = WebhookKeys::new(webhook).tagged(DUE);
        match self.tree.scan_prefix(prefix).keys().next() {
            Some(key) => Ok(Some(parse_due_key(&key?).0)),
            None => Ok(None),
        }
    }

    async fn due(
        &self,
        webhook: &WebhookRef,
        now: EpochMillis,
        limit: usize,
        exclude: &HashSet<u64>,
    ) -> StorageResult<Vec<Delivery>> {
        let keys = WebhookKeys::new(webhook);
        let range = keys.tagged(DUE)..keys.due(now.saturating_add(1), 0);
        let mut due = Vec::new();
        for key in self.tree.range(range).keys() {
            if due.len() == limit {
                break;
            }
            let key = key?;
            let (due_at, seq) = parse_due_key(&key);
            if exclude.contains(&seq) {
                continue;
            }
            match codec::get::<Delivery>(&self.tree, &keys.delivery(seq))? {
                Some(delivery) if is_live(&delivery, due_at) => due.push(delivery),
                _ => {
                    self.tree.remove(key)?;
                }
            }
        }
        Ok(due)
    }

    async fn rejected(
        &self,
        webhook: &WebhookRef,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<RejectedPage> {
        let keys = WebhookKeys::new(webhook);
        let prefix = keys.tagged(REJECTED);
        let start = match after {
            Some(u64::MAX) => {
                return Ok(RejectedPage {
                    seqs: Vec::new(),
                    done: true,
                });
            }
            Some(seq) => keys.rejected(seq + 1),
            None => prefix.clone(),
        };
        let mut seqs = Vec::new();
        for entry in self.tree.range(start..).keys() {
            let key = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            if seqs.len() == limit {
                return Ok(RejectedPage { seqs, done: false });
            }
            seqs.push(seq_of_tail(&key));
        }
        Ok(RejectedPage { seqs, done: true })
    }

    async fn is_rejected(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<bool> {
        Ok(self
            .tree
            .contains_key(WebhookKeys::new(webhook).rejected(seq))?)
    }

    async fn log_entries(&self, webhook: &WebhookRef) -> StorageResult<Vec<LogEntry>> {
        let prefix = WebhookKeys::new(webhook).tagged(LOG);
        let mut entries = Vec::new();
        for value in self.tree.scan_prefix(prefix).values().rev() {
            entries.push(codec::decode(&value?)?);
        }
        Ok(entries)
    }

    async fn purge(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<()> {
        // One removal per record and attempt: thousands of them must not hold an async
        // worker thread.
        let (tree, keys, seqs) = (self.tree.clone(), WebhookKeys::new(webhook), seqs.to_vec());
        tokio::task::spawn_blocking(move || Self::purge_blocking(&tree, &keys, &seqs))
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    async fn forget(&self, webhook: &WebhookRef) -> StorageResult<()> {
        // A busy webhook has hundreds of thousands of records: seconds of removals, off
        // the async workers.
        let (tree, prefix) = (self.tree.clone(), WebhookKeys::new(webhook).prefix);
        tokio::task::spawn_blocking(move || -> StorageResult<()> {
            for key in tree.scan_prefix(prefix).keys() {
                tree.remove(key?)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }
}
