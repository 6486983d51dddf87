//! The `authentication` and `tls` blocks of a webhook (`API.md`, "Webhooks"), as serde types.
//!
//! This module owns the *shape* of the config and everything that only looks at it:
//! validation ([`AuthConfig::validate`], [`TlsConfig::validate`]), secret generation and
//! rotation ([`AuthConfig::prepare_new`], [`AuthConfig::rotate`]). It does no I/O;
//! turning a config into something that signs is [`crate::Signer::new`]'s job.
//!
//! Every secret field is a [`SecretString`], so `{:?}` of a config is safe to log, and
//! [`secret_scope`] masks it for responses, seals it for storage and opens it on load,
//! in these configs and in any other document that holds one (a webhook, a destination).

mod lifecycle;
pub mod secret_scope;
mod secret_string;
pub(crate) mod validate;

use serde::{Deserialize, Serialize};

pub use lifecycle::{ROTATION_OVERLAP, RotateError};
pub use secret_string::SecretString;

/// Header the `hmac` scheme writes when none is configured (Automation API).
pub const DEFAULT_HMAC_HEADER: &str = "X-Signature";
/// JWT lifetime when `ttl` is not configured.
pub const DEFAULT_JWT_TTL: &str = "PT5M";

/// How every request of a webhook is authenticated. Tagged by `type`:
/// `{"type": "hmac", "secret": "…"}`. Unknown fields are refused, so a typo is a 400
/// instead of a silently unsigned webhook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No authentication headers.
    #[default]
    None,
    /// `Authorization: Bearer <api_key>` (NewStore).
    ApiKey(ApiKeyAuth),
    /// Hex HMAC-SHA256 of the exact body in one header (Automation API).
    Hmac(HmacAuth),
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` per Standard Webhooks.
    StandardWebhooks(StandardWebhooksAuth),
    /// `Authorization: Bearer <JWT>` signed HS256 or RS256 (CloudBlue, Sterling).
    Jwt(JwtAuth),
    /// `Authorization: Bearer <token>` from an OAuth2 client-credentials grant (Sterling).
    Oauth2(OAuth2Auth),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    pub api_key: SecretString,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacAuth {
    /// The key is the UTF-8 bytes of this string, as the Automation API uses it.
    pub secret: SecretString,
    /// Header carrying the signature; [`DEFAULT_HMAC_HEADER`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksAuth {
    /// `whsec_` + base64 of 24..=64 random bytes. Absent on create: [`AuthConfig::prepare_new`]
    /// generates one and the API shows it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// The secret before the last rotation; requests are signed with it too until
    /// `expires_at`, so receivers can switch without downtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
    /// Optional ed25519 private key, `whsk_` + base64 of the 32-byte seed. When set, every
    /// request also carries a `v1a,<base64 signature>` entry, which receivers verify with
    /// the public key ([`AuthConfig::standard_webhooks_public_key`], `whpk_…`) and so never
    /// need to hold a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretString>,
}

/// A rotated-out secret that stays valid for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousSecret {
    pub secret: SecretString,
    pub expires_at: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    pub algorithm: JwtAlgorithm,
    /// HS256 key (the UTF-8 bytes of this string). Required for HS256, refused for RS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretString>,
    /// RS256 key: PKCS#1 or PKCS#8 PEM, at least 2048 bits. Required for RS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretString>,
    /// Sent as the JWT header's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_id: Option<String>,
    /// Sent as `iss` when set (Sterling requires it; CloudBlue sends none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Sent as `sub` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Sent as `aud` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// ISO-8601 duration between `iat` and `exp`; [`DEFAULT_JWT_TTL`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// JWT signature algorithm. Sterling's spellings `HMAC256` and `RSA256` are accepted on
/// input; output always uses the JOSE names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256", alias = "HMAC256")]
    Hs256,
    #[serde(rename = "RS256", alias = "RSA256")]
    Rs256,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    pub client_id: String,
    pub client_secret: SecretString,
    /// http(s) URL of the token endpoint; subject to the same SSRF guard as deliveries.
    pub token_url: String,
    /// Space-separated scopes, sent as `scope` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Sent as `audience` when set (Auth0 and similar identity providers require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuthMethod,
}

/// Where the client credentials go in the token request (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form fields.
    Body,
}

/// The `tls` block: trust and client identity for HTTPS deliveries. Certificate
/// verification is always on; `ca_pem` adds trust, it never removes the default roots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM bundle) trusted in addition to the system/webpki roots,
    /// for receivers behind a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Client certificate chain (PEM, leaf first) for mTLS; needs `client_key_pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// Private key of `client_cert_pem` (unencrypted PKCS#8, PKCS#1 or SEC1 PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<SecretString>,
}

