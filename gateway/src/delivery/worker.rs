//! One task per running webhook. It alone writes that webhook's delivery state, so no
//! locks are needed: attempts run as separate tasks and report back over a channel.
//!
//! The cursor: every event with seq ≤ cursor is resolved (delivered, rejected, failed,
//! filtered, skipped) or has a delivery record that carries its retry. New events taken
//! but not resolved (being prepared, ready, in flight) hold the cursor back; retries do not
//! (their record is already durable state).
//!
//! Filter and transform plugins run ahead of the sends: new events are prepared in batches
//! by one task at a time (`pipeline::prepare_batch`), up to `max_in_flight` events ahead,
//! and wait in `ready` for a send slot. `max_in_flight` bounds requests to the receiver;
//! plugin work neither takes those slots nor adds to each request's time in them, and the
//! calls of a batch run back to back, which makes each cheaper (warm caches).

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    envelope, ledger, lifecycle,
    policy::{self, Outcome},
    records::{Attempt, Delivery, Mark, MessageStatus, Stats},
    selection::{self, Take},
    sender::{self, Outgoing, Sent, Target},
    target,
};
use crate::{
    context::EngineContext,
    iso::{EpochMillis, now_millis},
    model::webhook::{IntegrationType, Ordering, RetryMode, Webhook, WebhookStatus},
    pipeline::{self, Prepared, Resolution},
    storage::StoredEvent,
    storage::{Lease, OutcomeSet, StorageError, WebhookRef},
};

/// How often a busy worker writes its webhook's statistics and cursor. Each is a store
/// write; made on every pass of the loop they were two of a delivery's four. In between,
/// a crash loses at most this much of the counters, and the next start reads again the
/// events delivered meanwhile (and skips them: they have records).
const SUMMARY_EVERY: Duration = Duration::from_millis(50);

/// Events read ahead from the log per batch. The look-ahead holds them until room frees
/// up, so each event is read once however few slots `max_in_flight` leaves per pass.
const READ_BATCH: usize = 64;

pub enum Control {
    /// The configuration changed; the webhook keeps running.
    Reload(Arc<Webhook>),
    /// Finish what is in flight, then exit.
    Stop,
    /// Send this delivery now (resend, retry from the rejected list).
    SendNow {
        seq: u64,
        reply: oneshot::Sender<Result<Attempt, String>>,
    },
    /// New due retries were written by someone else (recover).
    Wake,
}

/// A new event prepared by the plugins, waiting for a send slot.
struct Ready {
    delivery: Delivery,
    body: Bytes,
    /// The plugin versions its filters and transforms ran with: its authenticate hooks run
    /// with the same ones (one event sees one version of each plugin).
    resolution: Resolution,
}

/// What a `prepare_batch` task hands back: each delivery with its default envelope and
/// what the plugins decided, and the resolution they ran with.
struct PreparedBatch(Vec<(Delivery, Bytes, Prepared)>, Resolution);

struct Done {
    delivery: Delivery,
    first: bool,
    finished: Finished,
    reply: Option<oneshot::Sender<Result<Attempt, String>>>,
}

/// How a launched delivery ended.
enum Finished {
    /// A request went out (or failed to): an attempt to record.
    Sent(Sent),
    /// A filter plugin dropped the event for this webhook.
    Filtered(String),
    /// A plugin failed: the event fails for this webhook, nothing was sent.
    PluginFailed(String),
}

