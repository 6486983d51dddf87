//! Generated events and the shared wall clock.
//!
//! Every event carries `payload.sent_at_ns`, the wall clock (ns since the Unix epoch) when
//! its request was built. The receiver runs in another process, so a monotonic `Instant`
//! cannot be shared; both processes read the same system clock on the same machine.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Nanoseconds since the Unix epoch, the timestamp carried in `payload.sent_at_ns`.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// Renders request bodies whose events are about `event_bytes` long each.
///
/// Only the two numbers change from event to event, so everything around them is rendered
/// once: building a body is two memcpys and two integer formats, which keeps the driver's
/// share of the two cores small even at a million events/s in batches.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// `{"event_type":"…","payload":{"sent_at_ns":`
    head: String,
    /// `,"pad":"…"}}`, the padding bringing one event up to the requested size.
    tail: String,
}

/// Everything in one event except the event type and the padding, with the widest numbers
/// it will carry (19-digit timestamp, 12-digit sequence): used to size the padding.
const FIXED_PART: &str =
    r#"{"event_type":,"payload":{"sent_at_ns":0000000000000000000,"seq":000000000000,"pad":""}}"#;

impl EventTemplate {
    pub fn new(event_type: &str, event_bytes: usize) -> Self {
        let event_type = serde_json::Value::from(event_type).to_string();
        let fixed = FIXED_PART.len() + event_type.len();
        // A readable repeating pattern: JSON-safe, not a single repeated byte.
        let padding: String = "abcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .cycle()
            .take(event_bytes.saturating_sub(fixed))
            .collect();
        Self {
            head: format!(r#"{{"event_type":{event_type},"payload":{{"sent_at_ns":"#),
            tail: format!(r#","pad":"{padding}"}}}}"#),
        }
    }

    fn write_event(&self, out: &mut Vec<u8>, seq: u64, sent_at_ns: u64) {
        out.extend_from_slice(self.head.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = write!(out, r#"{sent_at_ns},"seq":{seq}"#);
        out.extend_from_slice(self.tail.as_bytes());
    }

    fn event_capacity(&self) -> usize {
        self.head.len() + self.tail.len() + 40
    }

    /// `POST /{tenant}/v1/events` body.
    pub fn single(&self, seq: u64, sent_at_ns: u64) -> Bytes {
        let mut out = Vec::with_capacity(self.event_capacity());
        self.write_event(&mut out, seq, sent_at_ns);
        Bytes::from(out)
    }

    /// `POST /{tenant}/v1/events/batch` body with `count` events numbered from `first_seq`.
    pub fn batch(&self, count: usize, first_seq: u64, sent_at_ns: u64) -> Bytes {
        let mut out = Vec::with_capacity(count * (self.event_capacity() + 1) + 16);
        out.extend_from_slice(br#"{"events":["#);
        for i in 0..count {
            if i > 0 {
                out.push(b',');
            }
            self.write_event(&mut out, first_seq + i as u64, sent_at_ns);
        }
        out.extend_from_slice(b"]}");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn single_event_is_valid_json_of_the_requested_size() {
        let template = EventTemplate::new("bench.event", 1024);
        let body = template.single(42, now_ns());
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["event_type"], "bench.event");
        assert_eq!(event["payload"]["seq"], 42);
        assert!(event["payload"]["sent_at_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
        assert!((1000..=1024).contains(&body.len()), "{} bytes", body.len());
    }

    #[test]
    fn batch_holds_numbered_events() {
        let template = EventTemplate::new("t", 256);
        let body = template.batch(100, 7, 1);
        let batch: Value = serde_json::from_slice(&body).unwrap();
        let events = batch["events"].as_array().unwrap();
        assert_eq!(events.len(), 100);
        assert_eq!(events[0]["payload"]["seq"], 7);
        assert_eq!(events[99]["payload"]["seq"], 106);
    }

    #[test]
    fn tiny_sizes_still_render_valid_events() {
        let template = EventTemplate::new("needs \"escaping\"", 0);
        let event: Value = serde_json::from_slice(&template.single(0, 0)).unwrap();
        assert_eq!(event["payload"]["pad"], "");
        assert_eq!(event["event_type"], "needs \"escaping\"");
    }
}
