//! The default outgoing body: `{id, tenant, event_type, published_at, payload, data?}`.
//! The payload is copied as raw bytes, never re-parsed.

use serde::Serialize;
use serde_json::{Value, value::RawValue};

use crate::{iso::format_millis, storage::StoredEvent};

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    tenant: &'a str,
    event_type: &'a str,
    published_at: String,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

pub fn body(tenant: &str, event: &StoredEvent, additional_data: Option<&Value>) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        id: &event.id,
        tenant,
        event_type: &event.event_type,
        published_at: format_millis(event.published_at),
        payload: &event.payload,
        data: additional_data,
    })
    .expect("the envelope serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_keeps_the_payload_bytes() {
        let event = StoredEvent {
            id: "o-1".into(),
            event_type: "order.created".into(),
            published_at: 0,
            received_at: 0,
            payload: RawValue::from_string("{\"total\":1.50}".into()).unwrap(),
        };
        let with = body("acme", &event, Some(&serde_json::json!({"k": "v"})));
        let text = String::from_utf8(with).unwrap();
        assert!(text.contains("\"payload\":{\"total\":1.50}"), "{text}");
        assert!(text.contains("\"data\":{\"k\":\"v\"}"));
        assert!(text.contains("\"published_at\":\"1970-01-01T00:00:00.000Z\""));
        let without = String::from_utf8(body("acme", &event, None)).unwrap();
        assert!(!without.contains("\"data\""));
    }
}