pub struct Worker {
    ctx: Arc<EngineContext>,
    tenant: String,
    webhook: Arc<Webhook>,
    webhook_ref: WebhookRef,
    target: Arc<Target>,
    /// The webhook's plugin attachments resolved to loaded versions, with the store's
    /// plugin generation they were resolved at: reused until a plugin version is added or
    /// removed (or the webhook reloads), instead of two store reads, two decodes and a few
    /// allocations per attempt.
    resolved: Option<(u64, Result<Resolution, String>)>,
    /// When the earliest retry of this webhook is due (`Some(None)`: none is), as last
    /// read from its due keys; `None` once that may have changed. Saves two range scans of
    /// the store per pass of the loop when nothing is being retried.
    earliest_due: Option<Option<EpochMillis>>,
    read_pos: u64,
    /// Events after `read_pos` already read from the log, in order.
    lookahead: VecDeque<(u64, StoredEvent)>,
    /// The seqs in `lookahead` that already have a record (read with each refill).
    recorded_ahead: BTreeSet<u64>,
    /// Outcomes recorded since the last write, written once per pass of the loop.
    outcomes: OutcomeSet,
    /// Replies to `send_now` callers, sent once their outcome is written.
    replies: Vec<(oneshot::Sender<Result<Attempt, String>>, Attempt)>,
    saved_cursor: u64,
    /// The statistics changed since they were last written.
    stats_dirty: bool,
    /// When statistics and cursor were last written (`SUMMARY_EVERY`).
    summary_written_at: Instant,
    /// New events taken and not resolved yet: being prepared, ready or in flight.
    holding_cursor: BTreeSet<u64>,
    /// Deliveries being sent (first attempts, retries, resends): `max_in_flight` bounds it.
    in_flight: HashSet<u64>,
    /// New events prepared by the plugins, in log order, waiting for a send slot.
    ready: VecDeque<Ready>,
    /// A `prepare_batch` task is running (one at a time, so batches finish in order).
    preparing: bool,
    prepared_tx: mpsc::UnboundedSender<PreparedBatch>,
    prepared_rx: mpsc::UnboundedReceiver<PreparedBatch>,
    stats: Stats,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    stopping: bool,
    /// Earliest time the rate limit allows the next send.
    next_send_at: Option<Instant>,
    skipped_for_backlog: u64,
}

impl Worker {
    pub fn new(
        ctx: Arc<EngineContext>,
        tenant: String,
        webhook: Arc<Webhook>,
    ) -> Result<Worker, String> {
        let webhook_ref = WebhookRef::new(&tenant, &webhook.id);
        let target = Arc::new(
            target::for_webhook(&webhook, ctx.config.allow_private_destinations)
                .map_err(|e| e.to_string())?,
        );
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (prepared_tx, prepared_rx) = mpsc::unbounded_channel();
        Ok(Worker {
            ctx,
            tenant,
            webhook,
            webhook_ref,
            target,
            resolved: None,
            earliest_due: None,
            // Set by `load`, before the first pass.
            read_pos: 0,
            lookahead: VecDeque::new(),
            recorded_ahead: BTreeSet::new(),
            outcomes: OutcomeSet::default(),
            replies: Vec::new(),
            saved_cursor: 0,
            stats_dirty: false,
            summary_written_at: Instant::now(),
            holding_cursor: BTreeSet::new(),
            in_flight: HashSet::new(),
            ready: VecDeque::new(),
            preparing: false,
            prepared_tx,
            prepared_rx,
            stats: Stats::default(),
            done_tx,
            done_rx,
            stopping: false,
            next_send_at: None,
            skipped_for_backlog: 0,
        })
    }

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

