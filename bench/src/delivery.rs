//! `delivery`: ingest events and measure what arrives at the receiver.
//!
//! Against a gateway the driver first creates `--webhooks N` webhooks, all pointing at the
//! receiver (`/hook/<i>`) and subscribed to an event type unique to this run, so webhooks
//! left over from other runs never match; it deletes them at the end, also on failure.
//! Against the forwarder there is no setup: the forwarder fans out by itself.
//!
//! The measured phase starts with a receiver reset, whose `since_ns` separates this run's
//! events from the warmup's. Two rates come out:
//! - deliveries/s during the run: every delivery the receiver got while the driver was
//!   ingesting, over that time. This is the throughput figure (peak with `--max`).
//! - sustained deliveries/s: deliveries from the reset until the last delivery of the
//!   run's events, including the drain after ingest stopped.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use tokio::time::{Instant, sleep};

use crate::cli::{DeliveryArgs, DeliveryTarget};
use crate::control::{Control, WebhookSpec};
use crate::event::now_ns;
use crate::load::{LoadGenerator, Pacing, PhaseResult};
use crate::report::{ResultLine, ms, per_second};
use crate::servers::receiver::ReceiverStats;

pub async fn run(args: DeliveryArgs) -> Result<()> {
    ensure!(args.webhooks >= 1, "--webhooks must be at least 1");
    let control = Control::new()?;
    let receiver = args.receiver.trim_end_matches('/').to_owned();
    control
        .wait_ready(&format!("{receiver}/readyz"), Duration::from_secs(10))
        .await?;

    // Unique per run: only this run's webhooks subscribe to it.
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        now_ns() / 1_000_000 % 1_000_000
    );
    let mut load_args = args.load.clone();
    load_args.event_type = format!("bench.delivery.{run_id}");

    let webhooks = match args.target {
        DeliveryTarget::Gateway => create_webhooks(&control, &args, &run_id, &load_args).await?,
        DeliveryTarget::Forwarder => Vec::new(),
    };
    if let (Some(path), Some(key)) = (&args.plugin, &args.load.key)
        && let Err(error) = attach_plugin(&args, key, path, &load_args.event_type, &webhooks).await
    {
        delete_webhooks(&control, &args, &webhooks).await;
        return Err(error);
    }
    let outcome = measure(&args, &control, &receiver, &load_args).await;
    delete_webhooks(&control, &args, &webhooks).await;
    outcome
}

async fn delete_webhooks(control: &Control, args: &DeliveryArgs, webhooks: &[String]) {
    if let Some(key) = &args.load.key {
        for id in webhooks {
            if let Err(error) = control
                .delete_webhook(&args.load.url, &args.load.tenant, key, id)
                .await
            {
                eprintln!("warning: {error:#}");
            }
        }
    }
}

/// `--plugin`: uploads the component as plugin `bench-<file stem>` of the tenant
/// (`POST /{tenant}/v1/plugins/{name}`, a new version if it exists) and attaches it to
/// every webhook with `--plugin-config` (`PATCH` of the webhook's `plugins`).
async fn attach_plugin(
    args: &DeliveryArgs,
    key: &str,
    path: &std::path::Path,
    event_type: &str,
    webhooks: &[String],
) -> Result<()> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading --plugin {}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .replace('_', "-");
    let name = format!("bench-{stem}");
    let config: serde_json::Value = match &args.plugin_config {
        Some(text) => serde_json::from_str(&text.replace("{event_type}", event_type))
            .map_err(|e| anyhow::anyhow!("--plugin-config is not JSON: {e}"))?,
        None => serde_json::Value::Null,
    };
    let base = format!(
        "{}/{}/v1",
        args.load.url.trim_end_matches('/'),
        args.load.tenant
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let uploaded = http
        .post(format!("{base}/plugins/{name}"))
        .bearer_auth(key)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await?;
    ensure!(
        uploaded.status().is_success(),
        "uploading plugin `{name}` answered {}: {}",
        uploaded.status(),
        uploaded.text().await.unwrap_or_default()
    );
    let attachment = serde_json::json!({"plugins": [{"plugin": name, "config": config}]});
    for id in webhooks {
        let patched = http
            .patch(format!("{base}/webhooks/{id}"))
            .bearer_auth(key)
            .json(&attachment)
            .send()
            .await?;
        ensure!(
            patched.status().is_success(),
            "attaching plugin `{name}` to webhook `{id}` answered {}: {}",
            patched.status(),
            patched.text().await.unwrap_or_default()
        );
    }
    println!(
        "plugin `{name}` ({}) attached to {} webhook(s), config {config}",
        path.display(),
        webhooks.len()
    );
    Ok(())
}

