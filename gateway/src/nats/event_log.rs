//! The event log on JetStream: one stream (`HG_EVENTS`) for every tenant, one message per
//! event on `hg.ev.<tenant>.<type>.<id>` (see `subjects`). A seq is the stream sequence:
//! it grows with every event of any tenant, so a tenant's seqs have gaps.
//!
//! - Durability: an append returns after JetStream's publish acks, which come once each
//!   event is stored at the stream's replication factor. Without a quorum no ack comes and
//!   the append fails (`Unavailable`): the API answers 503, never 202.
//! - Idempotency: each event is published with an expected last sequence of 0 on
//!   `hg.ev.<tenant>.*.<id>`, so the stream refuses a second event with the same id for as
//!   long as the first is stored (the retention window), not only for JetStream's
//!   deduplication window; a refused event is answered with the stored one's seq.
//! - Reads go through direct gets (any replica answers; replicas hold only committed
//!   messages, so nothing is read that a failure could take back), in batches.
//! - Wake-ups: after an append the node publishes `hg.new.<tenant>` on core NATS; every
//!   node's log listens and moves its [`subscribe`](EventLog::subscribe) watch.

use std::{
    collections::{BinaryHeap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishErrorKind, stream::DirectGetErrorKind},
};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{
    Nats, direct, lease::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, read_cache::ReadCache, subjects,
    unavailable,
};
use crate::{
    ids,
    iso::EpochMillis,
    storage::{Appended, EventLog, NewEvent, StorageError, StorageResult, StoredEvent, TimePage},
};

pub struct NatsEventLog {
    nats: Arc<Nats>,
    stream: jetstream::stream::Stream,
    /// Per tenant (by subject token), the wake-up of its readers: 10,000 workers must not
    /// all look at the log when one tenant's event arrives.
    wake_ups: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The events this node read last, shared by the tenant's workers.
    cache: ReadCache,
    /// Worker reads answered from `cache` alone, and reads that went to the stream.
    reads_cached: AtomicU64,
    reads_fetched: AtomicU64,
}

impl NatsEventLog {
    /// Creates the stream if it is missing (or updates its settings) and starts listening
    /// for other nodes' wake-ups.
    pub async fn open(nats: Arc<Nats>) -> StorageResult<Arc<NatsEventLog>> {
        let config = jetstream::stream::Config {
            name: subjects::EVENTS_STREAM.into(),
            subjects: vec![subjects::EVENTS_ALL.into()],
            storage: jetstream::stream::StorageType::File,
            num_replicas: nats.replicas,
            allow_direct: true,
            ..Default::default()
        };
        let stream = nats
            .jetstream
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
        super::wait_until_writable(&nats, "hg.ev._probe._probe._probe").await?;
        let log = Arc::new(NatsEventLog {
            nats,
            stream,
            wake_ups: Mutex::default(),
            cache: ReadCache::default(),
            reads_cached: AtomicU64::new(0),
            reads_fetched: AtomicU64::new(0),
        });
        let mut wake_ups = log
            .nats
            .client
            .subscribe(subjects::NEW_EVENTS_ALL)
            .await
            .map_err(unavailable)?;
        let listening = Arc::downgrade(&log);
        tokio::spawn(async move {
            while let Some(message) = wake_ups.next().await {
                let Some(log) = listening.upgrade() else {
                    return;
                };
                if let Some(tenant) = message.subject.strip_prefix(subjects::NEW_EVENTS_PREFIX) {
                    log.wake(tenant);
                }
            }
        });
        Ok(log)
    }

    /// Wakes the readers of the tenant with subject token `tenant`.
    /// The count moves even with no reader yet: it is also the generation a cached short
    /// read is judged by (`read_cache`).
    fn wake(&self, tenant: &str) {
        self.wake_ups
            .lock()
            .expect("wake-ups")
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .send_modify(|n| *n += 1);
    }

    /// How many wake-ups of the tenant this node has seen (its readers' watch value).
    fn generation(&self, tenant: &str) -> u64 {
        let wake_ups = self.wake_ups.lock().expect("wake-ups");
        wake_ups
            .get(&subjects::token(tenant))
            .map_or(0, |wake_up| *wake_up.borrow())
    }

    fn decode(message: &jetstream::message::StreamMessage) -> StorageResult<StoredEvent> {
        serde_json::from_slice(&message.payload)
            .map_err(|e| StorageError::Corrupt(format!("event at {}: {e}", message.sequence)))
    }

