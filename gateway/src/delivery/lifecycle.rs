//! Lifecycle changes every kind of worker (and the API) makes the same way: the integration
//! log, status changes made by the gateway itself, and the "out of order" rule.

use crate::{
    app::AppState,
    config::Config,
    iso::{EpochMillis, format_millis, now_millis},
    model::webhook::WebhookStatus,
    store::deliveries::WebhookKeys,
};

use super::records::{LogEntry, Stats};

/// Appends to the integration log; a failure here must not fail what is being logged.
pub fn log(state: &AppState, keys: &WebhookKeys, action: &str, reason: Option<String>) {
    let entry = LogEntry {
        action: action.to_string(),
        reason,
        created_at: now_millis(),
    };
    if let Err(error) = state.store.append_log(keys, &entry) {
        tracing::error!(%error, "could not write the integration log");
    }
}

/// Stores a worker's cursor if it moved since `saved`; the delivery flusher makes it
/// durable within its interval. The lag gauge is derived from it when `/metrics` is read.
pub fn save_cursor(state: &AppState, keys: &WebhookKeys, cursor: u64, saved: &mut u64) {
    if cursor == *saved {
        return;
    }
    match state.store.set_cursor(keys, cursor) {
        Ok(()) => {
            *saved = cursor;
            state.delivery.mark_dirty();
        }
        Err(error) => tracing::error!(%error, "could not store the cursor"),
    }
}

/// Stores a status the gateway decided (disabled, completed); the webhook stops.
pub async fn set_status(state: &AppState, tenant: &str, webhook_id: &str, status: WebhookStatus) {
    let _serialized = state.webhook_writes.lock().await;
    if let Ok(Some(mut webhook)) = state.store.webhook(tenant, webhook_id) {
        webhook.status = status;
        webhook.spec.enabled = false;
        webhook.updated_at = now_millis();
        if let Err(error) = state.store.put_webhook(tenant, &webhook) {
            tracing::error!(%error, "could not store the webhook status");
        }
    }
}

/// CloudBlue "out of order": why a webhook must be disabled now, if it must. Failing
/// `disable_after_failures` times in a row, or without a success for `disable_after`.
pub fn disable_reason(stats: &Stats, config: &Config) -> Option<String> {
    let since = stats.failing_since?;
    if stats.failures_since_last_success >= config.disable_after_failures {
        return Some(format!(
            "{} failures in a row",
            stats.failures_since_last_success
        ));
    }
    let limit = config.disable_after.duration().as_millis() as EpochMillis;
    (now_millis() - since >= limit).then(|| format!("failing since {}", format_millis(since)))
}
