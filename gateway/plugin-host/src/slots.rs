//! Sandbox slots shared fairly between tenants.
//!
//! Every call holds a slot (a pool instance and, off the async workers, a blocking thread)
//! for up to the call timeout. With one first-come queue, a tenant whose plugins sleep or
//! loop could fill every slot and keep another tenant's calls waiting for many timeouts.
//! Two rules prevent that:
//!
//! 1. **A cap per tenant.** A tenant holds at most `per_tenant` slots at once; its further
//!    calls wait even while slots are free. With the defaults (64 slots, 16 per tenant)
//!    three tenants saturating their share still leave a quarter of the slots free, so any
//!    other tenant starts at once.
//! 2. **Fewest-held first.** A freed slot goes to the waiting tenant that holds the fewest
//!    (oldest waiter first among equals), never simply to the longest queue. However many
//!    tenants are hostile, a newcomer waits for at most one slot to free up, and every
//!    slot is freed within one call timeout.
//!
//! Invariant: while a slot is free, no waiter is eligible for it (one below its cap):
//! every release hands its slot straight to an eligible waiter if there is one. So a
//! caller may take a free slot whenever it is below its own cap without jumping a queue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub(crate) struct FairSlots {
    state: Mutex<State>,
    per_tenant: usize,
}

struct State {
    free: usize,
    /// Slots held per tenant; tenants holding none are removed.
    held: HashMap<Arc<str>, usize>,
    /// Waiting calls per tenant, oldest first, with their arrival number.
    waiting: HashMap<Arc<str>, VecDeque<(u64, oneshot::Sender<SlotPermit>)>>,
    arrivals: u64,
    closed: bool,
}

/// One slot, given back when dropped.
pub(crate) struct SlotPermit {
    /// `None` once released by other means (see `FairSlots::release`).
    slots: Option<Arc<FairSlots>>,
    tenant: Arc<str>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release(&self.tenant);
        }
    }
}

