//! Key layout of the `log` tree. All keys start with `tenant \0` and a tag byte:
//! - `e seq`                       → the event (JSON of `StoredEvent`)
//! - `i id`                        → seq (idempotency and lookup by id)
//! - `t type \0 published seq`     → () (messages of one type in a time range)
//!
//! Numbers are big-endian so byte order is numeric order; `published` is an i64 with its
//! sign bit flipped so that times before 1970 still sort correctly.

use crate::{iso::EpochMillis, store::tenant_prefix};

const EVENT: u8 = b'e';
const ID: u8 = b'i';
const BY_TYPE: u8 = b't';

fn start(tenant: &str, tag: u8) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.push(tag);
    key
}

fn ordered_millis(ms: EpochMillis) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn millis_from(bytes: &[u8]) -> EpochMillis {
    (u64::from_be_bytes(bytes.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

pub fn events_prefix(tenant: &str) -> Vec<u8> {
    start(tenant, EVENT)
}

pub fn event(tenant: &str, seq: u64) -> Vec<u8> {
    let mut key = start(tenant, EVENT);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub fn seq_of_event_key(key: &[u8]) -> u64 {
    decode_seq(&key[key.len() - 8..])
}

pub fn decode_seq(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8-byte sequence number"))
}

pub fn id(tenant: &str, id: &str) -> Vec<u8> {
    let mut key = start(tenant, ID);
    key.extend_from_slice(id.as_bytes());
    key
}

pub fn by_type(tenant: &str, event_type: &str, published: EpochMillis, seq: u64) -> Vec<u8> {
    let mut key = start(tenant, BY_TYPE);
    key.extend_from_slice(event_type.as_bytes());
    key.push(0);
    key.extend_from_slice(&ordered_millis(published));
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `(published, seq)` of a `t` index key: it ends with those 16 bytes.
pub fn position_of_index_key(key: &[u8]) -> (EpochMillis, u64) {
    let n = key.len();
    (millis_from(&key[n - 16..n - 8]), decode_seq(&key[n - 8..]))
}

/// Page positions are `published.seq`, opaque to clients.
pub fn format_position(published: EpochMillis, seq: u64) -> String {
    format!("{published}.{seq}")
}

pub fn parse_position(text: &str) -> Option<(EpochMillis, u64)> {
    let (p, s) = text.split_once('.')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_numerically_including_negative_times() {
        let a = by_type("t", "x", -5, 1);
        let b = by_type("t", "x", 0, 0);
        let c = by_type("t", "x", 1_700_000_000_000, 0);
        assert!(a < b && b < c);
        assert_eq!(position_of_index_key(&a), (-5, 1));
        assert_eq!(
            position_of_index_key(&by_type("t", "order.created", 42, 7)),
            (42, 7)
        );
    }

    #[test]
    fn event_keys_of_one_tenant_never_mix_with_a_longer_tenant_id() {
        // "ab\0" never prefixes "abc\0": the separator makes prefixes exact.
        assert!(!event("abc", 1).starts_with(&events_prefix("ab")));
        assert_eq!(seq_of_event_key(&event("ab", 99)), 99);
    }
}
