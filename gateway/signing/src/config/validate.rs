//! Validation of the `authentication` and `tls` blocks, run when a webhook is created or
//! updated so every mistake is a 400 with the field named, not a failed delivery later.
//!
//! Validation parses what the signer will parse (secrets, RSA and ed25519 keys, PEM
//! bundles, certificate/key pairs), using the same functions, so a config that validates
//! builds a `Signer` and a `Transport`.

use jiff::SignedDuration;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use super::{
    ApiKeyAuth, AuthConfig, DEFAULT_JWT_TTL, FieldError, HmacAuth, JwtAlgorithm, JwtAuth,
    OAuth2Auth, SecretString, StandardWebhooksAuth, TlsConfig,
};
use crate::key_material;
use crate::tls_material::{self, IdentityField};
use crate::transport::{DestinationPolicy, check_url};

/// Longest JWT lifetime accepted: a token is a bearer credential for its whole lifetime.
const MAX_JWT_TTL: SignedDuration = SignedDuration::from_hours(24);

/// Headers the hmac signature may not be written to: the HTTP stack or the gateway owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "user-agent",
    "webhook-id",
];

const AUTH: &str = "authentication";
const TLS: &str = "tls";

impl AuthConfig {
    /// Checks every field; all problems are reported at once.
    ///
    /// A `standard_webhooks` block without `secret` is valid: call
    /// [`AuthConfig::prepare_new`] on create to generate it. Sealed values (`enc:v1:…`) are
    /// reported as errors: open them first.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        match self {
            AuthConfig::None => {}
            AuthConfig::ApiKey(auth) => validate_api_key(auth, &mut errors),
            AuthConfig::Hmac(auth) => validate_hmac(auth, &mut errors),
            AuthConfig::StandardWebhooks(auth) => validate_standard_webhooks(auth, &mut errors),
            AuthConfig::Jwt(auth) => validate_jwt(auth, &mut errors),
            AuthConfig::Oauth2(auth) => validate_oauth2(auth, &mut errors),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks the URLs this config makes the gateway call besides the webhook URL (the
    /// OAuth2 `token_url`) against the SSRF policy, for a clear 400 at creation time.
    /// Token requests are checked again when they are sent.
    pub fn check_destinations(&self, policy: &DestinationPolicy) -> Result<(), Vec<FieldError>> {
        let AuthConfig::Oauth2(auth) = self else {
            return Ok(());
        };
        let Ok(url) = Url::parse(&auth.token_url) else {
            // Reported by validate().
            return Ok(());
        };
        check_url(&url, policy)
            .map_err(|e| vec![FieldError::new(field("token_url"), e.to_string())])
    }
}

impl TlsConfig {
    /// Parses the CA bundle and the client certificate and key, and checks the key belongs
    /// to the certificate.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(ca_pem) = &self.ca_pem
            && let Err(message) = tls_material::parse_ca_bundle(ca_pem)
        {
            errors.push(FieldError::new(format!("{TLS}.ca_pem"), message));
        }
        match (&self.client_cert_pem, &self.client_key_pem) {
            (None, None) => {}
            (Some(_), None) => errors.push(FieldError::new(
                format!("{TLS}.client_key_pem"),
                "required when client_cert_pem is set",
            )),
            (None, Some(_)) => errors.push(FieldError::new(
                format!("{TLS}.client_cert_pem"),
                "required when client_key_pem is set",
            )),
            (Some(cert), Some(key)) => {
                let key_field = format!("{TLS}.client_key_pem");
                if let Some(key) = plain(&key_field, key, &mut errors)
                    && let Err((which, message)) = tls_material::parse_client_identity(cert, key)
                {
                    let name = match which {
                        IdentityField::Cert => "client_cert_pem",
                        IdentityField::Key => "client_key_pem",
                    };
                    errors.push(FieldError::new(format!("{TLS}.{name}"), message));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Parses a JWT `ttl` (ISO-8601 duration such as `PT5M`), defaulting to five minutes.
pub(crate) fn parse_jwt_ttl(ttl: Option<&str>) -> Result<SignedDuration, String> {
    let text = ttl.unwrap_or(DEFAULT_JWT_TTL);
    if !text.starts_with('P') {
        return Err(format!(
            "must be an ISO-8601 duration such as {DEFAULT_JWT_TTL}, got `{text}`"
        ));
    }
    let duration: SignedDuration = text.parse().map_err(|e| {
        format!("must be an ISO-8601 duration in hours, minutes or seconds such as {DEFAULT_JWT_TTL}: {e}")
    })?;
    if duration < SignedDuration::from_secs(1) {
        return Err("must be at least one second".into());
    }
    if duration > MAX_JWT_TTL {
        return Err("must be at most PT24H: a JWT is a bearer credential until it expires".into());
    }
    Ok(duration)
}

/// Parses the hmac header name, checking it is a legal header the hmac scheme may own.
pub(crate) fn parse_hmac_header(header: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("`{header}` is not a valid HTTP header name"))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "`{header}` is set by the gateway and cannot carry the signature"
        ));
    }
    Ok(name)
}

fn validate_api_key(auth: &ApiKeyAuth, errors: &mut Vec<FieldError>) {
    let name = field("api_key");
    if let Some(key) = non_empty_secret(&name, &auth.api_key, errors)
        && HeaderValue::from_str(&format!("Bearer {key}")).is_err()
    {
        errors.push(FieldError::new(
            name,
            "must be printable ASCII to fit in the Authorization header",
        ));
    }
}

fn validate_hmac(auth: &HmacAuth, errors: &mut Vec<FieldError>) {
    non_empty_secret(&field("secret"), &auth.secret, errors);
    if let Some(header) = &auth.header
        && let Err(message) = parse_hmac_header(header)
    {
        errors.push(FieldError::new(field("header"), message));
    }
}

fn validate_standard_webhooks(auth: &StandardWebhooksAuth, errors: &mut Vec<FieldError>) {
    if let Some(secret) = &auth.secret {
        check_whsec(&field("secret"), secret, errors);
    }
    if let Some(previous) = &auth.previous {
        check_whsec(&field("previous.secret"), &previous.secret, errors);
    }
    if let Some(key) = &auth.signing_key {
        let name = field("signing_key");
        if let Some(key) = plain(&name, key, errors)
            && let Err(message) = key_material::decode_whsk(key)
        {
            errors.push(FieldError::new(name, message));
        }
    }
}

fn validate_jwt(auth: &JwtAuth, errors: &mut Vec<FieldError>) {
    match auth.algorithm {
        JwtAlgorithm::Hs256 => {
            match &auth.secret {
                Some(secret) => {
                    non_empty_secret(&field("secret"), secret, errors);
                }
                None => errors.push(FieldError::new(field("secret"), "required for HS256")),
            }
            if auth.private_key.is_some() {
                errors.push(FieldError::new(
                    field("private_key"),
                    "only used with RS256; remove it or set algorithm to RS256",
                ));
            }
        }
        JwtAlgorithm::Rs256 => {
            match &auth.private_key {
                Some(key) => {
                    let name = field("private_key");
                    if let Some(pem) = plain(&name, key, errors)
                        && let Err(message) = key_material::parse_rsa_private_key(pem)
                    {
                        errors.push(FieldError::new(name, message));
                    }
                }
                None => errors.push(FieldError::new(
                    field("private_key"),
                    "required for RS256 (PEM RSA private key)",
                )),
            }
            if auth.secret.is_some() {
                errors.push(FieldError::new(
                    field("secret"),
                    "only used with HS256; remove it or set algorithm to HS256",
                ));
            }
        }
    }
    if let Some(kid) = &auth.private_key_id {
        non_empty(&field("private_key_id"), kid, errors);
    }
    for (name, value) in [("iss", &auth.iss), ("sub", &auth.sub)] {
        if let Some(value) = value {
            non_empty(&field(name), value, errors);
        }
    }
    if let Some(audience) = &auth.audience {
        non_empty(&field("audience"), audience, errors);
    }
    if let Err(message) = parse_jwt_ttl(auth.ttl.as_deref()) {
        errors.push(FieldError::new(field("ttl"), message));
    }
}

fn validate_oauth2(auth: &OAuth2Auth, errors: &mut Vec<FieldError>) {
    non_empty(&field("client_id"), &auth.client_id, errors);
    non_empty_secret(&field("client_secret"), &auth.client_secret, errors);
    match Url::parse(&auth.token_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(_) => errors.push(FieldError::new(
            field("token_url"),
            "must be an http or https URL with a host",
        )),
        Err(e) => errors.push(FieldError::new(
            field("token_url"),
            format!("not a valid URL: {e}"),
        )),
    }
    if let Some(scope) = &auth.scope {
        non_empty(&field("scope"), scope, errors);
    }
    if let Some(audience) = &auth.audience {
        non_empty(&field("audience"), audience, errors);
    }
}

fn check_whsec(name: &str, secret: &SecretString, errors: &mut Vec<FieldError>) {
    if let Some(secret) = plain(name, secret, errors)
        && let Err(message) = key_material::decode_whsec(secret)
    {
        errors.push(FieldError::new(name, message));
    }
}

/// The plaintext of a secret, or an error when it is still sealed.
fn plain<'a>(
    name: &str,
    secret: &'a SecretString,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    if secret.is_sealed() {
        errors.push(FieldError::new(
            name,
            "is still sealed; open it with the master key before use",
        ));
        return None;
    }
    Some(secret.expose())
}

