//! How delivery records appear in responses (Front Systems / Sterling message shape).

use serde_json::{Value, json};

use crate::{
    app::AppState,
    delivery::records::{Delivery, MessageStatus},
    iso::format_millis,
    log::StoredEvent,
    store::{StoreError, deliveries::WebhookKeys},
};

/// `{id, event_type, webhook_id, status, status_code, success, runs_counter, created_at,
/// updated_at, next_attempt_at, reason}`, plus `payload` and `runs` when asked.
pub fn message(
    state: &AppState,
    tenant: &str,
    webhook_id: &str,
    delivery: &Delivery,
    include_payload: bool,
    include_runs: bool,
) -> Result<Value, StoreError> {
    let mut view = json!({
        "id": delivery.event_id,
        "event_type": delivery.event_type,
        "webhook_id": webhook_id,
        "status": delivery.status,
        "status_code": delivery.status_code,
        "success": delivery.status == MessageStatus::Delivered,
        "runs_counter": delivery.runs,
        "created_at": format_millis(delivery.created_at),
        "updated_at": format_millis(delivery.updated_at),
        "next_attempt_at": delivery.next_attempt_at.map(format_millis),
        "reason": delivery.reason,
    });
    if include_payload {
        let payload = state
            .log
            .event_by_seq(tenant, delivery.seq)
            .ok()
            .flatten()
            .map(|e| serde_json::to_value(&e.payload).unwrap_or(Value::Null));
        view["payload"] = payload.unwrap_or(Value::Null);
    }
    if include_runs {
        let keys = WebhookKeys::new(tenant, webhook_id);
        let runs: Vec<Value> = state
            .store
            .attempts(&keys, delivery.seq)?
            .iter()
            .map(|a| a.view())
            .collect();
        view["runs"] = Value::Array(runs);
    }
    Ok(view)
}

/// The NewStore shape of an event: `{id, tenant, event_type, published_at, payload}`.
pub fn event(tenant: &str, event: &StoredEvent) -> Value {
    json!({
        "id": event.id,
        "tenant": tenant,
        "event_type": event.event_type,
        "published_at": format_millis(event.published_at),
        "payload": event.payload,
    })
}

/// One status for an event across its webhooks: what an operator asks first.
pub fn aggregate_status(deliveries: &[Delivery]) -> &'static str {
    use MessageStatus::*;
    if deliveries.is_empty() {
        return "received";
    }
    if deliveries
        .iter()
        .any(|d| matches!(d.status, Failed | Rejected))
    {
        return "failed";
    }
    if deliveries.iter().any(|d| d.status == Pending) {
        return "pending";
    }
    if deliveries.iter().all(|d| d.status == Filtered) {
        return "filtered";
    }
    "delivered"
}
