//! Secret generation on create and rotation (`POST …/rotate-secret`).

use jiff::{SignedDuration, Timestamp};

use super::{AuthConfig, JwtAlgorithm, PreviousSecret, SecretString, StandardWebhooksAuth};
use crate::key_material;

/// How long a rotated-out standard_webhooks secret keeps signing (`API.md`: 24 h).
pub const ROTATION_OVERLAP: SignedDuration = SignedDuration::from_hours(24);

/// Why a config's secret cannot be rotated by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    /// The credential is issued by someone else (API key, OAuth2 client, RSA key pair).
    #[error(
        "authentication type `{0}` has no gateway-generated secret to rotate; update the webhook with new credentials instead"
    )]
    NotRotatable(&'static str),
}

impl AuthConfig {
    /// On create: generates a `standard_webhooks` secret when none was given and returns it
    /// so the API can show it once. Returns `None` (and changes nothing) otherwise.
    pub fn prepare_new(&mut self) -> Option<String> {
        let AuthConfig::StandardWebhooks(auth) = self else {
            return None;
        };
        if auth.secret.is_some() {
            return None;
        }
        let secret = key_material::generate_whsec();
        auth.secret = Some(SecretString::new(secret.clone()));
        Some(secret)
    }

    /// Replaces the signing secret with a new random one and returns it (shown once).
    ///
    /// - `standard_webhooks`: the old secret becomes `previous` and keeps signing until
    ///   `now + 24 h`, so receivers can switch without a failed delivery (a still-running
    ///   older rotation window is replaced: at most two secrets sign at once).
    /// - `hmac` and JWT `HS256`: the new secret replaces the old one at once; these schemes
    ///   carry a single signature, so an old secret could not be honoured anyway.
    /// - everything else: [`RotateError::NotRotatable`].
    pub fn rotate(&mut self, now: Timestamp) -> Result<String, RotateError> {
        match self {
            AuthConfig::StandardWebhooks(auth) => Ok(rotate_standard_webhooks(auth, now)),
            AuthConfig::Hmac(auth) => {
                let secret = key_material::generate_shared_secret();
                auth.secret = SecretString::new(secret.clone());
                Ok(secret)
            }
            AuthConfig::Jwt(auth) if auth.algorithm == JwtAlgorithm::Hs256 => {
                let secret = key_material::generate_shared_secret();
                auth.secret = Some(SecretString::new(secret.clone()));
                Ok(secret)
            }
            other => Err(RotateError::NotRotatable(other.type_name())),
        }
    }

    /// Drops a `previous` standard_webhooks secret whose window has passed, so expired
    /// secrets do not linger in storage. Returns whether anything changed. (The signer
    /// ignores expired secrets either way.)
    pub fn expire_previous(&mut self, now: Timestamp) -> bool {
        if let AuthConfig::StandardWebhooks(auth) = self
            && auth.previous.as_ref().is_some_and(|p| p.expires_at <= now)
        {
            auth.previous = None;
            return true;
        }
        false
    }
}

fn rotate_standard_webhooks(auth: &mut StandardWebhooksAuth, now: Timestamp) -> String {
    let secret = key_material::generate_whsec();
    let old = auth.secret.replace(SecretString::new(secret.clone()));
    auth.previous = old.map(|old| PreviousSecret {
        secret: old,
        expires_at: now + ROTATION_OVERLAP,
    });
    secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(value: serde_json::Value) -> AuthConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn prepare_new_generates_only_a_missing_standard_webhooks_secret() {
        let mut config = auth(json!({"type": "standard_webhooks"}));
        let shown = config.prepare_new().unwrap();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.prepare_new(), None, "second call keeps the secret");

        let mut hmac = auth(json!({"type": "hmac", "secret": "s"}));
        assert_eq!(hmac.prepare_new(), None);
    }

    #[test]
    fn standard_webhooks_rotation_keeps_the_old_secret_for_a_day() {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let mut config = auth(json!({"type": "standard_webhooks"}));
        let first = config.prepare_new().unwrap();
        let second = config.rotate(now).unwrap();
        assert_ne!(first, second);
        let AuthConfig::StandardWebhooks(sw) = &config else {
            panic!()
        };
        assert_eq!(sw.secret.as_ref().unwrap().expose(), second);
        let previous = sw.previous.as_ref().unwrap();
        assert_eq!(previous.secret.expose(), first);
        assert_eq!(
            previous.expires_at,
            "2026-11-23T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(config.validate(), Ok(()));

        assert!(!config.expire_previous(now));
        assert!(config.expire_previous(now + ROTATION_OVERLAP));
    }

    #[test]
    fn hmac_and_hs256_rotate_in_place_others_refuse() {
        let now = Timestamp::now();
        let mut hmac = auth(json!({"type": "hmac", "secret": "old"}));
        let new = hmac.rotate(now).unwrap();
        assert_eq!(
            hmac,
            auth(json!({"type": "hmac", "secret": new.clone()})),
            "header stays default, secret replaced"
        );

        let mut jwt = auth(
            json!({"type": "jwt", "algorithm": "HS256", "secret": "old", "iss": "i", "sub": "s"}),
        );
        let new = jwt.rotate(now).unwrap();
        let AuthConfig::Jwt(inner) = &jwt else {
            panic!()
        };
        assert_eq!(inner.secret.as_ref().unwrap().expose(), new);

        let mut api_key = auth(json!({"type": "api_key", "api_key": "k"}));
        assert_eq!(
            api_key.rotate(now),
            Err(RotateError::NotRotatable("api_key"))
        );
        assert!(AuthConfig::None.rotate(now).is_err());
    }
}
