//! Which events a webhook takes, for HTTP workers and export workers alike: subscription,
//! replay window, backlog window and the built-in `filter_conditions`. Pure functions.

use crate::{
    iso::EpochMillis,
    log::StoredEvent,
    model::{
        filter,
        webhook::{IntegrationType, WebhookSpec},
    },
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
        IntegrationType::Permanent if event.received_at < horizon => Take::TooOld,
        IntegrationType::Permanent => Take::Yes,
    }
}

/// `Some(reason)` when the built-in filter drops the event; `envelope` is the line that
/// would be written (the filter sees the same document as an HTTP receiver would).
pub fn filtered(spec: &WebhookSpec, envelope: &[u8]) -> Option<String> {
    let conditions = spec.filter_conditions.as_ref()?;
    let document: serde_json::Value = serde_json::from_slice(envelope).ok()?;
    (!filter::matches(conditions, &document)).then(|| "filter_conditions".to_string())
}
