//! The load generator shared by `ingest` and `delivery`: N workers, each on its own
//! connection, posting generated events either in a closed loop (next request as soon as
//! the answer arrives) or open loop at a fixed rate (requests start on a schedule).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper::header::HeaderValue;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::cli::LoadArgs;
use crate::client::{Endpoint, WorkerConnection};
use crate::event::{EventTemplate, now_ns};
use crate::report::{LatencyHistogram, LoadStats};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each worker sends its next request when the previous one is answered.
    ClosedLoop,
    /// Requests start at this many events per second, spread over the workers. A request
    /// starts late only when every worker is busy; that lateness is reported as lag.
    EventsPerSecond(f64),
}

/// What one phase (warmup or measured run) produced.
#[derive(Debug)]
pub struct PhaseResult {
    pub stats: LoadStats,
    /// Open loop only: how late requests started against their schedule.
    pub schedule_lag: Option<LatencyHistogram>,
    /// From the phase start until the last worker finished its last request.
    pub elapsed: Duration,
}

/// Fixed for the whole run and shared by every worker.
struct RequestPlan {
    path: String,
    authorization: Option<HeaderValue>,
    template: EventTemplate,
    batch: Option<usize>,
    request_timeout: Duration,
    /// Next event sequence number (in `payload.seq`), unique across workers and phases.
    next_seq: AtomicU64,
}

impl RequestPlan {
    fn events_per_request(&self) -> u64 {
        self.batch.unwrap_or(1) as u64
    }

    async fn send_one(&self, connection: &mut WorkerConnection, stats: &mut LoadStats) {
        let events = self.events_per_request();
        let first_seq = self.next_seq.fetch_add(events, Ordering::Relaxed);
        let sent_at_ns = now_ns();
        let body = match self.batch {
            None => self.template.single(first_seq, sent_at_ns),
            Some(count) => self.template.batch(count, first_seq, sent_at_ns),
        };
        let started = Instant::now();
        let answer = timeout(
            self.request_timeout,
            connection.post_json(&self.path, self.authorization.as_ref(), body),
        )
        .await;
        match answer {
            Ok(Ok(status)) if status.is_success() => {
                stats.requests_ok += 1;
                stats.events_ok += events;
                stats.latency.record(started.elapsed());
            }
            Ok(Ok(status)) => stats.error(status.as_str()),
            Ok(Err(error)) => {
                stats.error("io");
                stats
                    .first_io_error
                    .get_or_insert_with(|| format!("{error:#}"));
                // A refused connection fails in microseconds; don't spin on it.
                sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                // The answer may still arrive on this socket: start the next request on a
                // fresh connection so it cannot be mistaken for the next answer.
                connection.reset();
                stats.error("timeout");
            }
        }
    }
}

pub struct LoadGenerator {
    plan: Arc<RequestPlan>,
    /// Exactly one per worker; lent to the worker tasks during a phase.
    connections: Vec<WorkerConnection>,
}

impl LoadGenerator {
    pub async fn new(args: &LoadArgs) -> Result<Self> {
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.batch == Some(0) {
            bail!("--batch must be at least 1");
        }
        let endpoint = Endpoint::resolve(&args.url).await?;
        let path = match args.batch {
            None => endpoint.path(&format!("/{}/v1/events", args.tenant)),
            Some(_) => endpoint.path(&format!("/{}/v1/events/batch", args.tenant)),
        };
        let authorization = args
            .key
            .as_deref()
            .map(|key| HeaderValue::from_str(&format!("Bearer {key}")))
            .transpose()
            .context("--key is not a valid header value")?;
        let connections = (0..args.concurrency)
            .map(|_| WorkerConnection::new(endpoint.clone()))
            .collect();
        Ok(Self {
            plan: Arc::new(RequestPlan {
                path,
                authorization,
                template: EventTemplate::new(&args.event_type, args.event_bytes),
                batch: args.batch,
                request_timeout: args.request_timeout,
                next_seq: AtomicU64::new(0),
            }),
            connections,
        })
    }

