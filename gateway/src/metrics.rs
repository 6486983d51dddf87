//! Prometheus metrics (`GET /metrics`): ingest, deliveries by outcome, attempt latency,
//! and the lag of every webhook's cursor behind its tenant's log.

use std::sync::Mutex;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabel {
    // Static: a label set is built for every call, and these come from fixed names.
    hook: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    tenant: String,
    webhook: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    ingested: Counter,
    deliveries: Family<OutcomeLabel, Counter>,
    attempt_seconds: Histogram,
    lag: Family<WebhookLabel, Gauge>,
    plugin_calls: Family<PluginCallLabel, Counter>,
    plugin_call_seconds: Histogram,
    workers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let ingested = Counter::default();
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        // 1 ms .. ~33 s
        let attempt_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let lag = Family::<WebhookLabel, Gauge>::default();
        let plugin_calls = Family::<PluginCallLabel, Counter>::default();
        // 10 µs .. ~330 ms: a call is tens of µs; the time limit is 100 ms.
        let plugin_call_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        let workers = Gauge::default();
        let mut registry = Registry::with_prefix("hookgate");
        registry.register(
            "webhooks_running",
            "Webhooks whose delivery worker runs on this node (in a cluster, the node's share)",
            workers.clone(),
        );
        registry.register(
            "ingested_events",
            "Events accepted by ingest",
            ingested.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery outcomes (delivered, rejected, retry_scheduled, failed, filtered)",
            deliveries.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Duration of delivery attempts",
            attempt_seconds.clone(),
        );
        registry.register(
            "webhook_lag_events",
            "Events in the log not yet taken by the webhook's cursor (queue depth)",
            lag.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin hook calls made for deliveries, by hook and outcome (ok or the failure code)",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Duration of plugin hook calls, instantiation included",
            plugin_call_seconds.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            ingested,
            deliveries,
            attempt_seconds,
            lag,
            plugin_calls,
            plugin_call_seconds,
            workers,
        }
    }
}

impl Metrics {
    pub fn ingested(&self, events: u64) {
        self.ingested.inc_by(events);
    }

    pub fn delivery_outcome(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn attempt_latency(&self, millis: u64) {
        self.attempt_seconds.observe(millis as f64 / 1000.0);
    }

    pub fn set_workers(&self, running: usize) {
        self.workers.set(running as i64);
    }

    /// Replaces every webhook's lag (drops webhooks that are gone).
    pub fn reset_lags(&self, lags: impl IntoIterator<Item = (String, String, u64)>) {
        self.lag.clear();
        for (tenant, webhook, lag) in lags {
            self.set_lag(&tenant, &webhook, lag);
        }
    }

    fn set_lag(&self, tenant: &str, webhook: &str, lag: u64) {
        self.lag
            .get_or_create(&WebhookLabel {
                tenant: tenant.to_string(),
                webhook: webhook.to_string(),
            })
            .set(lag as i64);
    }

    /// One plugin call: `hook` is filter/transform/authenticate, `outcome` is `ok` or the
    /// sandbox's error code.
    pub fn plugin_call(&self, hook: &'static str, outcome: &'static str, micros: u64) {
        self.plugin_calls
            .get_or_create(&PluginCallLabel { hook, outcome })
            .inc();
        self.plugin_call_seconds.observe(micros as f64 / 1e6);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry.lock().expect("registry")).expect("text encoding");
        text
    }
}