impl FairSlots {
    pub(crate) fn new(total: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(FairSlots {
            state: Mutex::new(State {
                free: total.max(1),
                held: HashMap::new(),
                waiting: HashMap::new(),
                arrivals: 0,
                closed: false,
            }),
            per_tenant: per_tenant.clamp(1, total.max(1)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters and queues, consistent after every statement that
        // could panic (none do); a poisoned lock still holds usable state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `tenant` now, or `None` when none is free or the tenant holds its cap.
    pub(crate) fn try_acquire(self: &Arc<Self>, tenant: &str) -> Option<SlotPermit> {
        let mut state = self.lock();
        let tenant = state.key(tenant);
        self.take(&mut state, &tenant).then(|| self.permit(tenant))
    }

    /// A slot for `tenant`, waiting for one under the rules above. `None` once the
    /// runtime is shutting down.
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: &str) -> Option<SlotPermit> {
        let receiver = {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            let tenant = state.key(tenant);
            if self.take(&mut state, &tenant) {
                return Some(self.permit(tenant));
            }
            let (sender, receiver) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state
                .waiting
                .entry(tenant)
                .or_default()
                .push_back((arrival, sender));
            receiver
        };
        // A dropped waiter (its task was cancelled) is skipped at hand-over time; a permit
        // sent to it just as it was dropped is released by the permit's own drop.
        receiver.await.ok()
    }

    /// Wakes every waiter with `None` and refuses new ones.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiting.clear();
    }

    /// Slots `tenant` holds now (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn held_by(&self, tenant: &str) -> usize {
        self.lock().held.get(tenant).copied().unwrap_or(0)
    }

    fn take(&self, state: &mut State, tenant: &Arc<str>) -> bool {
        let held = state.held.get(tenant).copied().unwrap_or(0);
        if state.free == 0 || held >= self.per_tenant {
            return false;
        }
        state.free -= 1;
        *state.held.entry(tenant.clone()).or_insert(0) += 1;
        true
    }

    fn permit(self: &Arc<Self>, tenant: Arc<str>) -> SlotPermit {
        SlotPermit {
            slots: Some(self.clone()),
            tenant,
        }
    }

    fn release(self: &Arc<Self>, tenant: &str) {
        let mut tenant: Arc<str> = tenant.into();
        loop {
            let handed = {
                let mut state = self.lock();
                if let Some(held) = state.held.get_mut(&tenant) {
                    *held -= 1;
                    if *held == 0 {
                        state.held.remove(&tenant);
                    }
                }
                state.free += 1;
                self.next_waiter(&mut state)
            };
            let Some((next, sender)) = handed else {
                return;
            };
            // Sent outside the lock. A waiter cancelled meanwhile gives the slot back: it
            // is released here, without the permit's drop releasing it a second time.
            match sender.send(self.permit(next)) {
                Ok(()) => return,
                Err(mut unclaimed) => {
                    unclaimed.slots = None;
                    tenant = unclaimed.tenant.clone();
                }
            }
        }
    }

    /// Picks the waiter that gets a free slot, if any is eligible, and takes the slot for
    /// it.
    fn next_waiter(&self, state: &mut State) -> Option<(Arc<str>, oneshot::Sender<SlotPermit>)> {
        while state.free > 0 {
            state.waiting.retain(|_, queue| {
                queue.retain(|(_, sender)| !sender.is_closed());
                !queue.is_empty()
            });
            let chosen = state
                .waiting
                .iter()
                .map(|(tenant, queue)| {
                    let held = state.held.get(tenant).copied().unwrap_or(0);
                    (held, queue.front().map_or(u64::MAX, |(a, _)| *a), tenant)
                })
                .filter(|(held, _, _)| *held < self.per_tenant)
                .min_by_key(|(held, arrival, _)| (*held, *arrival))
                .map(|(_, _, tenant)| tenant.clone())?;
            let queue = state.waiting.get_mut(&chosen)?;
            let (_, sender) = queue.pop_front()?;
            if queue.is_empty() {
                state.waiting.remove(&chosen);
            }
            if sender.is_closed() {
                continue;
            }
            state.free -= 1;
            *state.held.entry(chosen.clone()).or_insert(0) += 1;
            return Some((chosen, sender));
        }
        None
    }
}

impl State {
    /// The shared name of `tenant` if it holds or waits, else a new one.
    fn key(&self, tenant: &str) -> Arc<str> {
        if let Some((key, _)) = self.held.get_key_value(tenant) {
            return key.clone();
        }
        if let Some((key, _)) = self.waiting.get_key_value(tenant) {
            return key.clone();
        }
        Arc::from(tenant)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_tenant_never_holds_more_than_its_cap() {
        let slots = FairSlots::new(4, 2);
        let a1 = slots.try_acquire("a").unwrap();
        let _a2 = slots.try_acquire("a").unwrap();
        assert!(slots.try_acquire("a").is_none(), "a is at its cap");
        let _b1 = slots.try_acquire("b").expect("b is not");
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("a").await.map(|p| p.tenant.clone()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a waits while a slot is free");
        drop(a1);
        assert_eq!(waiting.await.unwrap().as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_tenant_holding_fewest() {
        let slots = FairSlots::new(2, 2);
        let a1 = slots.try_acquire("a").unwrap();
        let _a2 = slots.try_acquire("a").unwrap();
        // Three more calls of `a` queue first, then one of `b`.
        let mut queued = Vec::new();
        for tenant in ["a", "a", "a", "b"] {
            let slots = slots.clone();
            queued.push(tokio::spawn(async move {
                slots.acquire(tenant).await.map(|p| {
                    let t = p.tenant.clone();
                    std::mem::forget(p);
                    t
                })
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(a1);
        let b = queued.pop().unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), b)
                .await
                .expect("b got the freed slot")
                .unwrap()
                .as_deref(),
            Some("b")
        );
        assert!(queued.iter().all(|q| !q.is_finished()));
        assert_eq!(slots.held_by("b"), 1);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_keep_a_slot() {
        let slots = FairSlots::new(1, 1);
        let held = slots.try_acquire("a").unwrap();
        let cancelled = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        assert!(slots.try_acquire("c").is_some(), "the slot came back");
    }

    #[tokio::test]
    async fn close_wakes_waiters() {
        let slots = FairSlots::new(1, 1);
        let _held = slots.try_acquire("a").unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await.is_none() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        slots.close();
        assert!(waiting.await.unwrap());
    }
}
