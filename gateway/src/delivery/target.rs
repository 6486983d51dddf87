//! Turns a webhook's configuration into what the sender needs: an HTTP client (pooled
//! keep-alive connections), the URL with its `query_key`, method, headers and timeout.

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

pub fn build(webhook: &Webhook) -> Result<Target, TargetError> {
    let spec = &webhook.spec;
    let mut url = url::Url::parse(spec.url.as_deref().ok_or(TargetError::NoUrl)?)
        .map_err(|e| TargetError::Invalid(e.to_string()))?;
    if let Some(key) = &spec.query_key {
        url.query_pairs_mut().append_pair("key", key);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| TargetError::Invalid(format!("header {name}: {e}")))?;
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.max_in_flight as usize)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TargetError::Invalid(format!("http client: {e}")))?;
    Ok(Target {
        client,
        url,
        method: match spec.method {
            HttpMethod::Post => Method::POST,
            HttpMethod::Get => Method::GET,
        },
        headers,
        timeout: spec.timeout.duration(),
    })
}
