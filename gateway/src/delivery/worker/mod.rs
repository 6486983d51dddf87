//! The delivery core: one task per running webhook, whatever its destination. It alone
//! writes that webhook's delivery state, so no locks are needed: sends run as separate
//! tasks and report back over a channel.
//!
//! The worker ([`Core`], this file) owns the webhook's cursor, which events it takes
//! (`selection`), its plugins (resolved once per plugin generation), the rate limit, the
//! outcomes of each pass (written as one `OutcomeSet`), statistics, the integration log and
//! the lifecycle (disable, complete, stop, lease). How events reach the sink is one of two
//! flows, chosen by the sink's shape:
//! - `per_event`: one call per event, up to `max_in_flight` at once, each event retried on
//!   its own through the due index; filters and transforms run ahead of the sends;
//! - `batched`: events become files (`delivery::batcher`), sent one at a time in log
//!   order; the oldest file is retried until it goes.
//!
//! The cursor: every event with seq ≤ cursor is resolved (delivered, rejected, failed,
//! filtered, skipped) or has a record that carries its retry (per event), or is in a file
//! that was sent (batched). What a flow holds (events being prepared or in flight, files
//! not sent) holds the cursor back: [`Flow::cursor`].
//!
//! Invariant: outcomes are written before the cursor that passes them (`write_outcomes`
//! before `write_summary` in every pass).

mod batched;
mod per_event;

use std::{sync::Arc, time::Duration};

use hookgate_signing::DestinationPolicy;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    envelope::Trigger,
    ledger, lifecycle,
    records::{Attempt, Mark, Stats},
    selection::{self, Take},
    sink::{Sent, Sink},
};
use crate::{
    context::EngineContext,
    iso::{EpochMillis, now_millis},
    model::{
        destination::HttpMethod,
        webhook::{IntegrationType, Webhook, WebhookStatus},
    },
    pipeline::{self, Resolution},
    storage::{Lease, OutcomeSet, StorageError, StoredEvent, WebhookRef},
};

/// How often a busy worker writes its webhook's statistics and cursor. Each is a store
/// write; made on every pass of the loop they were two of a delivery's four. In between,
/// a crash loses at most this much of the counters, and the next start reads again the
/// events delivered meanwhile (and skips them: they have records).
const SUMMARY_EVERY: Duration = Duration::from_millis(50);

/// Look again at least this often without being told.
const SAFETY_TICK: Duration = Duration::from_secs(5);

/// Why a worker's `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop, completed, disabled, or its lease was lost.
    Stopped,
    /// Its state could not be read or written (the store is unavailable, or the lease
    /// moved under a write): it stopped without moving the cursor past what it could not
    /// record, and may be started again from what is stored.
    StorageFailed,
}

pub enum Control {
    /// The configuration changed; the webhook keeps running. Answered once the worker
    /// uses it: what it reads from the log after the answer goes by the new configuration.
    Reload(Arc<Webhook>, oneshot::Sender<()>),
    /// Finish what is in flight, then exit.
    Stop,
    /// Send this delivery now (resend, retry from the rejected list).
    SendNow {
        seq: u64,
        reply: oneshot::Sender<Result<Attempt, String>>,
    },
    /// Trigger Now: send a `hookgate.test` event through the webhook now.
    Trigger {
        reply: oneshot::Sender<Result<Attempt, String>>,
    },
    /// New due retries were written by someone else (recover): look again.
    Wake,
}

/// What every flow shares: the webhook, its cursor and statistics, the outcomes of the
/// current pass, its plugins, the rate limit and its lifecycle.
pub(super) struct Core {
    ctx: Arc<EngineContext>,
    tenant: String,
    webhook: Arc<Webhook>,
    webhook_ref: WebhookRef,
    /// The webhook's plugin attachments resolved to loaded versions, with the catalog's
    /// plugin generation they were resolved at: reused until a plugin version or secret
    /// changes (or the webhook reloads), instead of catalog reads per event.
    resolved: Option<(u64, Result<Resolution, String>)>,
    /// The last event read from the log (taken or not).
    read_pos: u64,
    /// Outcomes recorded since the last write, written once per pass of the loop.
    outcomes: OutcomeSet,
    /// The last outcomes written moved a due time: due times read before may be stale.
    due_changed: bool,
    /// Replies to `send_now` callers, sent once their outcome is written.
    replies: Vec<(oneshot::Sender<Result<Attempt, String>>, Attempt)>,
    saved_cursor: u64,
    stats: Stats,
    /// The statistics changed since they were last written.
    stats_dirty: bool,
    /// When statistics and cursor were last written (`SUMMARY_EVERY`).
    summary_written_at: Instant,
    stopping: bool,
    /// The fencing token of the lease this worker runs under: every set it writes carries
    /// it (`OutcomeSet::fence`).
    fence: Option<u64>,
    /// A write failed: from then on the cursor is not written (it could pass events whose
    /// records are lost), and the worker stops.
    write_failed: bool,
    /// It stopped because its lease was not renewed in time (not because it was taken).
    lapsed: bool,
    /// Earliest time the rate limit allows the next send.
    next_send_at: Option<Instant>,
    skipped_for_backlog: u64,
}

