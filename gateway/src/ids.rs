//! Identifiers. Client-chosen ids follow NewStore's `^[a-z0-9-]{1,50}$`; generated ids
//! carry a prefix with an underscore (`evt_`, `att_`), which that pattern cannot contain,
//! so a generated id never collides with a client's. ULIDs keep them time-ordered.

use rand::Rng;

pub const MAX_ID_LEN: usize = 50;

/// True when `id` is a valid client-chosen id (tenants, webhooks, events).
pub fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A new time-ordered id such as `evt_01jd3k…`.
pub fn generate(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// The id of an event ingested without one: a ULID (time-ordered, unique even if a data
/// directory is ever reset) followed by the event's seq in hex, so the log finds the event
/// by its id without an index entry (`seq_of_event_id`).
pub fn generate_event_id(seq: u64) -> String {
    format!("{}{seq:x}", generate("evt"))
}

/// The seq inside an id made by `generate_event_id`.
pub fn seq_of_event_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("evt_")?.get(26..)?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A random url-safe token of `bytes` bytes of entropy (hex encoded).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_pattern() {
        assert!(is_client_id("erp-1"));
        assert!(is_client_id(&"a".repeat(50)));
        assert!(!is_client_id(&"a".repeat(51)));
        assert!(!is_client_id(""));
        assert!(!is_client_id("Erp"));
        assert!(!is_client_id("a_b"));
        assert!(!is_client_id("a/b"));
    }

    #[test]
    fn generated_ids_are_prefixed_and_never_client_ids() {
        let a = generate("evt");
        let b = generate("evt");
        assert!(a.starts_with("evt_"));
        assert_ne!(a, b);
        assert!(!is_client_id(&a));
    }

    #[test]
    fn generated_event_ids_carry_their_seq() {
        for seq in [1, 255, u64::MAX] {
            let id = generate_event_id(seq);
            assert!(id.len() <= MAX_ID_LEN && !is_client_id(&id), "{id}");
            assert_eq!(seq_of_event_id(&id), Some(seq));
        }
        assert_eq!(
            seq_of_event_id(&generate("evt")),
            None,
            "a plain id has none"
        );
        assert_eq!(seq_of_event_id("evt_x"), None);
        assert_eq!(seq_of_event_id("order-1"), None);
    }
}
