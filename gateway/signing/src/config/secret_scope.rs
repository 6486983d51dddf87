//! What a [`SecretString`] turns into when a whole document is written or read: its
//! hint for an API response, its sealed form for storage, its plaintext when loaded.
//!
//! Why a scope and not a list of fields: the type is what makes a field secret. Any
//! `SecretString` anywhere in a value (a new scheme's key, a new destination's password)
//! is masked, sealed and opened by these functions without anyone naming it, so a new
//! secret field cannot be forgotten in one of the places that must hide it.
//!
//! The scope is a thread-local mode read by `SecretString`'s `Serialize` and
//! `Deserialize`, set only for the duration of one synchronous (de)serialization and
//! reset by a guard even if that panics. Outside a scope a `SecretString` is written and
//! read as it is.

use std::cell::RefCell;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::secret_box::MasterKey;

/// How `SecretString`s are written (`Mask`, `Seal`) or read (`Open`) inside a scope.
#[derive(Clone, Default)]
pub(crate) enum Mode {
    #[default]
    AsIs,
    Mask,
    Seal(MasterKey),
    Open(MasterKey),
}

thread_local! {
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::AsIs) };
}

/// The current thread's mode (cloned: the key is small, and no borrow outlives a call).
pub(crate) fn current_mode() -> Mode {
    MODE.with(|mode| mode.borrow().clone())
}

/// Sets the mode for the life of the guard; the previous one comes back on drop.
struct Scope(Mode);

impl Scope {
    fn enter(mode: Mode) -> Scope {
        Scope(MODE.with(|current| current.replace(mode)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.0);
        MODE.with(|current| *current.borrow_mut() = previous);
    }
}

/// Runs `write` (which serializes something) with every secret written as its hint
/// (`whsec_…a1b2`, `****a1b2`): what API responses show.
pub fn masked<R>(write: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(Mode::Mask);
    write()
}

/// `value` as JSON with every secret replaced by its hint (see [`masked`]). Never store
/// or sign with the result.
pub fn masked_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Value> {
    masked(|| serde_json::to_value(value))
}

/// Runs `write` (which serializes something) with every secret sealed by `key`; values
/// already sealed are written unchanged. For storage: the disk never holds plaintext.
pub fn sealed<R>(key: &MasterKey, write: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(Mode::Seal(key.clone()));
    write()
}

/// Runs `read` (which deserializes something) with every sealed secret opened by `key`.
/// A secret the key cannot open makes the read fail with an error naming the cause.
/// Plaintext values (a store written before sealing) are read as they are.
pub fn opened<R>(key: &MasterKey, read: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(Mode::Open(key.clone()));
    read()
}

/// For PUT and PATCH: a client that read a document (masked) and sends it back sends
/// hints, not secrets. Wherever `incoming` holds, at the same place, exactly the hint
/// that `stored` shows for a secret there, the stored secret is put back. Any other
/// value, a new secret included, is left as sent.
pub fn restore_masked<T: Serialize + ?Sized>(
    incoming: &mut Value,
    stored: &T,
) -> serde_json::Result<()> {
    let plain = serde_json::to_value(stored)?;
    let masked = masked_json(stored)?;
    restore(incoming, &masked, &plain);
    Ok(())
}

fn restore(incoming: &mut Value, masked: &Value, plain: &Value) {
    match (incoming, masked, plain) {
        // A hint differs from what it hides; where they are equal the field is no secret,
        // and what was sent stands.
        (Value::String(sent), Value::String(hint), Value::String(secret))
            if sent == hint && hint != secret =>
        {
            sent.clone_from(secret);
        }
        (Value::Object(sent), Value::Object(hints), Value::Object(secrets)) => {
            for (name, field) in sent.iter_mut() {
                if let (Some(hint), Some(secret)) = (hints.get(name), secrets.get(name)) {
                    restore(field, hint, secret);
                }
            }
        }
        (Value::Array(sent), Value::Array(hints), Value::Array(secrets)) => {
            for ((field, hint), secret) in sent.iter_mut().zip(hints).zip(secrets) {
                restore(field, hint, secret);
            }
        }
        _ => {}
    }
}

/// Writes `value` as JSON with every secret sealed (see [`sealed`]).
pub fn to_sealed_json<T: Serialize + ?Sized>(
    value: &T,
    key: &MasterKey,
) -> serde_json::Result<Vec<u8>> {
    sealed(key, || serde_json::to_vec(value))
}

/// Reads JSON written by [`to_sealed_json`], opening every secret (see [`opened`]).
pub fn from_sealed_json<T: DeserializeOwned>(
    bytes: &[u8],
    key: &MasterKey,
) -> serde_json::Result<T> {
    opened(key, || serde_json::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::super::SecretString;
    use super::*;

    /// A document shaped like none of the crate's configs, with secrets where a new
    /// field might put one: nested, optional, in a list, inside an enum. Nothing names
    /// these fields to the functions under test: the type alone makes them secret.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct NewDestination {
        host: String,
        password: SecretString,
        backup: Option<SecretString>,
        tokens: Vec<SecretString>,
        auth: NewAuth,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum NewAuth {
        Sasl {
            user: String,
            password: SecretString,
        },
    }

    fn document() -> NewDestination {
        NewDestination {
            host: "broker.example:9092".into(),
            password: "password-value-0001".into(),
            backup: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            tokens: vec!["token-value-0002".into(), "token-value-0003".into()],
            auth: NewAuth::Sasl {
                user: "hookgate".into(),
                password: "sasl-password-0004".into(),
            },
        }
    }

    const SECRETS: [&str; 5] = [
        "password-value-0001",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "token-value-0002",
        "token-value-0003",
        "sasl-password-0004",
    ];

    #[test]
    fn every_secret_string_is_masked_without_being_named() {
        let shown = masked_json(&document()).unwrap();
        let text = shown.to_string();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{text} shows {secret}");
        }
        assert_eq!(shown["password"], "****0001");
        assert_eq!(shown["backup"], "whsec_…LaSw");
        assert_eq!(shown["auth"]["password"], "****0004");
        // Other fields are untouched.
        assert_eq!(shown["host"], "broker.example:9092");
        assert_eq!(shown["auth"]["user"], "hookgate");
        // Outside the scope a secret is written as it is again.
        assert_eq!(
            serde_json::to_value(document()).unwrap()["password"],
            "password-value-0001"
        );
    }

    #[test]
    fn every_secret_string_is_sealed_and_opened() {
        let (key, _) = MasterKey::generate();
        let stored = to_sealed_json(&document(), &key).unwrap();
        let text = String::from_utf8(stored.clone()).unwrap();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{text} holds {secret}");
        }
        // Sealing twice keeps the sealed values; opening gives the original back.
        let resealed: NewDestination = serde_json::from_slice(&stored).unwrap();
        assert_eq!(to_sealed_json(&resealed, &key).unwrap(), stored);
        let loaded: NewDestination = from_sealed_json(&stored, &key).unwrap();
        assert_eq!(loaded, document());

        let (other, _) = MasterKey::generate();
        let error = from_sealed_json::<NewDestination>(&stored, &other).unwrap_err();
        assert!(error.to_string().contains("master key"), "{error}");
        // Plaintext written before sealing still loads.
        let plain = serde_json::to_vec(&document()).unwrap();
        assert_eq!(
            from_sealed_json::<NewDestination>(&plain, &key).unwrap(),
            document()
        );
    }

