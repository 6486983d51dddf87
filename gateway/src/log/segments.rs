//! Segment files: the event log's bodies, append-only, in `{data_dir}/segments/`.
//!
//! Files are named by a growing number (`00000000000000000001.seg`) and hold records
//! (`log::record`) back to back. Only the flusher writes, always at the end of the newest
//! segment; readers use positional reads through a cache of open handles, so they never
//! contend with the writer or each other.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, BufReader, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use super::record;

/// Where one record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A record's place and size, as kept in the sled index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub at: Position,
    pub len: u32,
}

impl Extent {
    /// Encoded size; a run index entry is a sequence of these.
    pub const LEN: usize = 20;

    /// How many extents an encoded run holds.
    pub fn count(run: &[u8]) -> u64 {
        (run.len() / Self::LEN) as u64
    }

    /// The `n`th extent of an encoded run.
    pub fn nth(run: &[u8], n: u64) -> Option<Extent> {
        let start = usize::try_from(n).ok()?.checked_mul(Self::LEN)?;
        Self::decode(run.get(start..start + Self::LEN)?)
    }

    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0; 20];
        out[..8].copy_from_slice(&self.at.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.at.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Extent> {
        let bytes: &[u8; 20] = bytes.try_into().ok()?;
        Some(Extent {
            at: Position {
                segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
                offset: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            },
            len: u32::from_be_bytes(bytes[16..].try_into().ok()?),
        })
    }
}

impl Position {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Position> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        Some(Position {
            segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

pub struct Segments {
    dir: PathBuf,
    readers: RwLock<HashMap<u64, Arc<File>>>,
}

impl Segments {
    pub fn open(dir: &Path) -> io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        Ok(Segments {
            dir: dir.to_path_buf(),
            readers: RwLock::default(),
        })
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:020}.seg"))
    }

    /// Segment numbers present on disk, ascending.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse().ok())
            {
                segments.push(n);
            }
        }
        segments.sort_unstable();
        Ok(segments)
    }

    /// Reads one record; `Ok(None)` when its segment is gone (purged by retention).
    pub fn read(&self, extent: Extent) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = self.reader(extent.at.segment)? else {
            return Ok(None);
        };
        let mut buf = vec![0; extent.len as usize];
        file.read_exact_at(&mut buf, extent.at.offset)?;
        Ok(Some(buf))
    }

    fn reader(&self, segment: u64) -> io::Result<Option<Arc<File>>> {
        if let Some(file) = self.readers.read().expect("readers").get(&segment) {
            return Ok(Some(file.clone()));
        }
        let file = match File::open(self.path(segment)) {
            Ok(file) => Arc::new(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        self.readers
            .write()
            .expect("readers")
            .insert(segment, file.clone());
        Ok(Some(file))
    }

    /// Calls `each` for every whole, intact record of `segment` from `offset` on, in order,
    /// and returns where the intact part ends. A torn or corrupt record ends the scan: only
    /// the tail of a segment can be torn, since a segment is synced before the next begins.
    pub fn scan(
        &self,
        segment: u64,
        offset: u64,
        mut each: impl FnMut(Extent, record::Decoded),
    ) -> io::Result<u64> {
        let mut file = File::open(self.path(segment))?;
        std::io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut at = offset;
        let mut record = vec![0; record::HEADER_LEN];
        loop {
            record.truncate(record::HEADER_LEN);
            if read_full(&mut reader, &mut record)? < record::HEADER_LEN {
                return Ok(at);
            }
            let Some(body_len) = record::body_len(&record) else {
                return Ok(at);
            };
            record.resize(record::HEADER_LEN + body_len, 0);
            if read_full(&mut reader, &mut record[record::HEADER_LEN..])? < body_len {
                return Ok(at);
            }
            let Ok(decoded) = record::decode(&record) else {
                return Ok(at);
            };
            let extent = Extent {
                at: Position {
                    segment,
                    offset: at,
                },
                len: record.len() as u32,
            };
            each(extent, decoded);
            at += record.len() as u64;
        }
    }

    /// Deletes segments numbered below `before` last written before `cutoff`.
    pub fn remove_older_than(&self, before: u64, cutoff: SystemTime) -> io::Result<usize> {
        let mut removed = 0;
        for segment in self.list()? {
            if segment >= before {
                break;
            }
            let path = self.path(segment);
            if std::fs::metadata(&path)?.modified()? < cutoff {
                self.readers.write().expect("readers").remove(&segment);
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn writer(&self) -> SegmentWriter {
        SegmentWriter {
            dir: self.dir.clone(),
            active: None,
        }
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The flusher's handle on the newest segment.
pub struct SegmentWriter {
    dir: PathBuf,
    active: Option<(u64, File)>,
}

impl SegmentWriter {
    /// Writes `bytes` at `offset` of `segment`. Moving to a new segment syncs the old one
    /// first and makes the new file's name durable, so a segment is complete before the
    /// next one has anything in it.
    pub fn write(&mut self, segment: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.active.as_ref().map(|(n, _)| *n) != Some(segment) {
            if let Some((_, old)) = self.active.take() {
                old.sync_data()?;
            }
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(self.dir.join(format!("{segment:020}.seg")))?;
            File::open(&self.dir)?.sync_all()?;
            self.active = Some((segment, file));
        }
        let (_, file) = self.active.as_ref().expect("active segment");
        file.write_all_at(bytes, offset)
    }

    pub fn sync(&self) -> io::Result<()> {
        match &self.active {
            Some((_, file)) => file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::EncodedEvent;

    fn record(seq: u64) -> Vec<u8> {
        let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let mut out = Vec::new();
        EncodedEvent::new("t", 1, 2, &payload).write_record(
            "acme",
            seq,
            &format!("e{seq}"),
            &mut out,
        );
        out
    }

    #[test]
    fn scan_reads_intact_records_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let mut writer = segments.writer();
        let (a, b) = (record(1), record(2));
        writer.write(7, 0, &a).unwrap();
        writer.write(7, a.len() as u64, &b).unwrap();
        // A torn third record: half of it reached the disk.
        let c = record(3);
        writer
            .write(7, (a.len() + b.len()) as u64, &c[..c.len() / 2])
            .unwrap();
        writer.sync().unwrap();

        let mut seen = Vec::new();
        let end = segments
            .scan(7, 0, |extent, decoded| seen.push((extent, decoded.seq)))
            .unwrap();
        assert_eq!(end, (a.len() + b.len()) as u64);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1, 2);
        let read = segments.read(seen[1].0).unwrap().unwrap();
        assert_eq!(read, b);
        assert_eq!(segments.list().unwrap(), vec![7]);
        assert_eq!(
            Extent::decode(&seen[1].0.encode()),
            Some(seen[1].0),
            "extents round-trip through the index encoding"
        );
    }
}