    /// Runs every worker for `duration`; connections stay open for the next phase.
    pub async fn run(&mut self, pacing: Pacing, duration: Duration) -> Result<PhaseResult> {
        if let Pacing::EventsPerSecond(rate) = pacing
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("the event rate must be a positive number, got {rate}");
        }
        let start = Instant::now();
        let deadline = start + duration;
        // Open loop: slot i starts at start + i * interval, whichever worker is free takes it.
        let next_slot = Arc::new(AtomicU64::new(0));
        let mut workers = JoinSet::new();
        for mut connection in self.connections.drain(..) {
            let plan = self.plan.clone();
            let next_slot = next_slot.clone();
            workers.spawn(async move {
                let mut stats = LoadStats::default();
                let mut lag = LatencyHistogram::default();
                loop {
                    match pacing {
                        Pacing::ClosedLoop => {
                            if Instant::now() >= deadline {
                                break;
                            }
                        }
                        Pacing::EventsPerSecond(rate) => {
                            let slot = next_slot.fetch_add(1, Ordering::Relaxed);
                            let offset = slot as f64 * plan.events_per_request() as f64 / rate;
                            let due = start + Duration::from_secs_f64(offset);
                            if due >= deadline {
                                break;
                            }
                            sleep_until(due).await;
                            lag.record(Instant::now().saturating_duration_since(due));
                        }
                    }
                    plan.send_one(&mut connection, &mut stats).await;
                }
                (connection, stats, lag)
            });
        }

        let mut stats = LoadStats::default();
        let mut schedule_lag = LatencyHistogram::default();
        while let Some(finished) = workers.join_next().await {
            let (connection, worker_stats, worker_lag) =
                finished.context("load worker panicked")?;
            self.connections.push(connection);
            stats.merge(&worker_stats);
            schedule_lag.merge(&worker_lag);
        }
        Ok(PhaseResult {
            stats,
            schedule_lag: matches!(pacing, Pacing::EventsPerSecond(_)).then_some(schedule_lag),
            elapsed: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::{ceiling, spawn_for_test};

    fn args(url: String, batch: Option<usize>) -> LoadArgs {
        LoadArgs {
            url,
            tenant: "acme".to_owned(),
            key: Some("k".to_owned()),
            concurrency: 4,
            event_bytes: 256,
            batch,
            event_type: "bench.event".to_owned(),
            request_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn closed_loop_counts_events_per_batch() {
        let addr = spawn_for_test(ceiling::router()).await;
        let mut load = LoadGenerator::new(&args(format!("http://{addr}"), Some(10)))
            .await
            .unwrap();
        let phase = load
            .run(Pacing::ClosedLoop, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(phase.stats.requests_ok > 0);
        assert_eq!(phase.stats.events_ok, phase.stats.requests_ok * 10);
        assert_eq!(phase.stats.error_count(), 0);
        assert!(phase.schedule_lag.is_none());
        // Connections come back for the next phase.
        assert_eq!(load.connections.len(), 4);
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate() {
        let addr = spawn_for_test(ceiling::router()).await;
        let mut load = LoadGenerator::new(&args(format!("http://{addr}"), None))
            .await
            .unwrap();
        let phase = load
            .run(Pacing::EventsPerSecond(200.0), Duration::from_millis(500))
            .await
            .unwrap();
        // Slots at 0, 5, 10, ... 495 ms: exactly 100.
        assert_eq!(phase.stats.events_ok, 100);
        assert_eq!(phase.schedule_lag.unwrap().summary().count, 100);
    }

    #[tokio::test]
    async fn refused_connections_are_io_errors() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut load = LoadGenerator::new(&args(format!("http://{closed}"), None))
            .await
            .unwrap();
        let phase = load
            .run(Pacing::ClosedLoop, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(phase.stats.requests_ok, 0);
        assert!(phase.stats.errors["io"] > 0);
        assert!(phase.stats.first_io_error.is_some());
    }
}
