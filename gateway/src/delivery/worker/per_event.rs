//! The per-event flow: one sink call per event, up to `max_in_flight` at once (one for
//! fifo webhooks), each event retried on its own through the due index.
//!
//! Taken events that are not resolved yet (being prepared, ready, in flight) hold the
//! cursor back; retries do not (their record is already durable state).
//!
//! Filter and transform plugins run ahead of the sends: new events are prepared in batches
//! by one task at a time (`pipeline::prepare_batch`), up to `max_in_flight` events ahead,
//! and wait in `ready` for a send slot. `max_in_flight` bounds calls to the destination;
//! plugin work neither takes those slots nor adds to each call's time in them, and the
//! calls of a batch run back to back, which makes each cheaper (warm caches).

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{Core, Next};
use crate::{
    context::EngineContext,
    delivery::{
        envelope::Trigger,
        policy::{self, Outcome},
        records::{Attempt, Delivery, MessageStatus, TEST_ATTEMPTS_KEPT, TEST_SEQ},
        sink::{EventSink, Outgoing, Sent},
    },
    iso::{EpochMillis, now_millis},
    model::webhook::{Ordering, RetryMode},
    pipeline::{self, Prepared, Resolution},
    storage::{StorageError, StoredEvent},
};

/// Events read ahead from the log per batch. The look-ahead holds them until room frees
/// up, so each event is read once however few slots `max_in_flight` leaves per pass.
const READ_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<Attempt, String>>;

/// A new event prepared by the plugins, waiting for a send slot.
struct Ready {
    delivery: Delivery,
    body: Bytes,
    /// The plugin versions its filters and transforms ran with: its authenticate hooks run
    /// with the same ones (one event sees one version of each plugin).
    resolution: Resolution,
}

/// What the tasks of this flow hand back.
pub(super) enum Report {
    /// A `prepare_batch` task: each delivery with its default envelope and what the
    /// plugins decided, and the resolution they ran with.
    Prepared(Vec<(Delivery, Bytes, Prepared)>, Resolution),
    /// A launched delivery ended.
    Done(Box<Done>),
}

pub(super) struct Done {
    delivery: Delivery,
    first: bool,
    finished: Finished,
    reply: Option<Reply>,
}

/// How a launched delivery ended.
enum Finished {
    /// The sink was called: an attempt to record.
    Sent(Sent),
    /// A filter plugin dropped the event for this webhook.
    Filtered(String),
    /// A plugin failed: the event fails for this webhook, nothing was sent.
    PluginFailed(String),
}

pub(super) struct PerEvent {
    sink: Arc<dyn EventSink>,
    /// When the earliest retry of this webhook is due (`Some(None)`: none is), as last
    /// read from its due keys; `None` once that may have changed. Saves two range scans of
    /// the store per pass of the loop when nothing is being retried.
    earliest_due: Option<Option<EpochMillis>>,
    /// Events after the read position already read from the log, in order.
    lookahead: VecDeque<(u64, StoredEvent)>,
    /// The seqs in `lookahead` that already have a record (read with each refill).
    recorded_ahead: BTreeSet<u64>,
    /// New events taken and not resolved yet: being prepared, ready or in flight.
    holding_cursor: BTreeSet<u64>,
    /// Deliveries being sent (first attempts, retries, resends): `max_in_flight` bounds it.
    in_flight: HashSet<u64>,
    /// New events prepared by the plugins, in log order, waiting for a send slot.
    ready: VecDeque<Ready>,
    /// A `prepare_batch` task is running (one at a time, so batches finish in order).
    preparing: bool,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
}

impl PerEvent {
    pub(super) fn new(sink: Arc<dyn EventSink>) -> PerEvent {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        PerEvent {
            sink,
            earliest_due: None,
            lookahead: VecDeque::new(),
            recorded_ahead: BTreeSet::new(),
            holding_cursor: BTreeSet::new(),
            in_flight: HashSet::new(),
            ready: VecDeque::new(),
            preparing: false,
            reports_tx,
            reports_rx,
        }
    }

    pub(super) fn set_sink(&mut self, sink: Arc<dyn EventSink>) {
        self.sink = sink;
        self.earliest_due = None;
    }

    pub(super) fn wake(&mut self) {
        // `recover` writes due keys, then wakes the worker: read them again.
        self.earliest_due = None;
    }

    pub(super) fn idle(&self) -> bool {
        self.in_flight.is_empty() && !self.preparing
    }

