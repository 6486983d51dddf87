//! Names in NATS: subjects of the event stream and escaping of user-chosen names into
//! subject tokens. Pure.
//!
//! A subject token may not contain `.`, `*`, `>` or whitespace, and KV keys allow only
//! `[-/_=.A-Za-z0-9]`; event types may contain `.` and `:`. [`token`] keeps
//! `[A-Za-z0-9_-]` and writes every other byte as `=XX` (hex), so any name becomes one
//! token that is valid in both, and two names never share a token.

/// The name [`token`] escaped; `None` for text no token of ours can be.
pub fn untoken(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'=' {
            let hex = tail.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The stream that holds every tenant's events.
pub const EVENTS_STREAM: &str = "HG_EVENTS";

/// Everything the event stream captures.
pub const EVENTS_ALL: &str = "hg.ev.>";

/// `name` as one subject token (see the module's note).
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

/// The subject of one event: tenant, type and id, so that the stream itself answers "by
/// id" (the last message on `hg.ev.<tenant>.*.<id>`) and "by type" (`hg.ev.<tenant>.<type>.*`)
/// and refuses a second event with the same id (an expected last sequence of 0 on
/// [`event_id_filter`]).
pub fn event(tenant: &str, event_type: &str, id: &str) -> String {
    format!(
        "hg.ev.{}.{}.{}",
        token(tenant),
        token(event_type),
        token(id)
    )
}

/// Every event of a tenant.
pub fn tenant_events(tenant: &str) -> String {
    format!("hg.ev.{}.>", token(tenant))
}

/// The events of one type of a tenant.
pub fn type_events(tenant: &str, event_type: &str) -> String {
    format!("hg.ev.{}.{}.*", token(tenant), token(event_type))
}

/// The event of a tenant with this id, whatever its type.
pub fn event_id_filter(tenant: &str, id: &str) -> String {
    format!("hg.ev.{}.*.{}", token(tenant), token(id))
}

/// Whether `subject` is an event of `tenant`.
pub fn is_tenant_event(subject: &str, tenant: &str) -> bool {
    subject
        .strip_prefix("hg.ev.")
        .and_then(|rest| rest.strip_prefix(token(tenant).as_str()))
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Wake-ups: new events of a tenant are durable (core NATS, not stored).
pub fn new_events(tenant: &str) -> String {
    format!("{NEW_EVENTS_PREFIX}{}", token(tenant))
}

/// What precedes the tenant's token in a wake-up subject.
pub const NEW_EVENTS_PREFIX: &str = "hg.new.";

pub const NEW_EVENTS_ALL: &str = "hg.new.>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_plain_names_and_escape_the_rest() {
        assert_eq!(token("order-created_v2"), "order-created_v2");
        assert_eq!(token("order.created"), "order=2Ecreated");
        assert_eq!(token("a:b"), "a=3Ab");
        // The escape character itself is escaped: names never collide.
        assert_eq!(token("a=2E"), "a=3D2E");
        assert_ne!(token("a.b"), token("a=2Eb"));
        assert!(!token("x.*> y").contains(['.', '*', '>', ' ']));
        for name in ["order.created", "a:b", "a=2E", "plain-name_1", "é.x"] {
            assert_eq!(untoken(&token(name)).as_deref(), Some(name));
        }
        assert_eq!(untoken("bad=4"), None);
    }

    #[test]
    fn event_subjects() {
        assert_eq!(
            event("acme", "order.created", "evt-1"),
            "hg.ev.acme.order=2Ecreated.evt-1"
        );
        assert_eq!(tenant_events("acme"), "hg.ev.acme.>");
        assert_eq!(event_id_filter("acme", "evt-1"), "hg.ev.acme.*.evt-1");
        assert!(is_tenant_event("hg.ev.acme.t.e", "acme"));
        assert!(!is_tenant_event("hg.ev.acme2.t.e", "acme"));
        assert!(!is_tenant_event("hg.ev.acm.t.e", "acme"));
    }
}