    #[test]
    fn hints_sent_back_keep_the_stored_secrets_and_new_values_stand() {
        let stored = document();
        let mut incoming = masked_json(&stored).unwrap();
        restore_masked(&mut incoming, &stored).unwrap();
        assert_eq!(incoming, serde_json::to_value(&stored).unwrap());

        let mut changed = masked_json(&stored).unwrap();
        changed["password"] = json!("a-brand-new-password");
        changed["tokens"][1] = json!("a-brand-new-token");
        // A non-secret field sent with the value of a hint is not a hint.
        changed["host"] = json!("****0001");
        restore_masked(&mut changed, &stored).unwrap();
        assert_eq!(changed["password"], "a-brand-new-password");
        assert_eq!(changed["tokens"][0], "token-value-0002");
        assert_eq!(changed["tokens"][1], "a-brand-new-token");
        assert_eq!(changed["host"], "****0001");
        assert_eq!(changed["auth"]["password"], "sasl-password-0004");
    }

    /// The crate's own configs go through the same scope: every scheme and TLS.
    #[test]
    fn every_scheme_and_tls_key_is_masked_sealed_and_restored() {
        use super::super::{AuthConfig, TlsConfig};
        let schemes = [
            json!({"type": "api_key", "api_key": "api-key-value-0001"}),
            json!({"type": "hmac", "secret": "hmac-secret-value-0002"}),
            json!({"type": "standard_webhooks",
                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                   "previous": {"secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                "expires_at": "2026-11-23T10:00:00Z"},
                   "signing_key": "whsk_CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="}),
            json!({"type": "jwt", "algorithm": "HS256", "secret": "jwt-secret-value-0003",
                   "iss": "i", "sub": "s"}),
            json!({"type": "oauth2", "client_id": "c", "client_secret": "client-secret-0004",
                   "token_url": "https://idp.example.com/token"}),
        ];
        let secrets = [
            "api-key-value-0001",
            "hmac-secret-value-0002",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
            "jwt-secret-value-0003",
            "client-secret-0004",
        ];
        let (key, _) = MasterKey::generate();
        for scheme in schemes {
            let auth: AuthConfig = serde_json::from_value(scheme).unwrap();
            let shown = masked_json(&auth).unwrap().to_string();
            let stored = String::from_utf8(to_sealed_json(&auth, &key).unwrap()).unwrap();
            for secret in secrets {
                assert!(!shown.contains(secret), "{shown} shows {secret}");
                assert!(!stored.contains(secret), "{stored} holds {secret}");
            }
            let loaded: AuthConfig = from_sealed_json(stored.as_bytes(), &key).unwrap();
            assert_eq!(loaded, auth);
            let mut sent_back = masked_json(&auth).unwrap();
            restore_masked(&mut sent_back, &auth).unwrap();
            assert_eq!(sent_back, serde_json::to_value(&auth).unwrap());
        }
        let tls = TlsConfig {
            client_key_pem: Some(
                "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----".into(),
            ),
            ..TlsConfig::default()
        };
        assert!(
            !masked_json(&tls)
                .unwrap()
                .to_string()
                .contains("SECRETBYTES")
        );
        let stored = to_sealed_json(&tls, &key).unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("SECRETBYTES"));
        assert_eq!(from_sealed_json::<TlsConfig>(&stored, &key).unwrap(), tls);
    }

    #[test]
    fn the_scope_ends_even_when_the_work_panics() {
        let (key, _) = MasterKey::generate();
        let result = std::panic::catch_unwind(|| {
            sealed(&key, || panic!("serializer failed"));
        });
        assert!(result.is_err());
        assert!(matches!(current_mode(), Mode::AsIs));
    }
}