/// What follows a failed attempt.
enum Next {
    Retry,
    Rejected,
    GivenUp,
}

/// Why a destination that takes files sends no single event by hand.
const SENT_AS_FILES: &str = "not supported for this destination: its files are sent as a whole";

/// How events reach the sink (see the module's note).
enum Flow {
    PerEvent(per_event::PerEvent),
    Batched(batched::Batched),
}

pub struct Worker {
    core: Core,
    flow: Flow,
}

fn policy(ctx: &EngineContext) -> DestinationPolicy {
    DestinationPolicy {
        allow_private: ctx.config.allow_private_destinations,
    }
}

impl Worker {
    pub fn new(
        ctx: Arc<EngineContext>,
        tenant: String,
        webhook: Arc<Webhook>,
    ) -> Result<Worker, String> {
        let sink = Sink::build(&tenant, &webhook, policy(&ctx)).map_err(|e| e.to_string())?;
        let flow = match sink {
            Sink::PerEvent(sink) => Flow::PerEvent(per_event::PerEvent::new(sink)),
            Sink::Batched(sink) => Flow::Batched(batched::Batched::new(sink)),
        };
        let webhook_ref = WebhookRef::new(&tenant, &webhook.id);
        let core = Core {
            ctx,
            tenant,
            webhook,
            webhook_ref,
            resolved: None,
            // Set by `load`, before the first pass.
            read_pos: 0,
            outcomes: OutcomeSet::default(),
            due_changed: false,
            replies: Vec::new(),
            saved_cursor: 0,
            stats: Stats::default(),
            stats_dirty: false,
            summary_written_at: Instant::now(),
            stopping: false,
            fence: None,
            write_failed: false,
            lapsed: false,
            next_send_at: None,
            skipped_for_backlog: 0,
        };
        Ok(Worker { core, flow })
    }

