//! Lifecycle changes every kind of worker (and the API) makes the same way: the integration
//! log, status changes made by the gateway itself, and the "out of order" rule.

use crate::{
    config::Config,
    context::EngineContext,
    iso::{EpochMillis, format_millis, now_millis},
    model::webhook::WebhookStatus,
    storage::{DeliveryState, OutcomeSet, WebhookRef},
};

use super::records::{LogEntry, Stats};

/// An integration log entry made now.
pub fn entry(action: &str, reason: Option<String>) -> LogEntry {
    LogEntry {
        action: action.to_string(),
        reason,
        created_at: now_millis(),
    }
}

/// Appends to the integration log at once (the API; workers add entries to their pass's
/// outcome set). A failure here must not fail what is being logged.
pub async fn log(
    deliveries: &dyn DeliveryState,
    webhook: &WebhookRef,
    action: &str,
    reason: Option<String>,
) {
    let mut set = OutcomeSet::default();
    set.log(entry(action, reason));
    if let Err(error) = deliveries.apply(webhook, set).await {
        tracing::error!(%error, "could not write the integration log");
    }
}

/// Stores a status the gateway decided (disabled, completed); the webhook stops.
pub async fn set_status(
    ctx: &EngineContext,
    tenant: &str,
    webhook_id: &str,
    status: WebhookStatus,
) {
    let _serialized = ctx.webhook_writes.lock().await;
    if let Ok(Some(mut webhook)) = ctx.catalog.webhook(tenant, webhook_id).await {
        webhook.status = status;
        webhook.spec.enabled = false;
        webhook.updated_at = now_millis();
        if let Err(error) = ctx.catalog.put_webhook(tenant, &webhook).await {
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
