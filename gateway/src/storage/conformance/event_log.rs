//! The event log's contract as tests (see the parent module): append and read after a
//! seq, the durable watermark, idempotent client ids, lookups by seq, id and type/time,
//! the wake-up, retention and forgetting a tenant.

use std::time::Duration;

use serde_json::value::RawValue;

use super::T0;
use crate::{
    iso::EpochMillis,
    storage::{EventLog, NewEvent},
};

fn event(id: Option<&str>, event_type: &str, published_at: EpochMillis, n: u32) -> NewEvent {
    NewEvent {
        id: id.map(str::to_string),
        event_type: event_type.into(),
        published_at,
        received_at: published_at,
        payload: RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
    }
}

fn ns(events: &[(u64, crate::storage::StoredEvent)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e.payload.get().to_string())
        .collect()
}

pub async fn appended_events_read_back_in_order(log: &dyn EventLog) {
    assert_eq!(log.durable_seq("acme").await.unwrap(), 0);
    assert!(log.read_after("acme", 0, 10).await.unwrap().is_empty());
    let appended = log
        .append(
            "acme",
            vec![
                event(Some("ord-1"), "order.created", T0, 1),
                event(None, "order.created", T0 + 1, 2),
                event(Some("ord-3"), "order.paid", T0 + 2, 3),
            ],
        )
        .await
        .unwrap();
    assert_eq!(appended.len(), 3);
    assert!(appended.iter().all(|a| !a.duplicate));
    assert_eq!(appended[0].id, "ord-1");
    assert!(!appended[1].id.is_empty(), "an id is generated when absent");
    let seqs: Vec<u64> = appended.iter().map(|a| a.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {seqs:?}"
    );
    assert_eq!(log.durable_seq("acme").await.unwrap(), seqs[2]);

    let all = log.read_after("acme", 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
    assert_eq!(ns(&all), [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(all[1].1.id, appended[1].id);
    assert_eq!(all[2].1.event_type, "order.paid");
    assert_eq!(all[2].1.published_at, T0 + 2);
    let after_first = log.read_after("acme", seqs[0], 10).await.unwrap();
    assert_eq!(ns(&after_first), [r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(
        log.read_after("acme", 0, 2).await.unwrap().len(),
        2,
        "limit"
    );
    assert!(
        log.read_after("acme", seqs[2], 10)
            .await
            .unwrap()
            .is_empty()
    );

    let by_seq = log.event_by_seq("acme", seqs[1]).await.unwrap().unwrap();
    assert_eq!(by_seq.payload.get(), r#"{"n":2}"#);
    assert!(
        log.event_by_seq("acme", seqs[2] + 1)
            .await
            .unwrap()
            .is_none()
    );
    let (seq, by_id) = log.event_by_id("acme", "ord-3").await.unwrap().unwrap();
    assert_eq!((seq, by_id.payload.get()), (seqs[2], r#"{"n":3}"#));
    let (seq, _) = log
        .event_by_id("acme", &appended[1].id)
        .await
        .unwrap()
        .expect("a generated id is found too");
    assert_eq!(seq, seqs[1]);
    assert!(log.event_by_id("acme", "nope").await.unwrap().is_none());
}

pub async fn client_ids_are_idempotent(log: &dyn EventLog) {
    let first = log
        .append("acme", vec![event(Some("a"), "t", T0, 1)])
        .await
        .unwrap();
    let again = log
        .append(
            "acme",
            vec![
                event(Some("a"), "t", T0, 2),
                event(Some("b"), "t", T0, 3),
                event(Some("b"), "t", T0, 4),
            ],
        )
        .await
        .unwrap();
    assert!(again[0].duplicate, "{again:?}");
    assert_eq!(
        again[0].seq, first[0].seq,
        "a duplicate answers the first seq"
    );
    assert!(!again[1].duplicate);
    assert!(
        again[2].duplicate,
        "a repeat within one batch is a duplicate"
    );
    assert_eq!(again[2].seq, again[1].seq);
    let stored = log.read_after("acme", 0, 10).await.unwrap();
    assert_eq!(
        ns(&stored),
        [r#"{"n":1}"#, r#"{"n":3}"#],
        "duplicates write nothing"
    );
    // Another tenant's ids are its own.
    let other = log
        .append("globex", vec![event(Some("a"), "t", T0, 5)])
        .await
        .unwrap();
    assert!(!other[0].duplicate);
}

pub async fn tenants_do_not_see_each_other(log: &dyn EventLog) {
    log.append("acme", vec![event(Some("x"), "t", T0, 1)])
        .await
        .unwrap();
    let globex = log
        .append("globex", vec![event(Some("y"), "t", T0, 2)])
        .await
        .unwrap();
    assert_eq!(
        ns(&log.read_after("acme", 0, 10).await.unwrap()),
        [r#"{"n":1}"#]
    );
    assert_eq!(
        ns(&log.read_after("globex", 0, 10).await.unwrap()),
        [r#"{"n":2}"#]
    );
    assert_eq!(log.durable_seq("globex").await.unwrap(), globex[0].seq);
    assert!(log.event_by_id("acme", "y").await.unwrap().is_none());
    assert!(log.read_after("initech", 0, 10).await.unwrap().is_empty());
}

pub async fn readers_are_woken_by_new_events(log: &dyn EventLog) {
    let mut changes = log.subscribe("acme");
    changes.borrow_and_update();
    log.append("acme", vec![event(None, "t", T0, 1)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("the wake-up comes after an append")
        .unwrap();
}

pub async fn events_list_by_type_and_time_in_pages(log: &dyn EventLog) {
    let mut batch = Vec::new();
    for n in 0..10u32 {
        let event_type = if n % 2 == 0 { "even" } else { "odd" };
        // Published out of seq order: the listing is by publish time.
        let published = T0 + 1_000 * i64::from(9 - n);
        batch.push(event(None, event_type, published, n));
    }
    log.append("acme", batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = log
            .by_time("acme", "even", T0 + 1_000, T0 + 9_000, after.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.events.len() <= 2);
        seen.extend(page.events.iter().map(|(_, e)| e.published_at));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // even n = 0, 2, 4, 6, 8 were published at T0 + 9000, 7000, 5000, 3000, 1000.
    assert_eq!(
        seen,
        [T0 + 1_000, T0 + 3_000, T0 + 5_000, T0 + 7_000, T0 + 9_000]
    );
    let narrow = log
        .by_time("acme", "odd", T0 + 2_000, T0 + 4_000, None, 10)
        .await
        .unwrap();
    assert_eq!(ns(&narrow.events), [r#"{"n":7}"#, r#"{"n":5}"#]);
}

pub async fn retention_removes_the_oldest(log: &dyn EventLog) {
    let old = log
        .append(
            "acme",
            vec![
                event(Some("old-1"), "t", T0, 1),
                event(Some("old-2"), "t", T0 + 1, 2),
            ],
        )
        .await
        .unwrap();
    let new = log
        .append("acme", vec![event(Some("new"), "t", T0 + 60_000, 3)])
        .await
        .unwrap();
    let oldest = log.oldest_before("acme", T0 + 30_000, 100).await.unwrap();
    let oldest_seqs: Vec<u64> = oldest.iter().map(|(s, _)| *s).collect();
    assert_eq!(oldest_seqs, [old[0].seq, old[1].seq]);
    log.remove("acme", &oldest).await.unwrap();
    log.compact(T0 + 30_000).await.unwrap();
    assert!(
        log.event_by_seq("acme", old[0].seq)
            .await
            .unwrap()
            .is_none()
    );
    assert!(log.event_by_id("acme", "old-2").await.unwrap().is_none());
    let left = log.read_after("acme", 0, 10).await.unwrap();
    assert_eq!(ns(&left), [r#"{"n":3}"#]);
    assert_eq!(left[0].0, new[0].seq);
    assert!(
        log.oldest_before("acme", T0 + 30_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let next = log
        .append("acme", vec![event(None, "t", T0 + 70_000, 4)])
        .await
        .unwrap();
    assert!(next[0].seq > new[0].seq, "seqs are never reused");
}

pub async fn a_forgotten_tenant_has_no_events(log: &dyn EventLog) {
    log.append("acme", vec![event(Some("a"), "t", T0, 1)])
        .await
        .unwrap();
    log.append("globex", vec![event(Some("a"), "t", T0, 2)])
        .await
        .unwrap();
    log.forget_tenant("acme").await.unwrap();
    assert!(log.read_after("acme", 0, 10).await.unwrap().is_empty());
    assert!(log.event_by_id("acme", "a").await.unwrap().is_none());
    assert_eq!(
        ns(&log.read_after("globex", 0, 10).await.unwrap()),
        [r#"{"n":2}"#]
    );
}