async fn create_webhooks(
    control: &Control,
    args: &DeliveryArgs,
    run_id: &str,
    load_args: &crate::cli::LoadArgs,
) -> Result<Vec<String>> {
    let Some(key) = &args.load.key else {
        bail!("--key (the tenant's API key) is needed to create webhooks on the gateway");
    };
    let receiver = args.receiver.trim_end_matches('/');
    let mut created: Vec<String> = Vec::with_capacity(args.webhooks);
    for index in 0..args.webhooks {
        let id = format!("bench-{run_id}-{index}");
        let url = format!("{receiver}/hook/{index}");
        let spec = WebhookSpec {
            id: &id,
            url: &url,
            event_type: &load_args.event_type,
            max_in_flight: args.max_in_flight,
        };
        if let Err(error) = control
            .create_webhook(&args.load.url, &args.load.tenant, key, &spec)
            .await
        {
            for id in &created {
                let _ = control
                    .delete_webhook(&args.load.url, &args.load.tenant, key, id)
                    .await;
            }
            return Err(error);
        }
        created.push(id);
    }
    Ok(created)
}

async fn measure(
    args: &DeliveryArgs,
    control: &Control,
    receiver: &str,
    load_args: &crate::cli::LoadArgs,
) -> Result<()> {
    let pacing = match args.rate {
        Some(rate) => Pacing::EventsPerSecond(rate),
        None => Pacing::ClosedLoop,
    };
    let pacing_text = match args.rate {
        Some(rate) => format!("{rate} events/s"),
        None => "max".to_owned(),
    };
    let label = args.label.clone().unwrap_or_else(|| {
        let target = match args.target {
            DeliveryTarget::Gateway => "gateway",
            DeliveryTarget::Forwarder => "forwarder",
        };
        let pacing = args
            .rate
            .map_or("max".to_owned(), |rate| format!("{rate}eps"));
        format!("{target}-{}wh-{pacing}", args.webhooks)
    });
    println!(
        "delivery {label}: {} -> receiver {receiver}, {} webhook(s), {pacing_text}, {} connections, warmup {:?}, measuring {:?}",
        load_args.url, args.webhooks, load_args.concurrency, args.warmup, args.duration
    );

    let mut load = LoadGenerator::new(load_args).await?;
    if !args.warmup.is_zero() {
        let warmup = load.run(pacing, args.warmup).await?;
        println!(
            "  warmup: {} events, errors {}",
            warmup.stats.events_ok,
            warmup.stats.errors_text()
        );
    }

    let at_start = control.receiver_reset(receiver).await?;
    let window_started = Instant::now();
    let phase = load.run(pacing, args.duration).await?;
    let at_end = control.receiver_stats(receiver).await?;
    let window = window_started.elapsed();

    let expected = phase.stats.events_ok * args.webhooks as u64;
    let drain_started = Instant::now();
    let mut last = at_end.clone();
    while last.deliveries_measured < expected && drain_started.elapsed() < args.drain_timeout {
        sleep(Duration::from_millis(100)).await;
        last = control.receiver_stats(receiver).await?;
    }
    let figures = Figures {
        phase: &phase,
        window,
        at_start: &at_start,
        at_end: &at_end,
        last: &last,
        expected,
        drain: drain_started.elapsed(),
        drained: last.deliveries_measured >= expected,
    };
    figures.print(&label, args);
    if phase.stats.requests_ok == 0 {
        bail!("no ingest request succeeded");
    }
    Ok(())
}

/// Everything the report is computed from.
struct Figures<'a> {
    phase: &'a PhaseResult,
    /// From the receiver reset to the receiver snapshot right after the last ingest.
    window: Duration,
    at_start: &'a ReceiverStats,
    at_end: &'a ReceiverStats,
    last: &'a ReceiverStats,
    expected: u64,
    drain: Duration,
    drained: bool,
}

