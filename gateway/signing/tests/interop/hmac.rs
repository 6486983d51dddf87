//! hmac, recomputed by Python's standard library from the captured request.

use hookgate_signing::{AuthConfig, OutgoingRequest, Signer};
use jiff::Timestamp;
use reqwest::Method;
use serde_json::json;

use crate::support::{
    CaptureServer, base64, envelope, local_transport, python_verify, sign_and_send,
};

async fn capture_signed(auth: &AuthConfig) -> crate::support::Captured {
    let receiver = CaptureServer::accepting_all().await;
    let transport = local_transport();
    let signer = Signer::new(auth, &transport).unwrap();
    let body = envelope("evt_hmac_1");
    let request = OutgoingRequest {
        event_id: "evt_hmac_1",
        method: &Method::POST,
        url: &receiver.url,
        body: &body,
        now: Timestamp::now(),
        claims: None,
    };
    sign_and_send(&transport, &signer, &request).await;
    receiver.last()
}

#[tokio::test]
async fn default_header_carries_hex_hmac_of_the_exact_body() {
    let auth: AuthConfig =
        serde_json::from_value(json!({"type": "hmac", "secret": "HeaderSecret"})).unwrap();
    let captured = capture_signed(&auth).await;
    let signature = captured.header("x-signature");
    let result = python_verify(
        "verify_hmac.py",
        &json!({"signature": signature, "body_b64": base64(&captured.body), "secret": "HeaderSecret"}),
    );
    assert_eq!(result["matches"], true);

    let mut tampered = captured.body.to_vec();
    tampered.push(b' ');
    let result = python_verify(
        "verify_hmac.py",
        &json!({"signature": signature, "body_b64": base64(&tampered), "secret": "HeaderSecret"}),
    );
    assert_eq!(result["matches"], false);
}

#[tokio::test]
async fn configured_header_and_rotated_secret_are_used() {
    let mut auth: AuthConfig = serde_json::from_value(
        json!({"type": "hmac", "secret": "old", "header": "X-Hub-Signature"}),
    )
    .unwrap();
    let secret = auth.rotate(Timestamp::now()).unwrap();
    let captured = capture_signed(&auth).await;
    assert!(captured.headers.get("x-signature").is_none());
    let result = python_verify(
        "verify_hmac.py",
        &json!({"signature": captured.header("x-hub-signature"),
                "body_b64": base64(&captured.body), "secret": secret}),
    );
    assert_eq!(result["matches"], true);
}
