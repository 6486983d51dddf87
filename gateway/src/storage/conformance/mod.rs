//! The storage contract as tests: written against the traits alone, run against every
//! backend. A backend passes when `event_log_suite`, `delivery_state_suite` and
//! `catalog_suite` pass with a fresh, empty instance from its constructor for every check,
//! and `one_lease_per_webhook` with one (`embedded_backend_conforms` below; a new backend
//! adds one such test).

mod catalog;
mod event_log;

use std::{collections::HashSet, future::Future, sync::Arc};

use super::{Catalog, DeliveryState, EventLog, OutcomeSet, Ownership, RejectedPage, WebhookRef};
use crate::{
    delivery::records::{
        Attempt, Delivery, LOG_ENTRIES_KEPT, LogEntry, MessageStatus, REJECTED_KEPT, Stats,
    },
    iso::EpochMillis,
};

/// A backend under test: its parts, and whatever must live as long as they do.
pub struct Backend {
    pub log: Arc<dyn EventLog>,
    pub deliveries: Arc<dyn DeliveryState>,
    pub catalog: Arc<dyn Catalog>,
    pub ownership: Arc<dyn Ownership>,
    pub _guard: Box<dyn Send>,
}

const T0: EpochMillis = 1_800_000_000_000;

fn webhook(tenant: &str, id: &str) -> WebhookRef {
    WebhookRef::new(tenant, id)
}

fn record(seq: u64, status: MessageStatus, next_attempt_at: Option<EpochMillis>) -> Delivery {
    let mut delivery = Delivery::new(seq, &format!("evt-{seq}"), "order.created", T0 + seq as i64);
    delivery.status = status;
    delivery.next_attempt_at = next_attempt_at;
    delivery
}

fn attempt(seq: u64, n: u32) -> Attempt {
    Attempt {
        id: format!("att-{seq}-{n}"),
        event_id: format!("evt-{seq}"),
        webhook_id: "w".into(),
        at: T0 + n as i64,
        duration_ms: 3,
        status_code: Some(500),
        error: None,
        response_headers: Default::default(),
        response_body: format!("try {n}"),
    }
}

fn set(build: impl FnOnce(&mut OutcomeSet)) -> OutcomeSet {
    let mut set = OutcomeSet::default();
    build(&mut set);
    set
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.seq).collect()
}

/// Every event log check, each on a fresh, empty log from `make` (with whatever must live
/// as long as it does).
pub async fn event_log_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn EventLog>, Box<dyn Send>)>,
{
    use event_log::*;
    macro_rules! check {
        ($($name:ident),*) => {$({
            let (log, _guard) = make().await;
            $name(&*log).await;
        })*};
    }
    check!(
        appended_events_read_back_in_order,
        client_ids_are_idempotent,
        tenants_do_not_see_each_other,
        readers_are_woken_by_new_events,
        events_list_by_type_and_time_in_pages,
        retention_removes_the_oldest,
        a_forgotten_tenant_has_no_events
    );
}

/// Every delivery state check, each on a fresh, empty state from `make`.
pub async fn delivery_state_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn DeliveryState>, Box<dyn Send>)>,
{
    macro_rules! check {
        ($($name:ident),*) => {$({
            let (state, _guard) = make().await;
            $name(&*state).await;
        })*};
    }
    check!(
        a_set_is_read_back_as_written,
        an_empty_webhook_has_no_state,
        a_later_change_in_a_set_wins,
        due_entries_follow_the_records,
        due_never_returns_a_record_that_is_not_pending_then,
        due_is_ordered_limited_and_excludes,
        the_rejected_list_pages_in_order,
        the_rejected_list_keeps_the_newest,
        listings_page_in_seq_order,
        the_integration_log_is_newest_first_and_bounded,
        purge_removes_only_the_given_events,
        forget_removes_only_that_webhook
    );
}

