//! The secret fields of a config: listing them, masking them for responses, sealing them
//! for storage, and keeping them when a client sends a masked value back.
//!
//! Every operation goes through [`AuthConfig::secret_fields_mut`] /
//! [`TlsConfig::secret_fields_mut`], so a new secret field added to a scheme is masked and
//! sealed as soon as it is listed there.

use super::{AuthConfig, SecretString, TlsConfig};
use crate::secret_box::{MasterKey, OpenError};

/// A secret field that failed to open, with its name.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {source}")]
pub struct OpenFieldError {
    pub field: String,
    #[source]
    pub source: OpenError,
}

impl AuthConfig {
    /// Every secret field with its path inside the block (`secret`, `previous.secret`, …).
    pub fn secret_fields_mut(&mut self) -> Vec<(&'static str, &mut SecretString)> {
        let mut fields = Vec::new();
        match self {
            AuthConfig::None => {}
            AuthConfig::ApiKey(auth) => fields.push(("api_key", &mut auth.api_key)),
            AuthConfig::Hmac(auth) => fields.push(("secret", &mut auth.secret)),
            AuthConfig::StandardWebhooks(auth) => {
                if let Some(secret) = &mut auth.secret {
                    fields.push(("secret", secret));
                }
                if let Some(previous) = &mut auth.previous {
                    fields.push(("previous.secret", &mut previous.secret));
                }
                if let Some(key) = &mut auth.signing_key {
                    fields.push(("signing_key", key));
                }
            }
            AuthConfig::Jwt(auth) => {
                if let Some(secret) = &mut auth.secret {
                    fields.push(("secret", secret));
                }
                if let Some(key) = &mut auth.private_key {
                    fields.push(("private_key", key));
                }
            }
            AuthConfig::Oauth2(auth) => fields.push(("client_secret", &mut auth.client_secret)),
        }
        fields
    }

    /// A copy for API responses: every secret replaced by its hint (`whsec_…a1b2`,
    /// `****a1b2`). Never store or sign with the result.
    #[must_use]
    pub fn masked(&self) -> AuthConfig {
        let mut copy = self.clone();
        mask_all(copy.secret_fields_mut());
        copy
    }

    /// Seals every plaintext secret with the master key before the config is stored.
    /// Already sealed values are left as they are, so calling this twice is harmless.
    pub fn seal_secrets(&mut self, key: &MasterKey) {
        seal_all(self.secret_fields_mut(), key);
    }

    /// Opens every sealed secret after the config is loaded. Plaintext values are left
    /// as they are (a store written before sealing was enabled still loads).
    pub fn open_secrets(&mut self, key: &MasterKey) -> Result<(), OpenFieldError> {
        open_all(self.secret_fields_mut(), key, "authentication")
    }

    /// For PUT/PATCH: a client that read the webhook (masked) and sends it back unchanged
    /// sends hints, not secrets. Every secret field of `self` that equals the hint of the
    /// same field in `stored` (same scheme) gets the stored value back.
    pub fn restore_masked_secrets(&mut self, stored: &AuthConfig) {
        if std::mem::discriminant(self) != std::mem::discriminant(stored) {
            return;
        }
        let mut stored = stored.clone();
        restore_all(self.secret_fields_mut(), stored.secret_fields_mut());
    }
}

impl TlsConfig {
    /// The secret fields of the TLS block (the client private key; certificates are public).
    pub fn secret_fields_mut(&mut self) -> Vec<(&'static str, &mut SecretString)> {
        self.client_key_pem
            .as_mut()
            .map(|key| ("client_key_pem", key))
            .into_iter()
            .collect()
    }

    /// A copy for API responses with the private key replaced by its hint.
    #[must_use]
    pub fn masked(&self) -> TlsConfig {
        let mut copy = self.clone();
        mask_all(copy.secret_fields_mut());
        copy
    }

    /// See [`AuthConfig::seal_secrets`].
    pub fn seal_secrets(&mut self, key: &MasterKey) {
        seal_all(self.secret_fields_mut(), key);
    }

    /// See [`AuthConfig::open_secrets`].
    pub fn open_secrets(&mut self, key: &MasterKey) -> Result<(), OpenFieldError> {
        open_all(self.secret_fields_mut(), key, "tls")
    }

    /// See [`AuthConfig::restore_masked_secrets`].
    pub fn restore_masked_secrets(&mut self, stored: &TlsConfig) {
        let mut stored = stored.clone();
        restore_all(self.secret_fields_mut(), stored.secret_fields_mut());
    }
}

