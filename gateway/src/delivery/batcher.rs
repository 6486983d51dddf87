//! NDJSON file assembly and the rotation rules of issue 6: events become lines of the open
//! file, which is sealed when the next line would take it past `max_file_bytes`, or once it
//! reaches that size, or when it has been open for `flush_interval` — whichever comes
//! first. Pure (the clock is passed in), so the rules are tested without a server.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::iso::EpochMillis;

/// When the open file is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: usize,
    pub flush_interval: Duration,
}

/// Where files go: `{prefix}/{tenant}/{epoch_millis}-data-{random}.export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The key prefix without leading or trailing `/`; empty for none.
    prefix: String,
    tenant: String,
}

impl Naming {
    pub fn new(key_prefix: &str, tenant: &str) -> Naming {
        Naming {
            prefix: key_prefix.trim_matches('/').to_string(),
            tenant: tenant.to_string(),
        }
    }

    /// The object key of a file created at `created_at`; the random part keeps two files of
    /// the same millisecond (or a file re-sent after a crash) from overwriting each other.
    pub fn key(&self, created_at: EpochMillis, random: &str) -> String {
        let name = format!("{}/{created_at}-data-{random}.export", self.tenant);
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// The identity of the first event of a file: its file record is keyed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstEvent {
    pub seq: u64,
    pub id: String,
    pub event_type: String,
}

/// A closed file, ready to upload. It keeps its key across retries, so a retried upload
/// that had in fact succeeded overwrites the object with the same bytes.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key: String,
    pub created_at: EpochMillis,
    pub body: Bytes,
    pub first: FirstEvent,
    pub last_seq: u64,
    pub events: u64,
}

struct Open {
    key: String,
    created_at: EpochMillis,
    opened: Instant,
    body: Vec<u8>,
    first: FirstEvent,
    last_seq: u64,
    events: u64,
}

impl Open {
    fn seal(self) -> Sealed {
        Sealed {
            key: self.key,
            created_at: self.created_at,
            body: Bytes::from(self.body),
            first: self.first,
            last_seq: self.last_seq,
            events: self.events,
        }
    }
}

pub struct Batcher {
    rotation: Rotation,
    naming: Naming,
    open: Option<Open>,
}

impl Batcher {
    pub fn new(rotation: Rotation, naming: Naming) -> Batcher {
        Batcher {
            rotation,
            naming,
            open: None,
        }
    }

    /// New settings apply to the open file's limits at once and to names of later files.
    pub fn configure(&mut self, rotation: Rotation, naming: Naming) {
        self.rotation = rotation;
        self.naming = naming;
    }

    /// Appends one event as a line (`line` without its newline). Returns the previous file
    /// when this line would not fit in it; a single line larger than the limit gets a file
    /// of its own.
    pub fn push(
        &mut self,
        first: FirstEvent,
        line: &[u8],
        now: Instant,
        now_millis: EpochMillis,
    ) -> Option<Sealed> {
        let needed = line.len() + 1;
        let sealed = match &self.open {
            Some(open) if open.body.len() + needed > self.rotation.max_bytes => {
                self.open.take().map(Open::seal)
            }
            _ => None,
        };
        let seq = first.seq;
        let open = self.open.get_or_insert_with(|| Open {
            key: self.naming.key(now_millis, &crate::ids::random_token(8)),
            created_at: now_millis,
            opened: now,
            // Grow in large steps; capped so a small limit does not reserve much.
            body: Vec::with_capacity(self.rotation.max_bytes.min(1 << 20)),
            first,
            last_seq: seq,
            events: 0,
        });
        open.body.extend_from_slice(line);
        open.body.push(b'\n');
        open.last_seq = seq;
        open.events += 1;
        sealed
    }

    /// Seals the open file if it is full or has been open for the flush interval.
    pub fn take_due(&mut self, now: Instant) -> Option<Sealed> {
        let open = self.open.as_ref()?;
        let full = open.body.len() >= self.rotation.max_bytes;
        let old = now >= open.opened + self.rotation.flush_interval;
        if full || old { self.seal_now() } else { None }
    }

    /// Seals the open file whatever its age (end of a replay window).
    pub fn seal_now(&mut self) -> Option<Sealed> {
        self.open.take().map(Open::seal)
    }

    /// When the open file must be sealed by time.
    pub fn deadline(&self) -> Option<Instant> {
        self.open
            .as_ref()
            .map(|open| open.opened + self.rotation.flush_interval)
    }

    /// Seq of the first event in the open file.
    pub fn first_seq(&self) -> Option<u64> {
        self.open.as_ref().map(|open| open.first.seq)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(seq: u64) -> FirstEvent {
        FirstEvent {
            seq,
            id: format!("e{seq}"),
            event_type: "t".into(),
        }
    }

    fn batcher(max_bytes: usize) -> Batcher {
        Batcher::new(
            Rotation {
                max_bytes,
                flush_interval: Duration::from_secs(10),
            },
            Naming::new("exports/", "acme"),
        )
    }

    #[test]
    fn names_follow_the_newstore_pattern() {
        assert_eq!(
            Naming::new("/a/b/", "acme").key(1700000000000, "f00d"),
            "a/b/acme/1700000000000-data-f00d.export"
        );
        assert_eq!(Naming::new("", "acme").key(5, "x"), "acme/5-data-x.export");
    }

    #[test]
    fn a_file_never_passes_the_size_limit() {
        let now = Instant::now();
        let mut b = batcher(10);
        // 4 + 1 bytes per line: two lines fill a 10-byte file exactly.
        assert!(b.push(first(1), b"aaaa", now, 1).is_none());
        assert!(b.push(first(2), b"bbbb", now, 1).is_none());
        let full = b.take_due(now).expect("full at the limit");
        assert_eq!(&full.body[..], b"aaaa\nbbbb\n");
        assert_eq!((full.first.seq, full.last_seq, full.events), (1, 2, 2));
        assert!(full.key.starts_with("exports/acme/1-data-"), "{}", full.key);
        assert!(b.is_empty());

        assert!(b.push(first(3), b"cccc", now, 2).is_none());
        let sealed = b.push(first(4), b"dddddd", now, 3).expect("does not fit");
        assert_eq!(&sealed.body[..], b"cccc\n");
        assert_eq!(b.first_seq(), Some(4));
    }

    #[test]
    fn an_oversized_line_gets_a_file_of_its_own() {
        let now = Instant::now();
        let mut b = batcher(10);
        assert!(b.push(first(1), b"a", now, 1).is_none());
        let previous = b.push(first(2), b"0123456789abc", now, 1).unwrap();
        assert_eq!(&previous.body[..], b"a\n");
        let alone = b.take_due(now).unwrap();
        assert_eq!(&alone.body[..], b"0123456789abc\n");
    }

    #[test]
    fn a_file_is_sealed_after_the_flush_interval() {
        let start = Instant::now();
        let mut b = batcher(1 << 20);
        assert!(b.take_due(start).is_none(), "nothing open, nothing sealed");
        b.push(first(7), b"x", start, 1);
        assert_eq!(b.deadline(), Some(start + Duration::from_secs(10)));
        assert!(b.take_due(start + Duration::from_secs(9)).is_none());
        let sealed = b.take_due(start + Duration::from_secs(10)).unwrap();
        assert_eq!(sealed.first.seq, 7);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn keys_are_kept_per_file_and_differ_between_files() {
        let now = Instant::now();
        let mut b = batcher(4);
        b.push(first(1), b"abc", now, 9);
        let one = b.push(first(2), b"abc", now, 9).unwrap();
        let two = b.seal_now().unwrap();
        assert_ne!(one.key, two.key);
    }
}