fn non_empty_secret<'a>(
    name: &str,
    secret: &'a SecretString,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let value = plain(name, secret, errors)?;
    if value.is_empty() {
        errors.push(FieldError::new(name, "must not be empty"));
        return None;
    }
    Some(value)
}

fn non_empty(name: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(name, "must not be empty"));
    }
}

fn field(name: &str) -> String {
    format!("{AUTH}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(value: serde_json::Value) -> AuthConfig {
        serde_json::from_value(value).unwrap()
    }

    fn fields(result: Result<(), Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn valid_configs_pass() {
        for value in [
            json!({"type": "none"}),
            json!({"type": "api_key", "api_key": "abc"}),
            json!({"type": "hmac", "secret": "HeaderSecret"}),
            json!({"type": "standard_webhooks"}),
            json!({"type": "standard_webhooks", "secret": key_material::generate_whsec()}),
            json!({"type": "jwt", "algorithm": "HMAC256", "secret": "s", "iss": "i", "sub": "s",
                   "audience": "a", "ttl": "PT30S", "private_key_id": "k1"}),
            // CloudBlue's webhooks have a JWT secret and nothing else.
            json!({"type": "jwt", "algorithm": "HS256", "secret": "s"}),
            json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                   "token_url": "https://idp.example.com/oauth/token", "scope": "events"}),
        ] {
            assert_eq!(auth(value.clone()).validate(), Ok(()), "{value}");
        }
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        assert_eq!(
            fields(auth(json!({"type": "hmac", "secret": ""})).validate()),
            ["authentication.secret"]
        );
        assert_eq!(
            fields(
                auth(json!({"type": "hmac", "secret": "s", "header": "Content-Type"})).validate()
            ),
            ["authentication.header"]
        );
        assert_eq!(
            fields(auth(json!({"type": "hmac", "secret": "s", "header": "bad header"})).validate()),
            ["authentication.header"]
        );
        assert_eq!(
            fields(auth(json!({"type": "standard_webhooks", "secret": "c2VjcmV0"})).validate()),
            ["authentication.secret"]
        );
        assert_eq!(
            fields(
                auth(json!({"type": "standard_webhooks", "signing_key": "whsk_AAAA"})).validate()
            ),
            ["authentication.signing_key"]
        );
        assert_eq!(
            fields(
                auth(
                    json!({"type": "jwt", "algorithm": "HS256", "iss": "", "sub": "s",
                               "ttl": "5 minutes"})
                )
                .validate()
            ),
            [
                "authentication.secret",
                "authentication.iss",
                "authentication.ttl"
            ]
        );
        assert_eq!(
            fields(
                auth(json!({"type": "jwt", "algorithm": "RS256", "secret": "s",
                               "iss": "i", "sub": "s"}))
                .validate()
            ),
            ["authentication.private_key", "authentication.secret"]
        );
        assert_eq!(
            fields(auth(json!({"type": "jwt", "algorithm": "RS256", "iss": "i", "sub": "s",
                               "private_key": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"})).validate()),
            ["authentication.private_key"]
        );
        assert_eq!(
            fields(
                auth(
                    json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                               "token_url": "ftp://idp.example.com/token"})
                )
                .validate()
            ),
            ["authentication.token_url"]
        );
        assert_eq!(
            fields(
                auth(
                    json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                               "token_url": "not a url"})
                )
                .validate()
            ),
            ["authentication.token_url"]
        );
    }

    #[test]
    fn sealed_secrets_are_not_mistaken_for_plaintext() {
        let sealed = auth(json!({"type": "hmac", "secret": "enc:v1:AAAA"}));
        let errors = sealed.validate().unwrap_err();
        assert!(errors[0].message.contains("sealed"));
    }

    #[test]
    fn ttl_syntax_and_bounds() {
        assert_eq!(parse_jwt_ttl(None).unwrap(), SignedDuration::from_mins(5));
        assert_eq!(
            parse_jwt_ttl(Some("PT1H30M")).unwrap(),
            SignedDuration::from_mins(90)
        );
        assert!(parse_jwt_ttl(Some("PT0S")).is_err());
        assert!(parse_jwt_ttl(Some("PT25H")).is_err());
        assert!(parse_jwt_ttl(Some("5m")).is_err());
        assert!(parse_jwt_ttl(Some("P1M")).is_err());
    }

    #[test]
    fn token_url_is_checked_against_the_ssrf_policy() {
        let config = auth(
            json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                                 "token_url": "http://169.254.169.254/token"}),
        );
        let errors = config
            .check_destinations(&DestinationPolicy::default())
            .unwrap_err();
        assert_eq!(errors[0].field, "authentication.token_url");
        let local = auth(
            json!({"type": "oauth2", "client_id": "c", "client_secret": "s",
                                "token_url": "http://127.0.0.1:9/token"}),
        );
        assert!(
            local
                .check_destinations(&DestinationPolicy::default())
                .is_err()
        );
        assert!(
            local
                .check_destinations(&DestinationPolicy {
                    allow_private: true
                })
                .is_ok()
        );
    }

    #[test]
    fn tls_pairs_must_be_complete_and_parse() {
        assert_eq!(TlsConfig::default().validate(), Ok(()));
        let half = TlsConfig {
            client_cert_pem: Some("x".into()),
            ..TlsConfig::default()
        };
        assert_eq!(fields(half.validate()), ["tls.client_key_pem"]);
        let bad_ca = TlsConfig {
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            ..TlsConfig::default()
        };
        assert_eq!(fields(bad_ca.validate()), ["tls.ca_pem"]);
        let no_pem = TlsConfig {
            ca_pem: Some("hello".into()),
            ..TlsConfig::default()
        };
        assert_eq!(fields(no_pem.validate()), ["tls.ca_pem"]);
    }
}
