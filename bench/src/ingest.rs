//! `ingest`: closed-loop ingest load against any server that answers 2xx on the ingest
//! paths (the gateway or the ceiling server), reported as events/s and request latency.

use anyhow::{Result, bail};

use crate::cli::IngestArgs;
use crate::load::{LoadGenerator, Pacing, PhaseResult};
use crate::report::{ResultLine, per_second};

pub async fn run(args: IngestArgs) -> Result<()> {
    let label = args.label.clone().unwrap_or_else(|| match args.load.batch {
        None => "single".to_owned(),
        Some(count) => format!("batch-{count}"),
    });
    let mut load = LoadGenerator::new(&args.load).await?;
    println!(
        "ingest {label}: {} with {} connections, ~{} B events{}, warmup {:?}, measuring {:?}",
        args.load.url,
        args.load.concurrency,
        args.load.event_bytes,
        args.load
            .batch
            .map_or(String::new(), |count| format!(", {count} per request")),
        args.warmup,
        args.duration,
    );
    if !args.warmup.is_zero() {
        let warmup = load.run(Pacing::ClosedLoop, args.warmup).await?;
        println!(
            "  warmup: {} events, errors {}",
            warmup.stats.events_ok,
            warmup.stats.errors_text()
        );
    }
    let measured = load.run(Pacing::ClosedLoop, args.duration).await?;
    print(&label, &measured);
    if measured.stats.requests_ok == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

fn print(label: &str, phase: &PhaseResult) {
    let stats = &phase.stats;
    let latency = stats.latency.summary();
    let events_per_sec = per_second(stats.events_ok, phase.elapsed);
    let requests_per_sec = per_second(stats.requests_ok, phase.elapsed);
    println!(
        "  {:.0} events/s  {:.0} requests/s  ({} events in {:.2} s)",
        events_per_sec,
        requests_per_sec,
        stats.events_ok,
        phase.elapsed.as_secs_f64()
    );
    println!("  request latency: {}", latency.line());
    println!("  errors: {}", stats.errors_text());
    if let Some(error) = &stats.first_io_error {
        println!("  first transport error: {error}");
    }
    ResultLine::new(label)
        .field("events_per_sec", format!("{events_per_sec:.0}"))
        .field("requests_per_sec", format!("{requests_per_sec:.0}"))
        .latency("", &latency)
        .field("errors", stats.error_count())
        .print();
}
