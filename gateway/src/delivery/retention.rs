//! Retention: events, messages and attempts older than `retention` are purged in small
//! batches (the embedded log does its part on a blocking thread), so delivery never waits
//! behind a long purge.

use std::{sync::Arc, time::Duration};

use crate::{context::EngineContext, iso::now_millis, storage::WebhookRef};

/// Events removed per batch before yielding.
const BATCH: usize = 1000;

pub async fn run(ctx: Arc<EngineContext>) {
    let retention = ctx.config.retention.duration();
    // Check ten times per retention period, but not more than once a second or less than
    // once an hour.
    let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match purge(&ctx).await {
            Ok(0) => {}
            Ok(purged) => {
                tracing::info!(purged, "retention: purged old events and their messages")
            }
            Err(error) => tracing::error!(%error, "retention purge failed"),
        }
    }
}

/// Purges everything older than the retention period; returns how many events went.
pub async fn purge(ctx: &Arc<EngineContext>) -> anyhow::Result<usize> {
    let cutoff = now_millis() - ctx.config.retention.duration().as_millis() as i64;
    let mut purged = 0;
    for tenant in ctx.catalog.tenants_page(None, usize::MAX).await?.0 {
        let webhooks: Vec<WebhookRef> = ctx
            .catalog
            .all_webhooks_of(&tenant.id)
            .await?
            .iter()
            .map(|w| WebhookRef::new(&tenant.id, &w.id))
            .collect();
        loop {
            let old = ctx.log.oldest_before(&tenant.id, cutoff, BATCH).await?;
            if old.is_empty() {
                break;
            }
            let seqs: Vec<u64> = old.iter().map(|(seq, _)| *seq).collect();
            // Delivery state first: a crash in between leaves records of purged events,
            // which the next round removes, never events without their records.
            for webhook in &webhooks {
                ctx.deliveries.purge(webhook, &seqs).await?;
            }
            let count = old.len();
            ctx.log.remove(&tenant.id, &old).await?;
            purged += count;
            if count < BATCH {
                break;
            }
        }
    }
    let freed = ctx.log.compact(cutoff).await?;
    if freed > 0 {
        tracing::info!(
            freed,
            "retention: freed expired event log storage (segment files)"
        )
    }
    Ok(purged)
}
