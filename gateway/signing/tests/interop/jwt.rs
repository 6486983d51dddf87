//! jwt, verified by PyJWT (HS256 with the shared secret, RS256 with the public key
//! derived by `cryptography`), checking every claim and recomputing the body hash.

use hookgate_signing::{AuthConfig, OutgoingRequest, Signer};
use jiff::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    CaptureServer, Captured, base64, envelope, local_transport, python_verify, rsa_private_key_pem,
    sign_and_send,
};

async fn capture_signed(
    auth: &AuthConfig,
    method: Method,
    body: &[u8],
    claims: Option<&Value>,
    now: Timestamp,
) -> Captured {
    let receiver = CaptureServer::accepting_all().await;
    let transport = local_transport();
    let signer = Signer::new(auth, &transport).unwrap();
    let request = OutgoingRequest {
        event_id: "evt_jwt_1",
        method: &method,
        url: &receiver.url,
        body,
        now,
        claims,
    };
    let (_, response) = sign_and_send(&transport, &signer, &request).await;
    assert_eq!(response.status(), 200);
    receiver.last()
}

fn assert_every_claim(result: &Value, now: Timestamp, ttl_seconds: i64, audience: Option<&str>) {
    assert!(
        result.get("error").is_none(),
        "PyJWT rejected the token: {result}"
    );
    let claims = &result["claims"];
    assert_eq!(claims["iss"], "hookgate");
    assert_eq!(claims["sub"], "acme");
    assert_eq!(claims["jti"], "evt_jwt_1");
    assert_eq!(claims["iat"], now.as_second());
    assert_eq!(claims["exp"], now.as_second() + ttl_seconds);
    match audience {
        Some(audience) => assert_eq!(claims["aud"], audience),
        None => assert!(claims.get("aud").is_none()),
    }
    assert_eq!(result["body_hash_matches"], true, "{result}");
}

#[tokio::test]
async fn hs256_verifies_with_pyjwt_with_every_claim_and_the_body_hash() {
    let auth: AuthConfig = serde_json::from_value(json!({
        "type": "jwt", "algorithm": "HMAC256", "secret": "cloudblue-shared-secret",
        "iss": "hookgate", "sub": "acme", "audience": "erp", "ttl": "PT2M"
    }))
    .unwrap();
    let now = Timestamp::now();
    let body = envelope("evt_jwt_1");
    let captured = capture_signed(&auth, Method::POST, &body, None, now).await;
    let case = json!({
        "authorization": captured.header("authorization"),
        "body_b64": base64(&captured.body),
        "algorithm": "HS256", "secret": "cloudblue-shared-secret",
        "issuer": "hookgate", "audience": "erp",
    });
    let result = python_verify("verify_jwt.py", &case);
    assert_every_claim(&result, now, 120, Some("erp"));
    assert_eq!(result["header"]["alg"], "HS256");
    assert_eq!(result["header"]["typ"], "JWT");

    // The token is bound to the body: with another body the hash no longer matches.
    let mut other = case.clone();
    other["body_b64"] = base64(b"{\"id\":\"evt_other\"}").into();
    assert_eq!(
        python_verify("verify_jwt.py", &other)["body_hash_matches"],
        false
    );

    // And the signature does not verify with another secret.
    let mut wrong = case;
    wrong["secret"] = "not-the-secret".into();
    let rejected = python_verify("verify_jwt.py", &wrong);
    assert!(
        rejected["error"].as_str().unwrap().contains("Signature"),
        "{rejected}"
    );
}

#[tokio::test]
async fn rs256_verifies_with_pyjwt_using_the_public_key_and_kid() {
    let private_key = rsa_private_key_pem();
    let auth: AuthConfig = serde_json::from_value(json!({
        "type": "jwt", "algorithm": "RSA256", "private_key": private_key,
        "private_key_id": "sterling-key-1", "iss": "hookgate", "sub": "acme"
    }))
    .unwrap();
    assert_eq!(auth.validate(), Ok(()));
    let now = Timestamp::now();
    let body = envelope("evt_jwt_1");
    let captured = capture_signed(&auth, Method::POST, &body, None, now).await;
    let case = json!({
        "authorization": captured.header("authorization"),
        "body_b64": base64(&captured.body),
        "algorithm": "RS256", "private_key_pem": private_key,
        "issuer": "hookgate", "audience": null,
    });
    let result = python_verify("verify_jwt.py", &case);
    assert_every_claim(&result, now, 300, None);
    assert_eq!(result["header"]["alg"], "RS256");
    assert_eq!(result["header"]["kid"], "sterling-key-1");

    let mut other_key = case;
    other_key["private_key_pem"] = rsa_private_key_pem().into();
    let rejected = python_verify("verify_jwt.py", &other_key);
    assert!(rejected["error"].is_string(), "{rejected}");
}

#[tokio::test]
async fn get_webhooks_carry_the_event_in_the_claims() {
    let auth: AuthConfig = serde_json::from_value(json!({
        "type": "jwt", "algorithm": "HS256", "secret": "s3cret",
        "iss": "hookgate", "sub": "acme"
    }))
    .unwrap();
    let now = Timestamp::now();
    let event = json!({"webhook_id": "WH-623-978-334", "object_class": "fulfillment_requests",
                       "data": {"purpose": "demo"}, "iss": "must-not-win"});
    let captured = capture_signed(&auth, Method::GET, b"", Some(&event), now).await;
    assert_eq!(captured.method, Method::GET);
    let result = python_verify(
        "verify_jwt.py",
        &json!({
            "authorization": captured.header("authorization"),
            "body_b64": base64(&captured.body),
            "algorithm": "HS256", "secret": "s3cret", "issuer": "hookgate", "audience": null,
        }),
    );
    assert_every_claim(&result, now, 300, None);
    assert_eq!(result["claims"]["webhook_id"], "WH-623-978-334");
    assert_eq!(result["claims"]["data"], json!({"purpose": "demo"}));
}
