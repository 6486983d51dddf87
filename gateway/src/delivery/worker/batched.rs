//! The batched flow: events become NDJSON lines of files (`delivery::batcher`), and each
//! sealed file goes to the sink, one at a time, in log order.
//!
//! At-least-once: the cursor never passes an event whose file was not sent. It is the seq
//! before the first event of the oldest file not sent yet, or the read position when no
//! file is waiting. Files live only in memory: after a crash or a stop, the events after
//! the cursor are read again into new files (duplicates are possible when a crash falls
//! between a send and the cursor's write right after it; losses are not). A failed file
//! is retried with the same key on the webhook's retry schedule and never dropped: past
//! the last step it keeps the last step's interval, and the disable rule (too many
//! failures in a row) stops a hopeless webhook with its cursor in front of the file, so a
//! later start sends it.
//!
//! Records: each file is one message of the webhook, kept as the `Delivery` of its first
//! event, with one `Attempt` per send; stats, metrics and the integration log as for the
//! per-event flow (`Core`).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};

use super::{Core, Next};
use crate::{
    delivery::{
        batcher::{Batcher, FirstEvent, Sealed},
        policy,
        records::{Attempt, Delivery, MessageStatus},
        sink::{BatchSink, Sent},
    },
    ids,
    iso::now_millis,
    model::webhook::{RetryMode, RetryPolicy},
    pipeline::{self, Prepared},
    storage::{StorageError, StoredEvent},
};

/// Events read from the log per batch.
const READ_BATCH: usize = 1024;
/// Batches read before the worker looks at its other inputs again.
const READS_PER_TURN: usize = 16;
/// Sealed files held while reading goes on: memory per webhook stays below about
/// (MAX_SEALED + 1) × max_file_bytes.
const MAX_SEALED: usize = 2;

/// A sealed file waiting for (another) send.
struct Waiting {
    file: Sealed,
    /// Attempts made for this file's record, including those of earlier runs of the
    /// process (a re-sent file starts at the same event), so attempt keys do not collide.
    runs: u32,
    /// Failed sends in a row: the step of the retry schedule.
    failures: u32,
    /// Not before this instant (`None`: now).
    retry_at: Option<Instant>,
    /// Manual retry mode: waits for a wake (`recover`), a reload or a restart.
    held: bool,
}

/// What a send task hands back.
pub(super) struct Report(Sent);

pub(super) struct Batched {
    sink: Arc<dyn BatchSink>,
    batcher: Batcher,
    /// Sealed files in log order; the first is being sent or waits for its retry.
    sealed: VecDeque<Waiting>,
    in_flight: Option<JoinHandle<Sent>>,
}

impl Batched {
    pub(super) fn new(sink: Arc<dyn BatchSink>) -> Batched {
        let (rotation, naming) = sink.layout();
        Batched {
            sink,
            batcher: Batcher::new(rotation, naming),
            sealed: VecDeque::new(),
            in_flight: None,
        }
    }

    /// New settings apply to the open file's limits at once and to names of later files;
    /// the waiting file is tried again now (new credentials, say).
    pub(super) fn set_sink(&mut self, sink: Arc<dyn BatchSink>) {
        let (rotation, naming) = sink.layout();
        self.batcher.configure(rotation, naming);
        self.sink = sink;
        self.wake();
    }

