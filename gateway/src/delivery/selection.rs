//! Which events a webhook takes, for HTTP workers and export workers alike: subscription,
//! replay window, backlog window and the built-in `filter_conditions`. Pure functions.

use crate::{
    iso::EpochMillis,
    model::{
        filter,
        webhook::{IntegrationType, WebhookSpec},
    },
    storage::StoredEvent,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Yes,
    /// Another event type, or outside the replay window.
    No,
    /// A permanent webhook's backlog limit: older than `backlog_window`.
    TooOld,
}

/// Subscription, replay window and backlog window. `horizon`: the oldest `received_at` a
/// permanent webhook still takes.
pub fn takes(spec: &WebhookSpec, event: &StoredEvent, horizon: EpochMillis) -> Take {
    if !spec.subscribes_to(&event.event_type) {
        return Take::No;
    }
    match spec.integration_type {
        IntegrationType::Temporary => {
            let inside = spec
                .window()
                .is_some_and(|(from, to)| (from..=to).contains(&event.published_at));
            if inside { Take::Yes } else { Take::No }
        }
        IntegrationType::Permanent
            if spec
                .backfill_from()
                .is_some_and(|from| event.published_at < from) =>
        {
            Take::No
        }
        IntegrationType::Permanent if event.received_at < horizon => Take::TooOld,
        IntegrationType::Permanent => Take::Yes,
    }
}

/// `Some(reason)` when the built-in filter drops the event; `envelope` is the line that
/// would be written (the filter sees the same document as an HTTP receiver would).
///
/// Fails closed: an envelope the filter cannot parse into a document (nested past
/// `serde_json`'s 128 levels, a number beyond `f64`) is dropped, with a reason saying
/// so. Letting it through would hand the receiver exactly what its filter is there to
/// hold back, whenever a producer can make an event unreadable.
pub fn filtered(spec: &WebhookSpec, envelope: &[u8]) -> Option<String> {
    let conditions = spec.filter_conditions.as_ref()?;
    match serde_json::from_slice::<serde_json::Value>(envelope) {
        Ok(document) => {
            (!filter::matches(conditions, &document)).then(|| "filter_conditions".to_string())
        }
        Err(error) => Some(format!(
            "filter_conditions: cannot evaluate: the event is not readable as a JSON document ({error})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::webhook::parse_spec;

    fn paid_only() -> WebhookSpec {
        parse_spec(json!({"url": "https://erp.example.com/hook",
                          "filter_conditions": {"payload.status": "paid"}}))
        .unwrap()
    }

    /// An envelope as `delivery::envelope::body` writes it, around `payload` (raw text).
    fn envelope(payload: &str) -> Vec<u8> {
        format!(r#"{{"id":"e-1","tenant":"acme","event_type":"order.created","published_at":"1970-01-01T00:00:00.000Z","payload":{payload}}}"#)
            .into_bytes()
    }

    /// A field nested `depth` levels below the payload.
    fn with_deep_field(status: &str, depth: usize) -> String {
        format!(
            r#"{{"status":"{status}","deep":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn readable_events_are_filtered_by_their_fields() {
        let spec = paid_only();
        assert_eq!(filtered(&spec, &envelope(r#"{"status":"paid"}"#)), None);
        assert_eq!(
            filtered(&spec, &envelope(r#"{"status":"open"}"#)).as_deref(),
            Some("filter_conditions")
        );
        let unfiltered = parse_spec(json!({"url": "https://erp.example.com/hook"})).unwrap();
        let unreadable = envelope(&with_deep_field("open", 200));
        assert_eq!(
            filtered(&unfiltered, &unreadable),
            None,
            "no filter, no parse"
        );
    }

    /// An envelope the filter cannot parse is dropped with the reason, whatever the
    /// condition would have said: letting it through would deliver what the filter exists
    /// to hold back.
    #[test]
    fn an_envelope_the_filter_cannot_read_is_filtered_with_why() {
        let spec = paid_only();
        for (payload, why) in [
            (with_deep_field("open", 200), "recursion limit exceeded"),
            (with_deep_field("paid", 200), "recursion limit exceeded"),
            (
                r#"{"status":"open","n":1e400}"#.to_string(),
                "number out of range",
            ),
        ] {
            let reason = filtered(&spec, &envelope(&payload))
                .unwrap_or_else(|| panic!("{payload:.60} passed the filter"));
            assert!(
                reason.starts_with("filter_conditions: cannot evaluate") && reason.contains(why),
                "{reason}"
            );
        }
        // The envelope itself is checked, not just the payload: 127 levels still parse.
        let deepest_readable = with_deep_field("paid", 125);
        assert!(serde_json::from_slice::<Value>(&envelope(&deepest_readable)).is_ok());
        assert_eq!(filtered(&spec, &envelope(&deepest_readable)), None);
    }
}
