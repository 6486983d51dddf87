//! `hmac`: lowercase hex HMAC-SHA256 of the exact body bytes in one header (Automation API).
//! No prefix such as `sha256=`: the reference platform sends the bare digest.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderName, HeaderValue};
use sha2::Sha256;

pub(super) struct HmacBodySigner {
    header: HeaderName,
    /// Keyed once; cloning the keyed state per request skips re-deriving the key pads.
    keyed: Hmac<Sha256>,
}

impl HmacBodySigner {
    pub(super) fn new(secret: &str, header: HeaderName) -> Self {
        let keyed = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        Self { header, keyed }
    }

    pub(super) fn sign(&self, body: &[u8]) -> (HeaderName, HeaderValue) {
        let mut mac = self.keyed.clone();
        mac.update(body);
        let digest = hex::encode(mac.finalize().into_bytes());
        let value = HeaderValue::from_str(&digest).expect("hex is a valid header value");
        (self.header.clone(), value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let signer = HmacBodySigner::new("Jefe", HeaderName::from_static("x-signature"));
        let (name, value) = signer.sign(b"what do ya want for nothing?");
        assert_eq!(name, "x-signature");
        assert_eq!(
            value,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
