//! What the delivery engine records: one `Delivery` per (event, webhook), every `Attempt`,
//! per-webhook `Stats` and the integration log. Plain data; persistence is in
//! `store::deliveries`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    iso::{EpochMillis, format_millis},
    store::CompactRecord,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Being attempted or waiting for its next retry.
    Pending,
    Delivered,
    /// The receiver answered 400, 410 or 422: kept in the rejected list, not retried.
    Rejected,
    /// The retry schedule is exhausted (or manual mode): recoverable.
    Failed,
    /// A filter dropped it for this webhook.
    Filtered,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub status: MessageStatus,
    pub status_code: Option<u16>,
    /// Attempts made so far (Front Systems `runs_counter`).
    pub runs: u32,
    /// Index of the next retry step in the schedule; `recover` starts it over.
    pub step: u32,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub next_attempt_at: Option<EpochMillis>,
    /// Why it is filtered or failed without a response (plugin errors, purged event).
    #[serde(default)]
    pub reason: Option<String>,
    /// The outgoing body when transform plugins produced it: stored so every retry sends
    /// exactly the same bytes. `None`: the default envelope, rebuilt from the event.
    #[serde(default)]
    pub body: Option<String>,
    /// Headers transform plugins set, stored with the body for the same reason.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The webhook's filter and transform plugins ran and `body`/`headers` hold their
    /// result: attempts send that instead of running the plugins again.
    #[serde(default)]
    pub prepared: bool,
}

impl Delivery {
    pub fn new(seq: u64, event_id: &str, event_type: &str, now: EpochMillis) -> Delivery {
        Delivery {
            seq,
            event_id: event_id.to_string(),
            event_type: event_type.to_string(),
            status: MessageStatus::Pending,
            status_code: None,
            runs: 0,
            step: 0,
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            reason: None,
            body: None,
            headers: Vec::new(),
            prepared: false,
        }
    }

    /// Whether an attempt must run the webhook's filter and transform plugins first: on
    /// the first attempt, and on a resend after [`forget_prepared`](Self::forget_prepared).
    /// A body from before `prepared` existed counts as prepared.
    pub fn needs_plugins(&self) -> bool {
        !self.prepared && self.body.is_none()
    }

    /// Once delivered, no retry needs the plugins' output any more: it is not kept. That
    /// saves writing a second copy of the body (over 1 KiB per event, JSON-escaped) with
    /// every delivered message, which cost ~15% of the deliveries/s of a webhook with a
    /// transform. A later resend runs the plugins again on the stored event.
    pub fn forget_prepared(&mut self) {
        self.body = None;
        self.headers = Vec::new();
        self.prepared = false;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub at: EpochMillis,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_headers: BTreeMap<String, String>,
    pub response_body: String,
}

impl Attempt {
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "event_id": self.event_id,
            "webhook_id": self.webhook_id,
            "at": format_millis(self.at),
            "duration_ms": self.duration_ms,
            "status_code": self.status_code,
            "error": self.error,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mark {
    pub at: EpochMillis,
    pub attempt_id: String,
    /// The attempt's event, so the mark leads to the response
    /// (`GET /messages/{event_id}/attempts/{attempt_id}`). Empty in marks stored before it.
    #[serde(default)]
    pub event_id: String,
}

/// CloudBlue's webhook statistics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Events taken by this webhook (matched its types and filters).
    pub events: u64,
    /// Attempts made.
    pub triggers: u64,
    pub success_responses: u64,
    pub failure_responses: u64,
    pub failures_since_last_success: u64,
    /// Start of the current run of failures (for disabling after a failing period).
    pub failing_since: Option<EpochMillis>,
    pub last_event_at: Option<EpochMillis>,
    pub next_trigger_at: Option<EpochMillis>,
    pub last_success: Option<Mark>,
    pub last_failure: Option<Mark>,
}

impl Stats {
    pub fn view(&self) -> serde_json::Value {
        let mark = |m: &Option<Mark>| {
            m.as_ref().map(|m| {
                serde_json::json!({"at": format_millis(m.at), "attempt_id": m.attempt_id,
                                            "event_id": m.event_id})
            })
        };
        serde_json::json!({
            "events": self.events,
            "triggers": self.triggers,
            "success_responses": self.success_responses,
            "failure_responses": self.failure_responses,
            "failures_since_last_success": self.failures_since_last_success,
            "last_event_at": self.last_event_at.map(format_millis),
            "next_trigger_at": self.next_trigger_at.map(format_millis),
            "last_success": mark(&self.last_success),
            "last_failure": mark(&self.last_failure),
        })
    }
}

/// One line of the integration log (NewStore).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub action: String,
    pub reason: Option<String>,
    pub created_at: EpochMillis,
}

