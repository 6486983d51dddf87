//! Reads through JetStream's direct get (any replica answers, batched): what the event log
//! and the delivery state share.
//!
//! When a batched direct get fails (other than "no messages"), the read is made again
//! through the stream's leader, one message per request. Seen after a server was killed
//! under load: replicas answered batched direct gets with a reply jetstream-extra takes
//! for "batch get not supported by server", for minutes, while the leader answered; the
//! workers' reads then failed until the test gave up. Slower, but reads go on.

use async_nats::jetstream::{
    self,
    message::StreamMessage,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use futures_util::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};

use super::unavailable;
use crate::storage::StorageResult;

/// JetStream's most messages per batched direct get.
pub const MAX_BATCH: usize = 1000;

/// Up to `limit` (at most [`MAX_BATCH`]) messages of `stream` on `filter` (wildcards
/// allowed), from stream sequence `from_seq` on, in stream order.
pub async fn batch(
    jetstream: &jetstream::Context,
    stream: &str,
    filter: &str,
    from_seq: u64,
    limit: usize,
) -> StorageResult<Vec<StreamMessage>> {
    match batch_direct(jetstream, stream, filter, from_seq, limit).await {
        Ok(messages) => Ok(messages),
        Err(error) => {
            tracing::warn!(stream, %error, "batched direct get failed; reading through the stream leader");
            batch_through_leader(
                jetstream,
                stream,
                filter,
                from_seq,
                limit.clamp(1, MAX_BATCH),
            )
            .await
        }
    }
}

async fn batch_direct(
    jetstream: &jetstream::Context,
    stream: &str,
    filter: &str,
    from_seq: u64,
    limit: usize,
) -> StorageResult<Vec<StreamMessage>> {
    let mut batch = jetstream
        .get_batch(stream, limit.clamp(1, MAX_BATCH))
        .sequence(from_seq.max(1))
        .subject(filter)
        .send()
        .await
        .map_err(unavailable)?;
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(message) => messages.push(message),
            Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(messages)
}

/// [`batch`] through the stream's leader (`STREAM.MSG.GET` with `next_by_subj`).
async fn batch_through_leader(
    jetstream: &jetstream::Context,
    stream: &str,
    filter: &str,
    from_seq: u64,
    limit: usize,
) -> StorageResult<Vec<StreamMessage>> {
    let stream = jetstream.get_stream(stream).await.map_err(unavailable)?;
    let mut messages = Vec::new();
    let mut next = from_seq.max(1);
    while messages.len() < limit {
        let message = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(filter.to_string())
            .send()
            .await;
        match message {
            Ok(message) => {
                next = message.sequence + 1;
                messages.push(message);
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(messages)
}

/// Every message of `stream` on `filter`, in stream order, read in batches.
pub async fn scan(
    jetstream: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> StorageResult<Vec<StreamMessage>> {
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let messages = batch(jetstream, stream, filter, from, MAX_BATCH).await?;
        let full = messages.len() == MAX_BATCH;
        if let Some(last) = messages.last() {
            from = last.sequence + 1;
        }
        all.extend(messages);
        if !full {
            return Ok(all);
        }
    }
}

/// JetStream's most subjects in one multi-last direct get.
pub const MAX_SUBJECTS: usize = 1024;

/// The last message of each of `subjects` (at most [`MAX_SUBJECTS`]) that has one, in one
/// request; subjects without a message are left out.
pub async fn last_of_each(
    jetstream: &jetstream::Context,
    stream: &str,
    subjects: Vec<String>,
) -> StorageResult<Vec<StreamMessage>> {
    // The leader answers "last by subject" for one literal subject at a time: a wildcard
    // would give only the newest message of all it matches.
    let literal = !subjects.iter().any(|s| s.contains(['*', '>']));
    match last_of_each_direct(jetstream, stream, subjects.clone()).await {
        Ok(messages) => Ok(messages),
        Err(error) if !literal => Err(error),
        Err(error) => {
            tracing::warn!(stream, %error, "multi-last direct get failed; reading through the stream leader");
            let stream = jetstream.get_stream(stream).await.map_err(unavailable)?;
            let mut messages = Vec::new();
            for subject in subjects {
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => messages.push(message),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Ok(messages)
        }
    }
}

async fn last_of_each_direct(
    jetstream: &jetstream::Context,
    stream: &str,
    subjects: Vec<String>,
) -> StorageResult<Vec<StreamMessage>> {
    let mut batch = match jetstream
        .get_last_messages_for(stream)
        .subjects(subjects)
        .send()
        .await
    {
        Ok(batch) => batch,
        Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => return Ok(Vec::new()),
        Err(e) => return Err(unavailable(e)),
    };
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(message) => messages.push(message),
            Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(messages)
}

/// The last message on `subject`, if there is one.
pub async fn last(
    stream: &jetstream::stream::Stream,
    subject: &str,
) -> StorageResult<Option<StreamMessage>> {
    match stream.direct_get_last_for_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}
