//! `backlog`: issue 3's memory target. A stopped webhook collects a backlog of `--count`
//! pending deliveries; the gateway's resident memory is sampled while the backlog is
//! ingested, while it sits pending, and while it drains once the webhook is started.
//!
//! Steps:
//! 1. create one webhook (event type unique to this run) pointing at the receiver, and stop
//!    it at once, so its cursor stays at the head of the (empty) log;
//! 2. sample the baseline RSS, reset the receiver;
//! 3. ingest `--count` events in batches on `--concurrency` connections, each batch taken
//!    from one shared counter, so exactly `--count` events are sent;
//! 4. sample for `--pending` with the backlog in place, and read the webhook's lag from
//!    `/metrics`;
//! 5. start the webhook and sample until the receiver has counted every accepted event
//!    (or `--drain-timeout`), then a little longer.
//!
//! RSS is `VmRSS` of `/proc/<pid>/status`, read every `--sample-interval`; the peak of each
//! phase is the largest sample in it (the kernel's `VmHWM` is printed as well, it covers
//! the process's whole life).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep, timeout};

use crate::cli::BacklogArgs;
use crate::client::{Endpoint, WorkerConnection};
use crate::control::{Control, WebhookSpec};
use crate::event::{EventTemplate, now_ns};
use crate::report::{LoadStats, ResultLine, ms, per_second};

/// The parts of the run whose RSS is reported separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Baseline = 0,
    Ingest = 1,
    Pending = 2,
    Drain = 3,
    After = 4,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Baseline,
        Phase::Ingest,
        Phase::Pending,
        Phase::Drain,
        Phase::After,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Ingest => "ingest",
            Phase::Pending => "pending",
            Phase::Drain => "drain",
            Phase::After => "after",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Since the sampler started.
    at: Duration,
    phase: Phase,
    rss_kib: u64,
}

/// Samples a process's RSS on a timer, tagging each sample with the current phase.
struct RssSampler {
    pid: u32,
    phase: Arc<AtomicU8>,
    samples: Arc<Mutex<Vec<Sample>>>,
    /// Set when the process could not be read (it exited).
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32, interval: Duration) -> Result<Self> {
        read_rss_kib(pid).with_context(|| format!("reading the RSS of process {pid}"))?;
        let phase = Arc::new(AtomicU8::new(Phase::Baseline as u8));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (phase, samples, lost) = (phase.clone(), samples.clone(), lost.clone());
            async move {
                let started = Instant::now();
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Ok(rss_kib) = read_rss_kib(pid) else {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    };
                    let phase = Phase::ALL[usize::from(phase.load(Ordering::Relaxed))];
                    samples.lock().expect("samples lock").push(Sample {
                        at: started.elapsed(),
                        phase,
                        rss_kib,
                    });
                }
            }
        });
        Ok(Self {
            pid,
            phase,
            samples,
            lost,
            task,
        })
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn latest_mib(&self) -> f64 {
        let samples = self.samples.lock().expect("samples lock");
        samples.last().map_or(0.0, |sample| mib(sample.rss_kib))
    }

    fn check_alive(&self) -> Result<()> {
        if self.lost.load(Ordering::Relaxed) {
            bail!(
                "process {} disappeared (no /proc/{}/status)",
                self.pid,
                self.pid
            );
        }
        Ok(())
    }

    fn finish(self) -> Vec<Sample> {
        self.task.abort();
        let samples = self.samples.lock().expect("samples lock");
        samples.clone()
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, "VmRSS").context("no VmRSS line in /proc/<pid>/status")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Peak and mean RSS (KiB) of one phase's samples, with the time of the peak.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct PhaseRss {
    samples: usize,
    peak_kib: u64,
    peak_at: Duration,
    mean_kib: u64,
}

fn phase_rss(samples: &[Sample], phase: Phase) -> PhaseRss {
    let mut out = PhaseRss::default();
    let mut sum = 0u64;
    for sample in samples.iter().filter(|sample| sample.phase == phase) {
        out.samples += 1;
        sum += sample.rss_kib;
        if sample.rss_kib > out.peak_kib {
            out.peak_kib = sample.rss_kib;
            out.peak_at = sample.at;
        }
    }
    if out.samples > 0 {
        out.mean_kib = sum / out.samples as u64;
    }
    out
}