/// Every catalog check, each on a fresh, empty catalog from `make`.
pub async fn catalog_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn Catalog>, Box<dyn Send>)>,
{
    use catalog::*;
    macro_rules! check {
        ($($name:ident),*) => {$({
            let (catalog, _guard) = make().await;
            $name(&*catalog).await;
        })*};
    }
    check!(
        tenants_are_created_once_and_keys_authenticate,
        listings_page_in_key_order,
        webhooks_round_trip_with_their_secrets,
        plugin_versions_count_up_and_are_never_reused,
        plugin_secrets_are_scoped_sealed_and_move_the_generation,
        a_restored_plugin_keeps_its_numbers_times_and_secrets,
        deleting_a_tenant_removes_only_its_records
    );
}

/// A webhook has one lease at a time: a second claim on this node waits for the first
/// to be given back, and a later grant carries a larger fencing token.
pub async fn one_lease_per_webhook(ownership: &dyn Ownership) {
    use std::time::Duration;
    let w1 = webhook("acme", "w1");
    let first = ownership
        .claim(&w1)
        .await
        .unwrap()
        .expect("nobody else holds it");
    assert!(!first.is_lost());
    let other = ownership.claim(&webhook("acme", "w2")).await.unwrap();
    assert!(other.is_some(), "another webhook is free");
    let waiting = tokio::time::timeout(Duration::from_millis(100), ownership.claim(&w1)).await;
    assert!(
        waiting.is_err(),
        "a second claim waits while the first lease is held"
    );
    let fence = first.fence();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), ownership.claim(&w1))
        .await
        .expect("a released lease can be claimed again")
        .unwrap()
        .unwrap();
    assert!(second.fence() > fence, "fencing tokens grow");
    assert_eq!(second.webhook(), &w1);
}

async fn a_set_is_read_back_as_written(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let stats = Stats {
        events: 2,
        triggers: 3,
        ..Stats::default()
    };
    let outcomes = set(|s| {
        s.record(record(7, MessageStatus::Delivered, None), None);
        s.attempt(7, 1, attempt(7, 1));
        s.attempt(7, 2, attempt(7, 2));
        s.stats(stats);
        s.cursor(7);
    });
    state.apply(&w, outcomes).await.unwrap();
    state.sync().await.unwrap();
    assert_eq!(state.cursor(&w).await.unwrap(), Some(7));
    assert_eq!(state.stats(&w).await.unwrap().triggers, 3);
    let stored = state.delivery(&w, 7).await.unwrap().expect("record");
    assert_eq!(stored.status, MessageStatus::Delivered);
    assert_eq!(stored.event_id, "evt-7");
    let attempts = state.attempts(&w, 7).await.unwrap();
    let bodies: Vec<&str> = attempts.iter().map(|a| a.response_body.as_str()).collect();
    assert_eq!(bodies, ["try 1", "try 2"], "attempts oldest first");
}

async fn an_empty_webhook_has_no_state(state: &dyn DeliveryState) {
    let w = webhook("acme", "none");
    assert_eq!(state.cursor(&w).await.unwrap(), None);
    assert_eq!(state.stats(&w).await.unwrap().events, 0);
    assert!(state.delivery(&w, 1).await.unwrap().is_none());
    assert!(state.attempts(&w, 1).await.unwrap().is_empty());
    assert_eq!(state.earliest_due(&w).await.unwrap(), None);
    assert!(state.log_entries(&w).await.unwrap().is_empty());
    let page = state.rejected(&w, None, 10).await.unwrap();
    assert_eq!(
        page,
        RejectedPage {
            seqs: vec![],
            done: true
        }
    );
    // An empty set is a no-op, not an error.
    state.apply(&w, OutcomeSet::default()).await.unwrap();
}

async fn a_later_change_in_a_set_wins(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let outcomes = set(|s| {
        s.record(record(1, MessageStatus::Pending, None), None);
        s.record(record(1, MessageStatus::Rejected, None), None);
        s.reject(1);
        s.unreject(1);
        s.unreject(2);
        s.reject(2);
        s.cursor(1);
        s.cursor(2);
    });
    state.apply(&w, outcomes).await.unwrap();
    let stored = state.delivery(&w, 1).await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Rejected);
    assert!(!state.is_rejected(&w, 1).await.unwrap());
    assert!(state.is_rejected(&w, 2).await.unwrap());
    assert_eq!(state.cursor(&w).await.unwrap(), Some(2));
}