    /// Runs while `lease` holds: a lost lease stops the worker as `Stop` does.
    pub async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut lease: Lease,
    ) -> Exit {
        let Worker { core, flow } = &mut self;
        core.fence = Some(lease.fence());
        if let Err(error) = core.load().await {
            tracing::error!(tenant = %core.tenant, webhook = %core.webhook.id, %error, "cannot start delivery");
            return Exit::StorageFailed;
        }
        let mut log_changes = core.ctx.log.subscribe(&core.tenant);
        loop {
            flow.take_reports(core).await;
            core.write_outcomes().await;
            if core.stopping && flow.idle() {
                break;
            }
            // Checked before anything new is sent: a paused or cut-off node learns that its
            // lease lapsed here, before its ownership round can tell it.
            if !core.stopping && lease.is_lost() {
                tracing::warn!(tenant = %core.tenant, webhook = %core.webhook.id, "the webhook's lease lapsed: stopping");
                core.stopping = true;
                // Like a failed write: started again (and claimed again, if this node
                // still holds the shard) once the store answers.
                core.lapsed = lease.is_lapsed();
            }
            let mut more = false;
            if !core.stopping {
                more = flow.dispatch(core).await;
                // What dispatch resolved (filtered, given up) goes before the cursor moves.
                core.write_outcomes().await;
                if core.window_over() && flow.drained(core).await && core.caught_up().await {
                    core.complete().await;
                    continue;
                }
            }
            core.write_summary(flow.cursor(core), false).await;
            // With more to read right away, only look at the other inputs and come back.
            let wake_at = if more {
                Instant::now()
            } else {
                let cursor = flow.cursor(core);
                core.next_wake(cursor).min(flow.next_wake(core).await)
            };
            tokio::select! {
                report = flow.report() => flow.accept(core, report).await,
                message = control.recv() => match message {
                    None | Some(Control::Stop) => core.stopping = true,
                    Some(Control::Reload(webhook, done)) => {
                        core.reload(flow, webhook);
                        let _ = done.send(());
                    }
                    Some(Control::SendNow { seq, reply }) => flow.send_now(core, seq, reply).await,
                    Some(Control::Trigger { reply }) => flow.trigger(core, reply).await,
                    Some(Control::Wake) => flow.wake(),
                },
                changed = log_changes.changed() => {
                    if changed.is_err() { core.stopping = true; }
                }
                _ = lease.lost(), if !core.stopping => {
                    tracing::warn!(tenant = %core.tenant, webhook = %core.webhook.id, "lost the webhook's lease: stopping");
                    core.stopping = true;
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
        core.write_outcomes().await;
        core.write_summary(flow.cursor(core), true).await;
        if core.skipped_for_backlog > 0 {
            tracing::info!(webhook = %core.webhook.id, skipped = core.skipped_for_backlog, "events outside the backlog window were skipped");
        }
        match core.write_failed || core.lapsed {
            true => Exit::StorageFailed,
            false => Exit::Stopped,
        }
    }

    /// Serves only control messages (a `send_now` or `trigger` for a stopped webhook),
    /// then exits; holds `lease` meanwhile, as any worker of the webhook must.
    pub async fn run_once(mut self, mut control: mpsc::UnboundedReceiver<Control>, lease: Lease) {
        let Worker { core, flow } = &mut self;
        core.stopping = true;
        core.fence = Some(lease.fence());
        let loaded = core.load().await;
        while let Some(message) = control.recv().await {
            match (message, &loaded) {
                (Control::SendNow { seq, reply }, Ok(())) => flow.send_now(core, seq, reply).await,
                (Control::Trigger { reply }, Ok(())) => flow.trigger(core, reply).await,
                (Control::SendNow { reply, .. } | Control::Trigger { reply }, Err(error)) => {
                    let _ = reply.send(Err(error.clone()));
                }
                _ => {}
            }
        }
        while loaded.is_ok() && !flow.idle() {
            let report = flow.report().await;
            flow.accept(core, report).await;
            core.write_outcomes().await;
            core.write_summary(flow.cursor(core), true).await;
        }
    }
}

impl Flow {
    /// Files the reports that arrived meanwhile, without waiting.
    async fn take_reports(&mut self, core: &mut Core) {
        match self {
            Flow::PerEvent(flow) => flow.take_reports(core).await,
            Flow::Batched(flow) => flow.take_reports(core).await,
        }
    }

    /// Takes new work and launches what may go now. True when more could be read at once.
    async fn dispatch(&mut self, core: &mut Core) -> bool {
        let dispatched = match self {
            Flow::PerEvent(flow) => flow.dispatch(core).await.map(|()| false),
            Flow::Batched(flow) => flow.dispatch(core).await,
        };
        dispatched.unwrap_or_else(|error| {
            tracing::error!(tenant = %core.tenant, webhook = %core.webhook.id, %error, "dispatch failed");
            false
        })
    }

    /// The next report of a send (or preparation) task; never resolves while none runs.
    async fn report(&mut self) -> Report {
        match self {
            Flow::PerEvent(flow) => Report::PerEvent(flow.report().await),
            Flow::Batched(flow) => Report::Batched(flow.report().await),
        }
    }

    async fn accept(&mut self, core: &mut Core, report: Report) {
        match (self, report) {
            (Flow::PerEvent(flow), Report::PerEvent(report)) => flow.accept(core, report).await,
            (Flow::Batched(flow), Report::Batched(report)) => flow.accept(core, report).await,
            _ => unreachable!("a flow receives its own reports"),
        }
    }

    async fn send_now(
        &mut self,
        core: &mut Core,
        seq: u64,
        reply: oneshot::Sender<Result<Attempt, String>>,
    ) {
        match self {
            Flow::PerEvent(flow) => flow.send_now(core, seq, reply).await,
            Flow::Batched(_) => {
                let _ = reply.send(Err(SENT_AS_FILES.into()));
            }
        }
    }

    async fn trigger(&mut self, core: &mut Core, reply: oneshot::Sender<Result<Attempt, String>>) {
        match self {
            Flow::PerEvent(flow) => flow.trigger(core, reply).await,
            Flow::Batched(_) => {
                let _ = reply.send(Err(SENT_AS_FILES.into()));
            }
        }
    }

    /// Someone else changed what is due (recover), or the configuration changed.
    fn wake(&mut self) {
        match self {
            Flow::PerEvent(flow) => flow.wake(),
            Flow::Batched(flow) => flow.wake(),
        }
    }

    /// Nothing is in flight: the worker may exit. (Prepared events and files not sent
    /// are left to the next start: they hold the cursor.)
    fn idle(&self) -> bool {
        match self {
            Flow::PerEvent(flow) => flow.idle(),
            Flow::Batched(flow) => flow.idle(),
        }
    }

    /// Nothing taken is left unresolved: neither held nor due for a retry.
    async fn drained(&mut self, core: &mut Core) -> bool {
        match self {
            Flow::PerEvent(flow) => flow.drained(core).await,
            Flow::Batched(flow) => flow.drained(),
        }
    }

    fn cursor(&self, core: &Core) -> u64 {
        match self {
            Flow::PerEvent(flow) => flow.cursor(core.read_pos),
            Flow::Batched(flow) => flow.cursor(core.read_pos),
        }
    }

    async fn next_wake(&mut self, core: &mut Core) -> Instant {
        let wake = match self {
            Flow::PerEvent(flow) => flow.next_wake(core).await,
            Flow::Batched(flow) => flow.next_wake(),
        };
        wake.unwrap_or_else(|| Instant::now() + SAFETY_TICK)
    }
}

enum Report {
    PerEvent(per_event::Report),
    Batched(batched::Report),
}

impl Core {
    /// Reads the stored cursor (or the start position of a webhook that has none) and
    /// statistics.
    async fn load(&mut self) -> Result<(), String> {
        let deliveries = &self.ctx.deliveries;
        let stored = deliveries
            .cursor(&self.webhook_ref)
            .await
            .map_err(|e| e.to_string())?;
        let cursor = match stored {
            Some(cursor) => cursor,
            None => ledger::start_position(&*self.ctx.log, &self.tenant, &self.webhook)
                .await
                .map_err(|e| e.to_string())?,
        };
        self.stats = deliveries
            .stats(&self.webhook_ref)
            .await
            .map_err(|e| e.to_string())?;
        self.read_pos = cursor;
        self.saved_cursor = cursor;
        Ok(())
    }

    /// A new configuration: a sink of the same shape replaces the flow's in place; a
    /// configuration that cannot be built keeps the previous one.
    fn reload(&mut self, flow: &mut Flow, webhook: Arc<Webhook>) {
        let sink = match Sink::build(&self.tenant, &webhook, policy(&self.ctx)) {
            Ok(sink) => sink,
            Err(error) => {
                tracing::error!(webhook = %webhook.id, %error, "keeping the previous configuration");
                return;
            }
        };
        match (flow, sink) {
            (Flow::PerEvent(flow), Sink::PerEvent(sink)) => flow.set_sink(sink),
            (Flow::Batched(flow), Sink::Batched(sink)) => flow.set_sink(sink),
            _ => {
                // The dispatcher starts the other flow for a destination of the other
                // shape; until it does, this one stops.
                tracing::warn!(webhook = %webhook.id, "the destination changed shape: stopping");
                self.stopping = true;
                return;
            }
        }
        self.webhook = webhook;
        self.resolved = None;
    }

    /// Resolves the webhook's plugins again if they changed since `resolved` was made:
    /// called before each pass that may prepare or launch, so those take
    /// [`resolution`](Self::resolution) without waiting on the catalog.
    async fn refresh_resolution(&mut self) {
        if self.webhook.spec.plugins.is_empty() {
            return;
        }
        // Read before resolving: a change meanwhile makes the next pass resolve again.
        let generation = self.ctx.catalog.plugin_generation();
        if matches!(&self.resolved, Some((at, Ok(_))) if *at == generation) {
            return;
        }
        let resolution = pipeline::resolve(&self.ctx, &self.tenant, &self.webhook).await;
        self.resolved = Some((generation, resolution));
    }

    /// The webhook's plugins as the last [`refresh_resolution`](Self::refresh_resolution)
    /// found them.
    fn resolution(&self) -> Result<Resolution, String> {
        match &self.resolved {
            Some((_, resolution)) => resolution.clone(),
            None => Err("the webhook's plugins are not resolved yet".into()),
        }
    }

    fn has_plugins(&self) -> bool {
        !self.webhook.spec.plugins.is_empty()
    }

    /// Whether the rate limit lets one more send go now; books it if so.
    fn take_rate_token(&mut self) -> bool {
        let Some(rate) = self.webhook.spec.rate_limit_per_second else {
            return true;
        };
        let now = Instant::now();
        let at = self.next_send_at.unwrap_or(now).max(now);
        // Allow a burst of one second's worth, no more.
        if at > now + Duration::from_secs(1) {
            return false;
        }
        self.next_send_at = Some(at + Duration::from_secs_f64(1.0 / rate));
        true
    }

    /// Subscription, replay window and backlog window: does this webhook take the event?
    fn takes(&mut self, event: &StoredEvent) -> bool {
        let horizon =
            now_millis() - self.ctx.config.backlog_window.duration().as_millis() as EpochMillis;
        match selection::takes(&self.webhook.spec, event, horizon) {
            Take::Yes => true,
            Take::No => false,
            Take::TooOld => {
                self.skipped_for_backlog += 1;
                false
            }
        }
    }

    /// When the webhook last succeeded and last failed.
    fn last_outcomes(&self) -> (Option<EpochMillis>, Option<EpochMillis>) {
        let at = |mark: &Option<Mark>| mark.as_ref().map(|m| m.at);
        (at(&self.stats.last_success), at(&self.stats.last_failure))
    }

    /// What the receiver is told about the webhook at a call made now.
    fn trigger(&self) -> Trigger<'_> {
        let (last_success_at, last_failure_at) = self.last_outcomes();
        Trigger::now(&self.webhook, last_success_at, last_failure_at)
    }

    /// The default body of `event` for this webhook, for a call made now.
    fn envelope(&self, event: &StoredEvent) -> Vec<u8> {
        self.envelope_with(event, &self.trigger())
    }

    /// The default body of `event` for the call `trigger` describes.
    fn envelope_with(&self, event: &StoredEvent, trigger: &Trigger<'_>) -> Vec<u8> {
        super::envelope::body(
            &self.tenant,
            event,
            Some(trigger),
            self.webhook.spec.additional_data.as_ref(),
        )
    }

    /// The JWT's extra claims for the call `trigger` describes, when the webhook POSTs
    /// with a JWT (a GET's token carries its event instead).
    fn jwt_claims(&self, event_type: &str, trigger: &Trigger<'_>) -> Option<serde_json::Value> {
        let http = self.webhook.spec.destination.http()?;
        let signs_jwt = matches!(http.authentication, hookgate_signing::AuthConfig::Jwt(_));
        (signs_jwt && http.method == HttpMethod::Post)
            .then(|| trigger.claims(event_type, self.webhook.spec.additional_data.as_ref()))
    }

    /// `Some(reason)` when the built-in filter drops the event.
    fn filtered(&self, event: &StoredEvent) -> Option<String> {
        self.webhook.spec.filter_conditions.as_ref()?;
        selection::filtered(&self.webhook.spec, &self.envelope(event))
    }

    /// A new event taken for delivery.
    fn count_event(&mut self) {
        self.stats.events += 1;
        self.stats.last_event_at = Some(now_millis());
        self.stats_dirty = true;
    }

    /// Counts one attempt in the statistics and metrics.
    fn count_attempt(&mut self, sent: &Sent, delivered: bool) {
        let attempt = &sent.attempt;
        self.ctx.metrics.attempt_latency(attempt.duration_ms);
        self.stats.triggers += 1;
        let mark = Mark {
            at: attempt.at,
            attempt_id: attempt.id.clone(),
            event_id: attempt.event_id.clone(),
        };
        if delivered {
            self.stats.success_responses += 1;
            self.stats.failures_since_last_success = 0;
            self.stats.failing_since = None;
            self.stats.last_success = Some(mark);
            self.ctx.metrics.delivery_outcome("delivered");
            return;
        }
        self.stats.failure_responses += 1;
        self.stats.failures_since_last_success += 1;
        if self.stats.failing_since.is_none() {
            self.stats.failing_since = Some(now_millis());
        }
        self.stats.last_failure = Some(mark);
    }

    /// NewStore's integration log: one entry per failed attempt, named by what follows it
    /// (`retry_triggered`, `event_rejected` for a 400/410/422, `delivery_failed` when no
    /// retry is left), with NewStore's wording of the reason. The log keeps its newest
    /// entries.
    fn log_failed_attempt(&mut self, sent: &Sent, next: Next) {
        let failure = sent.failure.as_deref().unwrap_or("no response");
        let reason = format!("{failure} Event: {}", sent.attempt.event_id);
        let action = match next {
            Next::Retry => "retry_triggered",
            Next::Rejected => "event_rejected",
            Next::GivenUp => "delivery_failed",
        };
        self.log(action, Some(reason));
    }

    /// Writes the outcomes recorded since the last call, then answers the `send_now`
    /// callers among them. The statistics follow with the cursor (`write_summary`).
    async fn write_outcomes(&mut self) {
        if self.outcomes.is_empty() && self.replies.is_empty() {
            return;
        }
        self.stats_dirty = true;
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.fence = self.fence;
        if outcomes.records.iter().any(|change| {
            change.replaces_due.is_some() || change.delivery.next_attempt_at.is_some()
        }) {
            self.due_changed = true;
        }
        let written = self
            .ctx
            .deliveries
            .apply(&self.webhook_ref, outcomes)
            .await
            .map_err(|e| e.to_string());
        if let Err(error) = &written {
            tracing::error!(webhook = %self.webhook.id, %error, "could not record attempts: stopping");
            self.write_failed = true;
            self.stopping = true;
        }
        for (reply, attempt) in self.replies.drain(..) {
            let _ = reply.send(written.clone().map(|()| attempt));
        }
    }

    /// Writes the statistics and `cursor` if they changed: at most every `SUMMARY_EVERY`
    /// unless `now` (the worker stops, serves a resend, or a file was sent).
    /// The lag gauge is derived from the stored cursor when `/metrics` is read.
    async fn write_summary(&mut self, cursor: u64, now: bool) {
        if self.write_failed || (!now && self.summary_written_at.elapsed() < SUMMARY_EVERY) {
            return;
        }
        self.summary_written_at = Instant::now();
        let mut summary = OutcomeSet {
            fence: self.fence,
            ..OutcomeSet::default()
        };
        if std::mem::take(&mut self.stats_dirty) {
            summary.stats(self.stats.clone());
        }
        if cursor != self.saved_cursor {
            summary.cursor(cursor);
        }
        if summary.is_empty() {
            return;
        }
        match self.ctx.deliveries.apply(&self.webhook_ref, summary).await {
            Ok(()) => self.saved_cursor = cursor,
            Err(error @ StorageError::Fenced(_)) => {
                tracing::warn!(webhook = %self.webhook.id, %error, "stopping");
                self.write_failed = true;
                self.stopping = true;
            }
            Err(error) => {
                self.stats_dirty = true;
                tracing::error!(webhook = %self.webhook.id, %error, "could not record statistics and cursor");
            }
        }
    }

    /// CloudBlue "out of order": too long or too many failures in a row disable the webhook.
    async fn check_disable(&mut self) {
        if self.stopping {
            return;
        }
        if let Some(reason) = lifecycle::disable_reason(&self.stats, &self.ctx.config) {
            self.set_status(WebhookStatus::Disabled).await;
            self.log("disabled", Some(reason));
            self.stopping = true;
        }
    }

    /// A temporary webhook whose replay window has ended.
    fn window_over(&self) -> bool {
        let spec = &self.webhook.spec;
        spec.integration_type == IntegrationType::Temporary
            && spec.window().is_some_and(|(_, ends)| now_millis() > ends)
    }

    /// Every durable event has been read.
    async fn caught_up(&self) -> bool {
        self.read_pos >= self.ctx.log.durable_seq(&self.tenant).await.unwrap_or(0)
    }

    async fn complete(&mut self) {
        self.set_status(WebhookStatus::Completed).await;
        self.log(
            "completed",
            Some("every event of the window was delivered or resolved".into()),
        );
        self.stopping = true;
    }

    async fn set_status(&self, status: WebhookStatus) {
        lifecycle::set_status(&self.ctx, &self.tenant, &self.webhook.id, status).await;
    }

    /// Adds an integration log entry to this pass's outcomes.
    fn log(&mut self, action: &str, reason: Option<String>) {
        self.outcomes.log(lifecycle::entry(action, reason));
    }

    /// When to look again without being told, as far as the core knows: the summary's
    /// next write, the rate limit and the end of a replay window.
    fn next_wake(&self, cursor: u64) -> Instant {
        let now = Instant::now();
        let mut wake = now + SAFETY_TICK;
        if self.stats_dirty || cursor != self.saved_cursor {
            wake = wake.min(self.summary_written_at + SUMMARY_EVERY);
        }
        if let Some(at) = self.next_send_at
            && at > now
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
