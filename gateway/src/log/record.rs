//! The on-disk form of one event in a segment file.
//!
//! ```text
//! record = body_len u32 LE | crc32(body) u32 LE | body
//! body   = tenant_len u8 | tenant | seq u64 LE | id_len u16 LE | id
//!          | type_len u16 LE | event_type | published i64 LE | received i64 LE | payload
//! ```
//!
//! A binary layout rather than JSON: writing it is a few copies, and reading it back does
//! not re-parse the envelope (only the payload is checked once, to rebuild the `RawValue`).
//! The checksum lets recovery find where a torn write at the end of a segment begins.

use serde_json::value::RawValue;

use super::StoredEvent;

pub const HEADER_LEN: usize = 8;

/// An event encoded without its tenant, seq and id (a generated id contains the seq), so
/// the bulk of the work happens before the append lock.
pub struct EncodedEvent {
    /// `type_len | type | published | received | payload`.
    tail: Vec<u8>,
}

impl EncodedEvent {
    pub fn new(
        event_type: &str,
        published_at: i64,
        received_at: i64,
        payload: &RawValue,
    ) -> EncodedEvent {
        let payload = payload.get().as_bytes();
        let mut tail = Vec::with_capacity(2 + event_type.len() + 16 + payload.len());
        put_str16(&mut tail, event_type);
        tail.extend_from_slice(&published_at.to_le_bytes());
        tail.extend_from_slice(&received_at.to_le_bytes());
        tail.extend_from_slice(payload);
        EncodedEvent { tail }
    }

    /// Length of the whole record.
    pub fn record_len(&self, tenant: &str, id: &str) -> usize {
        HEADER_LEN + 1 + tenant.len() + 8 + 2 + id.len() + self.tail.len()
    }

    /// Appends the record (header included) to `out`.
    pub fn write_record(&self, tenant: &str, seq: u64, id: &str, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        out.push(tenant.len() as u8);
        out.extend_from_slice(tenant.as_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        put_str16(out, id);
        out.extend_from_slice(&self.tail);
        let body = &out[start + HEADER_LEN..];
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32fast::hash(body).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + 8].copy_from_slice(&crc);
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Ids are at most 50 bytes and types 128 (validated at ingest); u16 is plenty.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A record read back: whose event it is, and the event.
pub struct Decoded {
    pub tenant: String,
    pub seq: u64,
    pub event: StoredEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is truncated")]
    Truncated,
    #[error("record checksum mismatch")]
    Checksum,
    #[error("record is malformed: {0}")]
    Malformed(&'static str),
}

/// Reads the header at the start of `bytes`: the body length, if the header is complete
/// and not zero (zeros are unwritten space, not a record).
pub fn body_len(header: &[u8]) -> Option<usize> {
    if header.len() < HEADER_LEN {
        return None;
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    (len > 0).then_some(len)
}

/// Decodes a whole record (header and body), checking its checksum.
pub fn decode(record: &[u8]) -> Result<Decoded, RecordError> {
    let len = body_len(record).ok_or(RecordError::Truncated)?;
    let body = record
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(RecordError::Truncated)?;
    let crc = u32::from_le_bytes(record[4..8].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(RecordError::Checksum);
    }
    let mut r = Reader { bytes: body };
    let tenant_len = r.take(1)?[0] as usize;
    let tenant = r.string(tenant_len)?;
    let seq = u64::from_le_bytes(r.array()?);
    let id_len = u16::from_le_bytes(r.array()?) as usize;
    let id = r.string(id_len)?;
    let type_len = u16::from_le_bytes(r.array()?) as usize;
    let event_type = r.string(type_len)?;
    let published_at = i64::from_le_bytes(r.array()?);
    let received_at = i64::from_le_bytes(r.array()?);
    let payload = std::str::from_utf8(r.bytes).map_err(|_| RecordError::Malformed("payload"))?;
    let payload =
        RawValue::from_string(payload.to_owned()).map_err(|_| RecordError::Malformed("payload"))?;
    Ok(Decoded {
        tenant,
        seq,
        event: StoredEvent {
            id,
            event_type,
            published_at,
            received_at,
            payload,
        },
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError::Malformed("field past the end"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn string(&mut self, n: usize) -> Result<String, RecordError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::Malformed("text field"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EncodedEvent {
        let payload = RawValue::from_string(r#"{"a":[1,2,{"b":"ü"}]}"#.into()).unwrap();
        EncodedEvent::new("order.created", -5, 1_700_000_000_000, &payload)
    }

    #[test]
    fn a_record_round_trips_with_tenant_and_seq() {
        let encoded = event();
        let mut out = vec![9, 9]; // records are appended after whatever is there
        encoded.write_record("acme", 42, "evt_1", &mut out);
        assert_eq!(out.len() - 2, encoded.record_len("acme", "evt_1"));
        let decoded = decode(&out[2..]).unwrap();
        assert_eq!((decoded.tenant.as_str(), decoded.seq), ("acme", 42));
        assert_eq!(decoded.event.id, "evt_1");
        assert_eq!(decoded.event.event_type, "order.created");
        assert_eq!(decoded.event.published_at, -5);
        assert_eq!(decoded.event.received_at, 1_700_000_000_000);
        assert_eq!(decoded.event.payload.get(), r#"{"a":[1,2,{"b":"ü"}]}"#);
    }

    #[test]
    fn torn_and_corrupt_records_are_refused() {
        let mut out = Vec::new();
        event().write_record("acme", 1, "evt_1", &mut out);
        assert!(matches!(
            decode(&out[..out.len() - 1]),
            Err(RecordError::Truncated)
        ));
        let mut flipped = out.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decode(&flipped), Err(RecordError::Checksum)));
        assert_eq!(body_len(&[0; 8]), None, "zeros are unwritten space");
    }
}
