//! standard_webhooks, verified by the reference Python library (`standardwebhooks`) and,
//! for `v1a`, by `cryptography`'s ed25519.

use hookgate_signing::{AuthConfig, OutgoingRequest, Signer};
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    CaptureServer, base64, envelope, local_transport, python_verify, sign_and_send,
};

/// Sends one event through a real HTTP request and verifies what the receiver captured
/// with each secret in `secrets`.
async fn deliver_and_verify(auth: &AuthConfig, now: Timestamp, secrets: &[&str]) -> Value {
    let receiver = CaptureServer::accepting_all().await;
    let transport = local_transport();
    let signer = Signer::new(auth, &transport).unwrap();
    let body = envelope("evt_sw_1");
    let request = OutgoingRequest {
        event_id: "evt_sw_1",
        method: &Method::POST,
        url: &receiver.url,
        body: &body,
        now,
        claims: None,
    };
    let (_, response) = sign_and_send(&transport, &signer, &request).await;
    assert_eq!(response.status(), 200);
    let captured = receiver.last();
    assert_eq!(captured.body, body, "body on the wire is the signed body");
    python_verify(
        "verify_standard_webhooks.py",
        &json!({
            "headers": captured.headers_json(),
            "body_b64": base64(&captured.body),
            "secrets": secrets,
            "public_key": auth.standard_webhooks_public_key(),
        }),
    )
}

fn generated_config() -> (AuthConfig, String) {
    let mut auth: AuthConfig =
        serde_json::from_value(json!({"type": "standard_webhooks"})).unwrap();
    let secret = auth.prepare_new().unwrap();
    (auth, secret)
}

#[tokio::test]
async fn valid_signature_verifies_with_the_reference_library() {
    let (auth, secret) = generated_config();
    let result = deliver_and_verify(&auth, Timestamp::now(), &[&secret]).await;
    assert_eq!(result["secrets"], json!([true]), "{result}");
}

#[tokio::test]
async fn during_rotation_both_secrets_verify_and_afterwards_only_the_new_one() {
    let (mut auth, old) = generated_config();
    let now = Timestamp::now();
    let new = auth.rotate(now).unwrap();
    let during = deliver_and_verify(&auth, now, &[&old, &new]).await;
    assert_eq!(during["secrets"], json!([true, true]), "{during}");

    // Same config one second after the window closed. (The Python library checks the
    // timestamp against its own clock, so the window is moved instead of the clock.)
    let AuthConfig::StandardWebhooks(sw) = &mut auth else {
        unreachable!()
    };
    sw.previous.as_mut().unwrap().expires_at = now - SignedDuration::from_secs(1);
    let after = deliver_and_verify(&auth, now, &[&old, &new]).await;
    assert_eq!(
        after["secrets"],
        json!(["No matching signature found", true]),
        "{after}"
    );
}

#[tokio::test]
async fn tampered_body_and_foreign_secret_fail() {
    let (auth, secret) = generated_config();
    let transport = local_transport();
    let signer = Signer::new(&auth, &transport).unwrap();
    let url = url::Url::parse("https://example.com/hook").unwrap();
    let body = envelope("evt_sw_2");
    let request = OutgoingRequest {
        event_id: "evt_sw_2",
        method: &Method::POST,
        url: &url,
        body: &body,
        now: Timestamp::now(),
        claims: None,
    };
    let headers: serde_json::Map<String, Value> = signer
        .sign(&request)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().into()))
        .collect();
    let mut tampered = body.clone();
    tampered[10] ^= 0x01;
    let (_, other_secret) = generated_config();
    let result = python_verify(
        "verify_standard_webhooks.py",
        &json!({"headers": headers, "body_b64": base64(&tampered), "secrets": [secret, other_secret]}),
    );
    assert_eq!(
        result["secrets"],
        json!(["No matching signature found", "No matching signature found"]),
        "{result}"
    );
    let untouched = python_verify(
        "verify_standard_webhooks.py",
        &json!({"headers": headers, "body_b64": base64(&body), "secrets": [secret]}),
    );
    assert_eq!(untouched["secrets"], json!([true]));
}

#[tokio::test]
async fn asymmetric_v1a_signature_verifies_with_the_public_key_only() {
    let seed: [u8; 32] = rand::random();
    let (mut auth, secret) = generated_config();
    let AuthConfig::StandardWebhooks(sw) = &mut auth else {
        unreachable!()
    };
    sw.signing_key = Some(format!("whsk_{}", base64(&seed)).into());
    assert_eq!(auth.validate(), Ok(()));
    let result = deliver_and_verify(&auth, Timestamp::now(), &[&secret]).await;
    assert_eq!(result["v1a"], json!(true), "{result}");
    // The v1 entry still verifies next to the v1a one.
    assert_eq!(result["secrets"], json!([true]), "{result}");
}