impl Figures<'_> {
    fn print(&self, label: &str, args: &DeliveryArgs) {
        let ingest = &self.phase.stats;
        let ingest_latency = ingest.latency.summary();
        let events_per_sec = per_second(ingest.events_ok, self.phase.elapsed);
        let window_deliveries = self.at_end.deliveries_total - self.at_start.deliveries_total;
        let deliveries_per_sec = per_second(window_deliveries, self.window);
        // From the reset to the last delivery of this run's events, all deliveries.
        let busy = Duration::from_nanos(
            self.last
                .last_delivery_ns
                .saturating_sub(self.at_start.since_ns),
        );
        let sustained_per_sec = per_second(
            self.last.deliveries_total - self.at_start.deliveries_total,
            busy,
        );
        let delivered = self.last.deliveries_measured;
        let missing = self.expected.saturating_sub(delivered);
        let extra = delivered.saturating_sub(self.expected);
        let latency = self.last.latency;

        println!(
            "  ingest: {} events accepted, {:.0} events/s, request {}",
            ingest.events_ok,
            events_per_sec,
            ingest_latency.line()
        );
        println!("  ingest errors: {}", ingest.errors_text());
        if let Some(error) = &ingest.first_io_error {
            println!("  first transport error: {error}");
        }
        let lag_p99 = self
            .phase
            .schedule_lag
            .as_ref()
            .map(|lag| lag.summary().p99_us)
            .unwrap_or(0);
        if self.phase.schedule_lag.is_some() {
            println!(
                "  schedule lag (requests started late because every worker was busy): p99 {} ms",
                ms(lag_p99)
            );
        }
        println!(
            "  deliveries while ingesting: {window_deliveries} in {:.2} s = {deliveries_per_sec:.0}/s",
            self.window.as_secs_f64()
        );
        println!(
            "  this run's events: {delivered} of {} deliveries arrived{}{}, {}; sustained {sustained_per_sec:.0} deliveries/s",
            self.expected,
            if missing > 0 {
                format!(", {missing} MISSING")
            } else {
                String::new()
            },
            if extra > 0 {
                format!(", {extra} duplicates")
            } else {
                String::new()
            },
            if self.drained {
                format!(
                    "all within {:.2} s after ingest stopped",
                    self.drain.as_secs_f64()
                )
            } else {
                format!("drain gave up after {:.2} s", self.drain.as_secs_f64())
            },
        );
        println!("  ingest-to-delivery latency: {}", latency.line());
        if args.webhooks > 1 && !self.last.by_path.is_empty() {
            let counts = self.last.by_path.values();
            println!(
                "  per destination path: {} paths, {}..{} deliveries each",
                self.last.by_path.len(),
                counts.clone().min().unwrap_or(&0),
                counts.max().unwrap_or(&0)
            );
        }
        if missing > 0 {
            // On stdout, in the run's block: stderr would interleave with it in the scripts.
            println!(
                "  WARNING: {missing} deliveries of {} did not arrive within --drain-timeout {:?}",
                self.expected, args.drain_timeout
            );
        }
        ResultLine::new(label)
            .field("webhooks", args.webhooks)
            .field("events_per_sec", format!("{events_per_sec:.0}"))
            .field("deliveries_per_sec", format!("{deliveries_per_sec:.0}"))
            .field(
                "sustained_deliveries_per_sec",
                format!("{sustained_per_sec:.0}"),
            )
            .field("expected", self.expected)
            .field("delivered", delivered)
            .field("missing", missing)
            .latency("", &latency)
            .field("ingest_p99_ms", ms(ingest_latency.p99_us))
            .field("lag_p99_ms", ms(lag_p99))
            .field("errors", ingest.error_count())
            .print();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::LoadArgs;
    use crate::servers::{forwarder, receiver, spawn_for_test};

    #[tokio::test]
    async fn forwarder_run_delivers_every_copy() {
        let receiver_addr = spawn_for_test(receiver::router()).await;
        let forwarder_addr = spawn_for_test(
            forwarder::router(
                &[format!("http://{receiver_addr}/hook/forwarder")],
                2,
                Duration::from_secs(5),
            )
            .unwrap(),
        )
        .await;
        let args = DeliveryArgs {
            load: LoadArgs {
                url: format!("http://{forwarder_addr}"),
                tenant: "acme".to_owned(),
                key: None,
                concurrency: 2,
                event_bytes: 256,
                batch: None,
                event_type: "ignored".to_owned(),
                request_timeout: Duration::from_secs(5),
            },
            receiver: format!("http://{receiver_addr}"),
            webhooks: 2,
            target: DeliveryTarget::Forwarder,
            rate: Some(100.0),
            max: false,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(5),
            max_in_flight: None,
            label: None,
            plugin: None,
            plugin_config: None,
        };
        run(args).await.unwrap();
        let stats = Control::new()
            .unwrap()
            .receiver_stats(&format!("http://{receiver_addr}"))
            .await
            .unwrap();
        // 30 events in the measured 300 ms at 100/s, two copies each.
        assert_eq!(stats.deliveries_measured, 60);
        // Plus 10 warmup events, two copies each.
        assert_eq!(stats.deliveries_total, 80);
    }
}
