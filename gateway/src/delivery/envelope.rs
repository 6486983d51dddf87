//! The default outgoing body: `{id, tenant, event_type, published_at, <the webhook's
//! facts>, payload, data?}`. The payload is copied as raw bytes, never re-parsed.
//!
//! The webhook's facts are CloudBlue's: handlers there read `webhook_id`, `object_class`,
//! `triggered_at`, `last_success_at`… from every call, and the same fields from its JWT
//! ([`Trigger::claims`]). They describe the webhook when the body is built: at each
//! attempt, unless a transform plugin rewrote the body (its first output is what every
//! retry sends).

use serde::Serialize;
use serde_json::{Value, value::RawValue};

use crate::{
    iso::{EpochMillis, format_millis, now_millis},
    model::webhook::Webhook,
    storage::StoredEvent,
};

/// What the webhook looks like to the receiver at one call.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    pub webhook_id: &'a str,
    pub webhook_name: Option<&'a str>,
    pub at: EpochMillis,
    pub last_success_at: Option<EpochMillis>,
    pub last_failure_at: Option<EpochMillis>,
    /// The destination's timeout, in whole seconds.
    pub processing_timeout: u64,
}

#[derive(Serialize)]
struct Facts<'a> {
    webhook_id: &'a str,
    webhook_name: Option<&'a str>,
    /// The kind of object the event is about: its type up to the first dot
    /// (`fulfillment_requests.updated` → `fulfillment_requests`).
    object_class: &'a str,
    triggered_at: String,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    processing_timeout: u64,
}

impl<'a> Trigger<'a> {
    /// A call `webhook` makes now, its last success and failure having been at these times.
    pub fn now(
        webhook: &'a Webhook,
        last_success_at: Option<EpochMillis>,
        last_failure_at: Option<EpochMillis>,
    ) -> Self {
        Trigger {
            webhook_id: &webhook.id,
            webhook_name: webhook.spec.name.as_deref(),
            at: now_millis(),
            last_success_at,
            last_failure_at,
            processing_timeout: webhook.spec.destination.timeout().duration().as_secs(),
        }
    }

    fn facts(&self, event_type: &'a str) -> Facts<'a> {
        Facts {
            webhook_id: self.webhook_id,
            webhook_name: self.webhook_name,
            object_class: object_class(event_type),
            triggered_at: format_millis(self.at),
            last_success_at: self.last_success_at.map(format_millis),
            last_failure_at: self.last_failure_at.map(format_millis),
            processing_timeout: self.processing_timeout,
        }
    }

    /// The JWT's extra claims for a POST (CloudBlue's JWT payload): the facts and the
    /// webhook's `data`, not the event's payload (a token rides in a header, which
    /// servers cap at a few KiB).
    pub fn claims(&self, event_type: &str, additional_data: Option<&Value>) -> Value {
        let mut claims = serde_json::to_value(self.facts(event_type)).expect("facts serialize");
        if let (Value::Object(fields), Some(data)) = (&mut claims, additional_data) {
            fields.insert("data".into(), data.clone());
        }
        claims
    }
}

fn object_class(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    tenant: &'a str,
    event_type: &'a str,
    published_at: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    facts: Option<Facts<'a>>,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

/// `trigger` is `None` where no webhook sends the body (a plugin's dry run).
pub fn body(
    tenant: &str,
    event: &StoredEvent,
    trigger: Option<&Trigger<'_>>,
    additional_data: Option<&Value>,
) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        id: &event.id,
        tenant,
        event_type: &event.event_type,
        published_at: format_millis(event.published_at),
        facts: trigger.map(|t| t.facts(&event.event_type)),
        payload: &event.payload,
        data: additional_data,
    })
    .expect("the envelope serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            id: "o-1".into(),
            event_type: "fulfillment_requests.updated".into(),
            published_at: 0,
            received_at: 0,
            payload: RawValue::from_string("{\"total\":1.50}".into()).unwrap(),
        }
    }

    #[test]
    fn envelope_keeps_the_payload_bytes() {
        let event = event();
        let with = body("acme", &event, None, Some(&serde_json::json!({"k": "v"})));
        let text = String::from_utf8(with).unwrap();
        assert!(text.contains("\"payload\":{\"total\":1.50}"), "{text}");
        assert!(text.contains("\"data\":{\"k\":\"v\"}"));
        assert!(text.contains("\"published_at\":\"1970-01-01T00:00:00.000Z\""));
        let without = String::from_utf8(body("acme", &event, None, None)).unwrap();
        assert!(!without.contains("\"data\"") && !without.contains("webhook_id"));
    }

    #[test]
    fn a_webhook_s_body_carries_its_facts_as_cloudblue_names_them() {
        let trigger = Trigger {
            webhook_id: "WH-1",
            webhook_name: Some("Tutorial Webhook"),
            at: 1_622_109_243_000,
            last_success_at: None,
            last_failure_at: Some(1_622_109_152_000),
            processing_timeout: 600,
        };
        let sent: Value =
            serde_json::from_slice(&body("acme", &event(), Some(&trigger), None)).unwrap();
        assert_eq!(sent["webhook_id"], "WH-1");
        assert_eq!(sent["webhook_name"], "Tutorial Webhook");
        assert_eq!(sent["object_class"], "fulfillment_requests");
        assert_eq!(sent["triggered_at"], "2021-05-27T09:54:03.000Z");
        assert_eq!(sent["last_success_at"], Value::Null);
        assert_eq!(sent["last_failure_at"], "2021-05-27T09:52:32.000Z");
        assert_eq!(sent["processing_timeout"], 600);
        assert_eq!(sent["payload"]["total"], 1.50);

        let claims = trigger.claims("orders", Some(&serde_json::json!({"purpose": "demo"})));
        assert_eq!(claims["object_class"], "orders");
        assert_eq!(claims["data"]["purpose"], "demo");
        assert!(claims.get("payload").is_none());
    }
}
