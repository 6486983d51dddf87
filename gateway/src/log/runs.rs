//! Index runs: the event index holds one sled entry per *run* of events instead of one per
//! event, because sled's cost (CPU per key, and memory far above `cache_capacity` for
//! many tiny entries) is per entry.
//!
//! - An *extent run* (`e first_seq` → extents) covers consecutive seqs of one tenant.
//! - A *type run* (`t type \0 second first_seq` → `(published, seq)` pairs) covers events
//!   of one type whose `published_at` falls in the same second.
//!
//! Runs are cut per flush round and at `RUN_MAX` entries. After a crash, recovery may
//! rebuild runs that overlap ones sled kept; readers de-duplicate by seq.

use super::{keys, segments::Extent};
use crate::iso::EpochMillis;

/// Entries per run; bounds the value a point lookup reads.
pub const RUN_MAX: usize = 256;

/// Size of one `(published, seq)` entry of a type run.
pub const TYPE_ENTRY_LEN: usize = 16;

/// The bucket (second) of a publish time.
pub fn bucket_of(published: EpochMillis) -> i64 {
    published.div_euclid(1000)
}

pub fn encode_type_entry(published: EpochMillis, seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&published.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
}

/// The `(published, seq)` entries of a type run.
pub fn type_entries(run: &[u8]) -> impl Iterator<Item = (EpochMillis, u64)> + '_ {
    run.chunks_exact(TYPE_ENTRY_LEN).map(|entry| {
        (
            i64::from_be_bytes(entry[..8].try_into().expect("8 bytes")),
            u64::from_be_bytes(entry[8..].try_into().expect("8 bytes")),
        )
    })
}

struct TypeRun {
    event_type: String,
    bucket: i64,
    first_seq: u64,
    entries: Vec<u8>,
}

/// The runs one tenant has open in the current round.
#[derive(Default)]
pub struct OpenRuns {
    extents: Option<(u64, Vec<u8>)>,
    types: Vec<TypeRun>,
}

impl OpenRuns {
    pub fn is_empty(&self) -> bool {
        self.extents.is_none() && self.types.is_empty()
    }

    /// Adds one event; full runs are closed into `index`.
    pub fn add(
        &mut self,
        tenant: &str,
        seq: u64,
        extent: Extent,
        event_type: &str,
        published: EpochMillis,
        index: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let (first, extents) = self
            .extents
            .get_or_insert_with(|| (seq, Vec::with_capacity(16 * Extent::LEN)));
        if extents.len() == RUN_MAX * Extent::LEN {
            index.push((keys::event(tenant, *first), std::mem::take(extents)));
            *first = seq;
        }
        extents.extend_from_slice(&extent.encode());

        let bucket = bucket_of(published);
        // Few types are open at once; a linear search beats hashing a key per event.
        let run = match self
            .types
            .iter()
            .position(|r| r.bucket == bucket && r.event_type == event_type)
        {
            Some(i) => &mut self.types[i],
            None => {
                self.types.push(TypeRun {
                    event_type: event_type.to_string(),
                    bucket,
                    first_seq: seq,
                    entries: Vec::with_capacity(16 * TYPE_ENTRY_LEN),
                });
                self.types.last_mut().expect("just pushed")
            }
        };
        if run.entries.len() == RUN_MAX * TYPE_ENTRY_LEN {
            index.push((
                keys::by_type(tenant, &run.event_type, run.bucket, run.first_seq),
                std::mem::take(&mut run.entries),
            ));
            run.first_seq = seq;
        }
        encode_type_entry(published, seq, &mut run.entries);
    }

    /// Closes every open run into `index`.
    pub fn close(&mut self, tenant: &str, index: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if let Some((first, extents)) = self.extents.take() {
            index.push((keys::event(tenant, first), extents));
        }
        for run in self.types.drain(..) {
            index.push((
                keys::by_type(tenant, &run.event_type, run.bucket, run.first_seq),
                run.entries,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::segments::Position;

    fn extent(n: u64) -> Extent {
        Extent {
            at: Position {
                segment: 1,
                offset: n * 100,
            },
            len: 100,
        }
    }

    #[test]
    fn runs_split_by_size_type_and_second() {
        let mut runs = OpenRuns::default();
        let mut index = Vec::new();
        for seq in 1..=300u64 {
            let event_type = if seq % 3 == 0 { "b" } else { "a" };
            let published = if seq <= 150 { 1_000 } else { 2_500 };
            runs.add("acme", seq, extent(seq), event_type, published, &mut index);
        }
        runs.close("acme", &mut index);
        assert!(runs.is_empty());
        let extent_runs: Vec<_> = index.iter().filter(|(k, _)| k[5] == b'e').collect();
        assert_eq!(
            extent_runs.len(),
            2,
            "300 extents make a full run and a rest"
        );
        assert_eq!(Extent::count(&extent_runs[0].1), RUN_MAX as u64);
        assert_eq!(Extent::nth(&extent_runs[1].1, 0), Some(extent(257)));
        // Types a and b in seconds 1 and 2: four type runs.
        let type_runs: Vec<_> = index.iter().filter(|(k, _)| k[5] == b't').collect();
        assert_eq!(type_runs.len(), 4);
        let total: usize = type_runs.iter().map(|(_, v)| type_entries(v).count()).sum();
        assert_eq!(total, 300);
        let (bucket, first) = keys::position_of_index_key(&type_runs[0].0);
        assert_eq!((bucket, first), (1, 1));
        assert_eq!(
            bucket_of(-1),
            -1,
            "times before 1970 fall in their own second"
        );
    }
}
