//! Ownership across nodes: webhooks are hashed into [`SHARDS`] shards, and each shard has
//! one owner node at a time, holding its lease (`nats::lease`, on `hg.st.lease.<shard>`).
//!
//! - Liveness: every node publishes a heartbeat on `hg.st.node.<node>` every
//!   [`HEARTBEAT_EVERY`]; a node is live while its last heartbeat is younger than
//!   [`TAKEOVER_AFTER`] (by the stream's own timestamps, so the nodes' clocks need only
//!   agree roughly with the servers'). Heartbeats do not touch lease subjects, so an
//!   owner's fenced writes keep passing.
//! - Balance: every round, each node aims for `ceil(SHARDS / live nodes)` shards: it takes
//!   free shards and ones whose owner is not live (compare-and-set on the lease subject),
//!   and hands back what it holds above its share: a shard with webhooks leased drains
//!   first (its leases report lost, so its workers stop after what is in flight and
//!   record it under the still valid fence), and is freed in a later round once none is
//!   left; the node that takes it starts those webhooks.
//! - Loss: a shard whose lease subject moved past this node's lease was taken over; the
//!   leases granted under it report lost, so their workers stop, and the node's fence
//!   for it is gone, so a write it still attempts is refused by the stream.
//!
//! Within the node, a webhook has one lease at a time, as with `LocalOwnership`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{
    Nats,
    delivery_state::STATE_STREAM,
    direct,
    lease::{self, Fence},
    unavailable,
};
use crate::storage::{Lease, Ownership, StorageResult, ValidUntil, WebhookRef};

/// Shards webhooks are spread over: enough for an even split over a few nodes, few
/// enough that a balance round reads every lease in one request.
pub const SHARDS: u32 = 64;
/// How often a node says it is alive, and balances.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A node silent for this long is taken to be gone: its shards are taken over.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(10);
/// How long after a round's start this node's leases stay valid without another
/// successful round: well inside [`TAKEOVER_AFTER`], so a node that was paused or cut off
/// stops acting on its leases before another node may take them over.
pub const LEASE_VALID_FOR: Duration = Duration::from_secs(7);

/// The shard of a webhook: a hash that every node and every version computes alike.
pub fn shard_of(webhook: &WebhookRef) -> u32 {
    let digest = Sha256::digest(format!("{}\0{}", webhook.tenant, webhook.webhook));
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % SHARDS
}

/// A webhook lease's fencing token: the shard lease's stream sequence (which grows across
/// nodes) above this node's grant count (which grows within it).
pub fn lease_token(shard_seq: u64, grants: u64) -> u64 {
    (shard_seq << GRANT_BITS) | (grants & ((1 << GRANT_BITS) - 1))
}

const GRANT_BITS: u32 = 20;

/// The fence a webhook lease's writes carry: the shard lease the token was granted under.
pub fn shard_fence(webhook: &WebhookRef, token: u64) -> Fence {
    Fence {
        subject: lease::subject(shard_of(webhook)),
        seq: token >> GRANT_BITS,
    }
}

fn node_subject(node: &str) -> String {
    format!("hg.st.node.{}", super::subjects::token(node))
}

/// A shard this node holds: its fence, and the signal its leases watch.
struct HeldShard {
    fence: Fence,
    lost: watch::Sender<bool>,
    /// Being handed back: its leases were told they are lost, no new one is granted, and
    /// the shard is freed once its workers have stopped.
    draining: bool,
}

#[derive(Default)]
struct Held {
    shards: HashMap<u32, HeldShard>,
    /// Webhooks leased now on this node.
    webhooks: HashSet<WebhookRef>,
    grants: u64,
}

pub struct NatsOwnership {
    nats: Arc<Nats>,
    node: String,
    held: Arc<Mutex<Held>>,
    released: Arc<Notify>,
    /// Moves when this node gains shards (or its leases are valid again after lapsing).
    gained: watch::Sender<u64>,
    /// Until when this node's leases are valid: moved forward by each round whose
    /// heartbeat was stored.
    valid_until: ValidUntil,
}

