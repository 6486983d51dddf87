//! The export worker: one task per running webhook whose destination is s3. It reads the
//! webhook's events from the log (durable events only, like HTTP delivery), writes them as
//! NDJSON lines into files (`batcher`) and uploads each sealed file (`uploader`), one at a
//! time, in log order.
//!
//! At-least-once: the stored cursor never passes an event whose file is not uploaded. It
//! is the seq before the first event of the oldest file not yet uploaded, or the read
//! position when no file is waiting. Files live only in memory: after a crash or a stop,
//! the events after the cursor are read again into new files (duplicates are possible when
//! a crash falls between an upload and the next flush of the cursor; losses are not).
//! A failed file is retried with the same key on the webhook's retry schedule and never
//! dropped: past the last step it keeps the last step's interval, and the disable rule
//! (too many failures in a row) stops a hopeless webhook with its cursor in front of the
//! file, so a later start sends it.
//!
//! Records: each file is one message of the webhook, kept as the `Delivery` of its first
//! event, with one `Attempt` per upload; stats, metrics and the integration log as for HTTP.

use std::{collections::BTreeMap, collections::VecDeque, sync::Arc, time::Duration};

use hookgate_signing::DestinationPolicy;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::{
    batcher::{Batcher, FirstEvent, Naming, Rotation, Sealed},
    uploader::{ConfigError, UploadFailure, Uploader},
};
use crate::{
    context::EngineContext,
    delivery::{
        Control, envelope, ledger, lifecycle, policy,
        records::{Attempt, Delivery, Mark, MessageStatus, Stats},
        selection::{self, Take},
    },
    ids,
    iso::{EpochMillis, now_millis},
    model::webhook::{
        Destination, IntegrationType, RetryMode, RetryPolicy, S3Destination, Webhook, WebhookStatus,
    },
    pipeline::{self, Prepared},
    storage::StoredEvent,
    storage::{Lease, OutcomeSet, StorageError, WebhookRef},
};

/// Events read from the log per batch.
const READ_BATCH: usize = 1024;
/// Batches read before the worker looks at its other inputs again.
const READS_PER_TURN: usize = 16;
/// Sealed files held while reading goes on: memory per webhook stays below about
/// (MAX_SEALED + 1) × max_file_bytes.
const MAX_SEALED: usize = 2;
/// Look again at least this often without being told.
const SAFETY_TICK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the webhook's destination is not s3")]
    NotS3,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A sealed file waiting for (another) upload.
struct Waiting {
    file: Sealed,
    /// Attempts made for this file's record, including those of earlier runs of the
    /// process (a re-sent file starts at the same event), so attempt keys do not collide.
    runs: u32,
    /// Failed uploads in a row: the step of the retry schedule.
    failures: u32,
    /// Not before this instant (`None`: now).
    retry_at: Option<Instant>,
    /// Manual retry mode: waits for a wake (`recover`), a reload or a restart.
    held: bool,
}

struct Uploaded {
    at: EpochMillis,
    duration_ms: u64,
    result: Result<Option<String>, UploadFailure>,
}

pub struct ExportWorker {
    ctx: Arc<EngineContext>,
    tenant: String,
    webhook: Arc<Webhook>,
    destination: S3Destination,
    webhook_ref: WebhookRef,
    uploader: Arc<Uploader>,
    batcher: Batcher,
    /// Sealed files in log order; the first is being uploaded or waits for its retry.
    sealed: VecDeque<Waiting>,
    in_flight: Option<JoinHandle<Uploaded>>,
    read_pos: u64,
    saved_cursor: u64,
    stats: Stats,
    stopping: bool,
    skipped_for_backlog: u64,
}

fn s3_of(webhook: &Webhook) -> Result<&S3Destination, ExportError> {
    match &webhook.spec.destination {
        Destination::S3(destination) => Ok(destination),
        Destination::Http(_) => Err(ExportError::NotS3),
    }
}

fn policy(ctx: &EngineContext) -> DestinationPolicy {
    DestinationPolicy {
        allow_private: ctx.config.allow_private_destinations,
    }
}

fn rotation(destination: &S3Destination) -> Rotation {
    Rotation {
        max_bytes: usize::try_from(destination.max_file_bytes).unwrap_or(usize::MAX),
        flush_interval: destination.flush_interval.duration(),
    }
}

fn build_uploader(
    webhook: &Webhook,
    tenant: &str,
    policy: DestinationPolicy,
) -> Result<Uploader, ExportError> {
    let destination = s3_of(webhook)?;
    // A bad key prefix shows up now rather than at the first upload.
    let sample = Naming::new(&destination.key_prefix, tenant).key(0, "0");
    object_store::path::Path::parse(&sample).map_err(ConfigError::from)?;
    Ok(Uploader::new(
        destination,
        destination.timeout.duration(),
        policy,
    )?)
}