    pub(super) async fn drained(&mut self, core: &mut Core) -> bool {
        self.in_flight.is_empty()
            && self.holding_cursor.is_empty()
            && self.earliest_due(core).await.is_none()
    }

    /// Every event up to it is resolved or has a record; new events taken hold it back.
    pub(super) fn cursor(&self, read_pos: u64) -> u64 {
        match self.holding_cursor.first() {
            Some(first) => first - 1,
            None => read_pos,
        }
    }

    /// The next due retry, when there is one.
    pub(super) async fn next_wake(&mut self, core: &mut Core) -> Option<tokio::time::Instant> {
        let due = self.earliest_due(core).await?;
        let wait = (due - now_millis()).max(0) as u64;
        Some(tokio::time::Instant::now() + Duration::from_millis(wait))
    }

    pub(super) async fn report(&mut self) -> Report {
        match self.reports_rx.recv().await {
            Some(report) => report,
            // The flow holds a sender itself: the channel never closes.
            None => std::future::pending().await,
        }
    }

    pub(super) async fn take_reports(&mut self, core: &mut Core) {
        while let Ok(report) = self.reports_rx.try_recv() {
            self.accept(core, report).await;
        }
    }

    pub(super) async fn accept(&mut self, core: &mut Core, report: Report) {
        match report {
            Report::Done(done) => self.record(core, *done).await,
            Report::Prepared(batch, resolution) => self.accept_prepared(core, batch, resolution),
        }
    }

    fn max_in_flight(core: &Core) -> usize {
        match core.webhook.spec.ordering {
            Ordering::Fifo => 1,
            Ordering::Unordered => core.webhook.spec.max_in_flight as usize,
        }
    }

    fn room(&self, core: &Core) -> usize {
        Self::max_in_flight(core).saturating_sub(self.in_flight.len())
    }

    pub(super) async fn dispatch(&mut self, core: &mut Core) -> Result<(), StorageError> {
        core.refresh_resolution().await;
        self.dispatch_due_retries(core).await?;
        self.dispatch_new_events(core).await
    }

    /// The earliest due retry (`earliest_due`), read from the store if not known.
    async fn earliest_due(&mut self, core: &mut Core) -> Option<EpochMillis> {
        if std::mem::take(&mut core.due_changed) {
            self.earliest_due = None;
        }
        if let Some(known) = self.earliest_due {
            return known;
        }
        match core.ctx.deliveries.earliest_due(&core.webhook_ref).await {
            Ok(earliest) => {
                self.earliest_due = Some(earliest);
                earliest
            }
            Err(error) => {
                tracing::error!(webhook = %core.webhook.id, %error, "cannot read due retries");
                None
            }
        }
    }

    async fn dispatch_due_retries(&mut self, core: &mut Core) -> Result<(), StorageError> {
        if self.room(core) == 0 {
            return Ok(());
        }
        let now = now_millis();
        if self.earliest_due(core).await.is_none_or(|due| due > now) {
            return Ok(());
        }
        // What follows launches or drops due retries: read them again next time.
        self.earliest_due = None;
        let due = core
            .ctx
            .deliveries
            .due(&core.webhook_ref, now, self.room(core), &self.in_flight)
            .await?;
        for delivery in due {
            if !core.take_rate_token() {
                break;
            }
            match core.ctx.log.event_by_seq(&core.tenant, delivery.seq).await {
                Ok(Some(event)) => self.launch(core, delivery, &event, false, None),
                _ => give_up(core, delivery, "the event is no longer stored (retention)"),
            }
        }
        Ok(())
    }

    async fn dispatch_new_events(&mut self, core: &mut Core) -> Result<(), StorageError> {
        if core.webhook.spec.ordering == Ordering::Fifo && self.earliest_due(core).await.is_some() {
            return Ok(());
        }
        self.send_ready(core);
        let prepares = prepares_ahead(core);
        let mut taken = Vec::new();
        let read = self
            .take_new_events(core, prepares.is_some(), &mut taken)
            .await;
        // Taken events hold the cursor: hand them to a prepare task even if reading failed.
        if let Some(resolution) = prepares
            && !taken.is_empty()
        {
            self.start_prepare(core, taken, resolution);
        }
        read
    }

