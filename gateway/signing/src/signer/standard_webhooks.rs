//! `standard_webhooks`: the signature scheme of the Standard Webhooks specification.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}`. `webhook-signature` is a
//! space-separated list: `v1,<base64 HMAC-SHA256>` with the current secret, the same with
//! the previous secret while its rotation window is open, and `v1a,<base64 ed25519>` when
//! an asymmetric signing key is configured. Receivers accept the request when any entry
//! they can check verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use reqwest::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use super::{OutgoingRequest, SignError, SignedHeaders};

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

pub(super) struct StandardWebhooksSigner {
    current: Hmac<Sha256>,
    /// The rotated-out key and the instant it stops signing.
    previous: Option<(Hmac<Sha256>, Timestamp)>,
    asymmetric: Option<ed25519_dalek::SigningKey>,
}

impl StandardWebhooksSigner {
    /// Takes decoded key bytes (the part after `whsec_`, base64-decoded).
    pub(super) fn new(
        current: &[u8],
        previous: Option<(&[u8], Timestamp)>,
        asymmetric: Option<ed25519_dalek::SigningKey>,
    ) -> Self {
        Self {
            current: keyed(current),
            previous: previous.map(|(key, expires_at)| (keyed(key), expires_at)),
            asymmetric,
        }
    }

    pub(super) fn sign(&self, request: &OutgoingRequest<'_>) -> Result<SignedHeaders, SignError> {
        let id = request.event_id;
        // The spec: ids must not contain `.`, or `{id}.{ts}.{body}` could be split
        // differently by an attacker who controls the id.
        if id.is_empty() || id.contains('.') {
            return Err(SignError::EventId(id.to_owned()));
        }
        let id_value = HeaderValue::from_str(id).map_err(|_| SignError::EventId(id.to_owned()))?;
        let timestamp = request.now.as_second().to_string();

        let mut signatures = vec![format!(
            "v1,{}",
            hmac_signature(&self.current, id, &timestamp, request.body)
        )];
        if let Some((previous, expires_at)) = &self.previous
            && request.now < *expires_at
        {
            signatures.push(format!(
                "v1,{}",
                hmac_signature(previous, id, &timestamp, request.body)
            ));
        }
        if let Some(key) = &self.asymmetric {
            // ed25519 signs the whole message at once (no streaming), so build it.
            let mut content =
                Vec::with_capacity(id.len() + timestamp.len() + 2 + request.body.len());
            content.extend_from_slice(id.as_bytes());
            content.push(b'.');
            content.extend_from_slice(timestamp.as_bytes());
            content.push(b'.');
            content.extend_from_slice(request.body);
            let signature = key.sign(&content);
            signatures.push(format!("v1a,{}", STANDARD.encode(signature.to_bytes())));
        }

        let signature_value =
            HeaderValue::from_str(&signatures.join(" ")).expect("base64 is a valid header value");
        Ok(vec![
            (WEBHOOK_ID, id_value),
            (
                WEBHOOK_TIMESTAMP,
                HeaderValue::from_str(&timestamp).expect("digits are a valid header value"),
            ),
            (WEBHOOK_SIGNATURE, signature_value),
        ])
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_signature(keyed: &Hmac<Sha256>, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = keyed.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_material::decode_whsec;
    use reqwest::Method;

    fn request<'a>(
        id: &'a str,
        body: &'a [u8],
        now: Timestamp,
        url: &'a url::Url,
    ) -> OutgoingRequest<'a> {
        OutgoingRequest {
            event_id: id,
            method: &Method::POST,
            url,
            body,
            now,
            claims: None,
        }
    }

    #[test]
    fn matches_the_reference_libraries_test_vector() {
        // The vector used by the standardwebhooks reference libraries' tests.
        let key = decode_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signer = StandardWebhooksSigner::new(&key, None, None);
        let url = url::Url::parse("https://example.com/").unwrap();
        let now = Timestamp::from_second(1614265330).unwrap();
        let headers = signer
            .sign(&request(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                br#"{"test": 2432232314}"#,
                now,
                &url,
            ))
            .unwrap();
        assert_eq!(headers[0].1, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(headers[1].1, "1614265330");
        assert_eq!(
            headers[2].1,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn previous_secret_signs_only_inside_its_window() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let expires = Timestamp::from_second(1_800_000_100).unwrap();
        let signer = StandardWebhooksSigner::new(&[1; 32], Some((&[2; 32], expires)), None);
        let url = url::Url::parse("https://example.com/").unwrap();
        let inside = signer.sign(&request("evt_1", b"{}", now, &url)).unwrap();
        assert_eq!(inside[2].1.to_str().unwrap().split(' ').count(), 2);
        let after = signer
            .sign(&request("evt_1", b"{}", expires, &url))
            .unwrap();
        assert_eq!(after[2].1.to_str().unwrap().split(' ').count(), 1);
    }

    #[test]
    fn ids_that_would_make_the_content_ambiguous_are_refused() {
        let signer = StandardWebhooksSigner::new(&[1; 32], None, None);
        let url = url::Url::parse("https://example.com/").unwrap();
        for id in ["", "evt.1", "evt\n1"] {
            assert!(matches!(
                signer.sign(&request(id, b"{}", Timestamp::now(), &url)),
                Err(SignError::EventId(_))
            ));
        }
    }
}
