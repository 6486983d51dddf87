//! Outbound authentication through the real binary, each checked by an implementation that
//! did not produce it: the Standard Webhooks reference verifier and PyJWT (Python), run on
//! the requests a real receiver captured.

use std::{process::Command, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Client, Gateway},
    receiver::{Receiver, create_webhook, ingest},
};

/// Runs a Python snippet with `request.json` (headers and body of a captured request)
/// beside it; returns its stdout, failing loudly when a verifier package is missing.
pub(crate) fn python(script: &str, request: &Value) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("request.json");
    std::fs::write(&path, request.to_string()).unwrap();
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "a verifier is missing: pip install -r tests/requirements.txt\n{stderr}"
    );
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(stderr)
    }
}

pub(crate) fn captured(request: &crate::receiver::Recorded) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    json!({"headers": headers, "body": String::from_utf8_lossy(&request.body)})
}

const VERIFY_STANDARD_WEBHOOKS: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
r = json.load(open(sys.argv[1]))
Webhook(r["secret"]).verify(r["body"], r["headers"])
print("verified")
"#;

#[tokio::test]
async fn standard_webhooks_signatures_verify_with_the_reference_library() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let created = create_webhook(
        &t,
        "sw",
        &rx.url("/sw"),
        json!({"authentication": {"type": "standard_webhooks"}}),
    )
    .await;
    // Generated and shown once, then only masked.
    let secret = created["authentication"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    let shown = t.get("/webhooks/sw").await.expect(200).body;
    assert_ne!(shown["authentication"]["secret"], json!(secret));

    ingest(&t, "order-1", json!({"total": 10})).await;
    let requests = rx.wait_requests(&gw, 1, Duration::from_secs(20)).await;
    let mut request = captured(&requests[0]);
    request["secret"] = json!(secret);
    assert_eq!(
        python(VERIFY_STANDARD_WEBHOOKS, &request).unwrap(),
        "verified"
    );
    // A tampered body and a foreign secret fail.
    let mut tampered = request.clone();
    tampered["body"] = json!(request["body"].as_str().unwrap().replace("10", "99"));
    assert!(python(VERIFY_STANDARD_WEBHOOKS, &tampered).is_err());
    let mut foreign = request.clone();
    foreign["secret"] = json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert!(python(VERIFY_STANDARD_WEBHOOKS, &foreign).is_err());

    // Rotation: the new secret is shown once; during the overlap both verify.
    let rotated = t
        .call(Method::POST, "/webhooks/sw/rotate-secret", None)
        .await
        .expect(200)
        .body;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    ingest(&t, "order-2", json!({"total": 20})).await;
    let requests = rx.wait_requests(&gw, 2, Duration::from_secs(20)).await;
    let after = requests
        .iter()
        .find(|r| r.webhook_id() == "order-2")
        .unwrap();
    for key in [&secret, &new_secret] {
        let mut request = captured(after);
        request["secret"] = json!(key);
        assert_eq!(
            python(VERIFY_STANDARD_WEBHOOKS, &request).unwrap(),
            "verified"
        );
    }
    // The secret on disk is sealed: neither secret appears in the data directory.
    gw.assert_not_stored(&secret[6..]);
    gw.assert_not_stored(&new_secret[6..]);
}

#[tokio::test]
async fn jwt_and_hmac_verify_independently() {
    let gw = Gateway::start().await;
    let t = Client::new(&gw, "acme").await;
    let rx = Receiver::start().await;
    let jwt_secret = "jwt-shared-secret-for-the-e2e-test-0123456789";
    create_webhook(
        &t,
        "jwt",
        &rx.url("/jwt"),
        json!({"authentication": {"type": "jwt", "algorithm": "HMAC256", "secret": jwt_secret,
               "iss": "hookgate", "sub": "acme", "audience": "erp"}}),
    )
    .await;
    let hmac_secret = "hmac-shared-secret-for-the-e2e-test";
    create_webhook(
        &t,
        "hmac",
        &rx.url("/hmac"),
        json!({"authentication": {"type": "hmac", "secret": hmac_secret, "header": "X-Sig"}}),
    )
    .await;
    ingest(&t, "order-1", json!({"total": 10})).await;
    let requests = rx.wait_requests(&gw, 2, Duration::from_secs(20)).await;
    let jwt = requests.iter().find(|r| r.path() == "/jwt").unwrap();
    let mut request = captured(jwt);
    request["secret"] = json!(jwt_secret);
    let verify_jwt = r#"
import json, sys, hashlib, jwt
r = json.load(open(sys.argv[1]))
token = r["headers"]["authorization"].removeprefix("Bearer ")
claims = jwt.decode(token, r["secret"], algorithms=["HS256"], audience="erp", issuer="hookgate")
assert claims["sub"] == "acme" and claims["jti"] == "order-1", claims
assert claims["exp"] > claims["iat"], claims
assert claims["body_sha256"] == hashlib.sha256(r["body"].encode()).hexdigest(), claims
print("verified")
"#;
    assert_eq!(python(verify_jwt, &request).unwrap(), "verified");
    let mut wrong = request.clone();
    wrong["secret"] = json!("another-secret-another-secret-another");
    assert!(python(verify_jwt, &wrong).is_err());

    let hmac = requests.iter().find(|r| r.path() == "/hmac").unwrap();
    let mut request = captured(hmac);
    request["secret"] = json!(hmac_secret);
    let verify_hmac = r#"
import json, sys, hmac, hashlib
r = json.load(open(sys.argv[1]))
expected = hmac.new(r["secret"].encode(), r["body"].encode(), hashlib.sha256).hexdigest()
assert hmac.compare_digest(expected, r["headers"]["x-sig"]), (expected, r["headers"]["x-sig"])
print("verified")
"#;
    assert_eq!(python(verify_hmac, &request).unwrap(), "verified");
}

#[tokio::test]
async fn private_destinations_are_refused_when_the_guard_is_on() {
    let gw = Gateway::start_with(&[("HOOKGATE_ALLOW_PRIVATE_DESTINATIONS", "false")]).await;
    let t = Client::new(&gw, "acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
    ] {
        let reply = t
            .post("/webhooks", json!({"url": url}))
            .await
            .expect_error(400, "validation_error");
        assert_eq!(
            reply.body["errors"][0]["field"], "url",
            "{url}: {}",
            reply.body
        );
    }
}