    /// Launches prepared events while `max_in_flight` and the rate limit allow.
    fn send_ready(&mut self, core: &mut Core) {
        while self.room(core) > 0 && !self.ready.is_empty() {
            if !core.take_rate_token() {
                return;
            }
            let Ready {
                delivery,
                body,
                resolution,
            } = self.ready.pop_front().expect("not empty");
            let trigger = core.trigger();
            let prepared = Some(resolution);
            self.launch_with_body(core, &trigger, delivery, body, prepared, None, true, None);
        }
    }

    /// Takes new events from the log: into `taken`, to be prepared, when `prepares`
    /// (up to `max_in_flight` ahead of the sends); otherwise launched right away while
    /// there is room, once nothing taken earlier waits to be prepared or sent.
    async fn take_new_events(
        &mut self,
        core: &mut Core,
        prepares: bool,
        taken: &mut Vec<(Delivery, StoredEvent)>,
    ) -> Result<(), StorageError> {
        let first_delay = core
            .webhook
            .spec
            .retry
            .schedule
            .first()
            .map(|d| d.duration())
            .unwrap_or_default();
        loop {
            let capacity = if prepares && !self.preparing {
                Self::max_in_flight(core).saturating_sub(self.ready.len() + taken.len())
            } else if !prepares && !self.preparing && self.ready.is_empty() {
                self.room(core)
            } else {
                0
            };
            if capacity == 0 {
                return Ok(());
            }
            if self.lookahead.is_empty() {
                self.refill_lookahead(core).await?;
                if self.lookahead.is_empty() {
                    return Ok(());
                }
            }
            let (seq, event) = self.lookahead.pop_front().expect("refilled above");
            // After a crash the saved cursor may be a little behind: events that already
            // have a record were handled (or carry their own retry) and are not new.
            if !core.takes(&event) || self.recorded_ahead.remove(&seq) {
                core.read_pos = seq;
                continue;
            }
            if let Some(reason) = core.filtered(&event) {
                core.read_pos = seq;
                resolve_without_attempt(
                    core,
                    Delivery::new(seq, &event.id, &event.event_type, now_millis()),
                    MessageStatus::Filtered,
                    reason,
                    None,
                );
                continue;
            }
            if !first_delay.is_zero() {
                core.read_pos = seq;
                self.schedule_first(core, seq, &event, first_delay);
                continue;
            }
            if !prepares && !core.take_rate_token() {
                self.lookahead.push_front((seq, event));
                return Ok(());
            }
            core.read_pos = seq;
            core.count_event();
            let delivery = Delivery::new(seq, &event.id, &event.event_type, now_millis());
            if prepares {
                self.holding_cursor.insert(seq);
                taken.push((delivery, event));
            } else {
                self.launch(core, delivery, &event, true, None);
            }
        }
    }

    /// Reads the next batch of durable events after the read position, and which of them
    /// already have a record (one range read for the batch, not one lookup per event).
    async fn refill_lookahead(&mut self, core: &Core) -> Result<(), StorageError> {
        let events = core
            .ctx
            .log
            .read_after(&core.tenant, core.read_pos, READ_BATCH)
            .await?;
        if events.is_empty() {
            return Ok(());
        }
        let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        let recorded = core
            .ctx
            .deliveries
            .recorded_among(&core.webhook_ref, &seqs)
            .await?;
        self.recorded_ahead.extend(recorded);
        self.lookahead.extend(events);
        Ok(())
    }

    /// Runs the filters and transforms of `taken` in a task of its own; the outcome comes
    /// back as a [`Report::Prepared`].
    fn start_prepare(
        &mut self,
        core: &Core,
        taken: Vec<(Delivery, StoredEvent)>,
        resolution: Resolution,
    ) {
        self.preparing = true;
        let ctx = core.ctx.clone();
        let tenant = core.tenant.clone();
        let webhook = core.webhook.clone();
        let reports = self.reports_tx.clone();
        let (last_success_at, last_failure_at) = core.last_outcomes();
        tokio::spawn(async move {
            let additional_data = webhook.spec.additional_data.as_ref();
            let trigger = Trigger::now(&webhook, last_success_at, last_failure_at);
            let envelopes: Vec<Bytes> = taken
                .iter()
                .map(|(_, event)| {
                    Bytes::from(crate::delivery::envelope::body(
                        &tenant,
                        event,
                        Some(&trigger),
                        additional_data,
                    ))
                })
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
            let _ = reports.send(Report::Prepared(batch, resolution));
        });
    }

