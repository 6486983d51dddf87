//! Secrets at rest: one master key seals every secret field before it reaches sled.
//!
//! Sealed values are text, `enc:v1:<base64(nonce || ciphertext || tag)>`, so they fit in the
//! same JSON fields as the plaintext and are recognisable at a glance (and by
//! [`is_sealed`]). The cipher is XChaCha20-Poly1305: its 192-bit nonce can be drawn at random
//! for every seal without any realistic risk of reuse, so no nonce counter has to be stored.
//!
//! This module never logs or formats key material; `MasterKey`'s `Debug` is redacted.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Prefix of every sealed value; the version lets a future format coexist with this one.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Environment variable the gateway reads a base64 master key from (see `API.md`).
pub const MASTER_KEY_ENV: &str = "HOOKGATE_MASTER_KEY";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bound into every ciphertext so a value sealed by something else with the same key
/// (should the key ever be reused) does not open here.
const ASSOCIATED_DATA: &[u8] = b"hookgate secret v1";

/// Why a master key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key is not valid base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    #[error("master key must be {KEY_LEN} bytes, got {0}")]
    WrongLength(usize),
}

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("value is not sealed (no `{SEALED_PREFIX}` prefix)")]
    NotSealed,
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// Wrong master key, or the stored value was altered.
    #[error("sealed value does not open with this master key (wrong key or tampered data)")]
    Decrypt,
    #[error("sealed value does not decrypt to UTF-8 text")]
    NotUtf8,
}

/// The key that seals secrets at rest. Cheap to clone; keep one for the whole process.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Builds a key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }

    /// Builds a key from its base64 form (the `master_key` config value or
    /// `HOOKGATE_MASTER_KEY`; surrounding whitespace is ignored).
    pub fn from_base64(encoded: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD.decode(encoded.trim())?;
        let bytes: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::WrongLength(bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key and its base64 form (to print or store).
    pub fn generate() -> (Self, String) {
        let bytes: [u8; KEY_LEN] = rand::random();
        (Self::from_bytes(bytes), STANDARD.encode(bytes))
    }

    /// The gateway's master key: the base64 value from config (`master_key`) or the
    /// environment ([`MASTER_KEY_ENV`]) when one is given, else the key file in the data
    /// directory, created on first start by [`MasterKey::load_or_create`].
    pub fn from_config_or_file(configured: Option<&str>, key_file: &Path) -> io::Result<Self> {
        match configured {
            Some(encoded) => Self::from_base64(encoded).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("master_key: {e}"))
            }),
            None => Self::load_or_create(key_file),
        }
    }

    /// Reads the key file at `path` (base64 text, as written here), or creates it with a new
    /// random key and permissions 0600 when it does not exist.
    ///
    /// Creation uses `create_new`, so two processes starting at once cannot both write a key:
    /// the loser reads the winner's file.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => return Self::from_base64(&text).map_err(|e| invalid_key_file(path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (key, encoded) = Self::generate();
        match create_private_file(path) {
            Ok(mut file) => {
                file.write_all(encoded.as_bytes())?;
                file.write_all(b"\n")?;
                // The key must be durable before anything sealed with it is.
                file.sync_all()?;
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(path)?;
                Self::from_base64(&text).map_err(|e| invalid_key_file(path, e))
            }
            Err(e) => Err(e),
        }
    }

    /// Encrypts `plaintext` into a `enc:v1:…` string. Every call uses a new random nonce, so
    /// sealing the same text twice gives different outputs.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: ASSOCIATED_DATA,
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encryption only fails for inputs larger than 256 GiB");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// Decrypts a value produced by [`MasterKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(OpenError::NotSealed)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| OpenError::Malformed("not base64"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed("too short"));
        }
        let (nonce_bytes, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = nonce_bytes.try_into().expect("split at NONCE_LEN");
        let payload = Payload {
            msg: ciphertext,
            aad: ASSOCIATED_DATA,
        };
        let plaintext = self
            .cipher
            .decrypt(&XNonce::from(nonce_bytes), payload)
            .map_err(|_| OpenError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::NotUtf8)
    }
}

/// True when `value` looks like the output of [`MasterKey::seal`].
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

fn invalid_key_file(path: &Path, error: MasterKeyError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("master key file {}: {error}", path.display()),
    )
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // The mode is applied at creation, so the key is never readable by others, not even
    // for the instant a chmod after creation would leave open.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let (key, _) = MasterKey::generate();
        let sealed = key.seal("whsec_c2VjcmV0");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("c2VjcmV0"));
        assert_eq!(key.open(&sealed).unwrap(), "whsec_c2VjcmV0");
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let (key, _) = MasterKey::generate();
        assert_ne!(key.seal("same"), key.seal("same"));
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let (key, _) = MasterKey::generate();
        let (other, _) = MasterKey::generate();
        let sealed = key.seal("top secret");
        assert!(matches!(other.open(&sealed), Err(OpenError::Decrypt)));

        let mut bytes = STANDARD
            .decode(sealed.strip_prefix(SEALED_PREFIX).unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes));
        assert!(matches!(key.open(&tampered), Err(OpenError::Decrypt)));

        assert!(matches!(key.open("plain"), Err(OpenError::NotSealed)));
        assert!(matches!(
            key.open("enc:v1:AAAA"),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn base64_key_round_trips_and_wrong_lengths_are_refused() {
        let (key, encoded) = MasterKey::generate();
        let again = MasterKey::from_base64(&format!(" {encoded}\n")).unwrap();
        assert_eq!(again.open(&key.seal("x")).unwrap(), "x");
        assert!(matches!(
            MasterKey::from_base64(&STANDARD.encode([0u8; 16])),
            Err(MasterKeyError::WrongLength(16))
        ));
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(second.open(&first.seal("kept")).unwrap(), "kept");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_key_wins_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (configured, encoded) = MasterKey::generate();
        let key = MasterKey::from_config_or_file(Some(&encoded), &path).unwrap();
        assert_eq!(key.open(&configured.seal("x")).unwrap(), "x");
        assert!(
            !path.exists(),
            "no file is written when the key is configured"
        );
        assert!(MasterKey::from_config_or_file(Some("short"), &path).is_err());
        MasterKey::from_config_or_file(None, &path).unwrap();
        assert!(path.exists());
    }

    #[test]
    fn corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "garbage").unwrap();
        let error = MasterKey::load_or_create(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read_to_string(&path).unwrap(), "garbage");
    }
}