    /// The stored event with this id, whatever its type.
    async fn by_id(&self, tenant: &str, id: &str) -> StorageResult<Option<(u64, StoredEvent)>> {
        match self
            .stream
            .direct_get_last_for_subject(subjects::event_id_filter(tenant, id))
            .await
        {
            Ok(message) => Ok(Some((message.sequence, Self::decode(&message)?))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Up to `limit` messages on `filter` from stream sequence `from_seq` on.
    async fn batch(
        &self,
        filter: String,
        from_seq: u64,
        limit: usize,
    ) -> StorageResult<Vec<jetstream::message::StreamMessage>> {
        direct::batch(
            &self.nats.jetstream,
            subjects::EVENTS_STREAM,
            &filter,
            from_seq,
            limit,
        )
        .await
    }
}

#[async_trait]
impl EventLog for NatsEventLog {
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> StorageResult<Vec<Appended>> {
        let mut answers: Vec<Option<Appended>> = vec![None; events.len()];
        // Ids earlier in this batch: a later event with one is a duplicate of the first.
        let mut first_of: HashMap<String, usize> = HashMap::new();
        let mut repeats = Vec::new();
        let mut acks = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            let id = event.id.unwrap_or_else(|| ids::generate("evt"));
            if let Some(&first) = first_of.get(&id) {
                repeats.push((i, first));
                continue;
            }
            first_of.insert(id.clone(), i);
            let stored = StoredEvent {
                id: id.clone(),
                event_type: event.event_type,
                published_at: event.published_at,
                received_at: event.received_at,
                payload: event.payload,
            };
            let body = serde_json::to_vec(&stored)
                .map_err(|e| StorageError::Corrupt(format!("event {id}: {e}")))?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
            headers.insert(
                EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
                subjects::event_id_filter(tenant, &id).as_str(),
            );
            // Publishes are pipelined: the acks are awaited below, all together.
            let ack = self
                .nats
                .jetstream
                .publish_with_headers(
                    subjects::event(tenant, &stored.event_type, &id),
                    headers,
                    body.into(),
                )
                .await
                .map_err(unavailable)?;
            acks.push((i, id, ack));
        }
        let mut wrote = false;
        for (i, id, ack) in acks {
            let answer = match ack.await {
                Ok(ack) => {
                    wrote = true;
                    Appended {
                        id,
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    }
                }
                // The id is taken: the stored event's seq answers.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    match self.by_id(tenant, &id).await? {
                        Some((seq, _)) => Appended {
                            id,
                            seq,
                            duplicate: true,
                        },
                        None => {
                            return Err(StorageError::Unavailable(format!(
                                "event {id} was refused as a duplicate but is not stored"
                            )));
                        }
                    }
                }
                Err(e) => return Err(unavailable(e)),
            };
            answers[i] = Some(answer);
        }
        for (i, first) in repeats {
            let mut answer = answers[first].clone().expect("answered above");
            answer.duplicate = true;
            answers[i] = Some(answer);
        }
        if wrote {
            self.wake(&subjects::token(tenant));
            // Other nodes' workers: best effort, they also look again on their own.
            let _ = self
                .nats
                .client
                .publish(subjects::new_events(tenant), bytes::Bytes::new())
                .await;
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every event answered"))
            .collect())
    }