    /// Files what a prepare task decided: filtered and failed events are resolved, the
    /// others wait in `ready`.
    fn accept_prepared(
        &mut self,
        core: &mut Core,
        batch: Vec<(Delivery, Bytes, Prepared)>,
        resolution: Resolution,
    ) {
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
                    resolve_without_attempt(core, delivery, MessageStatus::Filtered, reason, None);
                }
                Prepared::Failed { reason } => {
                    self.holding_cursor.remove(&delivery.seq);
                    core.log("plugin_failed", Some(reason.clone()));
                    resolve_without_attempt(core, delivery, MessageStatus::Failed, reason, None);
                }
            }
        }
    }

    /// A schedule whose first step is not PT0S: the first attempt waits like a retry.
    fn schedule_first(&mut self, core: &mut Core, seq: u64, event: &StoredEvent, delay: Duration) {
        let now = now_millis();
        let mut delivery = Delivery::new(seq, &event.id, &event.event_type, now);
        delivery.next_attempt_at = Some(policy::after(now, policy::jittered(delay)));
        self.earliest_due = None;
        core.count_event();
        // Pending with a next attempt: the record is due then.
        core.outcomes.record(delivery, None);
    }

    fn launch(
        &mut self,
        core: &Core,
        delivery: Delivery,
        event: &StoredEvent,
        first: bool,
        reply: Option<Reply>,
    ) {
        // One trigger for the body and the JWT, so both show the same `triggered_at`.
        let trigger = core.trigger();
        let body = match &delivery.body {
            Some(body) => Bytes::from(body.clone().into_bytes()),
            None => Bytes::from(core.envelope_with(event, &trigger)),
        };
        // The filter and transform plugins run once per delivery (ahead of its first
        // attempt, or with it when the schedule delays it); retries reuse the stored result.
        let event = (core.has_plugins() && delivery.needs_plugins()).then(|| event.clone());
        self.launch_with_body(core, &trigger, delivery, body, None, event, first, reply);
    }

    /// Sends `delivery` with `body` in a task of its own, after running the filters and
    /// transforms on `unprepared_event` when given (and authenticate plugins in any case:
    /// those of `prepared_with` when its filters and transforms ran ahead, otherwise the
    /// webhook's current ones).
    #[allow(clippy::too_many_arguments)]
    fn launch_with_body(
        &mut self,
        core: &Core,
        trigger: &Trigger<'_>,
        delivery: Delivery,
        body: Bytes,
        prepared_with: Option<Resolution>,
        unprepared_event: Option<StoredEvent>,
        first: bool,
        reply: Option<Reply>,
    ) {
        let seq = delivery.seq;
        self.in_flight.insert(seq);
        if first {
            self.holding_cursor.insert(seq);
        }
        let plugins = match prepared_with {
            Some(resolution) => Some(Ok(resolution)),
            None => core.has_plugins().then(|| core.resolution()),
        };
        let task = Attempting {
            ctx: core.ctx.clone(),
            webhook_id: core.webhook.id.clone(),
            jwt_claims: core.jwt_claims(&delivery.event_type, trigger),
            plugins,
            sink: self.sink.clone(),
            tenant: core.tenant.clone(),
        };
        let reports = self.reports_tx.clone();
        tokio::spawn(async move {
            let mut delivery = delivery;
            let finished = task.run(&mut delivery, unprepared_event, body).await;
            let _ = reports.send(Report::Done(Box::new(Done {
                delivery,
                first,
                finished,
                reply,
            })));
        });
    }

    pub(super) async fn send_now(&mut self, core: &mut Core, seq: u64, reply: Reply) {
        self.earliest_due = None;
        if self.in_flight.contains(&seq) {
            let _ = reply.send(Err("this message is being sent right now".into()));
            return;
        }
        let delivery = match core.ctx.deliveries.delivery(&core.webhook_ref, seq).await {
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
        core.refresh_resolution().await;
        match core.ctx.log.event_by_seq(&core.tenant, seq).await {
            // A resend follows the webhook's current filter: what it excludes is not sent
            // by hand either (change the filter first to send it).
            Ok(Some(event)) => match core.filtered(&event) {
                Some(reason) => {
                    let _ = reply.send(Err(format!(
                        "not sent: the webhook's filter_conditions exclude this event ({reason})"
                    )));
                }
                None => self.launch(core, delivery, &event, false, Some(reply)),
            },
            _ => {
                let _ = reply.send(Err("the event is no longer stored (retention)".into()));
            }
        }
    }

    /// Trigger Now (CloudBlue): a `hookgate.test` event, in no log, sent as the webhook
    /// sends any event (its filter, transform and authenticate plugins, its signature) and
    /// counted in its statistics, but with no message record and no retry (see
    /// [`Self::record_test`]).
    pub(super) async fn trigger(&mut self, core: &mut Core, reply: Reply) {
        if self.in_flight.contains(&TEST_SEQ) {
            let _ = reply.send(Err("a test is being sent right now".into()));
            return;
        }
        core.refresh_resolution().await;
        let event = test_event();
        let delivery = Delivery::new(TEST_SEQ, &event.id, &event.event_type, now_millis());
        core.count_event();
        self.launch(core, delivery, &event, false, Some(reply));
    }

    /// What a test's attempt leaves: the statistics and the attempt (so the statistics'
    /// marks lead to it), written before the caller is answered.
    fn record_test(core: &mut Core, finished: Finished, reply: Option<Reply>) {
        let answer = |reply: Option<Reply>, result| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        let sent = match finished {
            Finished::Sent(sent) => sent,
            Finished::Filtered(reason) => {
                return answer(reply, Err(format!("not sent: {reason}")));
            }
            Finished::PluginFailed(reason) => {
                core.log("plugin_failed", Some(reason.clone()));
                return answer(reply, Err(reason));
            }
        };
        let delivered = policy::classify(sent.attempt.status_code) == Outcome::Delivered;
        core.count_attempt(&sent, delivered);
        let slot = (core.stats.triggers % TEST_ATTEMPTS_KEPT) as u32;
        core.outcomes.attempt(TEST_SEQ, slot, sent.attempt.clone());
        core.outcomes.stats(core.stats.clone());
        if let Some(reply) = reply {
            core.replies.push((reply, sent.attempt));
        }
    }

    /// Stores the outcome of an attempt: the delivery record, the attempt, the retry index
    /// and the rejected list change, written with the pass's other outcomes.
    async fn record(&mut self, core: &mut Core, done: Done) {
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
        if seq == TEST_SEQ {
            return Self::record_test(core, finished, reply);
        }
        let sent = match finished {
            Finished::Sent(sent) => sent,
            Finished::Filtered(reason) => {
                resolve_without_attempt(core, delivery, MessageStatus::Filtered, reason, reply);
                return;
            }
            Finished::PluginFailed(reason) => {
                core.log("plugin_failed", Some(reason.clone()));
                resolve_without_attempt(core, delivery, MessageStatus::Failed, reason, reply);
                return;
            }
        };
        let now = now_millis();
        // Written with the other outcomes of this pass (`write_outcomes`).
        let replaces_due = delivery.next_attempt_at.take();
        delivery.runs += 1;
        delivery.step += 1;
        delivery.status_code = sent.attempt.status_code;
        delivery.updated_at = now;
        delivery.reason = None;
        let outcome = policy::classify(sent.attempt.status_code);
        core.count_attempt(&sent, outcome == Outcome::Delivered);
        match outcome {
            Outcome::Delivered => {
                delivery.status = MessageStatus::Delivered;
                delivery.forget_prepared();
                core.outcomes.unreject(seq);
            }
            Outcome::Rejected => {
                delivery.status = MessageStatus::Rejected;
                core.outcomes.reject(seq);
                core.ctx.metrics.delivery_outcome("rejected");
            }
            Outcome::Retryable => self.schedule_retry(core, &mut delivery, &sent.retry_after, now),
        }
        let next = match delivery.status {
            MessageStatus::Delivered => None,
            MessageStatus::Rejected => Some(Next::Rejected),
            MessageStatus::Pending => Some(Next::Retry),
            _ => Some(Next::GivenUp),
        };
        if let Some(next) = next {
            core.log_failed_attempt(&sent, next);
        }
        core.stats.next_trigger_at = delivery.next_attempt_at;
        let attempt = sent.attempt;
        if let Some(reply) = reply {
            core.replies.push((reply, attempt.clone()));
        }
        core.outcomes.attempt(seq, delivery.runs, attempt);
        core.outcomes.record(delivery, replaces_due);
        core.check_disable().await;
    }

    fn schedule_retry(
        &mut self,
        core: &Core,
        delivery: &mut Delivery,
        retry_after: &Option<String>,
        now: EpochMillis,
    ) {
        let retry = &core.webhook.spec.retry;
        let step = delivery.step as usize;
        if retry.mode == RetryMode::Manual || step >= retry.schedule.len() {
            delivery.status = MessageStatus::Failed;
            core.ctx.metrics.delivery_outcome("failed");
            return;
        }
        let mut delay = policy::jittered(retry.schedule[step].duration());
        if let Some(code) = delivery.status_code
            && let Some(after) = policy::retry_after(code, retry_after.as_deref(), now)
        {
            delay = delay.max(after);
        }
        delivery.status = MessageStatus::Pending;
        // Pending with a next attempt: the record is due then.
        delivery.next_attempt_at = Some(policy::after(now, delay));
        self.earliest_due = None;
        core.ctx.metrics.delivery_outcome("retry_scheduled");
    }
}

