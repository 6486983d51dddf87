//! Shared test fixtures: a capturing HTTP receiver, the Python verifier runner, and
//! request helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use hookgate_signing::{
    DestinationPolicy, OutgoingRequest, SignedHeaders, Signer, TlsConfig, Transport,
    TransportOptions,
};
use serde_json::{Map, Value};
use url::Url;

/// A transport that may reach 127.0.0.1, where the test servers listen.
pub fn local_transport() -> Transport {
    let options = TransportOptions {
        policy: DestinationPolicy {
            allow_private: true,
        },
        ..TransportOptions::default()
    };
    Transport::new(&TlsConfig::default(), &options).expect("default transport builds")
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// Headers as a JSON object (lowercase names), the way the Python verifiers want them.
    pub fn headers_json(&self) -> Value {
        let map: Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().into()))
            .collect();
        Value::Object(map)
    }
}

type Responder = Arc<dyn Fn(&Captured) -> StatusCode + Send + Sync>;

#[derive(Clone)]
struct CaptureState {
    requests: Arc<Mutex<Vec<Captured>>>,
    respond: Responder,
}

/// An HTTP receiver on 127.0.0.1 that records every request and answers with the status
/// `respond` picks.
pub struct CaptureServer {
    pub url: Url,
    requests: Arc<Mutex<Vec<Captured>>>,
}

impl CaptureServer {
    pub async fn start(respond: impl Fn(&Captured) -> StatusCode + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = CaptureState {
            requests: Arc::default(),
            respond: Arc::new(respond),
        };
        let requests = state.requests.clone();
        let app = axum::Router::new().fallback(capture).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: Url::parse(&format!("http://{addr}/hook")).unwrap(),
            requests,
        }
    }

    pub async fn accepting_all() -> Self {
        Self::start(|_| StatusCode::OK).await
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Captured {
        self.requests().pop().expect("the receiver saw no request")
    }
}

async fn capture(
    State(state): State<CaptureState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let captured = Captured {
        method,
        headers,
        body,
    };
    let status = (state.respond)(&captured);
    state.requests.lock().unwrap().push(captured);
    status
}

/// Signs `request` and sends it through `transport` the way the gateway will.
pub async fn sign_and_send(
    transport: &Transport,
    signer: &Signer,
    request: &OutgoingRequest<'_>,
) -> (SignedHeaders, reqwest::Response) {
    let headers = signer.sign(request).await.expect("signing succeeds");
    let response = send(transport, request, &headers).await;
    (headers, response)
}

pub async fn send(
    transport: &Transport,
    request: &OutgoingRequest<'_>,
    headers: &SignedHeaders,
) -> reqwest::Response {
    let mut builder = transport
        .request(request.method.clone(), request.url)
        .expect("destination allowed")
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .body(request.body.to_vec())
        .send()
        .await
        .expect("request sent")
}

/// Runs `tests/python/<script>` on `case` and returns its JSON output. Fails the test,
/// saying what to install, when Python or a package is missing: these tests must not
/// pass by not running.
pub fn python_verify(script: &str, case: &Value) -> Value {
    let case_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(case_file.path(), serde_json::to_vec(case).unwrap()).unwrap();
    let script_path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "python", script]
        .iter()
        .collect();
    let output = Command::new("python3")
        .arg(&script_path)
        .arg(case_file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is needed to verify signatures independently ({e}); install Python 3 \
                 and run `pip install -r gateway/signing/requirements-test.txt`"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(package) = stdout.trim().strip_prefix("MISSING_PIP_PACKAGE: ") {
        panic!(
            "Python package `{package}` is not installed: run \
             `pip install -r gateway/signing/requirements-test.txt` (or `pip install {package}`)"
        );
    }
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{script} printed {stdout}: {e}"))
}

pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fresh 2048-bit RSA key as PKCS#8 PEM, generated in-process (aws-lc via rcgen).
pub fn rsa_private_key_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .expect("RSA key generation")
        .serialize_pem()
}

/// A typical 1 KiB-ish envelope body.
pub fn envelope(event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": event_id,
        "tenant": "acme",
        "event_type": "order.created",
        "published_at": "2026-11-22T10:00:00Z",
        "payload": {"order": "A-1", "lines": [{"sku": "X", "qty": 2}], "note": "ünïcödé"},
    }))
    .unwrap()
}
