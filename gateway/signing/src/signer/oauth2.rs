//! `oauth2`: a bearer token from the client-credentials grant (RFC 6749 §4.4), cached per
//! webhook.
//!
//! - The token is reused until shortly before `expires_in` runs out, measured on the
//!   attempt clock (`OutgoingRequest::now`), so tests can move time without sleeping.
//! - Refresh is single-flight: the cache sits behind an async mutex held across the token
//!   request, so concurrent sends wait for one request instead of each making their own.
//! - After a 401 the caller invalidates the token it sent; only that token is dropped, so
//!   a burst of 401s for one stale token causes one refresh, not one per request.
//! - The token request goes through the webhook's [`Transport`], so the SSRF guard, the
//!   CA bundle and the client certificate apply to the token endpoint too.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;
use url::form_urlencoded;

use super::SignError;
use crate::config::{ClientAuthMethod, OAuth2Auth};
use crate::transport::{Transport, describe_error};

/// Upper bound for one token request, so a hung endpoint cannot hold the refresh lock
/// (and with it every send of this webhook) for longer.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token response read; a token response is a few hundred bytes.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an error response is kept for the attempt record.
const MAX_ERROR_BODY_CHARS: usize = 512;
/// Lifetime assumed when the endpoint omits `expires_in` (it is only RECOMMENDED); a 401
/// refreshes earlier if the endpoint's real lifetime is shorter.
const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_mins(5);
/// A token is refreshed this long before it expires (or at half-life for short-lived
/// tokens), so it does not expire in flight.
const REFRESH_MARGIN: SignedDuration = SignedDuration::from_secs(30);

pub(super) struct OAuth2TokenSource {
    transport: Transport,
    token_url: Url,
    /// Form body of the token request; fixed for the webhook, so encoded once.
    form_body: String,
    basic_auth: Option<HeaderValue>,
    cache: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    authorization: HeaderValue,
    refresh_at: Timestamp,
}

impl OAuth2TokenSource {
    pub(super) fn new(auth: &OAuth2Auth, token_url: Url, transport: Transport) -> Self {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &auth.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &auth.audience {
            form.append_pair("audience", audience);
        }
        let basic_auth = match auth.client_auth {
            ClientAuthMethod::Body => {
                form.append_pair("client_id", &auth.client_id);
                form.append_pair("client_secret", auth.client_secret.expose());
                None
            }
            ClientAuthMethod::Basic => Some(basic_authorization(
                &auth.client_id,
                auth.client_secret.expose(),
            )),
        };
        Self {
            transport,
            token_url,
            form_body: form.finish(),
            basic_auth,
            cache: Mutex::new(None),
        }
    }

