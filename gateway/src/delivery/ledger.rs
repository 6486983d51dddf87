//! The rules about a webhook's delivery state that the API invokes: where a new webhook
//! starts reading, recover, taking an event out of the rejected list. The API asks here;
//! it never builds a record or an outcome set itself. (What a worker records for an
//! attempt is the worker's: `worker::Worker::record`.)

use super::{lifecycle, records::MessageStatus};
use crate::{
    iso::{EpochMillis, now_millis},
    model::webhook::{IntegrationType, Webhook},
    storage::{DeliveryState, EventLog, OutcomeSet, StorageResult, WebhookRef},
};

/// Records read per page while recover scans a webhook's messages.
const SCAN_PAGE: usize = 1024;

/// Where a webhook starts reading: a permanent one at the head (it receives what is
/// ingested from now on); a temporary one at the beginning (its window decides).
pub async fn start_position(
    log: &dyn EventLog,
    tenant: &str,
    webhook: &Webhook,
) -> StorageResult<u64> {
    // A replay window or a back-fill reads the log from its start (`selection::takes`
    // skips what is outside); otherwise the webhook takes what arrives from now on.
    match webhook.spec.integration_type {
        IntegrationType::Temporary => Ok(0),
        IntegrationType::Permanent if webhook.spec.starts_at.is_some() => Ok(0),
        IntegrationType::Permanent => log.durable_seq(tenant).await,
    }
}

/// A new webhook's state: its start position (`start_position`) and the `created` log
/// entry.
pub async fn created(
    deliveries: &dyn DeliveryState,
    webhook: &WebhookRef,
    start_position: u64,
) -> StorageResult<()> {
    let mut set = OutcomeSet::default();
    set.cursor(start_position);
    set.log(lifecycle::entry("created", None));
    deliveries.apply(webhook, set).await
}

/// Queues every failed message created in `since..=until` for an attempt now, with the
/// retry schedule started over; returns how many. The webhook's worker must be woken to
/// see them.
pub async fn recover(
    deliveries: &dyn DeliveryState,
    webhook: &WebhookRef,
    since: EpochMillis,
    until: EpochMillis,
) -> StorageResult<u64> {
    let now = now_millis();
    let mut set = OutcomeSet::default();
    let mut recovered = 0u64;
    let mut after = None;
    loop {
        let page = deliveries
            .deliveries_after(webhook, after, SCAN_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for mut delivery in page {
            if delivery.status != MessageStatus::Failed
                || !(since..=until).contains(&delivery.created_at)
            {
                continue;
            }
            delivery.status = MessageStatus::Pending;
            delivery.step = 0;
            delivery.next_attempt_at = Some(now);
            delivery.updated_at = now;
            set.record(delivery, None);
            recovered += 1;
        }
    }
    set.log(lifecycle::entry(
        "recover",
        Some(format!("{recovered} failed messages re-queued")),
    ));
    deliveries.apply(webhook, set).await?;
    Ok(recovered)
}

/// Takes an event out of the rejected list; its record stays.
pub async fn unreject(
    deliveries: &dyn DeliveryState,
    webhook: &WebhookRef,
    seq: u64,
) -> StorageResult<()> {
    let mut set = OutcomeSet::default();
    set.unreject(seq);
    deliveries.apply(webhook, set).await
}
