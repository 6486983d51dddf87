//! oauth2 against a real token endpoint on loopback that counts token requests, and a
//! resource server that answers 401 to a revoked token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookgate_signing::{
    AuthConfig, OutgoingRequest, SignError, Signer, TlsConfig, Transport, TransportOptions,
};
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::json;
use url::Url;

use crate::support::{CaptureServer, local_transport, send};

/// What the token endpoint received.
#[derive(Clone, Debug)]
struct TokenRequest {
    authorization: Option<String>,
    content_type: Option<String>,
    form: HashMap<String, String>,
}

#[derive(Clone)]
struct EndpointBehaviour {
    expires_in: u64,
    delay: Duration,
    failure: Option<(StatusCode, String)>,
}

#[derive(Clone)]
struct EndpointState {
    behaviour: EndpointBehaviour,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

struct TokenEndpoint {
    url: Url,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenEndpoint {
    async fn start(behaviour: EndpointBehaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = EndpointState {
            behaviour,
            requests: Arc::default(),
        };
        let requests = state.requests.clone();
        let app = axum::Router::new()
            .route("/oauth/token", axum::routing::post(issue_token))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: Url::parse(&format!("http://{addr}/oauth/token")).unwrap(),
            requests,
        }
    }

    async fn issuing(expires_in: u64) -> Self {
        Self::start(EndpointBehaviour {
            expires_in,
            delay: Duration::ZERO,
            failure: None,
        })
        .await
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn last(&self) -> TokenRequest {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

async fn issue_token(
    State(state): State<EndpointState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let number = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(TokenRequest {
            authorization: header("authorization"),
            content_type: header("content-type"),
            form: url::form_urlencoded::parse(&body).into_owned().collect(),
        });
        requests.len()
    };
    tokio::time::sleep(state.behaviour.delay).await;
    if let Some((status, body)) = state.behaviour.failure {
        return (status, body).into_response();
    }
    axum::Json(json!({
        "access_token": format!("token-{number}"),
        "token_type": "Bearer",
        "expires_in": state.behaviour.expires_in,
    }))
    .into_response()
}

fn oauth2_config(token_url: &Url, client_auth: &str) -> AuthConfig {
    serde_json::from_value(json!({
        "type": "oauth2", "client_id": "hookgate client", "client_secret": "secret/with+chars",
        "token_url": token_url.as_str(), "scope": "events:write", "audience": "https://erp.example.com",
        "client_auth": client_auth
    }))
    .unwrap()
}

fn request_at<'a>(url: &'a Url, now: Timestamp) -> OutgoingRequest<'a> {
    OutgoingRequest {
        event_id: "evt_oauth_1",
        method: &Method::POST,
        url,
        body: b"{}",
        now,
        claims: None,
    }
}

async fn authorization(signer: &Signer, url: &Url, now: Timestamp) -> String {
    let headers = signer.sign(&request_at(url, now)).await.unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "authorization");
    headers[0].1.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn token_is_fetched_once_per_expiry_with_basic_client_auth() {
    let endpoint = TokenEndpoint::issuing(60).await;
    let signer = Signer::new(&oauth2_config(&endpoint.url, "basic"), &local_transport()).unwrap();
    let receiver = Url::parse("https://erp.example.com/hook").unwrap();
    let t0 = Timestamp::now();

    for _ in 0..3 {
        assert_eq!(
            authorization(&signer, &receiver, t0).await,
            "Bearer token-1"
        );
    }
    let later = t0 + SignedDuration::from_secs(29);
    assert_eq!(
        authorization(&signer, &receiver, later).await,
        "Bearer token-1"
    );
    assert_eq!(endpoint.count(), 1, "cached until shortly before expiry");

    // 60 s lifetime, refreshed 30 s early.
    let refresh = t0 + SignedDuration::from_secs(30);
    assert_eq!(
        authorization(&signer, &receiver, refresh).await,
        "Bearer token-2"
    );
    assert_eq!(endpoint.count(), 2);

    let sent = endpoint.last();
    assert_eq!(
        sent.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // RFC 6749 §2.3.1: credentials form-encoded, then Basic.
    use base64::Engine;
    let basic = sent.authorization.unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"hookgate+client:secret%2Fwith%2Bchars");
    assert_eq!(sent.form["grant_type"], "client_credentials");
    assert_eq!(sent.form["scope"], "events:write");
    assert_eq!(sent.form["audience"], "https://erp.example.com");
    assert!(!sent.form.contains_key("client_secret"));
}

#[tokio::test]
async fn body_client_auth_sends_the_credentials_as_form_fields() {
    let endpoint = TokenEndpoint::issuing(3600).await;
    let signer = Signer::new(&oauth2_config(&endpoint.url, "body"), &local_transport()).unwrap();
    let receiver = Url::parse("https://erp.example.com/hook").unwrap();
    authorization(&signer, &receiver, Timestamp::now()).await;
    let sent = endpoint.last();
    assert_eq!(sent.authorization, None);
    assert_eq!(sent.form["client_id"], "hookgate client");
    assert_eq!(sent.form["client_secret"], "secret/with+chars");
}

#[tokio::test]
async fn concurrent_sends_share_one_token_request() {
    let endpoint = TokenEndpoint::start(EndpointBehaviour {
        expires_in: 3600,
        delay: Duration::from_millis(300),
        failure: None,
    })
    .await;
    let signer =
        Arc::new(Signer::new(&oauth2_config(&endpoint.url, "basic"), &local_transport()).unwrap());
    let now = Timestamp::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let signer = signer.clone();
        tasks.spawn(async move {
            let url = Url::parse("https://erp.example.com/hook").unwrap();
            authorization(&signer, &url, now).await
        });
    }
    let tokens = tasks.join_all().await;
    assert!(tokens.iter().all(|t| t == "Bearer token-1"), "{tokens:?}");
    assert_eq!(endpoint.count(), 1, "single-flight refresh");
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_the_retry_succeeds() {
    let endpoint = TokenEndpoint::issuing(3600).await;
    // The receiver has revoked the first token.
    let receiver = CaptureServer::start(|request| {
        match request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap())
        {
            Some("Bearer token-1") => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        }
    })
    .await;
    let transport = local_transport();
    let signer = Signer::new(&oauth2_config(&endpoint.url, "basic"), &transport).unwrap();
    let now = Timestamp::now();
    let request = request_at(&receiver.url, now);