    /// Runs while `lease` holds: a lost lease stops the worker as `Stop` does.
    pub async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>, mut lease: Lease) {
        if let Err(error) = self.load().await {
            tracing::error!(tenant = %self.tenant, webhook = %self.webhook.id, %error, "cannot start delivery");
            return;
        }
        let mut log_changes = self.ctx.log.subscribe();
        loop {
            while let Ok(done) = self.done_rx.try_recv() {
                self.record(done).await;
            }
            while let Ok(batch) = self.prepared_rx.try_recv() {
                self.accept_prepared(batch);
            }
            self.write_outcomes().await;
            // Events prepared but not sent are left to the next start: they hold the cursor.
            if self.stopping && self.in_flight.is_empty() && !self.preparing {
                break;
            }
            if !self.stopping {
                if let Err(error) = self.dispatch().await {
                    tracing::error!(tenant = %self.tenant, webhook = %self.webhook.id, %error, "dispatch failed");
                }
                // What dispatch resolved (filtered, given up) goes before the cursor moves.
                self.write_outcomes().await;
                if self.window_finished().await {
                    self.complete().await;
                    continue;
                }
            }
            self.write_summary(false).await;
            let wake_at = self.next_wake().await;
            tokio::select! {
                Some(done) = self.done_rx.recv() => self.record(done).await,
                Some(batch) = self.prepared_rx.recv() => self.accept_prepared(batch),
                message = control.recv() => {
                    // It may come with new due keys (`recover` writes them, then wakes the
                    // worker): read them again.
                    self.earliest_due = None;
                    match message {
                        None | Some(Control::Stop) => self.stopping = true,
                        Some(Control::Reload(webhook)) => self.reload(webhook),
                        Some(Control::SendNow { seq, reply }) => self.send_now(seq, reply).await,
                        Some(Control::Wake) => {}
                    }
                }
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
        self.write_outcomes().await;
        self.write_summary(true).await;
        if self.skipped_for_backlog > 0 {
            tracing::info!(webhook = %self.webhook.id, skipped = self.skipped_for_backlog, "events outside the backlog window were skipped");
        }
    }

    /// Serves only control messages (a `send_now` for a stopped webhook), then exits; holds
    /// `lease` meanwhile, as any worker of the webhook must.
    pub async fn run_once(mut self, mut control: mpsc::UnboundedReceiver<Control>, _lease: Lease) {
        self.stopping = true;
        if let Err(error) = self.load().await {
            while let Some(message) = control.recv().await {
                if let Control::SendNow { reply, .. } = message {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            return;
        }
        while let Some(message) = control.recv().await {
            if let Control::SendNow { seq, reply } = message {
                self.send_now(seq, reply).await;
            }
        }
        while !self.in_flight.is_empty() {
            match self.done_rx.recv().await {
                Some(done) => self.record(done).await,
                None => break,
            }
            self.write_outcomes().await;
            self.write_summary(true).await;
        }
    }

    fn reload(&mut self, webhook: Arc<Webhook>) {
        match target::for_webhook(&webhook, self.ctx.config.allow_private_destinations) {
            Ok(target) => {
                self.target = Arc::new(target);
                self.webhook = webhook;
                self.resolved = None;
            }
            Err(error) => {
                tracing::error!(webhook = %webhook.id, %error, "keeping the previous configuration");
            }
        }
    }

    /// Resolves the webhook's plugins again if they changed since `resolved` was made:
    /// called before each pass that may launch (dispatch, send now), so the launches of a
    /// pass take [`resolution`](Self::resolution) without waiting on the catalog.
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

    fn max_in_flight(&self) -> usize {
        match self.webhook.spec.ordering {
            Ordering::Fifo => 1,
            Ordering::Unordered => self.webhook.spec.max_in_flight as usize,
        }
    }

    fn room(&self) -> usize {
        self.max_in_flight().saturating_sub(self.in_flight.len())
    }

    /// Whether the rate limit lets one more request go now; books it if so.
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

    async fn dispatch(&mut self) -> Result<(), StorageError> {
        self.refresh_resolution().await;
        self.dispatch_due_retries().await?;
        self.dispatch_new_events().await
    }

    /// The earliest due retry (`earliest_due`), read from the store if not known.
    async fn earliest_due(&mut self) -> Option<EpochMillis> {
        if let Some(known) = self.earliest_due {
            return known;
        }
        match self.ctx.deliveries.earliest_due(&self.webhook_ref).await {
            Ok(earliest) => {
                self.earliest_due = Some(earliest);
                earliest
            }
            Err(error) => {
                tracing::error!(webhook = %self.webhook.id, %error, "cannot read due retries");
                None
            }
        }
    }

    async fn dispatch_due_retries(&mut self) -> Result<(), StorageError> {
        if self.room() == 0 {
            return Ok(());
        }
        let now = now_millis();
        if self.earliest_due().await.is_none_or(|due| due > now) {
            return Ok(());
        }
        // What follows launches or drops due retries: read them again next time.
        self.earliest_due = None;
        let due = self
            .ctx
            .deliveries
            .due(&self.webhook_ref, now, self.room(), &self.in_flight)
            .await?;
        for delivery in due {
            if !self.take_rate_token() {
                break;
            }
            match self.ctx.log.event_by_seq(&self.tenant, delivery.seq).await {
                Ok(Some(event)) => self.launch(delivery, &event, false, None),
                _ => self.give_up(delivery, "the event is no longer stored (retention)"),
            }
        }
        Ok(())
    }

    async fn has_pending_retry(&mut self) -> bool {
        self.earliest_due().await.is_some()
    }

    async fn dispatch_new_events(&mut self) -> Result<(), StorageError> {
        if self.webhook.spec.ordering == Ordering::Fifo && self.has_pending_retry().await {
            return Ok(());
        }
        self.send_ready();
        let prepares = self.prepares_ahead();
        let mut taken = Vec::new();
        let read = self.take_new_events(prepares.is_some(), &mut taken).await;
        // Taken events hold the cursor: hand them to a prepare task even if reading failed.
        if let Some(resolution) = prepares
            && !taken.is_empty()
        {
            self.start_prepare(taken, resolution);
        }
        read
    }

    /// Launches prepared events while `max_in_flight` and the rate limit allow.
    fn send_ready(&mut self) {
        while self.room() > 0 && !self.ready.is_empty() {
            if !self.take_rate_token() {
                return;
            }
            let Ready {
                delivery,
                body,
                resolution,
            } = self.ready.pop_front().expect("not empty");
            self.launch_with_body(delivery, body, Some(resolution), None, true, None);
        }
    }

    /// Takes new events from the log: into `taken`, to be prepared, when `prepares`
    /// (up to `max_in_flight` ahead of the sends); otherwise launched right away while
    /// there is room, once nothing taken earlier waits to be prepared or sent.
    async fn take_new_events(
        &mut self,
        prepares: bool,
        taken: &mut Vec<(Delivery, StoredEvent)>,
    ) -> Result<(), StorageError> {
        let schedule = &self.webhook.spec.retry.schedule;
        let first_delay = schedule.first().map(|d| d.duration()).unwrap_or_default();
        loop {
            let capacity = if prepares && !self.preparing {
                self.max_in_flight()
                    .saturating_sub(self.ready.len() + taken.len())
            } else if !prepares && !self.preparing && self.ready.is_empty() {
                self.room()
            } else {
                0
            };
            if capacity == 0 {
                return Ok(());
            }
            if self.lookahead.is_empty() {
                self.refill_lookahead().await?;
                if self.lookahead.is_empty() {
                    return Ok(());
                }
            }
            let (seq, event) = self.lookahead.pop_front().expect("refilled above");
            // After a crash the saved cursor may be a little behind: events that already
            // have a record were handled (or carry their own retry) and are not new.
            if !self.takes(&event) || self.recorded_ahead.remove(&seq) {
                self.read_pos = seq;
                continue;
            }
            if let Some(reason) = self.filtered(&event) {
                self.read_pos = seq;
                self.write_filtered(seq, &event, reason);
                continue;
            }
            if !first_delay.is_zero() {
                self.read_pos = seq;
                self.schedule_first(seq, &event, first_delay);
                continue;
            }
            if !prepares && !self.take_rate_token() {
                self.lookahead.push_front((seq, event));
                return Ok(());
            }
            self.read_pos = seq;
            self.stats.events += 1;
            self.stats_dirty = true;
            self.stats.last_event_at = Some(now_millis());
            let delivery = Delivery::new(seq, &event.id, &event.event_type, now_millis());
            if prepares {
                self.holding_cursor.insert(seq);
                taken.push((delivery, event));
            } else {
                self.launch(delivery, &event, true, None);
            }
        }
    }

    /// Reads the next batch of durable events after `read_pos`, and which of them already
    /// have a record (one range read for the batch, not one lookup per event).
    async fn refill_lookahead(&mut self) -> Result<(), StorageError> {
        let events = self
            .ctx
            .log
            .read_after(&self.tenant, self.read_pos, READ_BATCH)
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let Some(&(last, _)) = events.last() else {
            return Ok(());
        };
        let recorded = self
            .ctx
            .deliveries
            .recorded_between(&self.webhook_ref, self.read_pos, last)
            .await?;
        self.recorded_ahead.extend(recorded);
        self.lookahead.extend(events);
        Ok(())
    }

    /// The webhook's plugins when a filter or transform of theirs runs: new events are
    /// then prepared ahead of their sends. `None` also when they cannot be resolved: each
    /// attempt then fails with the reason.
    fn prepares_ahead(&mut self) -> Option<Resolution> {
        if self.webhook.spec.plugins.is_empty() {
            return None;
        }
        self.resolution().ok().filter(Resolution::prepares)
    }

    /// Runs the filters and transforms of `taken` in a task of its own; the outcome comes
    /// back as a [`PreparedBatch`].
    fn start_prepare(&mut self, taken: Vec<(Delivery, StoredEvent)>, resolution: Resolution) {
        self.preparing = true;
        let ctx = self.ctx.clone();
        let tenant = self.tenant.clone();
        let webhook = self.webhook.clone();
        let prepared_tx = self.prepared_tx.clone();
        tokio::spawn(async move {
            let additional_data = webhook.spec.additional_data.as_ref();
            let envelopes: Vec<Bytes> = taken
                .iter()
                .map(|(_, event)| Bytes::from(envelope::body(&tenant, event, additional_data)))
                .collect();
            let inputs = taken
                .iter()
                .zip(&envelopes)
                .map(|((_, event), envelope)| (event, envelope.to_vec()))
                .collect();
            let outcomes = pipeline::prepare_batch(&ctx, &tenant, &resolution, inputs).await;
            let batch = taken
                .into_iter()
                .zip(envelopes)
                .zip(outcomes)
                .map(|(((delivery, _), envelope), outcome)| (delivery, envelope, outcome))
                .collect();
            let _ = prepared_tx.send(PreparedBatch(batch, resolution));
        });
    }

    /// Files what a prepare task decided: filtered and failed events are resolved, the
    /// others wait in `ready`.
    fn accept_prepared(&mut self, PreparedBatch(batch, resolution): PreparedBatch) {
        self.preparing = false;
        for (mut delivery, envelope, prepared) in batch {
            match prepared {
                Prepared::Send { body, headers } => {
                    let body = adopt_prepared(&mut delivery, body, headers, envelope);
                    self.ready.push_back(Ready {
                        delivery,
                        body,
                        resolution: resolution.clone(),
                    });
                }
                Prepared::Filtered { reason } => {
                    self.holding_cursor.remove(&delivery.seq);
                    self.resolve_without_attempt(delivery, MessageStatus::Filtered, reason, None);
                }
                Prepared::Failed { reason } => {
                    self.holding_cursor.remove(&delivery.seq);
                    self.log("plugin_failed", Some(reason.clone()));
                    self.resolve_without_attempt(delivery, MessageStatus::Failed, reason, None);
                }
            }
        }
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

    /// `Some(reason)` when the built-in filter drops the event.
    fn filtered(&self, event: &StoredEvent) -> Option<String> {
        self.webhook.spec.filter_conditions.as_ref()?;
        let envelope = envelope::body(
            &self.tenant,
            event,
            self.webhook.spec.additional_data.as_ref(),
        );
        selection::filtered(&self.webhook.spec, &envelope)
    }

    fn write_filtered(&mut self, seq: u64, event: &StoredEvent, reason: String) {
        let mut delivery = Delivery::new(seq, &event.id, &event.event_type, now_millis());
        delivery.status = MessageStatus::Filtered;
        delivery.reason = Some(reason);
        self.outcomes.record(delivery, None);
        self.ctx.metrics.delivery_outcome("filtered");
    }

    /// A schedule whose first step is not PT0S: the first attempt waits like a retry.
    fn schedule_first(&mut self, seq: u64, event: &StoredEvent, delay: Duration) {
        let now = now_millis();
        let mut delivery = Delivery::new(seq, &event.id, &event.event_type, now);
        let due = sender::after(now, policy::jittered(delay));
        delivery.next_attempt_at = Some(due);
        self.earliest_due = None;
        self.stats.events += 1;
        self.stats_dirty = true;
        self.stats.last_event_at = Some(now);
        // Pending with a next attempt: the record is due then.
        self.outcomes.record(delivery, None);
    }

    fn give_up(&mut self, mut delivery: Delivery, reason: &str) {
        let replaces_due = delivery.next_attempt_at.take();
        delivery.status = MessageStatus::Failed;
        delivery.reason = Some(reason.to_string());
        delivery.updated_at = now_millis();
        self.outcomes.record(delivery, replaces_due);
    }

    fn launch(
        &mut self,
        delivery: Delivery,
        event: &StoredEvent,
        first: bool,
        reply: Option<oneshot::Sender<Result<Attempt, String>>>,
    ) {
        let body = match &delivery.body {
            Some(body) => Bytes::from(body.clone().into_bytes()),
            None => Bytes::from(envelope::body(
                &self.tenant,
                event,
                self.webhook.spec.additional_data.as_ref(),
            )),
        };
        let with_plugins = !self.webhook.spec.plugins.is_empty();
        // The filter and transform plugins run once per delivery (ahead of its first
        // attempt, or with it when the schedule delays it); retries reuse the stored result.
        let event = (with_plugins && delivery.needs_plugins()).then(|| event.clone());
        self.launch_with_body(delivery, body, None, event, first, reply);
    }

    /// Sends `delivery` with `body` in a task of its own, after running the filters and
    /// transforms on `unprepared_event` when given (and authenticate plugins in any case:
    /// those of `prepared_with` when its filters and transforms ran ahead, otherwise the
    /// webhook's current ones).
    fn launch_with_body(
        &mut self,
        delivery: Delivery,
        body: Bytes,
        prepared_with: Option<Resolution>,
        unprepared_event: Option<StoredEvent>,
        first: bool,
        reply: Option<oneshot::Sender<Result<Attempt, String>>>,
    ) {
        let seq = delivery.seq;
        self.in_flight.insert(seq);
        if first {
            self.holding_cursor.insert(seq);
        }
        let plugins = match prepared_with {
            Some(resolution) => Some(Ok(resolution)),
            None => (!self.webhook.spec.plugins.is_empty()).then(|| self.resolution()),
        };
        let task = Attempting {
            ctx: self.ctx.clone(),
            webhook: self.webhook.clone(),
            plugins,
            target: self.target.clone(),
            tenant: self.tenant.clone(),
        };
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let mut delivery = delivery;
            let finished = task.run(&mut delivery, unprepared_event, body).await;
            let _ = done.send(Done {
                delivery,
                first,
                finished,
                reply,
            });
        });
    }

    async fn send_now(&mut self, seq: u64, reply: oneshot::Sender<Result<Attempt, String>>) {
        if self.in_flight.contains(&seq) {
            let _ = reply.send(Err("this message is being sent right now".into()));
            return;
        }
        let delivery = match self.ctx.deliveries.delivery(&self.webhook_ref, seq).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                let _ = reply.send(Err("no such message for this webhook".into()));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
        };
        self.refresh_resolution().await;
        match self.ctx.log.event_by_seq(&self.tenant, seq).await {
            Ok(Some(event)) => self.launch(delivery, &event, false, Some(reply)),
            _ => {
                let _ = reply.send(Err("the event is no longer stored (retention)".into()));
            }
        }
    }

    /// Stores the outcome of an attempt: the delivery record, the attempt, the retry index
    /// and the rejected list change, written with the pass's other outcomes.
    async fn record(&mut self, done: Done) {
        let Done {
            mut delivery,
            first,
            finished,
            reply,
        } = done;
        let seq = delivery.seq;
        self.in_flight.remove(&seq);
        if first {
            self.holding_cursor.remove(&seq);
        }
        let sent = match finished {
            Finished::Sent(sent) => sent,
            Finished::Filtered(reason) => {
                self.resolve_without_attempt(delivery, MessageStatus::Filtered, reason, reply);
                return;
            }
            Finished::PluginFailed(reason) => {
                self.log("plugin_failed", Some(reason.clone()));
                self.resolve_without_attempt(delivery, MessageStatus::Failed, reason, reply);
                return;
            }
        };
        let now = now_millis();
        let attempt = sent.attempt;
        // Written with the other outcomes of this pass (`write_outcomes`).
        let replaces_due = delivery.next_attempt_at.take();
        delivery.runs += 1;
        delivery.step += 1;
        delivery.status_code = attempt.status_code;
        delivery.updated_at = now;
        delivery.reason = None;
        self.stats.triggers += 1;
        let mark = Mark {
            at: attempt.at,
            attempt_id: attempt.id.clone(),
        };
        let outcome = policy::classify(attempt.status_code);
        let mut newly_failing = false;
        match outcome {
            Outcome::Delivered => {
                delivery.status = MessageStatus::Delivered;
                delivery.forget_prepared();
                self.outcomes.unreject(seq);
                self.stats.success_responses += 1;
                self.stats.failures_since_last_success = 0;
                self.stats.failing_since = None;
                self.stats.last_success = Some(mark);
                self.ctx.metrics.delivery_outcome("delivered");
            }
            Outcome::Rejected | Outcome::Retryable => {
                self.stats.failure_responses += 1;
                self.stats.failures_since_last_success += 1;
                newly_failing = self.stats.failing_since.is_none();
                self.stats.failing_since.get_or_insert(now);
                self.stats.last_failure = Some(mark);
                if outcome == Outcome::Rejected {
                    delivery.status = MessageStatus::Rejected;
                    self.outcomes.reject(seq);
                    self.ctx.metrics.delivery_outcome("rejected");
                } else {
                    self.schedule_retry(&mut delivery, &sent.retry_after, now);
                }
            }
        }
        self.stats.next_trigger_at = delivery.next_attempt_at;
        if newly_failing {
            let reason = match (&attempt.status_code, &attempt.error) {
                (Some(code), _) => format!("HTTP {code} from the receiver"),
                (None, Some(error)) => error.clone(),
                (None, None) => "no response".into(),
            };
            self.log("retry_triggered", Some(reason));
        }
        if let Some(reply) = reply {
            self.replies.push((reply, attempt.clone()));
        }
        self.outcomes.attempt(seq, delivery.runs, attempt);
        self.outcomes.record(delivery, replaces_due);
        self.check_disable().await;
    }

    /// Writes the outcomes recorded since the last call, then answers the `send_now`
    /// callers among them. The statistics follow with the cursor (`write_summary`).
    async fn write_outcomes(&mut self) {
        if self.outcomes.is_empty() && self.replies.is_empty() {
            return;
        }
        self.stats_dirty = true;
        let outcomes = std::mem::take(&mut self.outcomes);
        // Due times read before this set is applied may be out of date: read them again.
        if outcomes.records.iter().any(|change| {
            change.replaces_due.is_some() || change.delivery.next_attempt_at.is_some()
        }) {
            self.earliest_due = None;
        }
        let written = self
            .ctx
            .deliveries
            .apply(&self.webhook_ref, outcomes)
            .await
            .map_err(|e| e.to_string());
        if let Err(error) = &written {
            tracing::error!(webhook = %self.webhook.id, %error, "could not record attempts");
        }
        for (reply, attempt) in self.replies.drain(..) {
            let _ = reply.send(written.clone().map(|()| attempt));
        }
    }

    /// A delivery that ends before any request: dropped by a filter plugin or failed by one.
    fn resolve_without_attempt(
        &mut self,
        mut delivery: Delivery,
        status: MessageStatus,
        reason: String,
        reply: Option<oneshot::Sender<Result<Attempt, String>>>,
    ) {
        let replaces_due = delivery.next_attempt_at.take();
        delivery.status = status;
        delivery.reason = Some(reason.clone());
        delivery.updated_at = now_millis();
        self.outcomes.record(delivery, replaces_due);
        self.ctx.metrics.delivery_outcome(match status {
            MessageStatus::Filtered => "filtered",
            _ => "failed",
        });
        if let Some(reply) = reply {
            let _ = reply.send(Err(reason));
        }
    }

    fn schedule_retry(
        &mut self,
        delivery: &mut Delivery,
        retry_after: &Option<String>,
        now: EpochMillis,
    ) {
        let retry = &self.webhook.spec.retry;
        let step = delivery.step as usize;
        if retry.mode == RetryMode::Manual || step >= retry.schedule.len() {
            delivery.status = MessageStatus::Failed;
            self.ctx.metrics.delivery_outcome("failed");
            return;
        }
        let mut delay = policy::jittered(retry.schedule[step].duration());
        if let Some(code) = delivery.status_code
            && let Some(after) = policy::retry_after(code, retry_after.as_deref(), now)
        {
            delay = delay.max(after);
        }
        let due = sender::after(now, delay);
        delivery.status = MessageStatus::Pending;
        // Pending with a next attempt: the record is due then.
        delivery.next_attempt_at = Some(due);
        self.earliest_due = None;
        self.ctx.metrics.delivery_outcome("retry_scheduled");
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

    async fn window_finished(&mut self) -> bool {
        let spec = &self.webhook.spec;
        if spec.integration_type != IntegrationType::Temporary {
            return false;
        }
        let Some((_, ends_at)) = spec.window() else {
            return false;
        };
        now_millis() > ends_at
            && self.in_flight.is_empty()
            && self.holding_cursor.is_empty()
            && self.read_pos >= self.ctx.log.durable_seq(&self.tenant).await.unwrap_or(0)
            && !self.has_pending_retry().await
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

    /// Persists the cursor when it moved. New events in flight hold it back.
    /// Every event up to it is resolved or has a record.
    fn cursor(&self) -> u64 {
        match self.holding_cursor.first() {
            Some(first) => first - 1,
            None => self.read_pos,
        }
    }

    /// Writes the statistics and the cursor if they changed: at most every `SUMMARY_EVERY`
    /// unless `now` (the worker stops, or serves a resend).
    /// The lag gauge is derived from the stored cursor when `/metrics` is read.
    async fn write_summary(&mut self, now: bool) {
        if !now && self.summary_written_at.elapsed() < SUMMARY_EVERY {
            return;
        }
        self.summary_written_at = Instant::now();
        let mut summary = OutcomeSet::default();
        if std::mem::take(&mut self.stats_dirty) {
            summary.stats(self.stats.clone());
        }
        let cursor = self.cursor();
        if cursor != self.saved_cursor {
            summary.cursor(cursor);
        }
        if summary.is_empty() {
            return;
        }
        match self.ctx.deliveries.apply(&self.webhook_ref, summary).await {
            Ok(()) => self.saved_cursor = cursor,
            Err(error) => {
                self.stats_dirty = true;
                tracing::error!(webhook = %self.webhook.id, %error, "could not record statistics and cursor");
            }
        }
    }

    /// When to look again without being told: the next due retry, the rate limit, the end
    /// of a replay window, or a periodic safety tick.
    async fn next_wake(&mut self) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(5);
        if self.stats_dirty || self.cursor() != self.saved_cursor {
            wake = wake.min(self.summary_written_at + SUMMARY_EVERY);
        }
        if let Some(due) = self.earliest_due().await {
            let wait = (due - now_millis()).max(0) as u64;
            wake = wake.min(now + Duration::from_millis(wait));
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

/// What one launched delivery needs, moved into its task.
struct Attempting {
    ctx: Arc<EngineContext>,
    webhook: Arc<Webhook>,
    /// The webhook's plugins, when it has any (`Err`: one cannot be loaded; the message
    /// fails with that reason).
    plugins: Option<Result<Resolution, String>>,
    target: Arc<Target>,
    tenant: String,
}

impl Attempting {
    /// Plugins (filter and transform when `unprepared_event` is given, authenticate on
    /// every attempt), then the request.
    async fn run(
        self,
        delivery: &mut Delivery,
        unprepared_event: Option<StoredEvent>,
        mut body: Bytes,
    ) -> Finished {
        let mut extra: Vec<(String, String)> = delivery.headers.clone();
        if let Some(resolution) = self.plugins {
            // One resolution per attempt, shared by prepare (when it runs) and authenticate.
            let resolution = match resolution {
                Ok(resolution) => resolution,
                Err(reason) => return Finished::PluginFailed(reason),
            };
            if let Some(event) = unprepared_event {
                match pipeline::prepare_resolved(
                    &self.ctx,
                    &self.tenant,
                    &resolution,
                    &event,
                    body.to_vec(),
                )
                .await
                {
                    Prepared::Filtered { reason } => return Finished::Filtered(reason),
                    Prepared::Failed { reason } => return Finished::PluginFailed(reason),
                    Prepared::Send {
                        body: transformed,
                        headers,
                    } => {
                        body = adopt_prepared(delivery, transformed, headers, body);
                        extra.clone_from(&delivery.headers);
                    }
                }
            }
            // Built only when an attached plugin's authenticate hook runs.
            let request = || {
                let outgoing = Outgoing {
                    event_id: &delivery.event_id,
                    event_type: &delivery.event_type,
                    tenant: &self.tenant,
                    body: body.clone(),
                    extra_headers: Vec::new(),
                };
                pipeline::OutgoingRequest {
                    method: self.target.method.to_string(),
                    url: self.target.url_for(&outgoing).to_string(),
                    headers: self
                        .target
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .chain(extra.iter().cloned())
                        .map(|(name, value)| pipeline::Header { name, value })
                        .collect(),
                    body: body.to_vec(),
                }
            };
            match pipeline::authenticate_resolved(&self.ctx, &resolution, request).await {
                Ok(headers) => extra.extend(headers),
                Err(reason) => return Finished::PluginFailed(reason),
            }
        }
        let extra_headers = extra
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).ok()?,
                    reqwest::header::HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect();
        let sent = self
            .target
            .send(
                &self.webhook.id,
                Outgoing {
                    event_id: &delivery.event_id,
                    event_type: &delivery.event_type,
                    tenant: &self.tenant,
                    body,
                    extra_headers,
                },
            )
            .await;
        self.ctx.metrics.attempt_latency(sent.attempt.duration_ms);
        Finished::Sent(sent)
    }
}

/// Stores what the filters and transforms decided on `delivery`, so that retries send
/// exactly the same, and returns the body to send: the transformed one, or `envelope`.
fn adopt_prepared(
    delivery: &mut Delivery,
    transformed: Option<String>,
    headers: Vec<(String, String)>,
    envelope: Bytes,
) -> Bytes {
    delivery.headers = headers;
    delivery.prepared = true;
    match transformed {
        Some(transformed) => {
            let body = Bytes::from(transformed.clone().into_bytes());
            delivery.body = Some(transformed);
            body
        }
        None => envelope,
    }
}
