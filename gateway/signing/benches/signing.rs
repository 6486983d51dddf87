//! Per-request signing cost of each scheme on a 1 KiB body, with the signer built once
//! (keys parsed up front) as the delivery engine uses it.
//!
//! Run: `cargo bench -p hookgate-signing --bench signing`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use hookgate_signing::{
    AuthConfig, MasterKey, OutgoingRequest, SignedHeaders, Signer, TlsConfig, Transport,
    TransportOptions,
};
use reqwest::Method;
use serde_json::json;

/// Every scheme but oauth2 signs without awaiting, so one poll completes it; this keeps
/// executor overhead out of the figures.
fn sign_now(signer: &Signer, request: &OutgoingRequest<'_>) -> SignedHeaders {
    let mut future = pin!(signer.sign(request));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result.expect("signing succeeds"),
        Poll::Pending => panic!("only oauth2 awaits"),
    }
}

fn body_1kib() -> Vec<u8> {
    let mut body = serde_json::to_vec(&json!({
        "id": "evt_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "tenant": "acme",
        "event_type": "order.created",
        "published_at": "2026-11-22T10:00:00Z",
        "payload": {"note": "x".repeat(1024)},
    }))
    .unwrap();
    body.truncate(1024);
    body
}

fn signer(auth: serde_json::Value, transport: &Transport) -> Signer {
    let mut auth: AuthConfig = serde_json::from_value(auth).unwrap();
    auth.prepare_new();
    Signer::new(&auth, transport).unwrap()
}

fn bench_signing(c: &mut Criterion) {
    let transport = Transport::new(&TlsConfig::default(), &TransportOptions::default()).unwrap();
    let body = body_1kib();
    let url = url::Url::parse("https://erp.example.com/hook").unwrap();
    let request = OutgoingRequest {
        event_id: "evt_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        method: &Method::POST,
        url: &url,
        body: &body,
        now: jiff::Timestamp::now(),
        claims: None,
    };
    let rsa_pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    let ed25519_seed: [u8; 32] = rand::random();

    let cases = [
        ("hmac", json!({"type": "hmac", "secret": "HeaderSecret"})),
        ("standard_webhooks_v1", json!({"type": "standard_webhooks"})),
        (
            "standard_webhooks_v1_and_v1a_ed25519",
            json!({"type": "standard_webhooks",
                   "signing_key": format!("whsk_{}", STANDARD.encode(ed25519_seed))}),
        ),
        (
            "jwt_hs256",
            json!({"type": "jwt", "algorithm": "HS256", "secret": "cloudblue-shared-secret",
                   "iss": "hookgate", "sub": "acme", "audience": "erp"}),
        ),
        (
            "jwt_rs256_2048",
            json!({"type": "jwt", "algorithm": "RS256", "private_key": rsa_pem,
                   "private_key_id": "k1", "iss": "hookgate", "sub": "acme"}),
        ),
    ];
    let mut group = c.benchmark_group("sign_1kib");
    for (name, auth) in cases {
        let signer = signer(auth, &transport);
        group.bench_function(name, |b| b.iter(|| sign_now(&signer, black_box(&request))));
    }
    group.finish();

    let (key, _) = MasterKey::generate();
    let sealed = key.seal("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    c.bench_function("secret_box_open", |b| {
        b.iter(|| key.open(black_box(&sealed)).unwrap())
    });
}

criterion_group!(benches, bench_signing);
criterion_main!(benches);
