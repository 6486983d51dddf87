//! One HTTP attempt: builds the request for a webhook, sends it, and captures what came
//! back (status, headers, the first 4 KiB of the body, or the error) as an `Attempt`.

use std::{collections::BTreeMap, time::Instant};

use bytes::Bytes;
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::records::Attempt;
use crate::{
    ids,
    iso::{EpochMillis, now_millis},
};

/// Responses are recorded up to this many bytes.
pub const RESPONSE_BODY_CAP: usize = 4096;

pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// The part of an outgoing request that does not depend on the event.
pub struct Target {
    pub client: reqwest::Client,
    pub url: url::Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub timeout: std::time::Duration,
}

/// One request to send.
pub struct Outgoing<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub tenant: &'a str,
    pub body: Bytes,
    /// Headers computed for this attempt (authentication).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

/// What an attempt produced, beyond the stored record.
pub struct Sent {
    pub attempt: Attempt,
    /// `Retry-After` as sent by the receiver.
    pub retry_after: Option<String>,
}

impl Target {
    /// The URL of one event: GET webhooks carry the event in the query string.
    pub fn url_for(&self, out: &Outgoing<'_>) -> url::Url {
        let mut url = self.url.clone();
        if self.method == Method::GET {
            url.query_pairs_mut()
                .append_pair("event_id", out.event_id)
                .append_pair("event_type", out.event_type)
                .append_pair("tenant", out.tenant);
        }
        url
    }

    pub async fn send(&self, webhook_id: &str, out: Outgoing<'_>) -> Sent {
        let started = Instant::now();
        let at = now_millis();
        let mut request = self
            .client
            .request(self.method.clone(), self.url_for(&out))
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header("user-agent", USER_AGENT)
            .header("webhook-id", out.event_id);
        for (name, value) in out.extra_headers {
            request = request.header(name, value);
        }
        if self.method != Method::GET {
            request = request
                .header("content-type", "application/json")
                .body(out.body);
        }
        let (status_code, response_headers, response_body, error, retry_after) =
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = header_map(response.headers());
                    let retry_after = headers.get("retry-after").cloned();
                    let (body, error) = read_capped(response).await;
                    (Some(status), headers, body, error, retry_after)
                }
                Err(e) => (
                    None,
                    BTreeMap::new(),
                    String::new(),
                    Some(describe(&e)),
                    None,
                ),
            };
        Sent {
            attempt: Attempt {
                id: ids::generate("att"),
                event_id: out.event_id.to_string(),
                webhook_id: webhook_id.to_string(),
                at,
                duration_ms: started.elapsed().as_millis() as u64,
                status_code,
                error,
                response_headers,
                response_body,
            },
            retry_after,
        }
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads at most `RESPONSE_BODY_CAP` bytes; a slow or endless body cannot hold the attempt
/// beyond the request timeout, which reqwest applies to the body too.
async fn read_capped(mut response: reqwest::Response) -> (String, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_CAP - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= RESPONSE_BODY_CAP {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return (
                    lossy(body),
                    Some(format!("reading the response: {}", describe(&e))),
                );
            }
        }
    }
    (lossy(body), None)
}

fn lossy(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A one-line description with the whole cause chain ("error sending request: connection
/// refused"), because reqwest's top-level message alone rarely says what happened.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timeout: no complete response within the webhook's timeout".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Millis since epoch `delay` from now.
pub fn after(now: EpochMillis, delay: std::time::Duration) -> EpochMillis {
    now + delay.as_millis() as EpochMillis
}
