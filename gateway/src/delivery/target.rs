//! Turns a webhook's configuration into what the sender needs: its transport (pooled
//! keep-alive client with the webhook's TLS settings and the SSRF guard), its signer, and
//! the URL (with `query_key`), method, headers and timeout.

use hookgate_signing::{Signer, Transport, TransportOptions};
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::sender::Target;
use crate::model::webhook::{HttpMethod, Webhook};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the webhook has no http destination")]
    NoUrl,
    #[error("invalid webhook configuration: {0}")]
    Invalid(String),
}

pub fn build(webhook: &Webhook, allow_private: bool) -> Result<Target, TargetError> {
    let spec = &webhook.spec;
    let mut url = url::Url::parse(spec.url.as_deref().ok_or(TargetError::NoUrl)?)
        .map_err(|e| TargetError::Invalid(e.to_string()))?;
    if let Some(key) = &spec.query_key {
        url.query_pairs_mut().append_pair("key", key.expose());
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        headers.insert(name, value);
    }
    let options = TransportOptions {
        policy: hookgate_signing::DestinationPolicy { allow_private },
        max_idle_per_host: spec.max_in_flight as usize,
        ..TransportOptions::default()
    };
    let transport = Transport::new(&spec.tls.clone().unwrap_or_default(), &options)
        .map_err(|e| TargetError::Invalid(format!("transport: {e}")))?;
    let signer = Signer::new(&spec.authentication, &transport)
        .map_err(|e| TargetError::Invalid(format!("authentication: {e}")))?;
    Ok(Target {
        transport,
        signer,
        url,
        method: match spec.method {
            HttpMethod::Post => Method::POST,
            HttpMethod::Get => Method::GET,
        },
        headers,
        timeout: spec.timeout.duration(),
    })
}
