//! Turns a webhook's configuration into what the sender needs: its transport (pooled
//! keep-alive client with the webhook's TLS settings and the SSRF guard), its signer, and
//! the URL (with `query_key`), method, headers and timeout.

use hookgate_signing::{Signer, Transport, TransportOptions};
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::sender::Target;
use crate::model::{
    destination::{HttpDestination, HttpMethod},
    webhook::Webhook,
};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the webhook has no http destination")]
    NoUrl,
    #[error("invalid webhook configuration: {0}")]
    Invalid(String),
}

/// The target of a webhook whose destination is http ([`TargetError::NoUrl`] otherwise).
pub fn for_webhook(webhook: &Webhook, allow_private: bool) -> Result<Target, TargetError> {
    let http = webhook.spec.destination.http().ok_or(TargetError::NoUrl)?;
    build(http, webhook.spec.max_in_flight, allow_private)
}

/// `max_in_flight` bounds the idle connections kept to the host.
pub fn build(
    http: &HttpDestination,
    max_in_flight: u32,
    allow_private: bool,
) -> Result<Target, TargetError> {
    let mut url = url::Url::parse(&http.url).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if let Some(key) = &http.query_key {
        url.query_pairs_mut().append_pair("key", key.expose());
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &http.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        headers.insert(name, value);
    }
    let options = TransportOptions {
        policy: hookgate_signing::DestinationPolicy { allow_private },
        max_idle_per_host: max_in_flight as usize,
        ..TransportOptions::default()
    };
    let transport = Transport::new(&http.tls.clone().unwrap_or_default(), &options)
        .map_err(|e| TargetError::Invalid(format!("transport: {e}")))?;
    let signer = Signer::new(&http.authentication, &transport)
        .map_err(|e| TargetError::Invalid(format!("authentication: {e}")))?;
    Ok(Target {
        transport,
        signer,
        url,
        method: match http.method {
            HttpMethod::Post => Method::POST,
            HttpMethod::Get => Method::GET,
        },
        headers,
        timeout: http.timeout.duration(),
    })
}