    let first = signer.sign(&request).await.unwrap();
    let response = send(&transport, &request, &first).await;
    assert_eq!(response.status(), 401);
    assert!(signer.invalidate(&first), "oauth2 asks for one retry");
    let retry = signer.sign(&request).await.unwrap();
    assert_eq!(send(&transport, &request, &retry).await.status(), 200);
    assert_eq!(endpoint.count(), 2);

    // A late 401 for the stale token must not throw away the fresh one.
    assert!(signer.invalidate(&first));
    let again = signer.sign(&request).await.unwrap();
    assert_eq!(again, retry);
    assert_eq!(endpoint.count(), 2);
    assert_eq!(receiver.requests().len(), 2);

    // Other schemes have nothing to refresh.
    let hmac: AuthConfig = serde_json::from_value(json!({"type": "hmac", "secret": "s"})).unwrap();
    let hmac_signer = Signer::new(&hmac, &transport).unwrap();
    let headers = hmac_signer.sign(&request).await.unwrap();
    assert!(!hmac_signer.invalidate(&headers));
}

#[tokio::test]
async fn token_endpoint_errors_carry_the_status_and_a_capped_body() {
    let endpoint = TokenEndpoint::start(EndpointBehaviour {
        expires_in: 0,
        delay: Duration::ZERO,
        failure: Some((
            StatusCode::UNAUTHORIZED,
            format!(
                r#"{{"error":"invalid_client","pad":"{}"}}"#,
                "x".repeat(10_000)
            ),
        )),
    })
    .await;
    let signer = Signer::new(&oauth2_config(&endpoint.url, "basic"), &local_transport()).unwrap();
    let url = Url::parse("https://erp.example.com/hook").unwrap();
    let error = signer
        .sign(&request_at(&url, Timestamp::now()))
        .await
        .unwrap_err();
    match &error {
        SignError::TokenEndpoint { status, body, .. } => {
            assert_eq!(*status, 401);
            assert!(body.contains("invalid_client"), "{body}");
            assert!(body.chars().count() <= 513, "capped: {}", body.len());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("returned HTTP 401"), "{error}");
    // Failures are not cached: the next attempt asks again.
    signer
        .sign(&request_at(&url, Timestamp::now()))
        .await
        .unwrap_err();
    assert_eq!(endpoint.count(), 2);
}

#[tokio::test]
async fn token_endpoint_is_behind_the_ssrf_guard() {
    let endpoint = TokenEndpoint::issuing(3600).await;
    let closed = Transport::new(&TlsConfig::default(), &TransportOptions::default()).unwrap();
    let signer = Signer::new(&oauth2_config(&endpoint.url, "basic"), &closed).unwrap();
    let url = Url::parse("https://erp.example.com/hook").unwrap();
    let error = signer
        .sign(&request_at(&url, Timestamp::now()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SignError::TokenDestination { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("loopback"), "{error}");
    assert_eq!(endpoint.count(), 0);
}
