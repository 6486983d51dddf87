//! Command line: one subcommand per driver or server, plus the small helpers the shell
//! scripts need so they depend on nothing but cargo (no curl, jq or python).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hookgate-bench",
    version,
    about = "Load drivers and ceiling servers for Hookgate's ingest and delivery benchmarks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Closed-loop ingest load: every worker posts on its own keep-alive connection as fast
    /// as answers come back, then events/s and latency percentiles are printed.
    Ingest(IngestArgs),
    /// Delivery load: ingest events (fixed rate or as fast as accepted) and measure
    /// deliveries/s and ingest-to-delivery latency at a receiver.
    Delivery(DeliveryArgs),
    /// Minimal axum server on the ingest paths that answers 202 and stores nothing: the
    /// ceiling for ingest throughput on this machine.
    CeilingServer(ListenArgs),
    /// Webhook receiver that answers 200 at once, counts deliveries and measures
    /// ingest-to-delivery latency from `payload.sent_at_ns`; counts on `GET /stats`.
    Receiver(ListenArgs),
    /// Minimal forwarder on the ingest paths: forwards every event (N copies with --fanout)
    /// to the receiver with a pooled reqwest client and stores nothing: the delivery ceiling.
    Forwarder(ForwarderArgs),
    /// Memory with a large backlog: ingest --count events for a stopped webhook, sample the
    /// gateway's RSS while they wait and while they drain after `start` (issue 3).
    Backlog(BacklogArgs),
    /// Many webhooks (issue 17): create --tenants tenants with --per-tenant webhooks each,
    /// post one event per tenant, wait until the receiver has every delivery; print how
    /// long each phase took.
    ManyWebhooks(ManyWebhooksArgs),
    /// Print a free TCP port on 127.0.0.1 (for scripts).
    FreePort,
    /// Poll a URL until it answers 2xx; fail after --timeout (for scripts).
    WaitReady(WaitReadyArgs),
    /// Create a tenant through the admin API and print its API key (for scripts).
    CreateTenant(CreateTenantArgs),
}

/// What every load generator needs: where to post and what.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Base URL of the server under test (http only; loopback is the point).
    #[arg(long)]
    pub url: String,
    /// Tenant in the path `/{tenant}/v1/events`.
    #[arg(long, default_value = "bench")]
    pub tenant: String,
    /// Tenant API key, sent as `Authorization: Bearer <key>` (the ceiling servers ignore it).
    #[arg(long, env = "HOOKGATE_BENCH_KEY")]
    pub key: Option<String>,
    /// Concurrent workers, each with its own keep-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Approximate size of one event's JSON (`event_type` + `payload`), in bytes.
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// Post batches of this many events to `/events/batch` instead of single events.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Event type of the generated events.
    #[arg(long, default_value = "bench.event")]
    pub event_type: String,
    /// Give up on one request after this long (counted as a timeout error).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Measured run length.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured run before the measured one (connections, caches, allocator).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Label of the `RESULT` line (defaults to single/batch-N).
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryTarget {
    /// A real Hookgate: the driver creates the webhooks through the API.
    Gateway,
    /// The forwarder ceiling: no setup, it fans out on its own (`forwarder --fanout N`).
    Forwarder,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("pacing").required(true).args(["rate", "max"]))]