    /// The `Authorization` value to send at `now`: the cached token, or a fresh one.
    pub(super) async fn authorization(&self, now: Timestamp) -> Result<HeaderValue, SignError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref()
            && now < token.refresh_at
        {
            return Ok(token.authorization.clone());
        }
        let token = self.fetch(now).await?;
        let authorization = token.authorization.clone();
        *cache = Some(token);
        Ok(authorization)
    }

    /// Drops the cached token if it is `sent` (or unconditionally when `sent` is `None`).
    /// A refresh already in progress holds the lock and will store a new token anyway.
    pub(super) fn invalidate(&self, sent: Option<&HeaderValue>) {
        if let Ok(mut cache) = self.cache.try_lock()
            && cache
                .as_ref()
                .is_some_and(|token| sent.is_none_or(|sent| *sent == token.authorization))
        {
            *cache = None;
        }
    }

    async fn fetch(&self, now: Timestamp) -> Result<CachedToken, SignError> {
        let url = self.token_url.to_string();
        let mut request = self
            .transport
            .request(Method::POST, &self.token_url)
            .map_err(|source| SignError::TokenDestination {
                url: url.clone(),
                source,
            })?
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .body(self.form_body.clone());
        if let Some(basic) = &self.basic_auth {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|error| SignError::TokenRequest {
                url: url.clone(),
                message: describe_error(&error),
            })?;
        let status = response.status();
        let (body, complete) = read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|error| SignError::TokenRequest {
                url: url.clone(),
                message: describe_error(&error),
            })?;
        if !status.is_success() {
            return Err(SignError::TokenEndpoint {
                url,
                status: status.as_u16(),
                body: error_excerpt(&body),
            });
        }
        if !complete {
            return Err(SignError::TokenResponse {
                url,
                reason: format!("larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"),
            });
        }
        parse_token_response(&body, now).map_err(|reason| SignError::TokenResponse { url, reason })
    }
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
fn basic_authorization(client_id: &str, client_secret: &str) -> HeaderValue {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
    let mut value = HeaderValue::from_str(&format!(
        "Basic {}",
        STANDARD.encode(format!("{id}:{secret}"))
    ))
    .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// Reads at most `cap` bytes of the body; the flag says whether that was all of it.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

fn error_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn parse_token_response(body: &[u8], now: Timestamp) -> Result<CachedToken, String> {
    let response: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let token = response
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or("no `access_token`")?;
    if let Some(token_type) = response.get("token_type").and_then(Value::as_str)
        && !token_type.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "token_type `{token_type}` is not supported (only Bearer)"
        ));
    }
    // A number per RFC 6749; some servers send it as a string.
    let lifetime = match response.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_LIFETIME,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(seconds)
            .ok_or("`expires_in` is not a whole number of seconds")?,
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map(seconds)
            .map_err(|_| "`expires_in` is not a whole number of seconds")?,
        Some(_) => return Err("`expires_in` is not a number".into()),
    };
    let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "`access_token` contains characters not allowed in a header")?;
    authorization.set_sensitive(true);
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    Ok(CachedToken {
        authorization,
        refresh_at: now.saturating_add(lifetime - margin).unwrap_or(now),
    })
}

fn seconds(value: u64) -> SignedDuration {
    // Clamp absurd lifetimes (a year is plenty) so the arithmetic cannot overflow.
    SignedDuration::from_secs(value.min(365 * 24 * 3600) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn token_is_refreshed_thirty_seconds_before_expiry() {
        let token = parse_token_response(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#,
            now(),
        )
        .unwrap();
        assert_eq!(token.authorization, "Bearer abc");
        assert_eq!(token.refresh_at, now() + SignedDuration::from_secs(3570));
    }

    #[test]
    fn short_lifetimes_refresh_at_half_life_and_missing_expiry_uses_a_default() {
        let short =
            parse_token_response(br#"{"access_token":"a","expires_in":"20"}"#, now()).unwrap();
        assert_eq!(short.refresh_at, now() + SignedDuration::from_secs(10));
        let unknown = parse_token_response(br#"{"access_token":"a"}"#, now()).unwrap();
        assert_eq!(unknown.refresh_at, now() + SignedDuration::from_secs(270));
        let zero = parse_token_response(br#"{"access_token":"a","expires_in":0}"#, now()).unwrap();
        assert_eq!(zero.refresh_at, now());
    }

    #[test]
    fn unusable_responses_are_explained() {
        for (body, expected) in [
            (&b"<html>"[..], "not JSON"),
            (br#"{"token_type":"bearer"}"#, "access_token"),
            (
                br#"{"access_token":"a","token_type":"mac"}"#,
                "not supported",
            ),
            (br#"{"access_token":"a","expires_in":-5}"#, "whole number"),
            (br#"{"access_token":"a\nb"}"#, "header"),
        ] {
            let error = parse_token_response(body, now()).err().unwrap();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = basic_authorization("client id", "p@ss:word");
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "client+id:p%40ss%3Aword");
        assert!(value.is_sensitive());
    }

    #[test]
    fn error_bodies_are_capped() {
        let long = "x".repeat(2000);
        let excerpt = error_excerpt(long.as_bytes());
        assert_eq!(excerpt.chars().count(), MAX_ERROR_BODY_CHARS + 1);
    }
}