impl ExportWorker {
    pub fn new(
        ctx: Arc<EngineContext>,
        tenant: String,
        webhook: Arc<Webhook>,
    ) -> Result<ExportWorker, ExportError> {
        let destination = s3_of(&webhook)?.clone();
        let uploader = build_uploader(&webhook, &tenant, policy(&ctx))?;
        let webhook_ref = WebhookRef::new(&tenant, &webhook.id);
        let batcher = Batcher::new(
            rotation(&destination),
            Naming::new(&destination.key_prefix, &tenant),
        );
        Ok(ExportWorker {
            ctx,
            tenant,
            webhook,
            destination,
            webhook_ref,
            uploader: Arc::new(uploader),
            batcher,
            sealed: VecDeque::new(),
            in_flight: None,
            // Set by `load`, before the first pass.
            read_pos: 0,
            saved_cursor: 0,
            stats: Stats::default(),
            stopping: false,
            skipped_for_backlog: 0,
        })
    }

    /// Reads the stored cursor (or the start position of a webhook that has none) and
    /// statistics.
    async fn load(&mut self) -> Result<(), ExportError> {
        let deliveries = &self.ctx.deliveries;
        let cursor = match deliveries.cursor(&self.webhook_ref).await? {
            Some(cursor) => cursor,
            None => ledger::start_position(&*self.ctx.log, &self.tenant, &self.webhook).await?,
        };
        self.stats = deliveries.stats(&self.webhook_ref).await?;
        self.read_pos = cursor;
        self.saved_cursor = cursor;
        Ok(())
    }

