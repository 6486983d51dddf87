//! `hookgate migrate`: copies a stopped gateway's embedded data directory into a cluster
//! (`storage = "nats"`), so that deliveries go on where they stopped.
//!
//! It reads and writes through the storage traits alone, so it knows neither backend's
//! layout. What it copies, per tenant: the events still in the log, event types, plugins
//! (components, versions with their numbers, secrets), every webhook with its delivery
//! state (cursor, statistics, records, attempts, retries, the rejected list and the
//! integration log), the API keys and the tenant.
//!
//! Seqs change on the way: the embedded log numbers each tenant's events 1, 2, 3…, the
//! cluster's log numbers every tenant's events in one stream. Copying a tenant's events
//! builds a [`SeqMap`] from old seqs to new ones, and everything that names a seq (cursors,
//! records, attempts, rejected entries) is translated through it.
//!
//! Order, within a tenant: events, event types, plugins, each webhook's delivery state and
//! then the webhook, its keys, and the tenant record last. A cluster node (which may be
//! running) starts a webhook once its record exists, and by then the webhook's cursor is
//! there. A tenant that exists in the cluster was copied whole and is skipped, so a
//! migration that stopped half-way is run again to finish: events are idempotent by id
//! (a second copy answers with the first one's seq), records and attempts are rewritten
//! in place, and an integration log already copied is not copied twice.

use std::{path::Path, sync::Arc};

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::{
    config::{Config, StorageKind},
    storage::{
        Catalog, ComponentStore, DeliveryState, EventLog, NewEvent, OutcomeSet, WebhookRef,
        catalog::{PluginHead, PluginSecret, Tenant},
    },
};

/// Records, events or listing entries read per call.
const PAGE: usize = 512;

/// One side of a migration: the stores it reads or writes.
pub struct Stores {
    pub catalog: Arc<dyn Catalog>,
    pub log: Arc<dyn EventLog>,
    pub deliveries: Arc<dyn DeliveryState>,
}

/// Where each side keeps plugin components: the embedded gateway's plugin cache, the
/// cluster's component store.
pub struct Components<'a> {
    pub from: &'a hookgate_plugin_host::PluginRuntime,
    pub to: &'a dyn ComponentStore,
}

/// What was copied (or found already copied), for the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub tenants: usize,
    pub tenants_already_there: Vec<String>,
    pub keys: usize,
    pub event_types: usize,
    pub events: usize,
    pub plugin_versions: usize,
    pub plugin_secrets: usize,
    pub webhooks: usize,
    pub records: usize,
    pub attempts: usize,
    /// Records whose event retention had already removed: nothing to deliver, not copied.
    pub records_without_event: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "copied {} tenants ({} API keys), {} event types, {} events, {} plugin versions \
             ({} secrets), {} webhooks with {} delivery records and {} attempts",
            self.tenants,
            self.keys,
            self.event_types,
            self.events,
            self.plugin_versions,
            self.plugin_secrets,
            self.webhooks,
            self.records,
            self.attempts
        )?;
        if self.records_without_event > 0 {
            writeln!(
                f,
                "left out {} delivery records whose event retention had removed",
                self.records_without_event
            )?;
        }
        for tenant in &self.tenants_already_there {
            writeln!(f, "tenant {tenant}: already in the cluster, left as it is")?;
        }
        Ok(())
    }
}

/// Old seqs of one tenant's events to their new seqs, in order.
#[derive(Debug, Default)]
pub struct SeqMap {
    /// (old, new), both ascending.
    pairs: Vec<(u64, u64)>,
    /// The tenant's last seq in the target once its events are copied.
    head: u64,
}

impl SeqMap {
    fn push(&mut self, old: u64, new: u64) -> anyhow::Result<()> {
        if let Some(&(last_old, last_new)) = self.pairs.last()
            && (old <= last_old || new <= last_new)
        {
            bail!("events out of order: {old} → {new} after {last_old} → {last_new}");
        }
        self.pairs.push((old, new));
        self.head = self.head.max(new);
        Ok(())
    }

