//! The events a node read last, per tenant. A tenant's webhooks read the same events at
//! about the same time (one wake-up starts them all), so without this every event is
//! fetched from JetStream once per webhook: with 10 webhooks, ten direct gets of each
//! event, served by the same servers that replicate every write. With it, once per node.
//!
//! A tenant's entry is a [`Run`]: *all* of the tenant's events with seqs in
//! `(after, through]`, in order. That is what makes a hit safe: a read after `a` inside the
//! run needs nothing the run lacks up to `through`. Every batch a read fetches is such a
//! range too (replicas apply messages in order and answer with a prefix of what is
//! committed), so overlapping or adjacent ranges merge into one. Events never change once
//! stored; removal (retention, tenant deletion) forgets the tenant's run.
//!
//! The cache is bounded per tenant ([`MAX_RUN_EVENTS`], the oldest go first: only the
//! slowest reader loses) and in total ([`MAX_BYTES`], the least recently read tenants go
//! first). Fetches of one tenant go one at a time ([`ReadCache::fetch_lock`]): the webhooks
//! woken together would otherwise all miss together and fetch the same batch.
//!
//! A caught-up reader's question is "anything after the end?". One fetch that came back
//! short answers it for every reader woken by the same wake-ups ([`ReadCache::fresh`]):
//! the fetch started after the wake-up generation they saw, so it could see every event
//! they were woken for. The answer is trusted for [`FRESH_FOR`] only, so that the
//! workers' periodic look (for a wake-up that was lost) still reaches the stream.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::storage::StoredEvent;

/// Most events kept per tenant: a few worker batches of spread between its webhooks.
pub const MAX_RUN_EVENTS: usize = 4096;
/// Most bytes kept over all tenants (payloads and ids).
pub const MAX_BYTES: usize = 64 << 20;
/// How long a short fetch's "nothing after `through`" stands in for a fetch.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ReadCache {
    inner: Mutex<Tenants>,
}

#[derive(Default)]
struct Tenants {
    runs: HashMap<String, Run>,
    bytes: usize,
    /// Bumped on every read; a run's `used` says how recently it was read.
    clock: u64,
}

/// All of a tenant's events with seqs in `(after, through]`, in seq order.
struct Run {
    after: u64,
    through: u64,
    events: VecDeque<(u64, StoredEvent)>,
    bytes: usize,
    used: u64,
    /// The last fetch from `through` came back short: the wake-up generation it started
    /// at, and when. Cleared when `through` moves by a full fetch.
    short: Option<(u64, Instant)>,
    /// Held by the one fetch of this tenant in progress.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

fn size(event: &StoredEvent) -> usize {
    event.payload.get().len() + event.id.len() + event.event_type.len() + 64
}

impl Run {
    fn empty(at: u64) -> Run {
        Run {
            after: at,
            through: at,
            events: VecDeque::new(),
            bytes: 0,
            used: 0,
            short: None,
            fetching: Arc::default(),
        }
    }

    /// Merges the complete range `(after, after + events]` (`through` its last seq) into
    /// this run when they overlap or touch; otherwise the newer range replaces it.
    fn merge(&mut self, after: u64, through: u64, events: &[(u64, StoredEvent)]) {
        if after > self.through || through < self.after {
            if after > self.through {
                let fetching = self.fetching.clone();
                *self = Run::empty(after);
                self.fetching = fetching;
            } else {
                return; // older than what is kept: the slowest reader's, not worth keeping
            }
        }
        for (seq, event) in events.iter().rev().filter(|(seq, _)| *seq <= self.after) {
            self.bytes += size(event);
            self.events.push_front((*seq, event.clone()));
        }
        for (seq, event) in events.iter().filter(|(seq, _)| *seq > self.through) {
            self.bytes += size(event);
            self.events.push_back((*seq, event.clone()));
        }
        self.after = self.after.min(after);
        self.through = self.through.max(through);
        while self.events.len() > MAX_RUN_EVENTS {
            if let Some((seq, event)) = self.events.pop_front() {
                self.bytes -= size(&event);
                self.after = seq;
            }
        }
    }
}

impl ReadCache {
    /// Up to `limit` of the tenant's events after `after` from the cache, and the seq they
    /// are complete through (a read goes on from there). `None`: `after` is outside the
    /// tenant's run.
    pub fn get(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Option<(Vec<(u64, StoredEvent)>, u64)> {
        let mut tenants = self.inner.lock().expect("read cache");
        tenants.clock += 1;
        let clock = tenants.clock;
        tenants.runs.get_mut(tenant).and_then(|run| {
            if after < run.after || after > run.through {
                return None;
            }
            run.used = clock;
            let start = run.events.partition_point(|(seq, _)| *seq <= after);
            let events: Vec<_> = run.events.range(start..).take(limit).cloned().collect();
            let through = match events.last() {
                Some((seq, _)) if events.len() == limit => *seq,
                _ => run.through,
            };
            Some((events, through))
        })
    }

    /// The lock a fetch of `tenant`'s events holds, so that readers woken together fetch
    /// a batch once and find it in the cache after waiting.
    pub fn fetch_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut tenants = self.inner.lock().expect("read cache");
        tenants
            .runs
            .entry(tenant.to_owned())
            .or_insert_with(|| Run::empty(0))
            .fetching
            .clone()
    }