/// Trigger Now's event.
fn test_event() -> StoredEvent {
    let now = now_millis();
    StoredEvent {
        id: crate::ids::generate("evt"),
        event_type: "hookgate.test".into(),
        published_at: now,
        received_at: now,
        payload: serde_json::value::RawValue::from_string(
            r#"{"test":true,"message":"a test event sent by POST /webhooks/{id}/test"}"#.into(),
        )
        .expect("valid JSON"),
    }
}

/// The webhook's plugins when a filter or transform of theirs runs: new events are then
/// prepared ahead of their sends. `None` also when they cannot be resolved: each attempt
/// then fails with the reason.
fn prepares_ahead(core: &Core) -> Option<Resolution> {
    if !core.has_plugins() {
        return None;
    }
    core.resolution().ok().filter(Resolution::prepares)
}

/// A delivery that ends before any call: dropped by a filter or failed by a plugin.
fn resolve_without_attempt(
    core: &mut Core,
    mut delivery: Delivery,
    status: MessageStatus,
    reason: String,
    reply: Option<Reply>,
) {
    let replaces_due = delivery.next_attempt_at.take();
    delivery.status = status;
    delivery.reason = Some(reason.clone());
    delivery.updated_at = now_millis();
    core.outcomes.record(delivery, replaces_due);
    core.ctx.metrics.delivery_outcome(match status {
        MessageStatus::Filtered => "filtered",
        _ => "failed",
    });
    if let Some(reply) = reply {
        let _ = reply.send(Err(reason));
    }
}