    /// The new seq of the event that had `old`, if it was copied.
    pub fn seq(&self, old: u64) -> Option<u64> {
        self.pairs
            .binary_search_by_key(&old, |&(o, _)| o)
            .ok()
            .map(|i| self.pairs[i].1)
    }

    /// A cursor at `old` says "every event up to `old` is resolved"; its new value must say
    /// the same of the same events: just below the first copied event after `old`, or the
    /// tenant's head when none came after it.
    pub fn cursor(&self, old: u64) -> u64 {
        let next = self.pairs.partition_point(|&(o, _)| o <= old);
        match self.pairs.get(next) {
            Some(&(_, new)) => new - 1,
            None => self.head,
        }
    }
}

/// Copies every tenant of `from` into `to` (see the module documentation).
pub async fn copy_all(
    from: &Stores,
    to: &Stores,
    components: &Components<'_>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut after: Option<String> = None;
    loop {
        let (tenants, done) = from.catalog.tenants_page(after.as_deref(), PAGE).await?;
        for tenant in &tenants {
            if to.catalog.tenant(&tenant.id).await?.is_some() {
                report.tenants_already_there.push(tenant.id.clone());
                continue;
            }
            copy_tenant(from, to, components, tenant, &mut report)
                .await
                .with_context(|| format!("tenant {}", tenant.id))?;
            report.tenants += 1;
        }
        match tenants.last() {
            Some(last) if !done => after = Some(last.id.clone()),
            _ => break,
        }
    }
    to.deliveries.sync().await?;
    Ok(report)
}

async fn copy_tenant(
    from: &Stores,
    to: &Stores,
    components: &Components<'_>,
    tenant: &Tenant,
    report: &mut Report,
) -> anyhow::Result<()> {
    let id = tenant.id.as_str();
    let seqs = copy_events(from, to, id, report).await?;
    copy_event_types(from, to, id, report).await?;
    copy_plugins(from, to, components, id, report).await?;
    for webhook in from.catalog.all_webhooks_of(id).await? {
        let webhook_ref = WebhookRef::new(id, &webhook.id);
        copy_delivery_state(from, to, &webhook_ref, &seqs, report)
            .await
            .with_context(|| format!("webhook {}", webhook.id))?;
        to.catalog.put_webhook(id, &webhook).await?;
        report.webhooks += 1;
    }
    for key in from.catalog.keys_of(id).await? {
        to.catalog.insert_key(&key).await?;
        report.keys += 1;
    }
    if !to.catalog.insert_tenant(tenant).await? {
        bail!("the tenant appeared in the cluster while it was being copied");
    }
    Ok(())
}

async fn copy_events(
    from: &Stores,
    to: &Stores,
    tenant: &str,
    report: &mut Report,
) -> anyhow::Result<SeqMap> {
    let mut seqs = SeqMap::default();
    let mut after = 0;
    loop {
        let events = from.log.read_after(tenant, after, PAGE).await?;
        let Some(&(last, _)) = events.last() else {
            break;
        };
        after = last;
        let old: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        report.events += old.len();
        let batch = events
            .into_iter()
            .map(|(_, event)| NewEvent {
                id: Some(event.id),
                event_type: event.event_type,
                published_at: event.published_at,
                received_at: event.received_at,
                payload: event.payload,
            })
            .collect();
        let appended = to.log.append(tenant, batch).await?;
        for (old, appended) in old.into_iter().zip(appended) {
            seqs.push(old, appended.seq)?;
        }
    }
    seqs.head = seqs.head.max(to.log.durable_seq(tenant).await?);
    Ok(seqs)
}

async fn copy_event_types(
    from: &Stores,
    to: &Stores,
    tenant: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let (types, done) = from
            .catalog
            .event_types_page(tenant, after.as_deref(), PAGE)
            .await?;
        for event_type in &types {
            to.catalog.put_event_type(tenant, event_type).await?;
            report.event_types += 1;
        }
        match types.last() {
            Some(last) if !done => after = Some(last.name.clone()),
            _ => return Ok(()),
        }
    }
}