async fn due_entries_follow_the_records(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let first = T0 + 1_000;
    state
        .apply(
            &w,
            set(|s| s.record(record(5, MessageStatus::Pending, Some(first)), None)),
        )
        .await
        .unwrap();
    assert_eq!(state.earliest_due(&w).await.unwrap(), Some(first));
    assert!(
        state
            .due(&w, first - 1, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty(),
        "not due before its time"
    );
    assert_eq!(
        seqs(&state.due(&w, first, 10, &HashSet::new()).await.unwrap()),
        [5]
    );

    // Rescheduled: the old entry goes with it.
    let second = T0 + 5_000;
    state
        .apply(
            &w,
            set(|s| s.record(record(5, MessageStatus::Pending, Some(second)), Some(first))),
        )
        .await
        .unwrap();
    assert_eq!(state.earliest_due(&w).await.unwrap(), Some(second));
    assert!(
        state
            .due(&w, second - 1, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );

    // Resolved: nothing is due any more.
    state
        .apply(
            &w,
            set(|s| s.record(record(5, MessageStatus::Delivered, None), Some(second))),
        )
        .await
        .unwrap();
    assert!(
        state
            .due(&w, second + 1, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(state.earliest_due(&w).await.unwrap(), None);
}

async fn due_never_returns_a_record_that_is_not_pending_then(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let at = T0 + 1_000;
    state
        .apply(
            &w,
            set(|s| s.record(record(3, MessageStatus::Pending, Some(at)), None)),
        )
        .await
        .unwrap();
    // Written without naming the due time it leaves (as a crash between a set's writes
    // can leave it): the record is failed now, so the old entry must not come back.
    state
        .apply(
            &w,
            set(|s| s.record(record(3, MessageStatus::Failed, Some(at)), None)),
        )
        .await
        .unwrap();
    assert!(
        state
            .due(&w, at + 1, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn due_is_ordered_limited_and_excludes(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let outcomes = set(|s| {
        for (seq, offset) in [(1, 30), (2, 10), (3, 20), (4, 40)] {
            s.record(record(seq, MessageStatus::Pending, Some(T0 + offset)), None);
        }
    });
    state.apply(&w, outcomes).await.unwrap();
    let all = state.due(&w, T0 + 100, 10, &HashSet::new()).await.unwrap();
    assert_eq!(seqs(&all), [2, 3, 1, 4], "earliest first");
    let two = state.due(&w, T0 + 100, 2, &HashSet::new()).await.unwrap();
    assert_eq!(seqs(&two), [2, 3]);
    let in_flight = HashSet::from([2, 3]);
    let rest = state.due(&w, T0 + 100, 2, &in_flight).await.unwrap();
    assert_eq!(
        seqs(&rest),
        [1, 4],
        "excluded seqs do not count against the limit"
    );
    let by_now = state.due(&w, T0 + 25, 10, &HashSet::new()).await.unwrap();
    assert_eq!(seqs(&by_now), [2, 3]);
    assert_eq!(state.earliest_due(&w).await.unwrap(), Some(T0 + 10));
}

/// NewStore's "up to 30": past that the oldest leave the list, their records stay.
async fn the_rejected_list_keeps_the_newest(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let total = REJECTED_KEPT as u64 + 5;
    state
        .apply(
            &w,
            set(|s| {
                for seq in 1..=total {
                    s.record(record(seq, MessageStatus::Rejected, None), None);
                    s.reject(seq);
                }
            }),
        )
        .await
        .unwrap();
    state.apply(&w, set(|s| s.reject(total + 1))).await.unwrap();
    let all = state.rejected(&w, None, 1000).await.unwrap();
    assert_eq!(all.seqs.len(), REJECTED_KEPT, "{:?}", all.seqs);
    assert_eq!(all.seqs.last(), Some(&(total + 1)));
    assert!(!state.is_rejected(&w, 1).await.unwrap());
    assert!(state.delivery(&w, 1).await.unwrap().is_some());
}

async fn the_rejected_list_pages_in_order(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let outcomes = set(|s| {
        for seq in [30, 10, 20] {
            s.record(record(seq, MessageStatus::Rejected, None), None);
            s.reject(seq);
        }
    });
    state.apply(&w, outcomes).await.unwrap();
    let first = state.rejected(&w, None, 2).await.unwrap();
    assert_eq!(
        first,
        RejectedPage {
            seqs: vec![10, 20],
            done: false
        }
    );
    let next = state.rejected(&w, Some(20), 2).await.unwrap();
    assert_eq!(
        next,
        RejectedPage {
            seqs: vec![30],
            done: true
        }
    );
    state.apply(&w, set(|s| s.unreject(20))).await.unwrap();
    assert!(!state.is_rejected(&w, 20).await.unwrap());
    let all = state.rejected(&w, None, 10).await.unwrap();
    assert_eq!(all.seqs, [10, 30]);
    // Out of the list, the record stays.
    assert!(state.delivery(&w, 20).await.unwrap().is_some());
    // Entries added after a removal are listed too (a backend's "removed" marker must
    // not end a listing early).
    state.apply(&w, set(|s| s.reject(40))).await.unwrap();
    state.apply(&w, set(|s| s.reject(50))).await.unwrap();
    let all = state.rejected(&w, None, 10).await.unwrap();
    assert_eq!(all.seqs, [10, 30, 40, 50]);
}

async fn listings_page_in_seq_order(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let outcomes = set(|s| {
        for seq in [9, 3, 6, 12] {
            s.record(record(seq, MessageStatus::Delivered, None), None);
        }
    });
    state.apply(&w, outcomes).await.unwrap();
    assert_eq!(
        seqs(&state.deliveries_after(&w, None, 3).await.unwrap()),
        [3, 6, 9]
    );
    assert_eq!(
        seqs(&state.deliveries_after(&w, Some(6), 10).await.unwrap()),
        [9, 12]
    );
    assert!(
        state
            .deliveries_after(&w, Some(u64::MAX), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        state.recorded_among(&w, &[4, 5, 6, 7, 8, 9]).await.unwrap(),
        [6, 9]
    );
    assert_eq!(
        state.recorded_among(&w, &[3, 12, 13]).await.unwrap(),
        [3, 12]
    );
    assert_eq!(
        state.recorded_among(&w, &[1, 2]).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        state.recorded_among(&w, &[]).await.unwrap(),
        Vec::<u64>::new()
    );
}

async fn the_integration_log_is_newest_first_and_bounded(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let entry = |n: usize, at: EpochMillis| LogEntry {
        action: format!("action-{n}"),
        reason: None,
        created_at: at,
    };
    // Two in the same millisecond keep the order they were written in.
    state
        .apply(
            &w,
            set(|s| {
                s.log(entry(0, T0));
                s.log(entry(1, T0));
            }),
        )
        .await
        .unwrap();
    let actions: Vec<String> = state
        .log_entries(&w)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["action-1", "action-0"]);
    for n in 2..LOG_ENTRIES_KEPT + 10 {
        state
            .apply(&w, set(|s| s.log(entry(n, T0 + n as i64))))
            .await
            .unwrap();
    }
    let entries = state.log_entries(&w).await.unwrap();
    assert!(entries.len() >= LOG_ENTRIES_KEPT);
    assert_eq!(
        entries[0].action,
        format!("action-{}", LOG_ENTRIES_KEPT + 9)
    );
}

async fn purge_removes_only_the_given_events(state: &dyn DeliveryState) {
    let w = webhook("acme", "w1");
    let outcomes = set(|s| {
        s.record(record(1, MessageStatus::Rejected, None), None);
        s.reject(1);
        s.attempt(1, 1, attempt(1, 1));
        s.record(record(2, MessageStatus::Pending, Some(T0)), None);
        s.record(record(3, MessageStatus::Delivered, None), None);
        s.attempt(3, 1, attempt(3, 1));
    });
    state.apply(&w, outcomes).await.unwrap();
    state.purge(&w, &[1, 2]).await.unwrap();
    assert!(state.delivery(&w, 1).await.unwrap().is_none());
    assert!(state.attempts(&w, 1).await.unwrap().is_empty());
    assert!(!state.is_rejected(&w, 1).await.unwrap());
    assert!(state.delivery(&w, 2).await.unwrap().is_none());
    assert!(
        state
            .due(&w, T0 + 1, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(state.delivery(&w, 3).await.unwrap().is_some());
    assert_eq!(state.attempts(&w, 3).await.unwrap().len(), 1);
}

async fn forget_removes_only_that_webhook(state: &dyn DeliveryState) {
    // Ids that are prefixes of each other, and the same id in another tenant.
    let targets = [
        webhook("acme", "w1"),
        webhook("acme", "w10"),
        webhook("acme2", "w1"),
    ];
    for w in &targets {
        let outcomes = set(|s| {
            s.record(record(1, MessageStatus::Rejected, None), None);
            s.reject(1);
            s.attempt(1, 1, attempt(1, 1));
            s.cursor(1);
            s.log(LogEntry {
                action: "created".into(),
                reason: None,
                created_at: T0,
            });
        });
        state.apply(w, outcomes).await.unwrap();
    }
    state.forget(&targets[0]).await.unwrap();
    let gone = &targets[0];
    assert_eq!(state.cursor(gone).await.unwrap(), None);
    assert!(state.delivery(gone, 1).await.unwrap().is_none());
    assert!(state.log_entries(gone).await.unwrap().is_empty());
    assert!(!state.is_rejected(gone, 1).await.unwrap());
    for kept in &targets[1..] {
        assert_eq!(state.cursor(kept).await.unwrap(), Some(1), "{kept:?}");
        assert!(state.delivery(kept, 1).await.unwrap().is_some(), "{kept:?}");
        assert_eq!(state.attempts(kept, 1).await.unwrap().len(), 1, "{kept:?}");
        assert!(state.is_rejected(kept, 1).await.unwrap(), "{kept:?}");
    }
}

/// The embedded backend: sled and the segment log in a temporary directory.
async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let master_key =
        hookgate_signing::MasterKey::from_config_or_file(None, &dir.path().join("master_key"))
            .unwrap();
    let embedded =
        crate::store::open(dir.path(), master_key, &tokio::runtime::Handle::current()).unwrap();
    Backend {
        log: embedded.log,
        deliveries: embedded.deliveries,
        catalog: embedded.catalog,
        ownership: embedded.ownership,
        _guard: Box::new(dir),
    }
}

/// The embedded backend's event log alone.
async fn embedded_log() -> (Arc<dyn EventLog>, Box<dyn Send>) {
    let backend = embedded().await;
    (backend.log.clone(), Box::new(backend))
}

/// The embedded backend's delivery state alone.
async fn embedded_deliveries() -> (Arc<dyn DeliveryState>, Box<dyn Send>) {
    let backend = embedded().await;
    (backend.deliveries.clone(), Box::new(backend))
}

/// The embedded backend's catalog alone.
async fn embedded_catalog() -> (Arc<dyn Catalog>, Box<dyn Send>) {
    let backend = embedded().await;
    (backend.catalog.clone(), Box::new(backend))
}

#[tokio::test]
async fn embedded_backend_conforms() {
    event_log_suite(embedded_log).await;
    delivery_state_suite(embedded_deliveries).await;
    catalog_suite(embedded_catalog).await;
    one_lease_per_webhook(&*embedded().await.ownership).await;
}

/// The NATS backend's parts against a real 3-server JetStream cluster on loopback (R3),
/// each check on emptied streams.
mod nats {
    use std::sync::Arc;

    use hookgate_nats_cluster::NatsCluster;

    use crate::{
        config::{Config, StorageKind},
        delivery::records::Delivery,
        nats::{
            Nats, NatsCatalog, NatsDeliveryState, NatsEventLog, NatsOwnership,
            catalog::CATALOG_BUCKET, delivery_state::STATE_STREAM, lease, ownership, subjects,
        },
        storage::{
            Catalog, DeliveryState, EventLog, OutcomeSet, Ownership, StorageError, WebhookRef,
        },
    };

    async fn connect(cluster: &NatsCluster) -> Arc<Nats> {
        let config = Config {
            storage: StorageKind::Nats,
            nats_servers: cluster.urls().split(',').map(str::to_string).collect(),
            ..Config::default()
        };
        Arc::new(
            Nats::connect(&config)
                .await
                .expect("connect to the test cluster"),
        )
    }

    async fn fresh_log(cluster: &NatsCluster) -> (Arc<dyn EventLog>, Box<dyn Send>) {
        let nats = connect(cluster).await;
        assert_eq!(nats.replicas, 3, "a 3-server cluster gets R3");
        // A missing stream is fine: the first check finds none.
        let _ = nats.jetstream.delete_stream(subjects::EVENTS_STREAM).await;
        // Patient as a starting node is: on a busy machine a new R3 stream takes a while.
        let log = crate::nats::patiently("the event log", || NatsEventLog::open(nats.clone()))
            .await
            .expect("open the event log");
        (log, Box::new(()))
    }

    async fn fresh_catalog(cluster: &NatsCluster) -> (Arc<dyn Catalog>, Box<dyn Send>) {
        let nats = connect(cluster).await;
        let _ = nats.jetstream.delete_key_value(CATALOG_BUCKET).await;
        let dir = tempfile::tempdir().unwrap();
        let master_key =
            hookgate_signing::MasterKey::from_config_or_file(None, &dir.path().join("master_key"))
                .unwrap();
        let master_key = Arc::new(master_key);
        let catalog = crate::nats::patiently("the catalog", || {
            NatsCatalog::open(&nats, master_key.clone())
        })
        .await
        .expect("open the catalog");
        (Arc::new(catalog), Box::new(dir))
    }

    async fn fresh_deliveries(cluster: &NatsCluster) -> (Arc<dyn DeliveryState>, Box<dyn Send>) {
        let nats = connect(cluster).await;
        let _ = nats.jetstream.delete_stream(STATE_STREAM).await;
        let state = crate::nats::patiently("the delivery state", || {
            NatsDeliveryState::open(nats.clone())
        })
        .await
        .expect("open the delivery state");
        (Arc::new(state), Box::new(()))
    }

    #[tokio::test]
    async fn nats_backend_conforms() {
        let cluster = NatsCluster::start(3).await;
        super::event_log_suite(|| fresh_log(&cluster)).await;
        super::delivery_state_suite(|| fresh_deliveries(&cluster)).await;
        super::catalog_suite(|| fresh_catalog(&cluster)).await;
        a_fenced_set_is_refused_once_the_lease_moved(&cluster).await;
    }

    /// Polls `done` until it holds, for at most `within`.
    async fn wait_until(within: std::time::Duration, what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {within:?}: {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    #[tokio::test]
    async fn shards_spread_over_nodes_and_move_when_one_goes_silent() {
        use std::time::Duration;
        let cluster = NatsCluster::start(3).await;
        let nats = connect(&cluster).await;
        let _state = NatsDeliveryState::open(nats.clone()).await.unwrap();
        let a = NatsOwnership::start(nats, "node-a").await.unwrap();
        assert_eq!(a.shards().len(), 64, "a lone node holds every shard");
        super::one_lease_per_webhook(&*a).await;

        let b = NatsOwnership::start(connect(&cluster).await, "node-b")
            .await
            .unwrap();
        wait_until(Duration::from_secs(20), "each node holds its share", || {
            a.shards().len() == 32 && b.shards().len() == 32
        })
        .await;
        let (on_a, on_b): (Vec<_>, Vec<_>) = (0..200)
            .map(|n| WebhookRef::new("acme", &format!("w{n}")))
            .partition(|w| a.holds(w));
        assert!(!on_a.is_empty() && !on_b.is_empty());
        assert!(on_a.iter().all(|w| !b.holds(w)), "one owner per shard");
        assert!(
            b.claim(&on_a[0]).await.unwrap().is_none(),
            "a node does not run another node's webhook"
        );
        let lease_on_b = b.claim(&on_b[0]).await.unwrap().expect("its own shard");

        // Node a goes silent (its rounds stop, as in a crash): b takes its shards over.
        drop(a);
        wait_until(Duration::from_secs(25), "b took every shard over", || {
            b.shards().len() == 64
        })
        .await;
        assert!(b.claim(&on_a[0]).await.unwrap().is_some());
        assert!(!lease_on_b.is_lost(), "b's own leases carried on");
    }

    /// What ownership will rest on: a lease is a compare-and-set on its subject, and an
    /// outcome set fenced by an old lease is refused whole.
    async fn a_fenced_set_is_refused_once_the_lease_moved(cluster: &NatsCluster) {
        let nats = connect(cluster).await;
        let _ = nats.jetstream.delete_stream(STATE_STREAM).await;
        let state = NatsDeliveryState::open(nats.clone()).await.unwrap();
        let webhook = WebhookRef::new("acme", "w1");
        let subject = lease::subject(ownership::shard_of(&webhook));
        let a = lease::take(&nats, &subject, "node-a", 0)
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert!(
            lease::take(&nats, &subject, "node-b", 0)
                .await
                .unwrap()
                .is_none(),
            "a held lease is not taken by a stale compare-and-set"
        );
        // A worker's set carries its webhook lease's token, granted under shard lease `a`.
        let set = |seq: u64, shard_lease: &lease::Fence| {
            let mut set = OutcomeSet::default();
            set.record(Delivery::new(seq, "evt", "order.created", 1), None);
            set.attempt(seq, 1, super::attempt(seq, 1));
            set.cursor(seq);
            set.fenced_by(ownership::lease_token(shard_lease.seq, 1));
            set
        };
        state
            .apply(&webhook, set(1, &a))
            .await
            .expect("the holder writes");
        let b = lease::take(&nats, &subject, "node-b", a.seq)
            .await
            .unwrap()
            .expect("a takeover names the lease it replaces");
        assert!(b.seq > a.seq, "the new fence is larger");
        assert!(
            matches!(
                state.apply(&webhook, set(2, &a)).await,
                Err(StorageError::Fenced(_))
            ),
            "the old holder's set is refused as fenced"
        );
        assert!(state.delivery(&webhook, 2).await.unwrap().is_none());
        assert!(state.attempts(&webhook, 2).await.unwrap().is_empty());
        assert_eq!(
            state.cursor(&webhook).await.unwrap(),
            Some(1),
            "nothing of the refused set is stored"
        );
        state
            .apply(&webhook, set(2, &b))
            .await
            .expect("the new holder writes");
        assert_eq!(state.cursor(&webhook).await.unwrap(), Some(2));
        // Node a taking the shard back does not revive its old workers' token.
        let a_again = lease::take(&nats, &subject, "node-a", b.seq)
            .await
            .unwrap()
            .expect("taken back");
        assert!(matches!(
            state.apply(&webhook, set(3, &a)).await,
            Err(StorageError::Fenced(_))
        ));
        state.apply(&webhook, set(3, &a_again)).await.unwrap();
        // What the API writes carries no fence and goes through whoever holds the shard.
        let mut unfenced = OutcomeSet::default();
        unfenced.cursor(3);
        state.apply(&webhook, unfenced).await.unwrap();
    }
}
