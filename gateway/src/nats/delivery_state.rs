//! Delivery state on JetStream: one stream, `HG_STATE`, that keeps one message per
//! subject (`max_messages_per_subject = 1`), so each subject is a record and publishing to
//! it replaces the record. Per webhook, under `hg.st.<tenant>.<webhook>` (`P`):
//!
//! | subject | holds |
//! |---|---|
//! | `P.cur` | the cursor |
//! | `P.stats` | the statistics |
//! | `P.rec.<seq>` | the delivery record of one event |
//! | `P.att.<seq>.<n>` | its attempt number `n` |
//! | `P.due.<seq>` | when its retry is due; `-` once it is not |
//! | `P.rej.<seq>` | `1` while it is on the rejected list; `-` once it is not |
//! | `P.log.<id>` | an integration log entry (the newest `LOG_ENTRIES_KEPT` are kept) |
//!
//! An [`OutcomeSet`] is one atomic batch publish (nats-server 2.12): all of its messages
//! are stored or none. A set of more than one batch's messages goes in batches in the
//! embedded backend's crash order: records, attempts and entries first, the cursor last.
//!
//! Listings (records after a seq, the due and rejected entries, the log) read every
//! message of their subject filter through batched direct gets and order them here:
//! JetStream orders by stream sequence only.

use std::{collections::HashSet, sync::Arc};

use async_nats::jetstream::{self, message::OutboundMessage, message::StreamMessage};
use async_trait::async_trait;
use bytes::Bytes;
use jetstream_extra::batch_publish::BatchPublishExt;
use serde::de::DeserializeOwned;

use super::{Nats, direct, lease::Fence, ownership, subjects::token, unavailable};
use crate::{
    delivery::records::{
        Attempt, Delivery, LOG_ENTRIES_KEPT, LogEntry, MessageStatus, REJECTED_KEPT, Stats,
    },
    ids,
    iso::EpochMillis,
    storage::{DeliveryState, OutcomeSet, RejectedPage, StorageError, StorageResult, WebhookRef},
};

pub const STATE_STREAM: &str = "HG_STATE";

/// JetStream's most messages in one atomic batch.
const MAX_ATOMIC_BATCH: usize = 1000;

pub struct NatsDeliveryState {
    nats: Arc<Nats>,
    stream: jetstream::stream::Stream,
}

/// `hg.st.<tenant>.<webhook>`: the prefix of one webhook's subjects.
fn prefix(webhook: &WebhookRef) -> String {
    format!(
        "hg.st.{}.{}",
        token(&webhook.tenant),
        token(&webhook.webhook)
    )
}

fn corrupt(subject: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("delivery state {subject}: {error}"))
}

fn json<T: serde::Serialize>(subject: &str, value: &T) -> StorageResult<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| corrupt(subject, e))
}

fn decode<T: DeserializeOwned>(message: &StreamMessage) -> StorageResult<T> {
    serde_json::from_slice(&message.payload).map_err(|e| corrupt(&message.subject, e))
}

/// The seq right after `head` in `subject` (`head` = `P.rec.` for `P.rec.<seq>`).
fn seq_after(subject: &str, head: &str) -> Option<u64> {
    subject.strip_prefix(head)?.split('.').next()?.parse().ok()
}

impl NatsDeliveryState {
    pub async fn open(nats: Arc<Nats>) -> StorageResult<NatsDeliveryState> {
        let config = jetstream::stream::Config {
            name: STATE_STREAM.into(),
            subjects: vec!["hg.st.>".into()],
            storage: jetstream::stream::StorageType::File,
            num_replicas: nats.replicas,
            max_messages_per_subject: 1,
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        };
        let stream = nats
            .jetstream
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
        super::wait_until_writable(&nats, "hg.st._probe._probe.cur").await?;
        Ok(NatsDeliveryState { nats, stream })
    }

    async fn last(&self, subject: &str) -> StorageResult<Option<StreamMessage>> {
        Ok(direct::last(&self.stream, subject)
            .await?
            .filter(|m| !is_tombstone(m)))
    }

