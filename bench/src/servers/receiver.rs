//! `receiver`: the webhook destination of the delivery benchmark.
//!
//! Answers 200 at once to any request on any path except its own `/stats` routes, counts
//! it, and records ingest-to-delivery latency as arrival wall clock minus the event's
//! `payload.sent_at_ns` (stamped by the driver just before posting the event).
//!
//! `POST /stats/reset` starts a measurement: it sets `since_ns` to now, and from then on
//! only deliveries of events sent after `since_ns` count as measured (latency, per-path
//! counts). Deliveries of older events, e.g. a warmup backlog, are still counted in
//! `deliveries_total` but cannot skew the latency figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::event::now_ns;
use crate::report::{LatencyHistogram, LatencySummary};

/// What `GET /stats` and `POST /stats/reset` return.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReceiverStats {
    /// Start of the current measurement (wall clock ns); 0 before the first reset.
    pub since_ns: u64,
    /// Every delivery since the receiver started; never reset, for rates over a window.
    pub deliveries_total: u64,
    /// Deliveries of events sent at or after `since_ns`.
    pub deliveries_measured: u64,
    /// Deliveries whose body had no `payload.sent_at_ns` (test events, GET webhooks).
    pub without_timestamp: u64,
    /// Arrival (wall clock ns) of the last measured delivery; 0 if none yet.
    pub last_delivery_ns: u64,
    /// Ingest-to-delivery latency of the measured deliveries.
    pub latency: LatencySummary,
    /// Measured deliveries by request path (one path per webhook in the benchmark).
    pub by_path: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Tally {
    since_ns: u64,
    deliveries_total: u64,
    deliveries_measured: u64,
    without_timestamp: u64,
    last_delivery_ns: u64,
    latency: LatencyHistogram,
    by_path: BTreeMap<String, u64>,
}

impl Tally {
    fn snapshot(&self) -> ReceiverStats {
        ReceiverStats {
            since_ns: self.since_ns,
            deliveries_total: self.deliveries_total,
            deliveries_measured: self.deliveries_measured,
            without_timestamp: self.without_timestamp,
            last_delivery_ns: self.last_delivery_ns,
            latency: self.latency.summary(),
            by_path: self.by_path.clone(),
        }
    }

    fn record(&mut self, path: &str, arrived_ns: u64, sent_at_ns: Option<u64>) {
        self.deliveries_total += 1;
        let Some(sent_at_ns) = sent_at_ns else {
            self.without_timestamp += 1;
            return;
        };
        if sent_at_ns < self.since_ns {
            return;
        }
        self.deliveries_measured += 1;
        self.last_delivery_ns = self.last_delivery_ns.max(arrived_ns);
        self.latency
            .record_us(arrived_ns.saturating_sub(sent_at_ns) / 1000);
        match self.by_path.get_mut(path) {
            Some(count) => *count += 1,
            None => {
                self.by_path.insert(path.to_owned(), 1);
            }
        }
    }
}

type SharedTally = Arc<Mutex<Tally>>;

pub fn router() -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset))
        .route("/readyz", get(super::ready))
        .fallback(receive)
        .with_state(SharedTally::default())
}

/// Only the field we need; serde skips the rest of the envelope without building it.
#[derive(Deserialize)]
struct Envelope {
    payload: Option<Timestamped>,
}

#[derive(Deserialize)]
struct Timestamped {
    sent_at_ns: Option<u64>,
}

async fn receive(State(tally): State<SharedTally>, uri: Uri, body: Bytes) -> StatusCode {
    // Take the arrival time first: parsing is the receiver's cost, not the gateway's.
    let arrived_ns = now_ns();
    let sent_at_ns = serde_json::from_slice::<Envelope>(&body)
        .ok()
        .and_then(|envelope| envelope.payload)
        .and_then(|payload| payload.sent_at_ns);
    tally
        .lock()
        .expect("tally lock poisoned")
        .record(uri.path(), arrived_ns, sent_at_ns);
    StatusCode::OK
}

async fn stats(State(tally): State<SharedTally>) -> Json<ReceiverStats> {
    Json(tally.lock().expect("tally lock poisoned").snapshot())
}

async fn reset(State(tally): State<SharedTally>) -> Json<ReceiverStats> {
    let mut tally = tally.lock().expect("tally lock poisoned");
    tally.since_ns = now_ns();
    tally.deliveries_measured = 0;
    tally.last_delivery_ns = 0;
    tally.latency.reset();
    tally.by_path.clear();
    Json(tally.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn counts_and_measures_only_events_sent_after_reset() {
        let addr = super::super::spawn_for_test(router()).await;
        let http = reqwest::Client::new();
        let deliver = |path: &str, body: serde_json::Value| {
            http.post(format!("http://{addr}{path}")).json(&body).send()
        };
        // Before the reset: counted in the total only.
        let old = deliver("/hook/0", json!({"payload": {"sent_at_ns": 1}}))
            .await
            .unwrap();
        assert_eq!(old.status(), 200);
        let reset: ReceiverStats = http
            .post(format!("http://{addr}/stats/reset"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(reset.since_ns > 0);
        let sent = now_ns();
        for path in ["/hook/0", "/hook/1", "/hook/1"] {
            deliver(
                path,
                json!({"id": "evt_1", "payload": {"sent_at_ns": sent}}),
            )
            .await
            .unwrap();
        }
        deliver("/hook/1", json!({"payload": "no timestamp"}))
            .await
            .unwrap();
        let stats: ReceiverStats = http
            .get(format!("http://{addr}/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats.deliveries_total, 5);
        assert_eq!(stats.deliveries_measured, 3);
        assert_eq!(stats.without_timestamp, 1);
        assert_eq!(stats.latency.count, 3);
        assert_eq!(stats.by_path["/hook/1"], 2);
        assert!(stats.last_delivery_ns >= sent);
    }
}
