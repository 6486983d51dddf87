//! Reads through JetStream's direct get (any replica answers, batched): what the event log
//! and the delivery state share.

use async_nats::jetstream::{self, message::StreamMessage, stream::DirectGetErrorKind};
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
