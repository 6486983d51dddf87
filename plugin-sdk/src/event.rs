use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::hookgate::plugin::types as wit;
use crate::Result;

/// One HTTP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// An ordered list of headers with case-insensitive lookups by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Replaces every header called `name` with one of this value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Adds a header, keeping any others of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push(Header::new(name, value));
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Header> {
        self.0
    }
}

impl From<Vec<Header>> for Headers {
    fn from(headers: Vec<Header>) -> Self {
        Headers(headers)
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One event as the webhook sees it. `body` holds the outgoing body, by default the JSON
/// envelope `{id, tenant, event_type, published_at, payload, data}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    /// Unix time in milliseconds when the event was published.
    pub published_at_ms: u64,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Event {
    /// Deserializes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The values at these JSON pointers in the body (RFC 6901, e.g. `/payload/total`;
    /// the same lookups as `serde_json::Value::pointer`), in order, `None` where the body
    /// has nothing. Much cheaper than [`json`](Self::json) into a `Value` when a hook needs
    /// a few fields: one pass over the text that builds only those values and skips the
    /// rest. The whole body must still be valid JSON.
    pub fn json_pointers(&self, pointers: &[&str]) -> Result<Vec<Option<serde_json::Value>>> {
        Ok(crate::pointers::extract(&self.body, pointers)?)
    }

    /// Replaces the body with `value` serialized as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        // Sized like the body it replaces, which saves most regrowth copies.
        let mut body = Vec::with_capacity(self.body.len());
        serde_json::to_writer(&mut body, value)?;
        self.body = body;
        Ok(())
    }

    /// The body as text, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// The request about to be sent on one delivery attempt, given to
/// [`Plugin::authenticate`](crate::Plugin::authenticate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingRequest {
    pub method: String,
    pub url: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl OutgoingRequest {
    /// Deserializes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

// Conversions between the SDK's types and the generated ones move every field: no copies
// of bodies or strings.

fn headers_from_wit(headers: Vec<wit::Header>) -> Headers {
    headers
        .into_iter()
        .map(|h| Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

pub(crate) fn headers_to_wit(headers: Headers) -> Vec<wit::Header> {
    headers
        .into_iter()
        .map(|h| wit::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            id: e.id,
            tenant: e.tenant,
            event_type: e.event_type,
            published_at_ms: e.published_at_ms,
            headers: headers_from_wit(e.headers),
            body: e.body,
        }
    }
}

impl From<Event> for wit::Event {
    fn from(e: Event) -> Self {
        wit::Event {
            id: e.id,
            tenant: e.tenant,
            event_type: e.event_type,
            published_at_ms: e.published_at_ms,
            headers: headers_to_wit(e.headers),
            body: e.body,
        }
    }
}

impl From<wit::OutgoingRequest> for OutgoingRequest {
    fn from(r: wit::OutgoingRequest) -> Self {
        OutgoingRequest {
            method: r.method,
            url: r.url,
            headers: headers_from_wit(r.headers),
            body: r.body,
        }
    }
}