    /// `recover` and reloads: the waiting file is tried again now.
    pub(super) fn wake(&mut self) {
        if let Some(head) = self.sealed.front_mut() {
            head.held = false;
            head.retry_at = None;
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.in_flight.is_none()
    }

    /// Every file of what was read is sent.
    pub(super) fn drained(&self) -> bool {
        self.batcher.is_empty() && self.sealed.is_empty() && self.in_flight.is_none()
    }

    /// Just before the first event of the oldest file not sent yet.
    pub(super) fn cursor(&self, read_pos: u64) -> u64 {
        let oldest = self
            .sealed
            .front()
            .map(|w| w.file.first.seq)
            .or(self.batcher.first_seq());
        match oldest {
            Some(first) => first - 1,
            None => read_pos,
        }
    }

    /// The open file's deadline, or the waiting file's retry.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let retry = self
            .sealed
            .front()
            .filter(|head| !head.held)
            .and_then(|head| head.retry_at);
        match (self.batcher.deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Waits for the send in flight, if any (never resolves otherwise).
    pub(super) async fn report(&mut self) -> Report {
        let Some(handle) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let joined = handle.await;
        self.in_flight = None;
        Report(joined.unwrap_or_else(|error| {
            let reason = format!("the send task failed: {error}");
            Sent {
                attempt: Attempt {
                    id: ids::generate("att"),
                    event_id: String::new(),
                    webhook_id: String::new(),
                    at: now_millis(),
                    duration_ms: 0,
                    status_code: None,
                    error: Some(reason.clone()),
                    response_headers: Default::default(),
                    response_body: String::new(),
                },
                retry_after: None,
                failure: Some(reason),
            }
        }))
    }

    pub(super) async fn take_reports(&mut self, core: &mut Core) {
        if self.in_flight.as_ref().is_some_and(JoinHandle::is_finished) {
            let report = self.report().await;
            self.accept(core, report).await;
        }
    }

    /// Reads, seals what is due and starts the next send. True when more could be read
    /// right away.
    pub(super) async fn dispatch(&mut self, core: &mut Core) -> Result<bool, StorageError> {
        core.refresh_resolution().await;
        let more = self.fill(core).await;
        self.seal_due(core).await;
        self.start_send(core);
        more
    }

    /// Reads events into files until the log is exhausted, enough files wait, or this
    /// turn's budget is spent. Returns whether more could be read right away.
    async fn fill(&mut self, core: &mut Core) -> Result<bool, StorageError> {
        for _ in 0..READS_PER_TURN {
            if self.sealed.len() >= MAX_SEALED {
                return Ok(false);
            }
            let events = core
                .ctx
                .log
                .read_after(&core.tenant, core.read_pos, READ_BATCH)
                .await?;
            if events.is_empty() {
                return Ok(false);
            }
            for (seq, event) in events {
                if self.sealed.len() >= MAX_SEALED {
                    return Ok(false);
                }
                core.read_pos = seq;
                if !core.takes(&event) {
                    continue;
                }
                let envelope = core.envelope(&event);
                if let Some(reason) =
                    crate::delivery::selection::filtered(&core.webhook.spec, &envelope)
                {
                    resolve(core, seq, &event, MessageStatus::Filtered, reason);
                    continue;
                }
                let line = match run_plugins(core, &event, envelope).await {
                    Ok(line) => line,
                    Err((status, reason)) => {
                        if status == MessageStatus::Failed {
                            core.log("plugin_failed", Some(reason.clone()));
                        }
                        resolve(core, seq, &event, status, reason);
                        continue;
                    }
                };
                core.count_event();
                let first = FirstEvent {
                    seq,
                    id: event.id,
                    event_type: event.event_type,
                };
                let now = Instant::now();
                if let Some(full) = self.batcher.push(first, &line, now, now_millis()) {
                    self.enqueue(core, full).await?;
                }
                if let Some(full) = self.batcher.take_due(now) {
                    self.enqueue(core, full).await?;
                }
            }
        }
        Ok(true)
    }

    async fn enqueue(&mut self, core: &Core, file: Sealed) -> Result<(), StorageError> {
        let runs = core
            .ctx
            .deliveries
            .delivery(&core.webhook_ref, file.first.seq)
            .await?
            .map_or(0, |d| d.runs);
        self.sealed.push_back(Waiting {
            file,
            runs,
            failures: 0,
            retry_at: None,
            held: false,
        });
        Ok(())
    }

    /// Seals the open file when its time is up, and at the end of a replay window as soon
    /// as everything of the window has been read.
    async fn seal_due(&mut self, core: &Core) {
        let due = match self.batcher.take_due(Instant::now()) {
            Some(file) => Some(file),
            None if core.window_over() && core.caught_up().await => self.batcher.seal_now(),
            None => None,
        };
        if let Some(file) = due
            && let Err(error) = self.enqueue(core, file).await
        {
            // Only the attempt numbering needed the store; it is not worth losing the file.
            tracing::error!(webhook = %core.webhook.id, %error, "reading the file record failed");
        }
    }

    fn start_send(&mut self, core: &mut Core) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(head) = self.sealed.front() else {
            return;
        };
        if head.held || head.retry_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        if !core.take_rate_token() {
            return;
        }
        let sink = self.sink.clone();
        let file = head.file.clone();
        let webhook_id = core.webhook.id.clone();
        self.in_flight = Some(tokio::spawn(
            async move { sink.send(&webhook_id, &file).await },
        ));
    }

    /// Stores the outcome of a send: the file's record, the attempt and the stats, as the
    /// per-event flow does; a sent file's cursor is written at once.
    pub(super) async fn accept(&mut self, core: &mut Core, Report(sent): Report) {
        let Some(waiting) = self.sealed.front_mut() else {
            return;
        };
        let now = now_millis();
        waiting.runs += 1;
        let file = &waiting.file;
        let mut delivery = Delivery::new(
            file.first.seq,
            &file.first.id,
            &file.first.event_type,
            file.created_at,
        );
        delivery.runs = waiting.runs;
        delivery.updated_at = now;
        delivery.status_code = sent.attempt.status_code;
        let delivered = sent.failure.is_none();
        core.count_attempt(&sent, delivered);
        if delivered {
            delivery.status = MessageStatus::Delivered;
            delivery.step = waiting.failures;
        } else {
            waiting.failures += 1;
            delivery.status = MessageStatus::Pending;
            delivery.step = waiting.failures;
            match retry_delay(&core.webhook.spec.retry, waiting.failures) {
                Some(delay) => {
                    waiting.retry_at = Some(Instant::now() + delay);
                    delivery.next_attempt_at = Some(policy::after(now, delay));
                    core.ctx.metrics.delivery_outcome("retry_scheduled");
                    core.log_failed_attempt(&sent, Next::Retry);
                }
                None => {
                    core.log_failed_attempt(&sent, Next::GivenUp);
                    waiting.held = true;
                    delivery.reason =
                        Some("manual retry mode: waiting for recover or a restart".into());
                    core.ctx.metrics.delivery_outcome("failed");
                }
            }
        }
        core.stats.next_trigger_at = delivery.next_attempt_at;
        let mut attempt = sent.attempt;
        attempt.event_id.clone_from(&delivery.event_id);
        attempt.webhook_id.clone_from(&core.webhook.id);
        core.outcomes.attempt(delivery.seq, delivery.runs, attempt);
        core.outcomes.record(delivery, None);
        if delivered {
            self.sealed.pop_front();
            // Files are few, so the cursor is made durable after each one at once rather
            // than by the periodic flush: a crash then re-sends only a file whose send it
            // interrupted, not the last ones sent.
            core.write_outcomes().await;
            core.write_summary(self.cursor(core.read_pos), true).await;
            if let Err(error) = core.ctx.deliveries.sync().await {
                tracing::error!(webhook = %core.webhook.id, %error, "flushing the cursor failed");
            }
        }
        core.check_disable().await;
    }
}

/// The webhook's filter and transform plugins on one line (`pipeline`, as for the
/// per-event flow). A transformed body becomes the line; headers set by transforms have
/// no place in a file and are dropped. `Err`: the event is filtered or failed, with why.
async fn run_plugins(
    core: &Core,
    event: &StoredEvent,
    line: Vec<u8>,
) -> Result<Vec<u8>, (MessageStatus, String)> {
    if !core.has_plugins() {
        return Ok(line);
    }
    let resolution = core
        .resolution()
        .map_err(|reason| (MessageStatus::Failed, reason))?;
    match pipeline::prepare(&core.ctx, &core.tenant, &resolution, event, line.clone()).await {
        Prepared::Send { body: None, .. } => Ok(line),
        Prepared::Send {
            body: Some(body), ..
        } => one_line(body).map_err(|reason| (MessageStatus::Failed, reason)),
        Prepared::Filtered { reason } => Err((MessageStatus::Filtered, reason)),
        Prepared::Failed { reason } => Err((MessageStatus::Failed, reason)),
    }
}

/// Records an event this webhook resolved without sending it (filtered, or failed by a
/// plugin).
fn resolve(core: &mut Core, seq: u64, event: &StoredEvent, status: MessageStatus, reason: String) {
    let mut delivery = Delivery::new(seq, &event.id, &event.event_type, now_millis());
    delivery.status = status;
    delivery.reason = Some(reason);
    core.outcomes.record(delivery, None);
    core.ctx.metrics.delivery_outcome(match status {
        MessageStatus::Filtered => "filtered",
        _ => "failed",
    });
}

/// A transformed body as one NDJSON line. It must be JSON: a line break in valid JSON is
/// whitespace between tokens (inside strings it is escaped), so it becomes a space.
fn one_line(body: String) -> Result<Vec<u8>, String> {
    if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(
            "a transform produced a body that is not JSON; files hold one JSON document per line"
                .into(),
        );
    }
    let mut line = body.into_bytes();
    for byte in &mut line {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
    Ok(line)
}

/// The wait before the next try after `failures` failed sends in a row; `None` in manual
/// mode. Past the schedule's end the last step repeats: a file is never dropped.
fn retry_delay(retry: &RetryPolicy, failures: u32) -> Option<Duration> {
    if retry.mode == RetryMode::Manual {
        return None;
    }
    let last = retry.schedule.len().checked_sub(1)?;
    let step = (failures as usize).min(last);
    Some(policy::jittered(retry.schedule[step].duration()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RetryMode, steps: &[&str]) -> RetryPolicy {
        RetryPolicy {
            mode,
            schedule: steps.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn retries_follow_the_schedule_then_repeat_its_last_step() {
        let retry = policy(RetryMode::Auto, &["PT0S", "PT10S", "PT100S"]);
        let around = |d: Option<Duration>, secs: f64| {
            let d = d.unwrap().as_secs_f64();
            assert!((secs * 0.8..=secs * 1.2).contains(&d), "{d} vs {secs}");
        };
        around(retry_delay(&retry, 1), 10.0);
        around(retry_delay(&retry, 2), 100.0);
        around(retry_delay(&retry, 9), 100.0);
    }

    #[test]
    fn transformed_bodies_become_one_line_or_fail() {
        assert_eq!(
            one_line("{\n  \"a\": \"x\\ny\"\r\n}".into()).unwrap(),
            b"{   \"a\": \"x\\ny\"  }"
        );
        assert!(one_line("plain text".into()).is_err());
    }

    #[test]
    fn manual_mode_holds_the_file() {
        assert_eq!(retry_delay(&policy(RetryMode::Manual, &["PT1S"]), 1), None);
    }
}