fn give_up(core: &mut Core, mut delivery: Delivery, reason: &str) {
    let replaces_due = delivery.next_attempt_at.take();
    delivery.status = MessageStatus::Failed;
    delivery.reason = Some(reason.to_string());
    delivery.updated_at = now_millis();
    core.outcomes.record(delivery, replaces_due);
}

/// What one launched delivery needs, moved into its task.
struct Attempting {
    ctx: Arc<EngineContext>,
    webhook_id: String,
    /// What the JWT carries besides its own claims, when the webhook signs with one.
    jwt_claims: Option<serde_json::Value>,
    /// The webhook's plugins, when it has any (`Err`: one cannot be loaded; the message
    /// fails with that reason).
    plugins: Option<Result<Resolution, String>>,
    sink: Arc<dyn EventSink>,
    tenant: String,
}

impl Attempting {
    /// Plugins (filter and transform when `unprepared_event` is given, authenticate on
    /// every attempt), then the call.
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
                match pipeline::prepare(&self.ctx, &self.tenant, &resolution, &event, body.to_vec())
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
                let preview = self.sink.preview(&Outgoing {
                    event_id: &delivery.event_id,
                    event_type: &delivery.event_type,
                    tenant: &self.tenant,
                    body: body.clone(),
                    extra_headers: extra.clone(),
                    claims: None,
                });
                pipeline::OutgoingRequest {
                    method: preview.method,
                    url: preview.url,
                    headers: preview
                        .headers
                        .into_iter()
                        .map(|(name, value)| pipeline::Header { name, value })
                        .collect(),
                    body: body.to_vec(),
                }
            };
            match pipeline::authenticate(&self.ctx, &resolution, request).await {
                Ok(headers) => extra.extend(headers),
                Err(reason) => return Finished::PluginFailed(reason),
            }
        }
        let sent = self
            .sink
            .send(
                &self.webhook_id,
                Outgoing {
                    event_id: &delivery.event_id,
                    event_type: &delivery.event_type,
                    tenant: &self.tenant,
                    body,
                    extra_headers: extra,
                    claims: self.jwt_claims,
                },
            )
            .await;
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
