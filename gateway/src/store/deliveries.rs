//! Delivery state, all in the one `deliveries` tree. An attempt's outcome (delivery
//! record, attempt, retry index, rejected marker) is written with `store::Writes`: new
//! state first, removals last, so a crash in between can repeat a retry but not lose one.
//!
//! Keys start with `tenant \0 webhook \0` and a tag:
//! - `c`                 → cursor: every event with seq ≤ it is resolved or has a record
//! - `s`                 → Stats
//! - `d seq`             → Delivery
//! - `a seq n`           → Attempt number n (u32) of that delivery
//! - `q due seq`         → () pending retry due at `due` (millis)
//! - `r seq`             → () in the rejected list
//! - `l time n`          → LogEntry

use super::{Store, StoreError, codec};
use crate::{
    delivery::records::{Attempt, Delivery, LOG_ENTRIES_KEPT, LogEntry, Stats},
    iso::EpochMillis,
};

const CURSOR: u8 = b'c';
const STATS: u8 = b's';
const DELIVERY: u8 = b'd';
const ATTEMPT: u8 = b'a';
const DUE: u8 = b'q';
const REJECTED: u8 = b'r';
const LOG: u8 = b'l';

/// Key builder for one webhook's part of the tree.
#[derive(Clone)]
pub struct WebhookKeys {
    prefix: Vec<u8>,
}

impl WebhookKeys {
    pub fn new(tenant: &str, webhook: &str) -> WebhookKeys {
        let mut prefix = codec::tenant_prefix(tenant);
        prefix.extend_from_slice(webhook.as_bytes());
        prefix.push(0);
        WebhookKeys { prefix }
    }

    pub fn all(&self) -> &[u8] {
        &self.prefix
    }