fn mask_all(fields: Vec<(&'static str, &mut SecretString)>) {
    for (_, value) in fields {
        *value = SecretString::new(value.hint());
    }
}

fn seal_all(fields: Vec<(&'static str, &mut SecretString)>, key: &MasterKey) {
    for (_, value) in fields {
        if !value.is_sealed() {
            *value = SecretString::new(key.seal(value.expose()));
        }
    }
}

fn open_all(
    fields: Vec<(&'static str, &mut SecretString)>,
    key: &MasterKey,
    block: &str,
) -> Result<(), OpenFieldError> {
    for (name, value) in fields {
        if value.is_sealed() {
            let plain = key.open(value.expose()).map_err(|source| OpenFieldError {
                field: format!("{block}.{name}"),
                source,
            })?;
            *value = SecretString::new(plain);
        }
    }
    Ok(())
}

fn restore_all(
    incoming: Vec<(&'static str, &mut SecretString)>,
    stored: Vec<(&'static str, &mut SecretString)>,
) {
    for (name, value) in incoming {
        if let Some((_, original)) = stored.iter().find(|(n, _)| *n == name)
            && value.expose() == original.hint()
        {
            *value = (**original).clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(value: serde_json::Value) -> AuthConfig {
        serde_json::from_value(value).unwrap()
    }

    fn every_scheme() -> Vec<AuthConfig> {
        vec![
            auth(json!({"type": "api_key", "api_key": "api-key-value-0001"})),
            auth(json!({"type": "hmac", "secret": "hmac-secret-value-0002"})),
            auth(json!({"type": "standard_webhooks",
                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "previous": {"secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                     "expires_at": "2026-11-23T10:00:00Z"},
                        "signing_key": "whsk_CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="})),
            auth(
                json!({"type": "jwt", "algorithm": "HS256", "secret": "jwt-secret-value-0003",
                        "iss": "i", "sub": "s"}),
            ),
            auth(
                json!({"type": "oauth2", "client_id": "c", "client_secret": "client-secret-0004",
                        "token_url": "https://idp.example.com/token"}),
            ),
        ]
    }

    fn secrets(config: &mut AuthConfig) -> Vec<String> {
        config
            .secret_fields_mut()
            .into_iter()
            .map(|(_, v)| v.expose().to_owned())
            .collect()
    }

    #[test]
    fn masked_output_contains_no_secret() {
        for mut config in every_scheme() {
            let originals = secrets(&mut config);
            let masked = serde_json::to_string(&config.masked()).unwrap();
            for secret in originals {
                let body = secret
                    .trim_start_matches("whsec_")
                    .trim_start_matches("whsk_");
                assert!(!masked.contains(body), "{masked} leaks {secret}");
            }
        }
        let tls = TlsConfig {
            client_key_pem: Some(
                "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----".into(),
            ),
            ..TlsConfig::default()
        };
        assert!(
            !serde_json::to_string(&tls.masked())
                .unwrap()
                .contains("SECRETBYTES")
        );
    }

    #[test]
    fn seal_and_open_every_secret_field() {
        let (key, _) = MasterKey::generate();
        for original in every_scheme() {
            let mut config = original.clone();
            config.seal_secrets(&key);
            let stored = serde_json::to_string(&config).unwrap();
            for secret in secrets(&mut original.clone()) {
                assert!(!stored.contains(&secret), "{stored} contains {secret}");
            }
            config.seal_secrets(&key); // idempotent
            config.open_secrets(&key).unwrap();
            assert_eq!(config, original);
        }

        let (other, _) = MasterKey::generate();
        let mut config = every_scheme().remove(1);
        config.seal_secrets(&key);
        let error = config.open_secrets(&other).unwrap_err();
        assert_eq!(error.field, "authentication.secret");
    }

    #[test]
    fn masked_values_sent_back_keep_the_stored_secret() {
        for stored in every_scheme() {
            let mut incoming = stored.masked();
            incoming.restore_masked_secrets(&stored);
            assert_eq!(incoming, stored);
        }
        let stored = auth(json!({"type": "hmac", "secret": "hmac-secret-value-0002"}));
        let mut changed = auth(json!({"type": "hmac", "secret": "a-brand-new-secret"}));
        changed.restore_masked_secrets(&stored);
        assert_eq!(
            changed,
            auth(json!({"type": "hmac", "secret": "a-brand-new-secret"}))
        );
    }
}