pub struct DeliveryArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Base URL of the receiver (`receiver` subcommand).
    #[arg(long)]
    pub receiver: String,
    /// Webhooks per event: the driver creates this many on a gateway; on the forwarder it
    /// must equal the forwarder's --fanout (it is used for the expected delivery count).
    #[arg(long, default_value_t = 1)]
    pub webhooks: usize,
    #[arg(long, value_enum, default_value_t = DeliveryTarget::Gateway)]
    pub target: DeliveryTarget,
    /// Open loop: start this many events per second, whatever the answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: post as fast as the target accepts.
    #[arg(long)]
    pub max: bool,
    /// Measured run length.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured run before the measured one; its deliveries are excluded from latency.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// After the run, wait at most this long for every expected delivery to arrive.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,
    /// `max_in_flight` of the created webhooks (gateway default when absent).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Label of the `RESULT` line.
    #[arg(long)]
    pub label: Option<String>,
    /// A WebAssembly component (e.g. `plugins/target/wasm32-wasip2/release/erp_transform.wasm`)
    /// to upload as a tenant plugin and attach to every created webhook (gateway only).
    #[arg(long)]
    pub plugin: Option<std::path::PathBuf>,
    /// The attachment's JSON config; `{event_type}` in it becomes the run's event type.
    #[arg(long, requires = "plugin")]
    pub plugin_config: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManyWebhooksArgs {
    /// Base URL of the gateway.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub admin_token: String,
    /// Base URL of the receiver (`receiver` subcommand).
    #[arg(long)]
    pub receiver: String,
    /// 400 × 25: the gateway's default limit is 25 webhooks per tenant.
    #[arg(long, default_value_t = 400)]
    pub tenants: usize,
    #[arg(long, default_value_t = 25)]
    pub per_tenant: usize,
    /// A NATS server's monitoring URL: its `/jsz` stream and consumer counts are printed.
    #[arg(long)]
    pub nats_monitor: Option<String>,
    /// Webhook creations in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Give up waiting for the deliveries after this long.
    #[arg(long, value_parser = parse_duration, default_value = "600s")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// Base URL of the gateway.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench")]
    pub tenant: String,
    /// Tenant API key (creates, stops and starts the webhook; ingests).
    #[arg(long, env = "HOOKGATE_BENCH_KEY")]
    pub key: String,
    /// Base URL of the receiver (`receiver` subcommand).
    #[arg(long)]
    pub receiver: String,
    /// Process id of the gateway, whose VmRSS is sampled from /proc/<pid>/status.
    #[arg(long)]
    pub pid: u32,
    /// Events to ingest while the webhook is stopped: the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Events per `/events/batch` request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent ingest connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Approximate size of one event's JSON, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// `max_in_flight` of the webhook (gateway default when absent).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Time between two RSS samples.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    pub sample_interval: Duration,
    /// Sampling before ingest starts (the baseline).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub baseline: Duration,
    /// Sampling with the whole backlog pending, before the webhook is started.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub pending: Duration,
    /// Give up waiting for the receiver to count every event after this long.
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    pub drain_timeout: Duration,
    /// Sampling after the last delivery arrived.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub after: Duration,
    /// Give up on one ingest request after this long (counted as an error, not retried).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub request_timeout: Duration,
    /// Write every RSS sample as `seconds,phase,rss_mib` to this file.
    #[arg(long)]
    pub samples_csv: Option<std::path::PathBuf>,
    /// The gateway's data directory: its size is printed after ingest and after the drain.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Label of the `RESULT` line.
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct ForwarderArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Destination URL; repeat it to spread the copies over several receivers.
    #[arg(long, required = true)]
    pub to: Vec<String>,
    /// Copies of each event to forward (the webhook count it stands in for).
    #[arg(long, default_value_t = 1)]
    pub fanout: usize,
    /// Give up on one forward after this long.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct WaitReadyArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CreateTenantArgs {
    /// Base URL of the gateway.
    #[arg(long)]
    pub url: String,
    #[arg(long, env = "HOOKGATE_ADMIN_TOKEN")]
    pub admin_token: String,
    #[arg(long)]
    pub id: String,
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, `250us`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use us, ms, s, m, h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn delivery_needs_rate_or_max() {
        let base = [
            "hookgate-bench",
            "delivery",
            "--url",
            "http://127.0.0.1:1",
            "--receiver",
            "http://127.0.0.1:2",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--max"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--rate", "500"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--rate", "5", "--max"])).is_err());
    }
}