async fn copy_plugins(
    from: &Stores,
    to: &Stores,
    components: &Components<'_>,
    tenant: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let (heads, done) = from
            .catalog
            .plugin_heads_page(tenant, after.as_deref(), PAGE)
            .await?;
        for head in &heads {
            copy_plugin(from, to, components, tenant, head, report)
                .await
                .with_context(|| format!("plugin {}", head.name))?;
        }
        match heads.last() {
            Some(last) if !done => after = Some(last.name.clone()),
            _ => return Ok(()),
        }
    }
}

async fn copy_plugin(
    from: &Stores,
    to: &Stores,
    components: &Components<'_>,
    tenant: &str,
    head: &PluginHead,
    report: &mut Report,
) -> anyhow::Result<()> {
    let versions = from.catalog.plugin_versions(tenant, &head.name).await?;
    for version in &versions {
        if components.to.get(&version.sha256).await?.is_some() {
            continue;
        }
        let wasm = components
            .from
            .component_bytes(&version.sha256)
            .with_context(|| format!("the component of version {}", version.version))?;
        components
            .to
            .put(&version.sha256, Bytes::from(wasm))
            .await?;
    }
    // The records carry sealed values; the plaintext comes from the one place that opens
    // them, and the target seals it again with its own key.
    let mut values = from
        .catalog
        .plugin_secret_values(tenant, &head.name)
        .await?;
    let mut secrets = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, done) = from
            .catalog
            .plugin_secrets_page(tenant, &head.name, after.as_deref(), PAGE)
            .await?;
        for record in &page {
            let value = values
                .remove(&record.key)
                .with_context(|| format!("secret {} cannot be opened", record.key))?;
            secrets.push(PluginSecret {
                value,
                ..record.clone()
            });
        }
        match page.last() {
            Some(last) if !done => after = Some(last.key.clone()),
            _ => break,
        }
    }
    to.catalog
        .restore_plugin(tenant, head, &versions, &secrets)
        .await?;
    report.plugin_versions += versions.len();
    report.plugin_secrets += secrets.len();
    Ok(())
}

