//! `SecretString`: a string that never shows itself in logs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secret_scope::{Mode, current_mode};
use crate::key_material::{WHSEC_PREFIX, WHSK_PREFIX};
use crate::secret_box::is_sealed;

/// Shortest secret whose last four characters may be shown: for shorter ones four
/// characters would give away too much of it.
const MIN_LEN_FOR_TAIL_HINT: usize = 12;

/// A secret config value: serialized as a plain JSON string, but `Debug` prints only a
/// hint, so a `{:?}` of a webhook in a log line never leaks it. Inside a secret scope
/// (`config::secret_scope`) it is written as its hint or sealed, and read opened.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match current_mode() {
            Mode::Mask => serializer.serialize_str(&self.hint()),
            Mode::Seal(key) if !self.is_sealed() => serializer.serialize_str(&key.seal(&self.0)),
            _ => serializer.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        match current_mode() {
            Mode::Open(key) if is_sealed(&value) => {
                key.open(&value).map(SecretString).map_err(|error| {
                    serde::de::Error::custom(format!(
                        "a stored secret cannot be opened with this master key: {error}"
                    ))
                })
            }
            _ => Ok(SecretString(value)),
        }
    }
}

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites are easy to grep for.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True while the value is sealed with the master key (`enc:v1:…`).
    pub fn is_sealed(&self) -> bool {
        is_sealed(&self.0)
    }

    /// A hint that identifies the secret without revealing it:
    /// `whsec_…a1b2`, `****a1b2`, `(PEM private key, sha256:0f3a9c21)`, `(sealed)`.
    pub fn hint(&self) -> String {
        let value = self.0.as_str();
        if self.is_sealed() {
            return "(sealed)".into();
        }
        if value.trim_start().starts_with("-----BEGIN") {
            // The tail of a PEM block is the END line; a short fingerprint tells keys apart.
            let digest = Sha256::digest(value.trim().as_bytes());
            return format!("(PEM private key, sha256:{})", hex::encode(&digest[..4]));
        }
        let prefix = [WHSEC_PREFIX, WHSK_PREFIX]
            .into_iter()
            .find(|p| value.starts_with(p));
        let body = prefix.map_or(value, |p| &value[p.len()..]);
        let tail = if body.chars().count() >= MIN_LEN_FOR_TAIL_HINT {
            let skip = body.chars().count() - 4;
            body.chars().skip(skip).collect::<String>()
        } else {
            String::new()
        };
        match prefix {
            Some(p) => format!("{p}…{tail}"),
            None => format!("****{tail}"),
        }
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretString({})", self.hint())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_show_at_most_the_last_four_characters() {
        let whsec = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(whsec.hint(), "whsec_…LaSw");
        assert_eq!(
            SecretString::from("plain-api-key-12345678").hint(),
            "****5678"
        );
        assert_eq!(SecretString::from("short").hint(), "****");
        assert_eq!(SecretString::from("").hint(), "****");
        assert_eq!(SecretString::from("enc:v1:AAAA").hint(), "(sealed)");
        let pem =
            SecretString::from("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(pem.hint().starts_with("(PEM private key, sha256:"));
        assert!(!format!("{whsec:?}").contains("MfKQ9r8G"));
    }
}