    /// Records a fetch: `events` are all of the tenant's events after `after` up to the
    /// last of them. `short`: the fetch asked for more than it got, and started at this
    /// wake-up generation (so there was nothing more to see then).
    pub fn put(&self, tenant: &str, after: u64, events: &[(u64, StoredEvent)], short: Option<u64>) {
        let mut tenants = self.inner.lock().expect("read cache");
        tenants.clock += 1;
        let clock = tenants.clock;
        let run = tenants
            .runs
            .entry(tenant.to_owned())
            .or_insert_with(|| Run::empty(after));
        if run.events.is_empty() {
            // Nothing kept: the run starts where this fetch did.
            run.after = after;
            run.through = after;
        }
        let before = run.bytes;
        let last = events.last().map_or(after, |(seq, _)| *seq);
        if !events.is_empty() {
            run.merge(after, last, events);
        }
        run.short = match short {
            Some(generation) if last == run.through => Some((generation, Instant::now())),
            // A full fetch moved the end; a short one behind the end says nothing new.
            _ if last >= run.through => None,
            _ => run.short,
        };
        run.used = clock;
        let after_merge = run.bytes;
        tenants.bytes = tenants.bytes + after_merge - before;
        tenants.evict_over(MAX_BYTES);
    }

    /// Whether a short fetch that started at or after wake-up `generation`, less than
    /// [`FRESH_FOR`] ago, found nothing after the end of the tenant's run.
    pub fn fresh(&self, tenant: &str, generation: u64) -> bool {
        let tenants = self.inner.lock().expect("read cache");
        tenants
            .runs
            .get(tenant)
            .and_then(|run| run.short)
            .is_some_and(|(seen, at)| seen >= generation && at.elapsed() < FRESH_FOR)
    }