async fn copy_delivery_state(
    from: &Stores,
    to: &Stores,
    webhook: &WebhookRef,
    seqs: &SeqMap,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Records with their attempts; a record's retry entry is derived from it.
    let mut after = None;
    loop {
        let page = from
            .deliveries
            .deliveries_after(webhook, after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        let mut set = OutcomeSet::default();
        for mut delivery in page {
            let Some(seq) = seqs.seq(delivery.seq) else {
                report.records_without_event += 1;
                continue;
            };
            let attempts = from.deliveries.attempts(webhook, delivery.seq).await?;
            // Numbered as the worker numbers them (by `runs`), so its next one follows on.
            let first = (delivery.runs as usize)
                .checked_sub(attempts.len())
                .map_or(1, |before| before + 1);
            report.attempts += attempts.len();
            for (i, attempt) in attempts.into_iter().enumerate() {
                set.attempt(seq, (first + i) as u32, attempt);
            }
            delivery.seq = seq;
            set.record(delivery, None);
            report.records += 1;
        }
        to.deliveries.apply(webhook, set).await?;
    }
    let mut set = OutcomeSet::default();
    let mut after = None;
    loop {
        let page = from.deliveries.rejected(webhook, after, PAGE).await?;
        for seq in page.seqs.iter().filter_map(|&seq| seqs.seq(seq)) {
            set.reject(seq);
        }
        match page.seqs.last() {
            Some(&last) if !page.done => after = Some(last),
            _ => break,
        }
    }
    if to.deliveries.log_entries(webhook).await?.is_empty() {
        // Newest first when read; appended oldest first.
        for entry in from
            .deliveries
            .log_entries(webhook)
            .await?
            .into_iter()
            .rev()
        {
            set.log(entry);
        }
    }
    set.stats(from.deliveries.stats(webhook).await?);
    if let Some(cursor) = from.deliveries.cursor(webhook).await? {
        set.cursor(seqs.cursor(cursor));
    }
    to.deliveries.apply(webhook, set).await?;
    Ok(())
}

/// `hookgate migrate --from DIR` with the cluster's configuration: opens the stopped
/// gateway's data directory and the cluster, copies, and prints what it did.
pub async fn run(from_dir: &Path, config: Config) -> anyhow::Result<Report> {
    if config.storage != StorageKind::Nats {
        bail!(
            "migrate copies into a cluster: give storage = \"nats\" and nats_servers \
             (HOOKGATE_STORAGE, HOOKGATE_NATS_SERVERS); the data directory to copy is --from"
        );
    }
    if !from_dir.join("db").is_dir() {
        bail!(
            "{} is not a Hookgate data directory (it has no db/)",
            from_dir.display()
        );
    }
    // The source's own key file, else the configured key (a gateway that ran with
    // HOOKGATE_MASTER_KEY set has no file). The cluster seals with the configured key.
    let key_file = from_dir.join("master_key");
    let source_key = if key_file.exists() {
        hookgate_signing::MasterKey::load_or_create(&key_file)
    } else {
        hookgate_signing::MasterKey::from_config_or_file(config.master_key.as_deref(), &key_file)
    }
    .with_context(|| format!("cannot load the master key of {}", from_dir.display()))?;
    let target_key = hookgate_signing::MasterKey::from_base64(
        config
            .master_key
            .as_deref()
            .context("the cluster's master_key must be configured")?,
    )
    .context("master_key")?;
    let embedded = crate::store::open(from_dir, source_key, &tokio::runtime::Handle::current())
        .with_context(|| {
            format!(
                "cannot open the data in {}: is a gateway still running on it? Stop it first",
                from_dir.display()
            )
        })?;
    let cache = hookgate_plugin_host::PluginRuntime::new(hookgate_plugin_host::RuntimeConfig::new(
        from_dir.join("plugins"),
    ))
    .context("cannot open the plugin cache")?;
    let cluster = crate::nats::open_storage(&config, Arc::new(target_key)).await?;
    let from = Stores {
        catalog: embedded.catalog.clone(),
        log: embedded.log.clone(),
        deliveries: embedded.deliveries.clone(),
    };
    let to = Stores {
        catalog: cluster.catalog.clone(),
        log: cluster.log.clone(),
        deliveries: cluster.deliveries.clone(),
    };
    let components = Components {
        from: &cache,
        to: &*cluster.components,
    };
    let report = copy_all(&from, &to, &components).await?;
    embedded.log.close();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(u64, u64)], head: u64) -> SeqMap {
        let mut seqs = SeqMap::default();
        for &(old, new) in pairs {
            seqs.push(old, new).unwrap();
        }
        seqs.head = seqs.head.max(head);
        seqs
    }

    #[test]
    fn seqs_translate_one_by_one_and_gaps_stay_gaps() {
        let seqs = map(&[(1, 10), (2, 14), (5, 15)], 15);
        assert_eq!(seqs.seq(2), Some(14));
        assert_eq!(seqs.seq(3), None, "removed by retention: not copied");
        assert_eq!(seqs.seq(6), None);
    }

    #[test]
    fn a_cursor_lands_just_below_the_first_event_it_had_not_passed() {
        let seqs = map(&[(1, 10), (2, 14), (5, 15)], 15);
        assert_eq!(
            seqs.cursor(0),
            9,
            "nothing passed: the first event is still ahead"
        );
        assert_eq!(
            seqs.cursor(1),
            13,
            "other tenants' seqs in between are not its own"
        );
        assert_eq!(seqs.cursor(3), 14, "past 3, which retention removed");
        assert_eq!(seqs.cursor(5), 15);
        assert_eq!(seqs.cursor(9), 15, "at the head");
    }

    #[test]
    fn a_tenant_without_events_keeps_its_cursor_at_its_head() {
        assert_eq!(map(&[], 0).cursor(7), 0);
    }

    #[test]
    fn events_out_of_order_are_an_error() {
        let mut seqs = map(&[(1, 10)], 10);
        assert!(seqs.push(2, 9).is_err());
        assert!(seqs.push(1, 11).is_err());
    }
}