    /// Every non-empty message on `filter`.
    async fn scan(&self, filter: &str) -> StorageResult<Vec<StreamMessage>> {
        let mut messages = direct::scan(&self.nats.jetstream, STATE_STREAM, filter).await?;
        messages.retain(|m| !is_tombstone(m));
        Ok(messages)
    }

    /// Publishes `messages` as atomic batches, in order, each message fenced by `fence`
    /// when given (a batch with one refused message is refused whole).
    async fn publish(
        &self,
        messages: Vec<OutboundMessage>,
        fence: Option<&Fence>,
    ) -> StorageResult<()> {
        let mut messages = messages
            .into_iter()
            .map(|mut message| {
                message.headers = fence.map(Fence::headers);
                message
            })
            .peekable();
        while messages.peek().is_some() {
            let chunk: Vec<OutboundMessage> = messages.by_ref().take(MAX_ATOMIC_BATCH).collect();
            self.nats
                .jetstream
                .batch_publish_all()
                .publish(futures_util::stream::iter(chunk))
                .await
                .map_err(|error| match is_wrong_last_sequence(&error) {
                    true => StorageError::Fenced(error.to_string()),
                    false => unavailable(error),
                })?;
        }
        Ok(())
    }

    /// Removes every message on each of `filters`.
    async fn purge_filters(&self, filters: Vec<String>) -> StorageResult<()> {
        for filter in filters {
            self.stream
                .purge()
                .filter(filter)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// Whether the stream refused a batch for its expected last sequence: the fence's lease
/// moved on.
fn is_wrong_last_sequence(error: &jetstream_extra::batch_publish::BatchPublishError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|api| api.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE)
}

/// What a subject holds once its entry is gone (not due, off the rejected list). Not an
/// empty payload: batched direct gets take an empty message for the end of the batch.
const TOMBSTONE: &[u8] = b"-";

fn tombstone() -> Bytes {
    Bytes::from_static(TOMBSTONE)
}

fn is_tombstone(message: &StreamMessage) -> bool {
    message.payload.as_ref() == TOMBSTONE
}

fn message(subject: String, payload: Bytes) -> OutboundMessage {
    OutboundMessage {
        subject: subject.into(),
        payload,
        headers: None,
    }
}

impl NatsDeliveryState {
    /// [`DeliveryState::apply`] by the holder of `fence`: stored only while the fence's
    /// lease is still the one it names.
    pub async fn apply_fenced(
        &self,
        webhook: &WebhookRef,
        outcomes: OutcomeSet,
        fence: Option<&Fence>,
    ) -> StorageResult<()> {
        let p = prefix(webhook);
        let mut messages = Vec::new();
        // A set larger than one atomic batch is split: as in the embedded backend, a
        // record never goes before its own retry entry (a crash between would keep a
        // pending record that nothing retries), and a retry entry is cleared only after
        // the record that no longer needs it.
        for change in &outcomes.records {
            let delivery = &change.delivery;
            let seq = delivery.seq;
            let subject = format!("{p}.rec.{seq}");
            let record = message(subject.clone(), json(&subject, delivery)?);
            let due = match (delivery.status, delivery.next_attempt_at) {
                (MessageStatus::Pending, Some(at)) => Some(at),
                _ => None,
            };
            match due {
                Some(at) => {
                    messages.push(message(format!("{p}.due.{seq}"), at.to_string().into()));
                    messages.push(record);
                }
                None if change.replaces_due.is_some() => {
                    messages.push(record);
                    messages.push(message(format!("{p}.due.{seq}"), tombstone()));
                }
                None => messages.push(record),
            }
        }
        for (seq, number, attempt) in &outcomes.attempts {
            let subject = format!("{p}.att.{seq}.{number}");
            messages.push(message(subject.clone(), json(&subject, attempt)?));
        }
        for (seq, listed) in &outcomes.rejected {
            let payload = if *listed {
                Bytes::from_static(b"1")
            } else {
                tombstone()
            };
            messages.push(message(format!("{p}.rej.{seq}"), payload));
        }
        for entry in &outcomes.log {
            let subject = format!("{p}.log.{}", ids::generate("log"));
            messages.push(message(subject.clone(), json(&subject, entry)?));
        }
        if let Some(stats) = &outcomes.stats {
            let subject = format!("{p}.stats");
            messages.push(message(subject.clone(), json(&subject, stats)?));
        }
        // Last: the cursor passes events only after what records them.
        if let Some(cursor) = outcomes.cursor {
            messages.push(message(format!("{p}.cur"), cursor.to_string().into()));
        }
        self.publish(messages, fence).await?;
        // A removed entry is a tombstone on its subject, and counts among the kept ones:
        // the list holds at most `REJECTED_KEPT`, sometimes fewer.
        if outcomes.rejected.iter().any(|(_, listed)| *listed) {
            self.stream
                .purge()
                .filter(format!("{p}.rej.*"))
                .keep(REJECTED_KEPT as u64)
                .await
                .map_err(unavailable)?;
        }
        if !outcomes.log.is_empty() {
            self.stream
                .purge()
                .filter(format!("{p}.log.*"))
                .keep(LOG_ENTRIES_KEPT as u64)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl DeliveryState for NatsDeliveryState {
    /// A worker's set is fenced by the shard lease its own lease was granted under, so
    /// it is refused once that shard moved, even if this node has taken the shard back
    /// since. What the API writes carries no fence.
    async fn apply(&self, webhook: &WebhookRef, outcomes: OutcomeSet) -> StorageResult<()> {
        let fence = outcomes
            .fence
            .map(|token| ownership::shard_fence(webhook, token));
        self.apply_fenced(webhook, outcomes, fence.as_ref()).await
    }

    /// Every `apply` is durable when it returns (stored at the replication factor).
    async fn sync(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn cursor(&self, webhook: &WebhookRef) -> StorageResult<Option<u64>> {
        let subject = format!("{}.cur", prefix(webhook));
        match self.last(&subject).await? {
            Some(message) => std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|text| text.parse().ok())
                .map(Some)
                .ok_or_else(|| corrupt(&subject, "not a cursor")),
            None => Ok(None),
        }
    }

    async fn stats(&self, webhook: &WebhookRef) -> StorageResult<Stats> {
        match self.last(&format!("{}.stats", prefix(webhook))).await? {
            Some(message) => decode(&message),
            None => Ok(Stats::default()),
        }
    }

    async fn delivery(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Option<Delivery>> {
        match self.last(&format!("{}.rec.{seq}", prefix(webhook))).await? {
            Some(message) => decode(&message).map(Some),
            None => Ok(None),
        }
    }

    async fn attempts(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<Vec<Attempt>> {
        let p = prefix(webhook);
        let mut numbered: Vec<(u32, Attempt)> = Vec::new();
        for message in self.scan(&format!("{p}.att.{seq}.*")).await? {
            let number = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt(&message.subject, "no attempt number"))?;
            numbered.push((number, decode(&message)?));
        }
        numbered.sort_by_key(|(number, _)| *number);
        Ok(numbered.into_iter().map(|(_, attempt)| attempt).collect())
    }

    /// The last message of each seq's record subject, for just those subjects, in
    /// batches of JetStream's most subjects per request.
    async fn recorded_among(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<Vec<u64>> {
        let head = format!("{}.rec.", prefix(webhook));
        let mut recorded = Vec::new();
        for chunk in seqs.chunks(direct::MAX_SUBJECTS) {
            let subjects = chunk.iter().map(|seq| format!("{head}{seq}")).collect();
            for message in
                direct::last_of_each(&self.nats.jetstream, STATE_STREAM, subjects).await?
            {
                if !is_tombstone(&message)
                    && let Some(seq) = seq_after(&message.subject, &head)
                {
                    recorded.push(seq);
                }
            }
        }
        recorded.sort_unstable();
        Ok(recorded)
    }

    async fn deliveries_after(
        &self,
        webhook: &WebhookRef,
        after: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>> {
        let mut deliveries: Vec<Delivery> = Vec::new();
        for message in self.scan(&format!("{}.rec.*", prefix(webhook))).await? {
            let delivery: Delivery = decode(&message)?;
            if after.is_none_or(|after| delivery.seq > after) {
                deliveries.push(delivery);
            }
        }
        deliveries.sort_by_key(|d| d.seq);
        deliveries.truncate(limit);
        Ok(deliveries)
    }

    async fn earliest_due(&self, webhook: &WebhookRef) -> StorageResult<Option<EpochMillis>> {
        Ok(self
            .due_entries(webhook)
            .await?
            .into_iter()
            .map(|(at, _)| at)
            .min())
    }

    async fn due(
        &self,
        webhook: &WebhookRef,
        now: EpochMillis,
        limit: usize,
        exclude: &HashSet<u64>,
    ) -> StorageResult<Vec<Delivery>> {
        let mut entries: Vec<(EpochMillis, u64)> = self
            .due_entries(webhook)
            .await?
            .into_iter()
            .filter(|(at, seq)| *at <= now && !exclude.contains(seq))
            .collect();
        entries.sort_unstable();
        let mut due = Vec::new();
        for (at, seq) in entries {
            if due.len() == limit {
                break;
            }
            // An entry is written with its record, so it is never stale; the check costs
            // one read and keeps the promise whatever happened in between.
            if let Some(delivery) = self.delivery(webhook, seq).await?
                && delivery.status == MessageStatus::Pending
                && delivery.next_attempt_at == Some(at)
            {
                due.push(delivery);
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
        let mut seqs: Vec<u64> = self
            .scan(&format!("{}.rej.*", prefix(webhook)))
            .await?
            .iter()
            .filter_map(|m| seq_after(&m.subject, &format!("{}.rej.", prefix(webhook))))
            .filter(|seq| after.is_none_or(|after| *seq > after))
            .collect();
        seqs.sort_unstable();
        let done = seqs.len() <= limit;
        seqs.truncate(limit);
        Ok(RejectedPage { seqs, done })
    }

    async fn is_rejected(&self, webhook: &WebhookRef, seq: u64) -> StorageResult<bool> {
        Ok(self
            .last(&format!("{}.rej.{seq}", prefix(webhook)))
            .await?
            .is_some())
    }

    async fn log_entries(&self, webhook: &WebhookRef) -> StorageResult<Vec<LogEntry>> {
        let messages = self.scan(&format!("{}.log.*", prefix(webhook))).await?;
        // Stream order is the order they were written: newest first is its reverse.
        messages.iter().rev().map(decode).collect()
    }

    async fn purge(&self, webhook: &WebhookRef, seqs: &[u64]) -> StorageResult<()> {
        let p = prefix(webhook);
        let filters: Vec<String> = seqs
            .iter()
            .flat_map(|seq| {
                [
                    format!("{p}.rec.{seq}"),
                    format!("{p}.att.{seq}.*"),
                    format!("{p}.due.{seq}"),
                    format!("{p}.rej.{seq}"),
                ]
            })
            .collect();
        self.purge_filters(filters).await
    }

    async fn forget(&self, webhook: &WebhookRef) -> StorageResult<()> {
        self.purge_filters(vec![format!("{}.>", prefix(webhook))])
            .await
    }
}

impl NatsDeliveryState {
    /// `(due at, seq)` of every due entry of the webhook.
    async fn due_entries(&self, webhook: &WebhookRef) -> StorageResult<Vec<(EpochMillis, u64)>> {
        let head = format!("{}.due.", prefix(webhook));
        let mut entries = Vec::new();
        for message in self.scan(&format!("{head}*")).await? {
            let at = std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt(&message.subject, "not a due time"))?;
            let seq = seq_after(&message.subject, &head)
                .ok_or_else(|| corrupt(&message.subject, "no seq"))?;
            entries.push((at, seq));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_in_subjects() {
        assert_eq!(
            seq_after("hg.st.acme.w1.rec.42", "hg.st.acme.w1.rec."),
            Some(42)
        );
        assert_eq!(
            seq_after("hg.st.acme.w1.att.42.3", "hg.st.acme.w1.att."),
            Some(42)
        );
        // A webhook named like a kind: the prefix, not a search, finds the seq.
        assert_eq!(
            seq_after("hg.st.acme.rec.rec.7", "hg.st.acme.rec.rec."),
            Some(7)
        );
        assert_eq!(seq_after("hg.st.acme.w1.rec.x", "hg.st.acme.w1.rec."), None);
    }
}
