//! The HTTP sink: a webhook's pooled keep-alive client (its TLS settings and the SSRF
//! guard), signer, URL (with `query_key`), method, headers and timeout, and one attempt:
//! build the request, sign it, send it, and capture what came back (status, headers, the
//! first 4 KiB of the body, or the error) as an `Attempt`.

use std::{collections::BTreeMap, time::Instant};

use async_trait::async_trait;
use hookgate_signing::{DestinationPolicy, OutgoingRequest, Signer, Transport, TransportOptions};
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::{EventSink, Outgoing, Preview, Sent, SinkError};
use crate::{
    delivery::records::Attempt,
    ids,
    iso::now_millis,
    model::destination::{HttpDestination, HttpMethod},
};

/// Responses are recorded up to this many bytes.
pub const RESPONSE_BODY_CAP: usize = 4096;

pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// The part of an outgoing request that does not depend on the event.
pub struct HttpSink {
    transport: Transport,
    signer: Signer,
    url: url::Url,
    method: Method,
    headers: HeaderMap,
    timeout: std::time::Duration,
}

impl HttpSink {
    /// `max_in_flight` bounds the idle connections kept to the host.
    pub fn new(
        destination: &HttpDestination,
        max_in_flight: u32,
        policy: DestinationPolicy,
    ) -> Result<HttpSink, SinkError> {
        let invalid =
            |what: &str, error: &dyn std::fmt::Display| SinkError(format!("{what}: {error}"));
        let mut url = url::Url::parse(&destination.url).map_err(|e| invalid("url", &e))?;
        if let Some(key) = &destination.query_key {
            url.query_pairs_mut().append_pair("key", key.expose());
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &destination.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(&format!("header {name}"), &e))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| invalid(&format!("header {name}"), &e))?;
            headers.insert(name, value);
        }
        let options = TransportOptions {
            policy,
            max_idle_per_host: max_in_flight as usize,
            ..TransportOptions::default()
        };
        let transport = Transport::new(&destination.tls.clone().unwrap_or_default(), &options)
            .map_err(|e| invalid("transport", &e))?;
        let signer = Signer::new(&destination.authentication, &transport)
            .map_err(|e| invalid("authentication", &e))?;
        Ok(HttpSink {
            transport,
            signer,
            url,
            method: match destination.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Get => Method::GET,
            },
            headers,
            timeout: destination.timeout.duration(),
        })
    }

    /// The URL of one event: GET webhooks carry the event in the query string.
    fn url_for(&self, out: &Outgoing<'_>) -> url::Url {
        let mut url = self.url.clone();
        if self.method == Method::GET {
            url.query_pairs_mut()
                .append_pair("event_id", out.event_id)
                .append_pair("event_type", out.event_type)
                .append_pair("tenant", out.tenant);
        }
        url
    }

    async fn attempt(&self, webhook_id: &str, mut out: Outgoing<'_>) -> Sent {
        let started = Instant::now();
        let at = now_millis();
        let url = self.url_for(&out);
        let is_get = self.method == Method::GET;
        // A GET carries no body; its JWT carries the event instead (CloudBlue). A body
        // that cannot become claims (a number beyond f64, say) fails the attempt: sending
        // a token without the event would deliver nothing and call it delivered. A POST's
        // token carries the webhook's facts the worker gave.
        let (claims, unusable) = if !self.signer.carries_claims() {
            (None, None)
        } else if !is_get {
            (out.claims.take(), None)
        } else {
            match serde_json::from_slice::<serde_json::Value>(&out.body) {
                Ok(claims) => (Some(claims), None),
                Err(error) => (
                    None,
                    Some(format!(
                        "the event cannot be carried as JWT claims: {error}"
                    )),
                ),
            }
        };
        let signed_body: &[u8] = if is_get { &[] } else { &out.body };
        let request = OutgoingRequest {
            event_id: out.event_id,
            method: &self.method,
            url: &url,
            body: signed_body,
            now: jiff::Timestamp::now(),
            claims: claims.as_ref(),
        };
        let signed = match unusable {
            Some(error) => Err(error),
            None => self
                .signer
                .sign(&request)
                .await
                .map_err(|e| format!("authentication failed: {e}")),
        };
        let result = match signed {
            Err(error) => Err(error),
            Ok(mut auth) => {
                let mut result = self.dispatch(&url, &out, &auth).await;
                // OAuth2: a 401 may mean our cached token was revoked; one fresh token,
                // one more try, before the attempt counts as failed.
                if matches!(&result, Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED)
                    && self.signer.invalidate(&auth)
                {
                    match self.signer.sign(&request).await {
                        Ok(fresh) => {
                            auth = fresh;
                            result = self.dispatch(&url, &out, &auth).await;
                        }
                        Err(e) => result = Err(format!("authentication failed: {e}")),
                    }
                }
                result
            }
        };
        let (status_code, response_headers, response_body, error, retry_after) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = header_map(response.headers());
                let retry_after = headers.get("retry-after").cloned();
                let (body, error) = read_capped(response).await;
                (Some(status), headers, body, error, retry_after)
            }
            Err(error) => (None, BTreeMap::new(), String::new(), Some(error), None),
        };
        let failure = match (status_code, &error) {
            (Some(200..=299), None) => None,
            // NewStore's wording; the URL without its query, which may carry `query_key`.
            (Some(code), _) => {
                let reason = reqwest::StatusCode::from_u16(code)
                    .ok()
                    .and_then(|status| status.canonical_reason())
                    .unwrap_or("unknown status")
                    .to_ascii_lowercase();
                let mut shown = self.url.clone();
                shown.set_query(None);
                Some(format!(
                    "Request to URL {shown} failed. Reason: {reason} (HTTP status code {code})."
                ))
            }
            (None, Some(error)) => Some(error.clone()),
            (None, None) => Some("no response".into()),
        };
        Sent {
            failure,
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

    /// One HTTP exchange; the SSRF guard checks the URL and every resolved address.
    async fn dispatch(
        &self,
        url: &url::Url,
        out: &Outgoing<'_>,
        auth: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, String> {
        // Later layers replace earlier ones: defaults, the webhook's headers, plugin
        // headers, then authentication (which must win).
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        if let Ok(id) = HeaderValue::from_str(out.event_id) {
            headers.insert("webhook-id", id);
        }
        if self.method != Method::GET {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        // Headers a plugin set that HTTP cannot carry are left out rather than failing
        // the attempt.
        for (name, value) in &out.extra_headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        for (name, value) in auth {
            headers.insert(name.clone(), value.clone());
        }
        let mut request = self
            .transport
            .request(self.method.clone(), url)
            .map_err(|refused| refused.to_string())?
            .timeout(self.timeout)
            .headers(headers);
        if self.method != Method::GET {
            request = request.body(out.body.clone());
        }
        request.send().await.map_err(|e| describe(&e))
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    header_pairs(headers).collect()
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

/// A one-line description with the whole cause chain; timeouts say so first, since
/// reqwest's own text for them is easy to miss.
pub fn describe(error: &reqwest::Error) -> String {
    let text = hookgate_signing::transport::describe_error(error);
    if error.is_timeout() {
        format!("timeout: no complete response within the webhook's timeout ({text})")
    } else {
        text
    }
}

#[async_trait]
impl EventSink for HttpSink {
    fn preview(&self, outgoing: &Outgoing<'_>) -> Preview {
        Preview {
            method: self.method.to_string(),
            url: self.url_for(outgoing).to_string(),
            headers: header_pairs(&self.headers)
                .chain(outgoing.extra_headers.iter().cloned())
                .collect(),
        }
    }

    async fn send(&self, webhook_id: &str, outgoing: Outgoing<'_>) -> Sent {
        self.attempt(webhook_id, outgoing).await
    }
}

fn header_pairs(headers: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    headers.iter().map(|(name, value)| {
        (
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    })
}
