//! Turning an [`AuthConfig`] into the authentication headers of each request.
//!
//! A [`Signer`] is built once per webhook (keys decoded, HMAC keys scheduled, RSA key
//! parsed and checked) and then shared by every attempt; it holds no per-request state
//! except the OAuth2 token cache. One submodule per scheme.

mod hmac_body;
mod jwt;
mod oauth2;
mod standard_webhooks;

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use url::Url;

use crate::config::{
    AuthConfig, DEFAULT_HMAC_HEADER, FieldError, JwtAlgorithm, JwtAuth, StandardWebhooksAuth,
    validate::{parse_hmac_header, parse_jwt_ttl},
};
use crate::key_material;
use crate::transport::{SsrfError, Transport};

pub use jwt::BODY_HASH_CLAIM;

/// Headers to add to a request. Insert them (replacing, not appending) after the
/// gateway's own headers: `webhook-id` is written by both.
pub type SignedHeaders = Vec<(HeaderName, HeaderValue)>;

/// What the signer needs to know about one delivery attempt.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingRequest<'a> {
    /// The event id: `webhook-id`, JWT `jti`. Standard Webhooks refuses ids containing `.`.
    pub event_id: &'a str,
    pub method: &'a Method,
    pub url: &'a Url,
    /// The exact bytes that will be sent (after transform plugins).
    pub body: &'a [u8],
    /// The attempt's time: `webhook-timestamp`, JWT `iat`/`exp`, OAuth2 token expiry,
    /// the rotation window. Pass the gateway clock's "now", so tests control time.
    pub now: Timestamp,
    /// Fields the JWT carries besides its own claims (CloudBlue): for a GET, which has no
    /// body, the event (usually the JSON envelope object); for a POST, the webhook's facts
    /// (`webhook_id`, `triggered_at`, …). Ignored by other schemes.
    pub claims: Option<&'a serde_json::Value>,
}

/// Why a [`Signer`] could not be built: the same field errors `validate` reports, plus
/// a missing standard_webhooks secret (call [`AuthConfig::prepare_new`] on create).
#[derive(Debug, thiserror::Error)]
#[error("invalid authentication: {}", join(.0))]
pub struct BuildError(pub Vec<FieldError>);

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one request could not be signed. Record the text on the attempt.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "event id `{0}` cannot be signed with standard_webhooks: it must be non-empty, contain no `.` and be valid in a header"
    )]
    EventId(String),
    #[error("JWT encoding failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// The token endpoint is refused by the SSRF guard.
    #[error("OAuth2 token endpoint {url} refused: {source}")]
    TokenDestination {
        url: String,
        #[source]
        source: SsrfError,
    },
    /// The token request did not get a response (connect, TLS, timeout, …).
    #[error("OAuth2 token request to {url} failed: {message}")]
    TokenRequest { url: String, message: String },
    /// The token endpoint answered with a non-2xx status; `body` is capped.
    #[error("OAuth2 token endpoint {url} returned HTTP {status}: {body}")]
    TokenEndpoint {
        url: String,
        status: u16,
        body: String,
    },
    /// The token endpoint answered 2xx with something that is not a usable token.
    #[error("OAuth2 token endpoint {url} returned an unusable response: {reason}")]
    TokenResponse { url: String, reason: String },
}

/// Produces the authentication headers of a webhook's requests. `Send + Sync`; share it
/// (e.g. in an `Arc`) between all attempts of the webhook and rebuild it when the
/// webhook's `authentication` changes.
pub struct Signer {
    scheme: Scheme,
}

enum Scheme {
    None,
    /// api_key: a fixed `Authorization: Bearer …` value.
    Bearer(HeaderValue),
    Hmac(hmac_body::HmacBodySigner),
    StandardWebhooks(standard_webhooks::StandardWebhooksSigner),
    Jwt(jwt::JwtSigner),
    OAuth2(oauth2::OAuth2TokenSource),
}

