//! Starting, killing and talking to a real `hookgate` process.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// A running gateway process. Killed (SIGKILL) when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub base: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error in the contract's shape with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Reply {
        let reply = self.expect(status);
        assert_eq!(reply.body["error_code"], code, "body: {}", reply.body);
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        let request_id = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(reply.body["request_id"], request_id);
        reply
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(&[]).await
    }

    /// Starts with extra `HOOKGATE_*` settings.
    pub async fn start_with(env: &[(&str, &str)]) -> Gateway {
        let temp = tempfile::tempdir().unwrap();
        let mut gateway = Gateway {
            child: None,
            base: String::new(),
            data_dir: temp.path().to_path_buf(),
            _temp: Some(temp),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        gateway.spawn().await;
        gateway
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    async fn spawn(&mut self) {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("gateway.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
        command
            .arg("serve")
            .env("HOOKGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKGATE_DATA_DIR", &self.data_dir)
            .env("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HOOKGATE_ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().expect("start hookgate"));
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("hookgate exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "hookgate not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bytes of every file the gateway stored (its own log excluded): for checks that
    /// a secret never reaches the disk in clear.
    pub fn stored_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n != "gateway.log") {
                    out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir, &mut out);
        out
    }

    /// Asserts that `secret` is in no stored file.
    #[track_caller]
    pub fn assert_not_stored(&self, secret: &str) {
        let files = self.stored_bytes();
        assert!(!files.is_empty(), "the gateway stored nothing");
        for (path, bytes) in files {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in clear in {path:?}"
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("gateway.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs, like a crash or power cut of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends signal `name` (`STOP`, `CONT`) to the running process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name}");
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    /// Kills the process (SIGKILL) and starts it again on the same data directory.
    pub async fn crash_and_restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn restart_after_exit(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn().await;
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        assert!(
            headers.contains_key("x-request-id"),
            "every response carries x-request-id ({method_path})",
            method_path = path
        );
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }

    /// Creates a tenant and returns its API key.
    pub async fn tenant(&self, id: &str) -> String {
        let reply = self
            .admin(Method::POST, "/admin/v1/tenants", Some(json!({"id": id})))
            .await
            .expect(201);
        reply.body["api_key"].as_str().unwrap().to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tenant's view of a gateway: calls under `/{tenant}/v1` with its key.
pub struct Client<'a> {
    pub gateway: &'a Gateway,
    pub tenant: String,
    pub key: String,
}

impl<'a> Client<'a> {
    pub async fn new(gateway: &'a Gateway, tenant: &str) -> Client<'a> {
        let key = gateway.tenant(tenant).await;
        Client {
            gateway,
            tenant: tenant.to_string(),
            key,
        }
    }

    /// The same tenant and key through another gateway (another node of a cluster).
    pub fn on<'b>(&self, gateway: &'b Gateway) -> Client<'b> {
        Client {
            gateway,
            tenant: self.tenant.clone(),
            key: self.key.clone(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let path = format!("/{}/v1{path}", self.tenant);
        self.gateway
            .call(method, &path, Some(&self.key), body)
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Every message of one event type, following the iterator through all pages.
    pub async fn all_messages_of_type(&self, event_type: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut iterator: Option<String> = None;
        loop {
            let mut path = format!("/events/{event_type}/messages?limit=1000");
            if let Some(it) = &iterator {
                path.push_str(&format!("&iterator={it}"));
            }
            let page = self.get(&path).await.expect(200).body;
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["done"] == true {
                return all;
            }
            iterator = Some(page["iterator"].as_str().unwrap().to_string());
        }
    }
}