    /// Forgets the tenant's events (they were removed from the log).
    pub fn forget(&self, tenant: &str) {
        let mut tenants = self.inner.lock().expect("read cache");
        if let Some(run) = tenants.runs.remove(tenant) {
            tenants.bytes -= run.bytes;
        }
    }
}

impl Tenants {
    /// Drops the least recently read tenants' events until at most `max` bytes are kept.
    fn evict_over(&mut self, max: usize) {
        while self.bytes > max {
            let Some(oldest) = self
                .runs
                .iter()
                .filter(|(_, run)| run.bytes > 0)
                .min_by_key(|(_, run)| run.used)
                .map(|(tenant, _)| tenant.clone())
            else {
                return;
            };
            if let Some(run) = self.runs.get_mut(&oldest) {
                self.bytes -= run.bytes;
                let at = run.through;
                let fetching = run.fetching.clone();
                *run = Run::empty(at);
                run.fetching = fetching;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> (u64, StoredEvent) {
        (
            seq,
            StoredEvent {
                id: format!("e{seq}"),
                event_type: "t".into(),
                published_at: 0,
                received_at: 0,
                payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            },
        )
    }

    fn seqs(events: &[(u64, StoredEvent)]) -> Vec<u64> {
        events.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn a_read_inside_the_run_is_answered_and_says_how_far_it_is_complete() {
        let cache = ReadCache::default();
        assert!(cache.get("acme", 0, 10).is_none());
        // The tenant's events after 0 up to 9 are 2, 5 and 9 (the others are other tenants').
        cache.put("acme", 0, &[event(2), event(5), event(9)], None);
        let (events, through) = cache.get("acme", 0, 10).unwrap();
        assert_eq!((seqs(&events), through), (vec![2, 5, 9], 9));
        let (events, through) = cache.get("acme", 3, 1).unwrap();
        assert_eq!((seqs(&events), through), (vec![5], 5));
        // Between 5 and 9 nothing but 9; past 9 unknown: the read goes on from 9.
        let (events, through) = cache.get("acme", 9, 10).unwrap();
        assert_eq!((seqs(&events), through), (vec![], 9));
        assert!(cache.get("acme", 10, 10).is_none(), "past the run");
        assert!(cache.get("other", 0, 10).is_none(), "another tenant");
    }

    #[test]
    fn touching_and_overlapping_ranges_merge_and_a_newer_one_replaces() {
        let cache = ReadCache::default();
        cache.put("acme", 10, &[event(12), event(15)], None);
        cache.put("acme", 15, &[event(16), event(20)], None);
        cache.put("acme", 4, &[event(6), event(12)], None);
        let (events, through) = cache.get("acme", 4, 100).unwrap();
        assert_eq!((seqs(&events), through), (vec![6, 12, 15, 16, 20], 20));
        // A range that is older than the run and does not touch it is not kept.
        cache.put("acme", 0, &[event(1), event(2)], None);
        assert!(cache.get("acme", 0, 10).is_none());
        // One ahead of it, not touching, replaces it.
        cache.put("acme", 30, &[event(31)], None);
        assert!(cache.get("acme", 20, 10).is_none());
        assert_eq!(seqs(&cache.get("acme", 30, 10).unwrap().0), vec![31]);
        cache.forget("acme");
        assert!(cache.get("acme", 30, 10).is_none());
    }

    #[test]
    fn a_short_fetch_answers_readers_of_its_generation_for_a_while() {
        let cache = ReadCache::default();
        assert!(!cache.fresh("acme", 0));
        cache.put("acme", 0, &[event(3)], Some(7));
        assert!(
            cache.fresh("acme", 7),
            "woken no later than the fetch started"
        );
        assert!(cache.fresh("acme", 6));
        assert!(
            !cache.fresh("acme", 8),
            "woken for something it may not have seen"
        );
        // An empty short fetch from the end confirms the end again, at its generation.
        cache.put("acme", 3, &[], Some(8));
        assert!(cache.fresh("acme", 8));
        // A full fetch moved the end: nothing is known past it.
        cache.put("acme", 3, &[event(4)], None);
        assert!(!cache.fresh("acme", 0));
        // A short fetch behind the end says nothing about the end.
        cache.put("acme", 3, &[event(4)], Some(9));
        assert!(cache.fresh("acme", 9), "it ended at the end");
        cache.put("acme", 3, &[event(4), event(5)], None);
        cache.put("acme", 0, &[event(3)], Some(10));
        assert!(!cache.fresh("acme", 10));
    }

    #[test]
    fn the_oldest_events_go_first_past_the_bounds() {
        let cache = ReadCache::default();
        let many: Vec<_> = (1..=MAX_RUN_EVENTS as u64 + 10).map(event).collect();
        cache.put("acme", 0, &many, None);
        assert!(cache.get("acme", 5, 1).is_none(), "the oldest were dropped");
        let (events, _) = cache.get("acme", 10, 1).unwrap();
        assert_eq!(seqs(&events), vec![11]);

        let mut tenants = Tenants::default();
        for (i, tenant) in ["a", "b", "c"].into_iter().enumerate() {
            let mut run = Run::empty(0);
            run.merge(0, 1, &[event(1)]);
            run.used = i as u64;
            tenants.bytes += run.bytes;
            tenants.runs.insert(tenant.into(), run);
        }
        let one = tenants.runs["a"].bytes;
        tenants.evict_over(2 * one);
        assert_eq!(tenants.runs["a"].bytes, 0, "the least recently read");
        assert_eq!(tenants.runs["c"].bytes, one);
    }
}