    async fn durable_seq(&self, tenant: &str) -> StorageResult<u64> {
        match self
            .stream
            .direct_get_last_for_subject(subjects::tenant_events(tenant))
            .await
        {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn subscribe(&self, tenant: &str) -> watch::Receiver<u64> {
        let mut wake_ups = self.wake_ups.lock().expect("wake-ups");
        wake_ups
            .entry(subjects::token(tenant))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// From the node's cache where it has the events, else from the stream, one fetch of
    /// a tenant at a time (see `read_cache`).
    async fn read_after(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>> {
        let woken_at = self.generation(tenant);
        let answered = |cached: &Option<(Vec<(u64, StoredEvent)>, u64)>| {
            cached.as_ref().is_some_and(|(events, _)| {
                events.len() == limit || self.cache.fresh(tenant, woken_at)
            })
        };
        let cached = self.cache.get(tenant, after, limit);
        if answered(&cached) {
            self.reads_cached.fetch_add(1, Ordering::Relaxed);
            return Ok(cached.map(|(events, _)| events).unwrap_or_default());
        }
        let fetching = self.cache.fetch_lock(tenant);
        let _fetching = fetching.lock().await;
        // The reader before us may have fetched what we need.
        let cached = self.cache.get(tenant, after, limit);
        if answered(&cached) {
            self.reads_cached.fetch_add(1, Ordering::Relaxed);
            return Ok(cached.map(|(events, _)| events).unwrap_or_default());
        }
        let (mut events, through) = cached.unwrap_or((Vec::new(), after));
        self.reads_fetched.fetch_add(1, Ordering::Relaxed);
        let wanted = limit - events.len();
        let generation = self.generation(tenant);
        let messages = self
            .batch(subjects::tenant_events(tenant), through + 1, wanted)
            .await?;
        let fetched = messages
            .iter()
            .take(wanted)
            .map(|m| Ok((m.sequence, Self::decode(m)?)))
            .collect::<StorageResult<Vec<_>>>()?;
        let short = (fetched.len() < wanted).then_some(generation);
        self.cache.put(tenant, through, &fetched, short);
        events.extend(fetched);
        Ok(events)
    }

    async fn event_by_seq(&self, tenant: &str, seq: u64) -> StorageResult<Option<StoredEvent>> {
        match self.stream.direct_get(seq).await {
            Ok(message) if subjects::is_tenant_event(&message.subject, tenant) => {
                Ok(Some(Self::decode(&message)?))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn event_by_id(
        &self,
        tenant: &str,
        id: &str,
    ) -> StorageResult<Option<(u64, StoredEvent)>> {
        self.by_id(tenant, id).await
    }

    /// JetStream orders a type's events by seq only: the query reads every event of the
    /// type and keeps the page's share ordered by (publish time, seq), so its cost grows
    /// with the type's events, not with the page.
    async fn by_time(
        &self,
        tenant: &str,
        event_type: &str,
        from: EpochMillis,
        to: EpochMillis,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<TimePage> {
        let after = after.and_then(parse_position);
        // The `limit + 1` smallest positions past `after`: the page and whether more follow.
        let mut smallest: BinaryHeap<Ranked> = BinaryHeap::new();
        let messages = direct::scan(
            &self.nats.jetstream,
            subjects::EVENTS_STREAM,
            &subjects::type_events(tenant, event_type),
        )
        .await?;
        for message in &messages {
            let event = Self::decode(message)?;
            let position = (event.published_at, message.sequence);
            if event.published_at < from
                || event.published_at > to
                || after.is_some_and(|a| position <= a)
            {
                continue;
            }
            smallest.push(Ranked { position, event });
            if smallest.len() > limit + 1 {
                smallest.pop();
            }
        }
        let mut ordered = smallest.into_sorted_vec();
        let more = ordered.len() > limit;
        ordered.truncate(limit);
        let next = more
            .then(|| {
                ordered
                    .last()
                    .map(|r| format_position(r.position.0, r.position.1))
            })
            .flatten();
        Ok(TimePage {
            events: ordered
                .into_iter()
                .map(|r| (r.position.1, r.event))
                .collect(),
            next,
        })
    }

    async fn oldest_before(
        &self,
        tenant: &str,
        cutoff: EpochMillis,
        limit: usize,
    ) -> StorageResult<Vec<(u64, StoredEvent)>> {
        let messages = self
            .batch(subjects::tenant_events(tenant), 1, limit)
            .await?;
        let mut old = Vec::new();
        for message in &messages {
            let event = Self::decode(message)?;
            // Received in order: the first one that is young enough ends the old ones.
            if event.received_at >= cutoff {
                break;
            }
            old.push((message.sequence, event));
        }
        Ok(old)
    }

    async fn remove(&self, tenant: &str, events: &[(u64, StoredEvent)]) -> StorageResult<()> {
        let Some(last) = events.iter().map(|(seq, _)| *seq).max() else {
            return Ok(());
        };
        self.cache.forget(tenant);
        // Everything of the tenant below `last + 1`: what `oldest_before` returned, oldest
        // first, is a prefix of the tenant's events.
        self.stream
            .purge()
            .filter(subjects::tenant_events(tenant))
            .sequence(last + 1)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// JetStream frees the space of purged messages itself.
    async fn compact(&self, _cutoff: EpochMillis) -> StorageResult<usize> {
        Ok(0)
    }

    async fn forget_tenant(&self, tenant: &str) -> StorageResult<()> {
        self.cache.forget(tenant);
        self.stream
            .purge()
            .filter(subjects::tenant_events(tenant))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP hookgate_event_reads_total Delivery workers' reads of the event log, by where \
             they were answered: this node's cache of recent events, or the stream.\n\
             # TYPE hookgate_event_reads_total counter\n\
             hookgate_event_reads_total{{from=\"cache\"}} {}\n\
             hookgate_event_reads_total{{from=\"stream\"}} {}\n",
            self.reads_cached.load(Ordering::Relaxed),
            self.reads_fetched.load(Ordering::Relaxed),
        );
    }

    fn close(&self) {}
}

/// An event ordered by its position in a time listing: (publish time, seq).
struct Ranked {
    position: (EpochMillis, u64),
    event: StoredEvent,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.position.cmp(&other.position)
    }
}

/// Page positions are `published.seq`, opaque to clients (as in the embedded log).
fn format_position(published: EpochMillis, seq: u64) -> String {
    format!("{published}.{seq}")
}

fn parse_position(text: &str) -> Option<(EpochMillis, u64)> {
    let (published, seq) = text.split_once('.')?;
    Some((published.parse().ok()?, seq.parse().ok()?))
}