impl Signer {
    /// Builds the signer for a webhook. `auth` must have its secrets opened. `transport` is
    /// the webhook's transport; only `oauth2` uses it (for the token request).
    pub fn new(auth: &AuthConfig, transport: &Transport) -> Result<Self, BuildError> {
        auth.validate().map_err(BuildError)?;
        let scheme = match auth {
            AuthConfig::None => Scheme::None,
            AuthConfig::ApiKey(api_key) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", api_key.api_key.expose()))
                        .map_err(|_| invalid("api_key", "not a valid header value"))?;
                value.set_sensitive(true);
                Scheme::Bearer(value)
            }
            AuthConfig::Hmac(hmac) => {
                let header =
                    parse_hmac_header(hmac.header.as_deref().unwrap_or(DEFAULT_HMAC_HEADER))
                        .map_err(|message| invalid("header", &message))?;
                Scheme::Hmac(hmac_body::HmacBodySigner::new(hmac.secret.expose(), header))
            }
            AuthConfig::StandardWebhooks(sw) => {
                Scheme::StandardWebhooks(standard_webhooks_signer(sw)?)
            }
            AuthConfig::Jwt(jwt) => Scheme::Jwt(jwt_signer(jwt)?),
            AuthConfig::Oauth2(oauth2) => {
                let token_url = Url::parse(&oauth2.token_url)
                    .map_err(|e| invalid("token_url", &e.to_string()))?;
                Scheme::OAuth2(oauth2::OAuth2TokenSource::new(
                    oauth2,
                    token_url,
                    transport.clone(),
                ))
            }
        };
        Ok(Self { scheme })
    }

    /// The authentication headers for one request. Only `oauth2` awaits (a token request
    /// when the cached token is missing or about to expire); the others return at once.
    pub async fn sign(&self, request: &OutgoingRequest<'_>) -> Result<SignedHeaders, SignError> {
        match &self.scheme {
            Scheme::None => Ok(Vec::new()),
            Scheme::Bearer(value) => Ok(vec![(AUTHORIZATION, value.clone())]),
            Scheme::Hmac(signer) => Ok(vec![signer.sign(request.body)]),
            Scheme::StandardWebhooks(signer) => signer.sign(request),
            Scheme::Jwt(signer) => signer.sign(request),
            Scheme::OAuth2(source) => {
                let authorization = source.authorization(request.now).await?;
                Ok(vec![(AUTHORIZATION, authorization)])
            }
        }
    }

    /// Whether this scheme puts `OutgoingRequest::claims` into what it signs (JWT): only
    /// then are they worth building.
    pub fn carries_claims(&self) -> bool {
        matches!(self.scheme, Scheme::Jwt(_))
    }

    /// Call when the receiver answered 401 to a request signed with `sent`. For `oauth2`
    /// it drops the cached token if that is the one in `sent` (another task may already
    /// have replaced it) and returns `true`: sign again and retry once before counting the
    /// attempt as failed. For every other scheme it returns `false`: signing again would
    /// produce the same credentials.
    pub fn invalidate(&self, sent: &[(HeaderName, HeaderValue)]) -> bool {
        let Scheme::OAuth2(source) = &self.scheme else {
            return false;
        };
        let sent_authorization = sent
            .iter()
            .find(|(name, _)| *name == AUTHORIZATION)
            .map(|(_, value)| value);
        source.invalidate(sent_authorization);
        true
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::None => "none",
            Scheme::Bearer(_) => "api_key",
            Scheme::Hmac(_) => "hmac",
            Scheme::StandardWebhooks(_) => "standard_webhooks",
            Scheme::Jwt(_) => "jwt",
            Scheme::OAuth2(_) => "oauth2",
        };
        f.debug_struct("Signer").field("scheme", &scheme).finish()
    }
}

fn standard_webhooks_signer(
    auth: &StandardWebhooksAuth,
) -> Result<standard_webhooks::StandardWebhooksSigner, BuildError> {
    let secret = auth.secret.as_ref().ok_or_else(|| {
        invalid(
            "secret",
            "missing; AuthConfig::prepare_new generates it when the webhook is created",
        )
    })?;
    let current = key_material::decode_whsec(secret.expose()).map_err(|m| invalid("secret", &m))?;
    let previous = auth
        .previous
        .as_ref()
        .map(|previous| {
            key_material::decode_whsec(previous.secret.expose())
                .map(|key| (key, previous.expires_at))
                .map_err(|m| invalid("previous.secret", &m))
        })
        .transpose()?;
    let asymmetric = auth
        .signing_key
        .as_ref()
        .map(|key| key_material::decode_whsk(key.expose()).map_err(|m| invalid("signing_key", &m)))
        .transpose()?;
    Ok(standard_webhooks::StandardWebhooksSigner::new(
        &current,
        previous
            .as_ref()
            .map(|(key, expires_at)| (key.as_slice(), *expires_at)),
        asymmetric,
    ))
}

fn jwt_signer(auth: &JwtAuth) -> Result<jwt::JwtSigner, BuildError> {
    let (algorithm, key) = match auth.algorithm {
        JwtAlgorithm::Hs256 => {
            let secret = auth
                .secret
                .as_ref()
                .ok_or_else(|| invalid("secret", "required for HS256"))?;
            (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.expose().as_bytes()),
            )
        }
        JwtAlgorithm::Rs256 => {
            let pem = auth
                .private_key
                .as_ref()
                .ok_or_else(|| invalid("private_key", "required for RS256"))?;
            let key = key_material::parse_rsa_private_key(pem.expose())
                .map_err(|m| invalid("private_key", &m))?;
            (Algorithm::RS256, key)
        }
    };
    let ttl = parse_jwt_ttl(auth.ttl.as_deref()).map_err(|m| invalid("ttl", &m))?;
    Ok(jwt::JwtSigner::new(jwt::JwtSettings {
        algorithm,
        key,
        key_id: auth.private_key_id.clone(),
        iss: auth.iss.clone(),
        sub: auth.sub.clone(),
        audience: auth.audience.clone(),
        // Whole seconds, rounded up: `exp` is a NumericDate.
        ttl_seconds: ttl.as_secs() + i64::from(ttl.subsec_nanos() > 0),
    }))
}

fn invalid(field: &str, message: &str) -> BuildError {
    BuildError(vec![FieldError::new(
        format!("authentication.{field}"),
        message,
    )])
}
