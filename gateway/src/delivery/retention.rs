//! Retention: events, messages and attempts older than `retention` are purged in small
//! batches on a blocking thread, so delivery never waits behind a long purge.

use std::{sync::Arc, time::Duration};

use crate::{app::AppState, iso::now_millis, store::deliveries::WebhookKeys};

/// Events removed per batch before yielding.
const BATCH: usize = 1000;

pub async fn run(state: Arc<AppState>) {
    let retention = state.config.retention.duration();
    // Check ten times per retention period, but not more than once a second or less than
    // once an hour.
    let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let state = state.clone();
        match tokio::task::spawn_blocking(move || purge(&state)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(purged)) => {
                tracing::info!(purged, "retention: purged old events and their messages")
            }
            Ok(Err(error)) => tracing::error!(%error, "retention purge failed"),
            Err(error) => tracing::error!(%error, "retention task panicked"),
        }
    }
}

/// Purges everything older than the retention period; returns how many events went.
pub fn purge(state: &AppState) -> anyhow::Result<usize> {
    let cutoff = now_millis() - state.config.retention.duration().as_millis() as i64;
    let mut purged = 0;
    for tenant in state.store.tenants_page(None, usize::MAX)?.0 {
        let webhooks: Vec<WebhookKeys> = state
            .store
            .all_webhooks_of(&tenant.id)?
            .iter()
            .map(|w| WebhookKeys::new(&tenant.id, &w.id))
            .collect();
        loop {
            let old = state.log.oldest_before(&tenant.id, cutoff, BATCH)?;
            if old.is_empty() {
                break;
            }
            for (seq, _) in &old {
                for keys in &webhooks {
                    state.store.deliveries.remove(keys.delivery(*seq))?;
                    state.store.deliveries.remove(keys.rejected(*seq))?;
                    for key in state
                        .store
                        .deliveries
                        .scan_prefix(keys.attempts_of(*seq))
                        .keys()
                    {
                        state.store.deliveries.remove(key?)?;
                    }
                }
            }
            state.log.remove(&tenant.id, &old)?;
            purged += old.len();
            if old.len() < BATCH {
                break;
            }
        }
    }
    let segments = state.log.remove_segments_before(cutoff)?;
    if segments > 0 {
        tracing::info!(segments, "retention: removed expired event log segments");
    }
    Ok(purged)
}