    /// Runs while `lease` holds: a lost lease stops the worker as `Stop` does.
    pub async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>, mut lease: Lease) {
        if let Err(error) = self.load().await {
            tracing::error!(tenant = %self.tenant, webhook = %self.webhook.id, %error, "cannot start export");
            return;
        }
        let mut log_changes = self.ctx.log.subscribe();
        loop {
            // An upload in flight always finishes and is recorded, also when stopping.
            if self.stopping && self.in_flight.is_none() {
                break;
            }
            let mut more = false;
            if !self.stopping {
                more = match self.fill().await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::error!(tenant = %self.tenant, webhook = %self.webhook.id, %error, "export: reading the log failed");
                        false
                    }
                };
                self.seal_due().await;
                if self.window_done().await {
                    self.complete().await;
                    continue;
                }
                self.start_upload();
            }
            self.checkpoint().await;
            // With more to read, only look at the other inputs and come straight back.
            let wake_at = if more {
                Instant::now()
            } else {
                self.next_wake()
            };
            tokio::select! {
                uploaded = finished(&mut self.in_flight) => self.record(uploaded).await,
                message = control.recv() => match message {
                    None | Some(Control::Stop) => self.stopping = true,
                    Some(Control::Reload(webhook)) => self.reload(webhook),
                    Some(Control::SendNow { reply, .. }) => {
                        let _ = reply.send(Err("not supported for s3 destinations: files are uploaded as a whole".into()));
                    }
                    Some(Control::Wake) => self.retry_now(),
                },
                changed = log_changes.changed() => {
                    if changed.is_err() { self.stopping = true; }
                }
                _ = lease.lost(), if !self.stopping => {
                    tracing::warn!(tenant = %self.tenant, webhook = %self.webhook.id, "lost the webhook's lease: stopping");
                    self.stopping = true;
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
        self.checkpoint().await;
        if self.skipped_for_backlog > 0 {
            tracing::info!(webhook = %self.webhook.id, skipped = self.skipped_for_backlog, "events outside the backlog window were skipped");
        }
    }

    /// Reads events into files until the log is exhausted, enough files wait, or this
    /// turn's budget is spent. Returns whether more could be read right away.
    async fn fill(&mut self) -> Result<bool, ExportError> {
        let spec = self.webhook.spec.clone();
        let horizon =
            now_millis() - self.ctx.config.backlog_window.duration().as_millis() as EpochMillis;
        for _ in 0..READS_PER_TURN {
            if self.sealed.len() >= MAX_SEALED {
                return Ok(false);
            }
            let events = self
                .ctx
                .log
                .read_after(&self.tenant, self.read_pos, READ_BATCH)
                .await?;
            if events.is_empty() {
                return Ok(false);
            }
            let now = Instant::now();
            let now_ms = now_millis();
            for (seq, event) in events {
                if self.sealed.len() >= MAX_SEALED {
                    return Ok(false);
                }
                self.read_pos = seq;
                match selection::takes(&spec, &event, horizon) {
                    Take::Yes => {}
                    Take::No => continue,
                    Take::TooOld => {
                        self.skipped_for_backlog += 1;
                        continue;
                    }
                }
                let mut line = envelope::body(&self.tenant, &event, spec.additional_data.as_ref());
                if let Some(reason) = selection::filtered(&spec, &line) {
                    self.write_resolved(seq, &event, MessageStatus::Filtered, reason)
                        .await?;
                    continue;
                }
                if !spec.plugins.is_empty() {
                    match self.run_plugins(&event, line).await {
                        Ok(transformed) => line = transformed,
                        Err((status, reason)) => {
                            if status == MessageStatus::Failed {
                                self.log("plugin_failed", Some(reason.clone())).await;
                            }
                            self.write_resolved(seq, &event, status, reason).await?;
                            continue;
                        }
                    }
                }
                self.stats.events += 1;
                self.stats.last_event_at = Some(now_ms);
                let first = FirstEvent {
                    seq,
                    id: event.id,
                    event_type: event.event_type,
                };
                if let Some(full) = self.batcher.push(first, &line, now, now_ms) {
                    self.enqueue(full).await?;
                }
                if let Some(full) = self.batcher.take_due(now) {
                    self.enqueue(full).await?;
                }
            }
        }
        Ok(true)
    }

    async fn enqueue(&mut self, file: Sealed) -> Result<(), ExportError> {
        let runs = self
            .ctx
            .deliveries
            .delivery(&self.webhook_ref, file.first.seq)
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
    async fn seal_due(&mut self) {
        let due = match self.batcher.take_due(Instant::now()) {
            Some(file) => Some(file),
            None if self.window_over() && self.caught_up().await => self.batcher.seal_now(),
            None => None,
        };
        if let Some(file) = due
            && let Err(error) = self.enqueue(file).await
        {
            // Only the attempt numbering needed the store; it is not worth losing the file.
            tracing::error!(webhook = %self.webhook.id, %error, "export: reading the file record failed");
        }
    }

    fn start_upload(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(head) = self.sealed.front() else {
            return;
        };
        if head.held || head.retry_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        let uploader = self.uploader.clone();
        let key = head.file.key.clone();
        let body = head.file.body.clone();
        let metrics = self.ctx.metrics.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let at = now_millis();
            let started = std::time::Instant::now();
            let result = uploader.upload(&key, body).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            metrics.attempt_latency(duration_ms);
            Uploaded {
                at,
                duration_ms,
                result,
            }
        }));
    }

    /// Stores the outcome of an upload: the file's record, the attempt and the stats, as
    /// HTTP delivery does (one outcome set).
    async fn record(&mut self, uploaded: Uploaded) {
        let Some(waiting) = self.sealed.front_mut() else {
            return;
        };
        let now = now_millis();
        waiting.runs += 1;
        let file = &waiting.file;
        let url = self.uploader.url_of(&file.key);
        let mut attempt = Attempt {
            id: ids::generate("att"),
            event_id: file.first.id.clone(),
            webhook_id: self.webhook.id.clone(),
            at: uploaded.at,
            duration_ms: uploaded.duration_ms,
            status_code: None,
            error: None,
            response_headers: BTreeMap::new(),
            response_body: String::new(),
        };
        let mut delivery = Delivery::new(
            file.first.seq,
            &file.first.id,
            &file.first.event_type,
            file.created_at,
        );
        delivery.runs = waiting.runs;
        delivery.updated_at = now;
        let mark = Mark {
            at: attempt.at,
            attempt_id: attempt.id.clone(),
        };
        self.stats.triggers += 1;
        let mut newly_failing = None;
        let delivered = uploaded.result.is_ok();
        match uploaded.result {
            Ok(e_tag) => {
                // S3 answers 200 to a PUT and to completing a multipart upload.
                attempt.status_code = Some(200);
                if let Some(e_tag) = e_tag {
                    attempt.response_headers.insert("etag".into(), e_tag);
                }
                attempt.response_body = format!(
                    "uploaded {url}: {} events, {} bytes",
                    file.events,
                    file.body.len()
                );
                delivery.status = MessageStatus::Delivered;
                delivery.status_code = Some(200);
                delivery.step = waiting.failures;
                self.stats.success_responses += 1;
                self.stats.failures_since_last_success = 0;
                self.stats.failing_since = None;
                self.stats.last_success = Some(mark);
                self.ctx.metrics.delivery_outcome("delivered");
            }
            Err(failure) => {
                let reason = match failure.status {
                    Some(code) => format!("upload of {url} failed: HTTP {code} from S3"),
                    None => format!("upload of {url} failed: {}", failure.error),
                };
                attempt.status_code = failure.status;
                attempt.error = Some(failure.error);
                waiting.failures += 1;
                delivery.status = MessageStatus::Pending;
                delivery.status_code = failure.status;
                delivery.step = waiting.failures;
                match retry_delay(&self.webhook.spec.retry, waiting.failures) {
                    Some(delay) => {
                        waiting.retry_at = Some(Instant::now() + delay);
                        delivery.next_attempt_at = Some(now + delay.as_millis() as EpochMillis);
                        self.ctx.metrics.delivery_outcome("retry_scheduled");
                    }
                    None => {
                        waiting.held = true;
                        delivery.reason =
                            Some("manual retry mode: waiting for recover or a restart".into());
                        self.ctx.metrics.delivery_outcome("failed");
                    }
                }
                self.stats.failure_responses += 1;
                self.stats.failures_since_last_success += 1;
                if self.stats.failing_since.is_none() {
                    newly_failing = Some(reason);
                }
                self.stats.failing_since.get_or_insert(now);
                self.stats.last_failure = Some(mark);
            }
        }
        self.stats.next_trigger_at = delivery.next_attempt_at;
        let mut set = OutcomeSet::default();
        set.attempt(delivery.seq, delivery.runs, attempt);
        set.record(delivery, None);
        set.stats(self.stats.clone());
        if let Some(reason) = newly_failing {
            set.log(lifecycle::entry("retry_triggered", Some(reason)));
        }
        let written = self.ctx.deliveries.apply(&self.webhook_ref, set).await;
        if let Err(error) = written {
            tracing::error!(webhook = %self.webhook.id, %error, "export: could not record an upload");
        }
        if delivered {
            self.sealed.pop_front();
            // Files are few, so the cursor is made durable after each one at once rather
            // than by the periodic flush: a crash then re-sends only a file whose upload
            // it interrupted, not the last ones uploaded.
            self.checkpoint().await;
            if let Err(error) = self.ctx.deliveries.sync().await {
                tracing::error!(webhook = %self.webhook.id, %error, "export: flushing the cursor failed");
            }
        }
        self.check_disable().await;
    }

    /// The webhook's filter and transform plugins on one line (`pipeline::prepare`, as
    /// for HTTP). A transformed body becomes the line; headers set by transforms have no
    /// place in a file and are dropped. `Err`: the event is filtered or failed, with why.
    async fn run_plugins(
        &self,
        event: &StoredEvent,
        line: Vec<u8>,
    ) -> Result<Vec<u8>, (MessageStatus, String)> {
        match pipeline::prepare(&self.ctx, &self.tenant, &self.webhook, event, line.clone()).await {
            Prepared::Send { body: None, .. } => Ok(line),
            Prepared::Send {
                body: Some(body), ..
            } => one_line(body).map_err(|reason| (MessageStatus::Failed, reason)),
            Prepared::Filtered { reason } => Err((MessageStatus::Filtered, reason)),
            Prepared::Failed { reason } => Err((MessageStatus::Failed, reason)),
        }
    }

    /// Records an event this webhook resolved without sending it (filtered, or failed by
    /// a plugin), as the HTTP worker does.
    async fn write_resolved(
        &self,
        seq: u64,
        event: &StoredEvent,
        status: MessageStatus,
        reason: String,
    ) -> Result<(), StorageError> {
        let mut delivery = Delivery::new(seq, &event.id, &event.event_type, now_millis());
        delivery.status = status;
        delivery.reason = Some(reason);
        let mut set = OutcomeSet::default();
        set.record(delivery, None);
        self.ctx.deliveries.apply(&self.webhook_ref, set).await?;
        let outcome = match status {
            MessageStatus::Filtered => "filtered",
            _ => "failed",
        };
        self.ctx.metrics.delivery_outcome(outcome);
        Ok(())
    }

    fn reload(&mut self, webhook: Arc<Webhook>) {
        let Ok(destination) = s3_of(&webhook).cloned() else {
            // The dispatcher reloads a running worker in place; a webhook that moved to
            // http needs the other worker, which the next change will start.
            tracing::warn!(webhook = %webhook.id, "the destination is no longer s3: export stops");
            self.stopping = true;
            return;
        };
        if destination != self.destination {
            match build_uploader(&webhook, &self.tenant, policy(&self.ctx)) {
                Ok(uploader) => self.uploader = Arc::new(uploader),
                Err(error) => {
                    tracing::error!(webhook = %webhook.id, %error, "export: keeping the previous configuration");
                    return;
                }
            }
        }
        self.batcher.configure(
            rotation(&destination),
            Naming::new(&destination.key_prefix, &self.tenant),
        );
        self.destination = destination;
        self.webhook = webhook;
        // A changed configuration (new credentials, say) deserves a try right away.
        self.retry_now();
    }

    /// `recover` and reloads: the waiting file is tried again now.
    fn retry_now(&mut self) {
        if let Some(head) = self.sealed.front_mut() {
            head.held = false;
            head.retry_at = None;
        }
    }

    fn window_over(&self) -> bool {
        let spec = &self.webhook.spec;
        spec.integration_type == IntegrationType::Temporary
            && spec.window().is_some_and(|(_, ends)| now_millis() > ends)
    }

    async fn caught_up(&self) -> bool {
        self.read_pos >= self.ctx.log.durable_seq(&self.tenant).await.unwrap_or(0)
    }

    /// A replay window is done once it is over, read to the end and every file is up.
    async fn window_done(&self) -> bool {
        self.window_over()
            && self.batcher.is_empty()
            && self.sealed.is_empty()
            && self.in_flight.is_none()
            && self.caught_up().await
    }

    async fn complete(&mut self) {
        self.set_status(WebhookStatus::Completed).await;
        self.log(
            "completed",
            Some("every event of the window was exported".into()),
        )
        .await;
        self.stopping = true;
    }

    /// CloudBlue "out of order", as for HTTP delivery (duplicated from
    /// `delivery::worker::Worker::check_disable`, private there).
    async fn check_disable(&mut self) {
        if self.stopping {
            return;
        }
        if let Some(reason) = lifecycle::disable_reason(&self.stats, &self.ctx.config) {
            self.set_status(WebhookStatus::Disabled).await;
            self.log("disabled", Some(reason)).await;
            self.stopping = true;
        }
    }

    async fn set_status(&self, status: WebhookStatus) {
        lifecycle::set_status(&self.ctx, &self.tenant, &self.webhook.id, status).await;
    }

    async fn log(&self, action: &str, reason: Option<String>) {
        lifecycle::log(&*self.ctx.deliveries, &self.webhook_ref, action, reason).await;
    }

    /// Persists the cursor when it moved: just before the first event of the oldest file
    /// that is not uploaded yet.
    async fn checkpoint(&mut self) {
        let oldest = self
            .sealed
            .front()
            .map(|w| w.file.first.seq)
            .or(self.batcher.first_seq());
        let cursor = match oldest {
            Some(first) => first - 1,
            None => self.read_pos,
        };
        if cursor == self.saved_cursor {
            return;
        }
        let mut set = OutcomeSet::default();
        set.cursor(cursor);
        match self.ctx.deliveries.apply(&self.webhook_ref, set).await {
            Ok(()) => self.saved_cursor = cursor,
            Err(error) => {
                tracing::error!(webhook = %self.webhook.id, %error, "export: could not store the cursor")
            }
        }
    }

    /// When to look again without being told: the open file's deadline, the waiting file's
    /// retry, the end of a replay window, or the safety tick.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + SAFETY_TICK;
        if let Some(deadline) = self.batcher.deadline() {
            wake = wake.min(deadline);
        }
        if let Some(head) = self.sealed.front()
            && !head.held
            && let Some(at) = head.retry_at
        {
            wake = wake.min(at);
        }
        if let Some((_, ends_at)) = self.webhook.spec.window() {
            let wait = (ends_at - now_millis()).max(0) as u64 + 1;
            wake = wake.min(now + Duration::from_millis(wait));
        }
        wake
    }
}

/// A transformed body as one NDJSON line. It must be JSON: a line break in valid JSON is
/// whitespace between tokens (inside strings it is escaped), so it becomes a space.
fn one_line(body: String) -> Result<Vec<u8>, String> {
    if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(
            "a transform produced a body that is not JSON; s3 files hold one JSON document per line"
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

/// Waits for the upload in flight, if any (never resolves otherwise).
async fn finished(task: &mut Option<JoinHandle<Uploaded>>) -> Uploaded {
    let Some(handle) = task.as_mut() else {
        return std::future::pending().await;
    };
    let joined = handle.await;
    *task = None;
    joined.unwrap_or_else(|error| Uploaded {
        at: now_millis(),
        duration_ms: 0,
        result: Err(UploadFailure {
            status: None,
            error: format!("the upload task failed: {error}"),
        }),
    })
}

/// The wait before the next try after `failures` failed uploads in a row; `None` in
/// manual mode. Past the schedule's end the last step repeats: a file is never dropped.
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
