//! Decoding, checking and generating key material.
//!
//! Shared by config validation (so bad input is a 400 when the webhook is created) and by
//! the signer (which decodes once per webhook, never per request). Every error is a plain
//! sentence meant for an API client; none of them quotes the secret.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, EncodingKey};

/// Prefix of a Standard Webhooks symmetric secret.
pub const WHSEC_PREFIX: &str = "whsec_";
/// Prefix of a Standard Webhooks ed25519 secret (signing) key.
pub const WHSK_PREFIX: &str = "whsk_";
/// Prefix of a Standard Webhooks ed25519 public key.
pub const WHPK_PREFIX: &str = "whpk_";

/// Standard Webhooks: "Random. At least 24 bytes (192 bits, 512 maximum)".
const WHSEC_MIN_BYTES: usize = 24;
const WHSEC_MAX_BYTES: usize = 64;
const GENERATED_SECRET_BYTES: usize = 32;
const MIN_RSA_BITS: usize = 2048;

/// Standard base64, padded or not: the reference verifiers accept both, so do we.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a `whsec_…` secret to the HMAC key bytes.
pub(crate) fn decode_whsec(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) else {
        return Err(format!(
            "must start with `{WHSEC_PREFIX}` followed by base64 (Standard Webhooks format)"
        ));
    };
    let bytes = BASE64_ANY_PADDING
        .decode(encoded)
        .map_err(|_| format!("the part after `{WHSEC_PREFIX}` is not valid base64"))?;
    if !(WHSEC_MIN_BYTES..=WHSEC_MAX_BYTES).contains(&bytes.len()) {
        return Err(format!(
            "must decode to {WHSEC_MIN_BYTES}..={WHSEC_MAX_BYTES} bytes, got {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A new random `whsec_` secret (32 bytes).
pub(crate) fn generate_whsec() -> String {
    let bytes: [u8; GENERATED_SECRET_BYTES] = rand::random();
    format!("{WHSEC_PREFIX}{}", STANDARD.encode(bytes))
}

/// A new random shared secret for `hmac` and JWT `HS256`: 32 random bytes as URL-safe
/// base64 text. Receivers use the text itself as the key, as the reference platforms do.
pub(crate) fn generate_shared_secret() -> String {
    let bytes: [u8; GENERATED_SECRET_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a `whsk_…` ed25519 secret key: base64 of the 32-byte seed, or of the 64-byte
/// seed‖public-key form (whose public half must match).
pub(crate) fn decode_whsk(key: &str) -> Result<ed25519_dalek::SigningKey, String> {
    let Some(encoded) = key.strip_prefix(WHSK_PREFIX) else {
        return Err(format!(
            "must start with `{WHSK_PREFIX}` followed by the base64 ed25519 key"
        ));
    };
    let bytes = BASE64_ANY_PADDING
        .decode(encoded)
        .map_err(|_| format!("the part after `{WHSK_PREFIX}` is not valid base64"))?;
    match bytes.len() {
        32 => {
            let seed: [u8; 32] = bytes.as_slice().try_into().expect("length checked");
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        64 => {
            let pair: [u8; 64] = bytes.as_slice().try_into().expect("length checked");
            ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
                .map_err(|_| "the public half of the 64-byte key does not match its seed".into())
        }
        n => Err(format!(
            "an ed25519 key is 32 bytes (seed) or 64 bytes (seed and public key), got {n}"
        )),
    }
}

/// The `whpk_…` public key receivers use to verify `v1a` signatures.
pub(crate) fn encode_whpk(key: &ed25519_dalek::SigningKey) -> String {
    format!(
        "{WHPK_PREFIX}{}",
        STANDARD.encode(key.verifying_key().to_bytes())
    )
}

/// Parses an RSA private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY` PEM) and
/// proves it signs, so a key that parses but cannot be used is refused at creation time.
pub(crate) fn parse_rsa_private_key(pem: &str) -> Result<EncodingKey, String> {
    if pem.contains("ENCRYPTED") {
        return Err(
            "encrypted private keys are not supported; provide an unencrypted \
                    PKCS#1 or PKCS#8 PEM key"
                .into(),
        );
    }
    let key = EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("not an RSA private key in PEM form: {e}"))?;
    // One trial signature (about a millisecond) is the only check that covers everything
    // the signer will need; its length gives the modulus size.
    let signature = jsonwebtoken::crypto::sign(b"hookgate key check", &key, Algorithm::RS256)
        .map_err(|e| format!("the RSA key cannot sign: {e}"))?;
    let bits = URL_SAFE_NO_PAD
        .decode(signature)
        .map(|bytes| bytes.len() * 8)
        .unwrap_or(0);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA keys must be at least {MIN_RSA_BITS} bits, this one is {bits}"
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_whsec_decodes_to_32_bytes() {
        let secret = generate_whsec();
        assert!(secret.starts_with(WHSEC_PREFIX));
        assert_eq!(decode_whsec(&secret).unwrap().len(), 32);
        assert_ne!(secret, generate_whsec());
    }

    #[test]
    fn whsec_accepts_unpadded_base64_and_refuses_bad_input() {
        // 24 bytes: the shortest the spec allows (this one encodes without padding anyway).
        let short_ok = format!("{WHSEC_PREFIX}{}", STANDARD.encode([7u8; 24]));
        assert!(decode_whsec(&short_ok).is_ok());
        let unpadded = format!("{WHSEC_PREFIX}{}", URL_SAFE_NO_PAD.encode([1u8; 32]));
        assert_eq!(decode_whsec(&unpadded).unwrap(), vec![1u8; 32]);

        assert!(decode_whsec("c2VjcmV0").unwrap_err().contains("whsec_"));
        assert!(decode_whsec("whsec_!!!").unwrap_err().contains("base64"));
        let too_short = format!("{WHSEC_PREFIX}{}", STANDARD.encode([7u8; 16]));
        assert!(decode_whsec(&too_short).unwrap_err().contains("24..=64"));
    }

    #[test]
    fn whsk_accepts_seed_and_keypair_forms() {
        let seed = [9u8; 32];
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let from_seed = decode_whsk(&format!("{WHSK_PREFIX}{}", STANDARD.encode(seed))).unwrap();
        assert_eq!(from_seed.to_bytes(), seed);

        let pair = key.to_keypair_bytes();
        let from_pair = decode_whsk(&format!("{WHSK_PREFIX}{}", STANDARD.encode(pair))).unwrap();
        assert_eq!(from_pair.to_bytes(), seed);

        let mut wrong_pair = pair;
        wrong_pair[40] ^= 1;
        assert!(decode_whsk(&format!("{WHSK_PREFIX}{}", STANDARD.encode(wrong_pair))).is_err());
        assert!(decode_whsk(&format!("{WHSK_PREFIX}{}", STANDARD.encode([1u8; 16]))).is_err());
        assert!(encode_whpk(&key).starts_with(WHPK_PREFIX));
    }

    #[test]
    fn garbage_rsa_keys_are_refused_with_a_reason() {
        assert!(parse_rsa_private_key("not a pem").is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(
            parse_rsa_private_key(encrypted)
                .unwrap_err()
                .contains("encrypted")
        );
        let truncated =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n";
        assert!(parse_rsa_private_key(truncated).is_err());
    }
}