    fn tagged(&self, tag: u8) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 21);
        key.extend_from_slice(&self.prefix);
        key.push(tag);
        key
    }

    pub fn cursor(&self) -> Vec<u8> {
        self.tagged(CURSOR)
    }

    pub fn stats(&self) -> Vec<u8> {
        self.tagged(STATS)
    }

    pub fn delivery(&self, seq: u64) -> Vec<u8> {
        let mut key = self.tagged(DELIVERY);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn deliveries(&self) -> Vec<u8> {
        self.tagged(DELIVERY)
    }

    pub fn attempts_of(&self, seq: u64) -> Vec<u8> {
        let mut key = self.tagged(ATTEMPT);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn attempt(&self, seq: u64, n: u32) -> Vec<u8> {
        let mut key = self.attempts_of(seq);
        key.extend_from_slice(&n.to_be_bytes());
        key
    }

    pub fn due(&self, due: EpochMillis, seq: u64) -> Vec<u8> {
        let mut key = self.tagged(DUE);
        key.extend_from_slice(&(due.max(0) as u64).to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn due_prefix(&self) -> Vec<u8> {
        self.tagged(DUE)
    }

    pub fn rejected(&self, seq: u64) -> Vec<u8> {
        let mut key = self.tagged(REJECTED);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn rejected_prefix(&self) -> Vec<u8> {
        self.tagged(REJECTED)
    }

    fn log(&self, at: EpochMillis, n: u32) -> Vec<u8> {
        let mut key = self.tagged(LOG);
        key.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
        key.extend_from_slice(&n.to_be_bytes());
        key
    }
}

fn tail_u64(key: &[u8], from_end: usize) -> u64 {
    let n = key.len() - from_end;
    u64::from_be_bytes(key[n..n + 8].try_into().expect("8 bytes"))
}

/// A due retry: (due millis, seq).
pub fn parse_due_key(key: &[u8]) -> (EpochMillis, u64) {
    (tail_u64(key, 16) as EpochMillis, tail_u64(key, 8))
}

pub fn seq_of_tail(key: &[u8]) -> u64 {
    tail_u64(key, 8)
}

impl Store {
    pub fn cursor(&self, keys: &WebhookKeys) -> Result<Option<u64>, StoreError> {
        Ok(self
            .deliveries
            .get(keys.cursor())?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    pub fn set_cursor(&self, keys: &WebhookKeys, seq: u64) -> Result<(), StoreError> {
        self.deliveries.insert(keys.cursor(), &seq.to_be_bytes())?;
        Ok(())
    }

    pub fn stats(&self, keys: &WebhookKeys) -> Result<Stats, StoreError> {
        Ok(codec::get(&self.deliveries, &keys.stats())?.unwrap_or_default())
    }

    pub fn put_stats(&self, keys: &WebhookKeys, stats: &Stats) -> Result<(), StoreError> {
        self.deliveries
            .insert(keys.stats(), codec::encode(stats)?)?;
        Ok(())
    }

    pub fn delivery(&self, keys: &WebhookKeys, seq: u64) -> Result<Option<Delivery>, StoreError> {
        codec::get(&self.deliveries, &keys.delivery(seq))
    }

    pub fn attempts(&self, keys: &WebhookKeys, seq: u64) -> Result<Vec<Attempt>, StoreError> {
        self.deliveries
            .scan_prefix(keys.attempts_of(seq))
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Deliveries of one webhook with seq > `after`, in seq order.
    pub fn deliveries_after(
        &self,
        keys: &WebhookKeys,
        after: Option<u64>,
    ) -> impl Iterator<Item = Result<Delivery, StoreError>> + '_ {
        let start = match after {
            Some(seq) => keys.delivery(seq.saturating_add(1)),
            None => keys.deliveries(),
        };
        let prefix = keys.deliveries();
        self.deliveries
            .range(start..)
            .take_while(move |entry| match entry {
                Ok((key, _)) => key.starts_with(&prefix),
                Err(_) => true,
            })
            .map(|entry| codec::decode(&entry?.1))
    }

    /// Rejected seqs of one webhook after `after`, at most `limit`.
    pub fn rejected_seqs(
        &self,
        keys: &WebhookKeys,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<u64>, bool), StoreError> {
        let prefix = keys.rejected_prefix();
        let start = match after {
            Some(seq) => keys.rejected(seq.saturating_add(1)),
            None => prefix.clone(),
        };
        let mut seqs = Vec::new();
        for entry in self.deliveries.range(start..) {
            let (key, _) = entry?;
            if !key.starts_with(&prefix) {
                return Ok((seqs, true));
            }
            if seqs.len() == limit {
                return Ok((seqs, false));
            }
            seqs.push(seq_of_tail(&key));
        }
        Ok((seqs, true))
    }

    pub fn is_rejected(&self, keys: &WebhookKeys, seq: u64) -> Result<bool, StoreError> {
        Ok(self.deliveries.contains_key(keys.rejected(seq))?)
    }

    /// Appends to the integration log, keeping only the newest entries.
    pub fn append_log(&self, keys: &WebhookKeys, entry: &LogEntry) -> Result<(), StoreError> {
        let prefix = keys.tagged(LOG);
        // Orders entries of the same millisecond (a stop and a start in quick succession)
        // as they were written; a random tie-breaker listed them either way.
        static WRITTEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.deliveries
            .insert(keys.log(entry.created_at, n), codec::encode(entry)?)?;
        let count = self.deliveries.scan_prefix(&prefix).count();
        if count > LOG_ENTRIES_KEPT {
            for key in self
                .deliveries
                .scan_prefix(&prefix)
                .keys()
                .take(count - LOG_ENTRIES_KEPT)
            {
                self.deliveries.remove(key?)?;
            }
        }
        Ok(())
    }

    /// The integration log, newest first.
    pub fn log_entries(&self, keys: &WebhookKeys) -> Result<Vec<LogEntry>, StoreError> {
        self.deliveries
            .scan_prefix(keys.tagged(LOG))
            .values()
            .rev()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Removes every record of a webhook (on delete).
    pub fn forget_webhook(&self, keys: &WebhookKeys) -> Result<(), StoreError> {
        for key in self.deliveries.scan_prefix(keys.all()).keys() {
            self.deliveries.remove(key?)?;
        }
        Ok(())
    }
}