pub const LOG_ENTRIES_KEPT: usize = 50;

/// Trigger Now's test events are in no log: their attempts are kept under this seq, in
/// [`TEST_ATTEMPTS_KEPT`] slots (each new test takes the next, over the oldest).
pub const TEST_SEQ: u64 = u64::MAX;
pub const TEST_ATTEMPTS_KEPT: u64 = 16;

/// NewStore keeps "up to 30 rejected events": past that, the oldest leaves the list (its
/// message stays, `rejected`, and can be resent).
pub const REJECTED_KEPT: usize = 30;

// Written on every delivery, so stored compact; their fields keep to what that allows.
impl CompactRecord for Delivery {}
impl CompactRecord for Attempt {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{codec_decode, codec_encode, codec_encode_compact};

    fn delivered() -> (Delivery, Attempt) {
        let mut delivery = Delivery::new(41, "evt_01jd7x", "order.created", 1_795_341_600_000);
        delivery.status = MessageStatus::Rejected;
        delivery.status_code = Some(422);
        delivery.runs = 1;
        delivery.body = Some(r#"{"record_type":"ERP_ORDER_NEW"}"#.into());
        delivery.headers = vec![("X-ERP-Record-Type".into(), "ERP_ORDER_NEW".into())];
        delivery.prepared = true;
        let attempt = Attempt {
            id: "req_01jd7x5q3m".into(),
            event_id: "evt_01jd7x".into(),
            webhook_id: "erp".into(),
            at: 1_795_341_600_123,
            duration_ms: 4,
            status_code: Some(422),
            error: None,
            response_headers: BTreeMap::from([("content-length".into(), "2".into())]),
            response_body: "no".into(),
        };
        (delivery, attempt)
    }

    /// Records are written compact and read back field for field; records written as JSON
    /// (before the compact format, or by older code paths) still read.
    #[test]
    fn records_round_trip_in_both_formats() {
        let (delivery, attempt) = delivered();
        for encoded in [
            codec_encode_compact(&delivery).unwrap(),
            codec_encode(&delivery).unwrap(),
        ] {
            let read: Delivery = codec_decode(&encoded).unwrap();
            assert_eq!(format!("{read:?}"), format!("{delivery:?}"));
        }
        for encoded in [
            codec_encode_compact(&attempt).unwrap(),
            codec_encode(&attempt).unwrap(),
        ] {
            let read: Attempt = codec_decode(&encoded).unwrap();
            assert_eq!(format!("{read:?}"), format!("{attempt:?}"));
        }
        // A JSON record from before `headers` and `prepared` were written.
        let old = br#"{"seq":1,"event_id":"e","event_type":"t","status":"pending","status_code":null,"runs":0,"step":0,"created_at":1,"updated_at":1,"next_attempt_at":null}"#;
        let read: Delivery = codec_decode(old).unwrap();
        assert!(read.headers.is_empty() && !read.prepared && read.body.is_none());
        assert!(
            codec_encode_compact(&attempt).unwrap().len() * 2
                < codec_encode(&attempt).unwrap().len(),
            "compact is less than half the JSON"
        );
    }
}