/// Gives a webhook's lease back when dropped.
struct Release {
    held: Arc<Mutex<Held>>,
    released: Arc<Notify>,
    webhook: WebhookRef,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.held
            .lock()
            .expect("leases")
            .webhooks
            .remove(&self.webhook);
        self.released.notify_waiters();
    }
}

impl NatsOwnership {
    /// Joins the cluster as `node`: says it is alive, takes its share of the shards, and
    /// keeps doing both in the background for as long as the ownership lives.
    pub async fn start(nats: Arc<Nats>, node: &str) -> StorageResult<Arc<NatsOwnership>> {
        let ownership = Arc::new(NatsOwnership {
            nats,
            node: node.to_string(),
            held: Arc::default(),
            released: Arc::default(),
            gained: watch::channel(0).0,
            valid_until: Arc::new(Mutex::new(Instant::now())),
        });
        // A cluster that is starting or electing answers nothing for a moment.
        super::patiently("the shard leases", || ownership.round()).await?;
        let weak = Arc::downgrade(&ownership);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let Some(ownership) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = ownership.round().await {
                    tracing::warn!(%error, "ownership round failed; trying again");
                }
            }
        });
        Ok(ownership)
    }

    /// Whether this node holds the shard `webhook` is in (and is not handing it back).
    pub fn holds(&self, webhook: &WebhookRef) -> bool {
        let held = self.held.lock().expect("leases");
        held.shards
            .get(&shard_of(webhook))
            .is_some_and(|shard| !shard.draining)
    }

    /// This node's name in the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node that holds the shard `webhook` is in, as the lease subject says now;
    /// `None` while no node does (given back, or never taken).
    pub async fn holder_of(&self, webhook: &WebhookRef) -> StorageResult<Option<String>> {
        if self.holds(webhook) {
            return Ok(Some(self.node.clone()));
        }
        let subject = lease::subject(shard_of(webhook));
        let last = direct::last_of_each(&self.nats.jetstream, STATE_STREAM, vec![subject]).await?;
        Ok(last
            .first()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .filter(|holder| !holder.is_empty() && holder != lease::FREE))
    }

    /// The shards this node holds now.
    pub fn shards(&self) -> Vec<u32> {
        let mut shards: Vec<u32> = self
            .held
            .lock()
            .expect("leases")
            .shards
            .keys()
            .copied()
            .collect();
        shards.sort_unstable();
        shards
    }

    /// One heartbeat and one balance round.
    async fn round(&self) -> StorageResult<()> {
        let started = Instant::now();
        self.nats
            .jetstream
            .publish(node_subject(&self.node), self.node.clone().into())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        let js = &self.nats.jetstream;
        let beats = direct::last_of_each(js, STATE_STREAM, vec!["hg.st.node.*".into()]).await?;
        let newest = beats.iter().map(|b| b.time).max();
        let live: HashSet<String> = beats
            .iter()
            .filter(|beat| {
                // Against the newest heartbeat (ours, just written): the servers' clock.
                newest.is_some_and(|newest| {
                    (newest - beat.time).whole_milliseconds() < TAKEOVER_AFTER.as_millis() as i128
                })
            })
            .map(|beat| String::from_utf8_lossy(&beat.payload).into_owned())
            .collect();
        let share = SHARDS.div_ceil(live.len().max(1) as u32) as usize;
        let subjects = (0..SHARDS).map(lease::subject).collect();
        let leases: HashMap<String, (u64, String)> =
            direct::last_of_each(js, STATE_STREAM, subjects)
                .await?
                .into_iter()
                .map(|m| {
                    let holder = String::from_utf8_lossy(&m.payload).into_owned();
                    (m.subject.to_string(), (m.sequence, holder))
                })
                .collect();
        // Lost: a shard whose lease subject moved on without us.
        {
            let mut held = self.held.lock().expect("leases");
            held.shards.retain(|shard, mine| {
                let current = leases.get(&lease::subject(*shard));
                let still = current.is_some_and(|(seq, _)| *seq == mine.fence.seq);
                if !still {
                    tracing::warn!(shard, "lost the shard's lease");
                    let _ = mine.lost.send(true);
                }
                still
            });
        }
        // No other node takes a shard over before TAKEOVER_AFTER from this heartbeat, so
        // the shards still held are valid for LEASE_VALID_FOR from it. Extended only now,
        // after the lost ones were dropped: a node waking from a pause (SIGSTOP) must not
        // let its workers send, on leases that lapsed and were taken over meanwhile, in
        // the moment between its heartbeat and the lease check (seen: 2 events sent again
        // after SIGCONT).
        let lapsed = {
            let mut until = self.valid_until.lock().expect("validity");
            let lapsed = Instant::now() >= *until;
            *until = started + LEASE_VALID_FOR;
            lapsed
        };
        let mut mine = self.held.lock().expect("leases").shards.len();
        for shard in 0..SHARDS {
            let subject = lease::subject(shard);
            let (seq, holder) = leases.get(&subject).cloned().unwrap_or_default();
            if self
                .held
                .lock()
                .expect("leases")
                .shards
                .contains_key(&shard)
            {
                continue;
            }
            // Held under this node's name but not by this process: a restart. Taken again
            // (with a new fence) like a free one.
            let free = holder.is_empty()
                || holder == lease::FREE
                || holder == self.node
                || !live.contains(&holder);
            if !free || mine >= share {
                continue;
            }
            if let Some(fence) = lease::take(&self.nats, &subject, &self.node, seq).await? {
                tracing::info!(shard, fence = fence.seq, "took the shard");
                let (lost, _) = watch::channel(false);
                let held = HeldShard {
                    fence,
                    lost,
                    draining: false,
                };
                self.held.lock().expect("leases").shards.insert(shard, held);
                mine += 1;
                self.gained.send_modify(|n| *n += 1);
            }
        }
        // Above the share (a node joined): drain the surplus, idle shards first, and free
        // the drained shards whose workers have all stopped. Marking and checking under
        // one lock: no lease is granted on a shard between the two.
        let to_free: Vec<(u32, Fence)> = {
            let mut held = self.held.lock().expect("leases");
            let busy: HashSet<u32> = held.webhooks.iter().map(shard_of).collect();
            let mut active: Vec<u32> = held
                .shards
                .iter()
                .filter(|(_, h)| !h.draining)
                .map(|(shard, _)| *shard)
                .collect();
            active.sort_by_key(|shard| (busy.contains(shard), *shard));
            let surplus = active.len().saturating_sub(share);
            for shard in active.into_iter().take(surplus) {
                let mine = held.shards.get_mut(&shard).expect("held");
                mine.draining = true;
                let _ = mine.lost.send(true);
                tracing::info!(shard, "handing the shard back");
            }
            held.shards
                .iter()
                .filter(|(shard, h)| h.draining && !busy.contains(shard))
                .map(|(shard, h)| (*shard, h.fence.clone()))
                .collect()
        };
        if lapsed && !self.held.lock().expect("leases").shards.is_empty() {
            // Workers stopped while the leases had lapsed: those still held start again.
            self.gained.send_modify(|n| *n += 1);
        }
        for (shard, fence) in to_free {
            // The compare-and-set keeps a shard someone took meanwhile theirs; either way
            // it is no longer this node's.
            lease::take(&self.nats, &fence.subject, lease::FREE, fence.seq).await?;
            self.held.lock().expect("leases").shards.remove(&shard);
        }
        Ok(())
    }
}

#[async_trait]
impl Ownership for NatsOwnership {
    async fn claim(&self, webhook: &WebhookRef) -> StorageResult<Option<Lease>> {
        loop {
            let released = self.released.notified();
            {
                let mut held = self.held.lock().expect("leases");
                let Some(shard) = held
                    .shards
                    .get(&shard_of(webhook))
                    .filter(|shard| !shard.draining)
                else {
                    return Ok(None);
                };
                let lost = shard.lost.subscribe();
                let shard_seq = shard.fence.seq;
                if !held.webhooks.contains(webhook) {
                    held.grants += 1;
                    let token = lease_token(shard_seq, held.grants);
                    held.webhooks.insert(webhook.clone());
                    let release = Release {
                        held: self.held.clone(),
                        released: self.released.clone(),
                        webhook: webhook.clone(),
                    };
                    let lease = Lease::new(webhook.clone(), token, lost, release);
                    return Ok(Some(lease.expiring(self.valid_until.clone())));
                }
            }
            released.await;
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.gained.subscribe()
    }
}