impl TlsConfig {
    /// True when nothing is configured: such webhooks can share one default transport.
    pub fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client_cert_pem.is_none() && self.client_key_pem.is_none()
    }
}

/// One problem with one field, for a 400 response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path from the webhook body, e.g. `authentication.secret` or `tls.ca_pem`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl AuthConfig {
    /// The snake_case `type` name, for logs and error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthConfig::None => "none",
            AuthConfig::ApiKey(_) => "api_key",
            AuthConfig::Hmac(_) => "hmac",
            AuthConfig::StandardWebhooks(_) => "standard_webhooks",
            AuthConfig::Jwt(_) => "jwt",
            AuthConfig::Oauth2(_) => "oauth2",
        }
    }

    /// The `whpk_…` public key matching a standard_webhooks `signing_key`, to show to users
    /// who verify `v1a` signatures. `None` for other schemes, without a key, or while the
    /// key is sealed or invalid.
    pub fn standard_webhooks_public_key(&self) -> Option<String> {
        let AuthConfig::StandardWebhooks(auth) = self else {
            return None;
        };
        let key = crate::key_material::decode_whsk(auth.signing_key.as_ref()?.expose()).ok()?;
        Some(crate::key_material::encode_whpk(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_deserializes_from_the_api_shape() {
        let cases = [
            json!({"type": "none"}),
            json!({"type": "api_key", "api_key": "k"}),
            json!({"type": "hmac", "secret": "s", "header": "X-Sig"}),
            json!({"type": "standard_webhooks"}),
            json!({"type": "jwt", "algorithm": "HS256", "secret": "s", "iss": "i", "sub": "s"}),
            json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                   "token_url": "https://idp.example.com/token", "client_auth": "body"}),
        ];
        for case in cases {
            let auth: AuthConfig = serde_json::from_value(case.clone()).unwrap();
            assert_eq!(auth.type_name(), case["type"]);
            // Round trip: what we store is what we read back.
            let again: AuthConfig =
                serde_json::from_value(serde_json::to_value(&auth).unwrap()).unwrap();
            assert_eq!(again, auth);
        }
    }

    #[test]
    fn sterling_algorithm_spellings_are_aliases() {
        for (input, expected) in [
            ("HMAC256", JwtAlgorithm::Hs256),
            ("HS256", JwtAlgorithm::Hs256),
            ("RSA256", JwtAlgorithm::Rs256),
            ("RS256", JwtAlgorithm::Rs256),
        ] {
            let parsed: JwtAlgorithm = serde_json::from_value(json!(input)).unwrap();
            assert_eq!(parsed, expected);
        }
        assert_eq!(
            serde_json::to_value(JwtAlgorithm::Rs256).unwrap(),
            json!("RS256")
        );
        assert!(serde_json::from_value::<JwtAlgorithm>(json!("ES256")).is_err());
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(
            serde_json::from_value::<AuthConfig>(json!({"type": "hmac", "secert": "s"})).is_err()
        );
        assert!(
            serde_json::from_value::<AuthConfig>(
                json!({"type": "hmac", "secret": "s", "extra": 1})
            )
            .is_err()
        );
        assert!(serde_json::from_value::<AuthConfig>(json!({"type": "basic"})).is_err());
        assert!(serde_json::from_value::<TlsConfig>(json!({"ca": "x"})).is_err());
    }

    #[test]
    fn oauth2_client_auth_defaults_to_basic() {
        let auth: AuthConfig = serde_json::from_value(json!({
            "type": "oauth2", "client_id": "c", "client_secret": "s",
            "token_url": "https://idp.example.com/token"
        }))
        .unwrap();
        let AuthConfig::Oauth2(oauth2) = auth else {
            panic!("not oauth2")
        };
        assert_eq!(oauth2.client_auth, ClientAuthMethod::Basic);
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let auth: AuthConfig = serde_json::from_value(json!({
            "type": "oauth2", "client_id": "c", "client_secret": "very-secret-value-1234",
            "token_url": "https://idp.example.com/token"
        }))
        .unwrap();
        let debug = format!("{auth:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(debug.contains("****1234"));
    }
}