/// The value of `hookgate_webhook_lag_events` for one webhook in a Prometheus text body.
fn parse_lag(metrics: &str, tenant: &str, webhook: &str) -> Option<u64> {
    let tenant_label = format!("tenant=\"{tenant}\"");
    let webhook_label = format!("webhook=\"{webhook}\"");
    metrics.lines().find_map(|line| {
        let labels = line.strip_prefix("hookgate_webhook_lag_events{")?;
        let (labels, value) = labels.split_once('}')?;
        let mut names = labels.split(',');
        if !(names.clone().any(|label| label == tenant_label)
            && names.any(|label| label == webhook_label))
        {
            return None;
        }
        value
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

/// The value of an unlabelled counter or gauge (`name value`), e.g. ingested events.
fn parse_plain(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Total size of the files under a directory (the gateway's data dir).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Gateway calls this driver makes besides the ones `Control` has.
struct Gateway {
    http: reqwest::Client,
    base: String,
    tenant: String,
    key: String,
}

impl Gateway {
    async fn post_webhook_action(&self, id: &str, action: &str) -> Result<()> {
        let response = self
            .http
            .post(format!(
                "{}/{}/v1/webhooks/{id}/{action}",
                self.base, self.tenant
            ))
            .bearer_auth(&self.key)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("{action} webhook `{id}` answered {status}: {body}");
        }
        let webhook: Value = response.json().await?;
        println!(
            "webhook {id}: {action} -> status {}",
            webhook["status"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    async fn metrics(&self) -> Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "/metrics answered {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// `(lag, ingested)` from `/metrics`; `None` where a series is absent.
    async fn lag_and_ingested(&self, webhook: &str) -> (Option<u64>, Option<u64>) {
        match self.metrics().await {
            Ok(text) => (
                parse_lag(&text, &self.tenant, webhook),
                parse_plain(&text, "hookgate_ingested_events_total"),
            ),
            Err(error) => {
                eprintln!("warning: reading /metrics: {error:#}");
                (None, None)
            }
        }
    }
}

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "absent".to_owned(), |v| v.to_string())
}

pub async fn run(args: BacklogArgs) -> Result<()> {
    ensure!(args.count > 0, "--count must be at least 1");
    ensure!(
        (1..=1000).contains(&args.batch),
        "--batch must be 1 to 1000 (the gateway's batch limit)"
    );
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let control = Control::new()?;
    let receiver = args.receiver.trim_end_matches('/').to_owned();
    let base = args.url.trim_end_matches('/').to_owned();
    control
        .wait_ready(&format!("{receiver}/readyz"), Duration::from_secs(10))
        .await?;
    control
        .wait_ready(&format!("{base}/readyz"), Duration::from_secs(10))
        .await?;
    let gateway = Gateway {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: base.clone(),
        tenant: args.tenant.clone(),
        key: args.key.clone(),
    };

    let run_id = format!(
        "{}-{}",
        std::process::id(),
        now_ns() / 1_000_000 % 1_000_000
    );
    let event_type = format!("bench.backlog.{run_id}");
    let webhook = format!("backlog-{run_id}");
    let spec = WebhookSpec {
        id: &webhook,
        url: &format!("{receiver}/hook/backlog"),
        event_type: &event_type,
        max_in_flight: args.max_in_flight,
    };
    control
        .create_webhook(&base, &args.tenant, &args.key, &spec)
        .await?;
    gateway.post_webhook_action(&webhook, "stop").await?;

    let sampler = RssSampler::start(args.pid, args.sample_interval)?;
    println!(
        "sampling VmRSS of pid {} every {:?}; baseline for {:?}",
        args.pid, args.sample_interval, args.baseline
    );
    sleep(args.baseline).await;
    control.receiver_reset(&receiver).await?;

    // Ingest.
    sampler.enter(Phase::Ingest);
    let ingest = ingest(&args, &event_type, &sampler).await?;
    sampler.check_alive()?;
    let accepted = ingest.stats.events_ok;
    println!(
        "ingested {accepted} of {} events in {:.1} s: {:.0} events/s (request p50 {} ms, p99 {} ms), errors {}",
        args.count,
        ingest.elapsed.as_secs_f64(),
        per_second(accepted, ingest.elapsed),
        ms(ingest.stats.latency.summary().p50_us),
        ms(ingest.stats.latency.summary().p99_us),
        ingest.stats.errors_text(),
    );
    if let Some(error) = &ingest.stats.first_io_error {
        println!("first transport error: {error}");
    }
    let data_after_ingest = args.data_dir.as_deref().map(dir_bytes);

    // Backlog pending.
    sampler.enter(Phase::Pending);
    let (lag_pending_start, ingested_metric) = gateway.lag_and_ingested(&webhook).await;
    println!(
        "backlog pending for {:?}; /metrics: webhook_lag_events {} (stopped webhook), ingested_events_total {}",
        args.pending,
        opt(lag_pending_start),
        opt(ingested_metric)
    );
    sleep(args.pending).await;
    sampler.check_alive()?;
    let (lag_before_start, _) = gateway.lag_and_ingested(&webhook).await;

    // Drain.
    let start_ns = now_ns();
    let start = Instant::now();
    sampler.enter(Phase::Drain);
    gateway.post_webhook_action(&webhook, "start").await?;
    // The worker's first checkpoint follows its first read: the gauge then shows the backlog.
    sleep(Duration::from_millis(300)).await;
    let (lag_after_start, _) = gateway.lag_and_ingested(&webhook).await;
    println!(
        "/metrics webhook_lag_events: {} before start, {} 0.3 s after start",
        opt(lag_before_start),
        opt(lag_after_start)
    );
    let deadline = start + args.drain_timeout;
    let mut last_report = Instant::now();
    let mut last_count = 0u64;
    let stats = loop {
        let stats = control.receiver_stats(&receiver).await?;
        sampler.check_alive()?;
        if stats.deliveries_measured >= accepted || Instant::now() >= deadline {
            break stats;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            let (lag, _) = gateway.lag_and_ingested(&webhook).await;
            println!(
                "  drain {:>5.0} s: {} delivered ({:.0}/s over the last {:.0} s), lag {}, RSS {:.0} MiB",
                start.elapsed().as_secs_f64(),
                stats.deliveries_measured,
                per_second(
                    stats.deliveries_measured - last_count,
                    last_report.elapsed()
                ),
                last_report.elapsed().as_secs_f64(),
                opt(lag),
                sampler.latest_mib()
            );
            last_report = Instant::now();
            last_count = stats.deliveries_measured;
        }
        sleep(Duration::from_millis(500)).await;
    };
    let drained = stats.deliveries_measured >= accepted;
    let drain_time = if drained && stats.last_delivery_ns > start_ns {
        Duration::from_nanos(stats.last_delivery_ns - start_ns)
    } else {
        start.elapsed()
    };
    sampler.enter(Phase::After);
    sleep(args.after).await;
    let (lag_end, _) = gateway.lag_and_ingested(&webhook).await;
    let final_stats = control.receiver_stats(&receiver).await?;
    let hwm_kib = std::fs::read_to_string(format!("/proc/{}/status", args.pid))
        .ok()
        .and_then(|status| parse_status_kib(&status, "VmHWM"));
    let data_after_drain = args.data_dir.as_deref().map(dir_bytes);
    let samples = sampler.finish();
    if let Some(path) = &args.samples_csv {
        write_csv(path, &samples)?;
        println!("RSS samples written to {}", path.display());
    }

    // Report.
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("backlog-{}", args.count));
    let per_phase: Vec<(Phase, PhaseRss)> = Phase::ALL
        .iter()
        .map(|&phase| (phase, phase_rss(&samples, phase)))
        .collect();
    let delivered = final_stats.deliveries_measured;
    println!();
    println!(
        "Backlog of {accepted} events (~{} B each), 1 webhook, max_in_flight {}",
        args.event_bytes,
        args.max_in_flight
            .map_or("default".to_owned(), |value| value.to_string())
    );
    println!(
        "  ingest:   {:.1} s, {:.0} events/s, batches of {} on {} connections, errors {}",
        ingest.elapsed.as_secs_f64(),
        per_second(accepted, ingest.elapsed),
        args.batch,
        args.concurrency,
        ingest.stats.errors_text()
    );
    println!(
        "  drain:    {:.1} s, {:.0} deliveries/s; {} of {} delivered{}",
        drain_time.as_secs_f64(),
        per_second(delivered.min(accepted), drain_time),
        delivered,
        accepted,
        match delivered.cmp(&accepted) {
            std::cmp::Ordering::Equal => " (all)".to_owned(),
            std::cmp::Ordering::Less => format!(" — {} MISSING", accepted - delivered),
            std::cmp::Ordering::Greater => format!(" ({} duplicates)", delivered - accepted),
        }
    );
    println!(
        "  lag (/metrics): {} while stopped, {} after start, {} at the end",
        opt(lag_before_start),
        opt(lag_after_start),
        opt(lag_end)
    );
    if let (Some(ingested), Some(drained_size)) = (data_after_ingest, data_after_drain) {
        println!(
            "  data dir: {:.0} MiB after ingest, {:.0} MiB after drain",
            ingested as f64 / 1048576.0,
            drained_size as f64 / 1048576.0
        );
    }
    println!("  gateway RSS by phase (MiB):");
    for (phase, rss) in &per_phase {
        println!(
            "    {:<9} peak {:>6.1} (at {:>6.1} s)  mean {:>6.1}  ({} samples)",
            phase.name(),
            mib(rss.peak_kib),
            rss.peak_at.as_secs_f64(),
            mib(rss.mean_kib),
            rss.samples
        );
    }
    if let Some(hwm) = hwm_kib {
        println!("    VmHWM (whole process life) {:.1}", mib(hwm));
    }

    let mut line = ResultLine::new(&label)
        .field("events", accepted)
        .field("ingest_s", format!("{:.1}", ingest.elapsed.as_secs_f64()))
        .field(
            "ingest_events_per_sec",
            format!("{:.0}", per_second(accepted, ingest.elapsed)),
        )
        .field("ingest_errors", ingest.stats.error_count())
        .field("delivered", delivered)
        .field("missing", accepted.saturating_sub(delivered))
        .field("duplicates", delivered.saturating_sub(accepted))
        .field("drain_s", format!("{:.1}", drain_time.as_secs_f64()))
        .field(
            "deliveries_per_sec",
            format!("{:.0}", per_second(delivered.min(accepted), drain_time)),
        )
        .field("lag_stopped", opt(lag_before_start))
        .field("lag_started", opt(lag_after_start));
    for (phase, rss) in &per_phase {
        line = line.field(
            &format!("rss_{}_peak_mib", phase.name()),
            format!("{:.1}", mib(rss.peak_kib)),
        );
    }
    line = line.field(
        "vm_hwm_mib",
        hwm_kib.map_or("n/a".to_owned(), |kib| format!("{:.1}", mib(kib))),
    );
    line.print();
    if !drained {
        bail!(
            "the drain timed out after {:?}: {delivered} of {accepted} delivered",
            args.drain_timeout
        );
    }
    Ok(())
}

struct IngestResult {
    stats: LoadStats,
    elapsed: Duration,
}

/// Posts exactly `--count` events in batches; a batch answered 429 or 503 (nothing was
/// written) is posted again after a pause, any other failure is counted and not retried.
async fn ingest(
    args: &BacklogArgs,
    event_type: &str,
    sampler: &RssSampler,
) -> Result<IngestResult> {
    let endpoint = Endpoint::resolve(&args.url).await?;
    let path = Arc::new(endpoint.path(&format!("/{}/v1/events/batch", args.tenant)));
    let authorization = HeaderValue::from_str(&format!("Bearer {}", args.key))
        .context("--key is not a valid header value")?;
    let template = Arc::new(EventTemplate::new(event_type, args.event_bytes));
    let batch = args.batch as u64;
    let batches = args.count.div_ceil(batch);
    let next_batch = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let request_timeout = args.request_timeout;
    let count = args.count;

    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        let mut connection = WorkerConnection::new(endpoint.clone());
        let (path, authorization, template) =
            (path.clone(), authorization.clone(), template.clone());
        let (next_batch, accepted) = (next_batch.clone(), accepted.clone());
        workers.spawn(async move {
            let mut stats = LoadStats::default();
            loop {
                let index = next_batch.fetch_add(1, Ordering::Relaxed);
                if index >= batches {
                    break;
                }
                let first_seq = index * batch;
                let events = batch.min(count - first_seq);
                let mut tries = 0;
                loop {
                    tries += 1;
                    let body = template.batch(events as usize, first_seq, now_ns());
                    let started = Instant::now();
                    let answer = timeout(
                        request_timeout,
                        connection.post_json(&path, Some(&authorization), body),
                    )
                    .await;
                    match answer {
                        Ok(Ok(status)) if status.is_success() => {
                            stats.requests_ok += 1;
                            stats.events_ok += events;
                            stats.latency.record(started.elapsed());
                            accepted.fetch_add(events, Ordering::Relaxed);
                        }
                        Ok(Ok(status))
                            if (status == StatusCode::TOO_MANY_REQUESTS
                                || status == StatusCode::SERVICE_UNAVAILABLE)
                                && tries < 10 =>
                        {
                            stats.error(format!("{}-retried", status.as_str()));
                            sleep(Duration::from_millis(100 * tries)).await;
                            continue;
                        }
                        Ok(Ok(status)) => stats.error(status.as_str()),
                        Ok(Err(error)) => {
                            stats.error("io");
                            stats
                                .first_io_error
                                .get_or_insert_with(|| format!("{error:#}"));
                            sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => {
                            connection.reset();
                            stats.error("timeout");
                        }
                    }
                    break;
                }
            }
            stats
        });
    }

    let mut stats = LoadStats::default();
    let mut progress = tokio::time::interval(Duration::from_secs(10));
    progress.tick().await;
    loop {
        tokio::select! {
            finished = workers.join_next() => match finished {
                Some(worker) => stats.merge(&worker.context("ingest worker panicked")?),
                None => break,
            },
            _ = progress.tick() => {
                let done = accepted.load(Ordering::Relaxed);
                println!(
                    "  ingest {:>5.0} s: {done} accepted ({:.0}/s), RSS {:.0} MiB",
                    start.elapsed().as_secs_f64(),
                    per_second(done, start.elapsed()),
                    sampler.latest_mib()
                );
            }
        }
    }
    Ok(IngestResult {
        stats,
        elapsed: start.elapsed(),
    })
}

fn write_csv(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut text = String::from("seconds,phase,rss_mib\n");
    for sample in samples {
        text.push_str(&format!(
            "{:.2},{},{:.1}\n",
            sample.at.as_secs_f64(),
            sample.phase.name(),
            mib(sample.rss_kib)
        ));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_fields_of_proc_status() {
        let status = "Name:\thookgate\nVmHWM:\t  312844 kB\nVmRSS:\t  201728 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(201_728));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(312_844));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // Our own process has a VmRSS line.
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn finds_the_lag_of_one_webhook() {
        let metrics = "# TYPE hookgate_webhook_lag_events gauge\n\
            hookgate_webhook_lag_events{tenant=\"bench\",webhook=\"other\"} 5\n\
            hookgate_webhook_lag_events{tenant=\"bench\",webhook=\"backlog-1\"} 1000000\n\
            hookgate_ingested_events_total 1000000\n\
            # EOF\n";
        assert_eq!(parse_lag(metrics, "bench", "backlog-1"), Some(1_000_000));
        assert_eq!(parse_lag(metrics, "bench", "backlog"), None);
        assert_eq!(parse_lag(metrics, "acme", "other"), None);
        assert_eq!(
            parse_plain(metrics, "hookgate_ingested_events_total"),
            Some(1_000_000)
        );
        assert_eq!(parse_plain(metrics, "hookgate_ingested_events"), None);
    }

    #[test]
    fn phase_peaks_come_from_their_own_samples() {
        let sample = |secs: u64, phase, mib: u64| Sample {
            at: Duration::from_secs(secs),
            phase,
            rss_kib: mib * 1024,
        };
        let samples = [
            sample(0, Phase::Baseline, 20),
            sample(1, Phase::Ingest, 150),
            sample(2, Phase::Ingest, 250),
            sample(3, Phase::Pending, 240),
            sample(4, Phase::Drain, 260),
        ];
        let ingest = phase_rss(&samples, Phase::Ingest);
        assert_eq!(ingest.samples, 2);
        assert_eq!(ingest.peak_kib, 250 * 1024);
        assert_eq!(ingest.peak_at, Duration::from_secs(2));
        assert_eq!(ingest.mean_kib, 200 * 1024);
        assert_eq!(phase_rss(&samples, Phase::After), PhaseRss::default());
    }
}
