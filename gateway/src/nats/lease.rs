//! Leases and fences on JetStream: the ground ownership is built on. A lease is the last
//! message on its subject (`hg.st.lease.<shard>`, in the `HG_STATE` stream); its stream
//! sequence is the fencing token. Taking a lease is a compare-and-set on that subject (an
//! expected last subject sequence), and a writer that holds one attaches a [`Fence`] to
//! its outcome sets: the stream refuses the whole batch once someone else took the lease,
//! so a node that lost it (crash, hang, partition) can no longer write what it owned.

use async_nats::{HeaderMap, jetstream::context::PublishErrorKind};

use super::{Nats, unavailable};
use crate::storage::StorageResult;

/// The header that makes the expected last sequence apply to another subject than the
/// message's own: the lease's.
pub const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";

/// What a lease holder's writes must carry: they are stored only while the lease subject
/// still ends at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub subject: String,
    pub seq: u64,
}

impl Fence {
    /// The headers that fence one message.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            self.seq.to_string().as_str(),
        );
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
            self.subject.as_str(),
        );
        headers
    }
}

/// The holder of a lease given back. Not empty: batched direct gets take an empty
/// message for the end of the batch.
pub const FREE: &str = "-";

/// The lease subject of one shard of webhooks.
pub fn subject(shard: u32) -> String {
    format!("hg.st.lease.{shard}")
}

/// Takes the lease on `subject` for `holder`, if its last message is still the one at
/// `expected` (0: there is none yet). `None` when someone else moved it first.
pub async fn take(
    nats: &Nats,
    subject: &str,
    holder: &str,
    expected: u64,
) -> StorageResult<Option<Fence>> {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        expected.to_string().as_str(),
    );
    let ack = nats
        .jetstream
        .publish_with_headers(subject.to_string(), headers, holder.to_string().into())
        .await
        .map_err(unavailable)?
        .await;
    match ack {
        Ok(ack) => Ok(Some(Fence {
            subject: subject.to_string(),
            seq: ack.sequence,
        })),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}
