//! How delivery records appear in responses (Front Systems / Sterling message shape).
//!
//! Payloads are shown as stored: typed views hold the `RawValue` and serialize its bytes
//! verbatim. Never through `serde_json::Value`: that would re-parse the payload, and a
//! payload it cannot hold (nested past 128 levels by an older gateway, a number beyond
//! `f64`) would make the route fail for every event listed with it.

use serde::Serialize;
use serde_json::{Value, value::RawValue};

use super::error::ApiResult;
use crate::{
    api::ApiState,
    delivery::records::{Delivery, MessageStatus},
    iso::format_millis,
    storage::StoredEvent,
    storage::WebhookRef,
};

/// `{id, event_type, webhook_id, status, status_code, success, runs_counter, created_at,
/// updated_at, next_attempt_at, reason}`, plus `payload` and `runs` when asked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    id: String,
    event_type: String,
    webhook_id: String,
    status: MessageStatus,
    status_code: Option<u16>,
    success: bool,
    runs_counter: u32,
    created_at: String,
    updated_at: String,
    next_attempt_at: Option<String>,
    reason: Option<String>,
    /// Absent unless asked for; then the stored payload, or `null` when the event is no
    /// longer stored (purged by retention).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    payload: Option<Option<Box<RawValue>>>,
    /// The attempts (`include_runs`), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    runs: Option<Vec<Value>>,
}

pub async fn message(
    state: &ApiState,
    tenant: &str,
    webhook_id: &str,
    delivery: &Delivery,
    include_payload: bool,
    include_runs: bool,
) -> ApiResult<MessageView> {
    let payload = if include_payload {
        // A read error is an error (500 with the request id), not a silent `null`.
        let event = state.log.event_by_seq(tenant, delivery.seq).await?;
        Some(event.map(|e| e.payload))
    } else {
        None
    };
    let runs = if include_runs {
        let webhook = WebhookRef::new(tenant, webhook_id);
        let attempts = state.deliveries.attempts(&webhook, delivery.seq).await?;
        Some(attempts.iter().map(|a| a.view()).collect())
    } else {
        None
    };
    Ok(MessageView {
        id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        webhook_id: webhook_id.to_string(),
        status: delivery.status,
        status_code: delivery.status_code,
        success: delivery.status == MessageStatus::Delivered,
        runs_counter: delivery.runs,
        created_at: format_millis(delivery.created_at),
        updated_at: format_millis(delivery.updated_at),
        next_attempt_at: delivery.next_attempt_at.map(format_millis),
        reason: delivery.reason.clone(),
        payload,
        runs,
    })
}

/// The NewStore shape of an event: `{id, tenant, event_type, published_at, payload}`.
#[derive(Debug, Serialize)]
pub struct EventView {
    id: String,
    tenant: String,
    event_type: String,
    published_at: String,
    payload: Box<RawValue>,
}

pub fn event(tenant: &str, event: StoredEvent) -> EventView {
    EventView {
        id: event.id,
        tenant: tenant.to_string(),
        event_type: event.event_type,
        published_at: format_millis(event.published_at),
        payload: event.payload,
    }
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
