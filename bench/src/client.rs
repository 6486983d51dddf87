//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per worker.
//!
//! A shared pool would let workers borrow each other's connections and hide how many are
//! really open; here the "pool" is a vector with exactly one connection per worker, so
//! `--concurrency 64` means 64 TCP connections, each carrying one request at a time.
//! A connection that fails is dropped and reopened on the worker's next request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the load goes: resolved once, shared by all workers.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    /// Path prefix of the base URL (usually empty), without a trailing slash.
    base_path: String,
}

impl Endpoint {
    /// Resolves an `http://host:port[/prefix]` base URL.
    pub async fn resolve(base_url: &str) -> Result<Arc<Self>> {
        let rest = base_url
            .strip_prefix("http://")
            .with_context(|| format!("`{base_url}`: only http:// URLs are supported"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            bail!("`{base_url}` has no host");
        }
        let with_port = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
        Ok(Arc::new(Self {
            addr,
            host: HeaderValue::from_str(authority)?,
            base_path: path.trim_end_matches('/').to_owned(),
        }))
    }

    /// The full request path for a path below the base URL.
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", self.base_path, path)
    }
}

/// One worker's connection, opened lazily and reopened after an error.
pub struct WorkerConnection {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl WorkerConnection {
    pub fn new(endpoint: Arc<Endpoint>) -> Self {
        Self {
            endpoint,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.endpoint.addr)
            .await
            .with_context(|| format!("connecting to {}", self.endpoint.addr))?;
        // Requests are small and latency is what we measure: never let Nagle hold them.
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection future drives the socket; it ends when the sender is dropped
        // or the server closes, and its error (if any) resurfaces on the next request.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Posts a JSON body and reads the whole answer, so the connection is ready for the
    /// next request. Returns the status; transport errors drop the connection.
    pub async fn post_json(
        &mut self,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<StatusCode> {
        let result = self.try_post(path, authorization, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// Forgets the connection, e.g. after a timed-out request left it mid-answer.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    async fn try_post(
        &mut self,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<StatusCode> {
        if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.context("connection closed")?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.endpoint.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let response = sender
            .send_request(request.body(Full::new(body))?)
            .await
            .context("sending request")?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .context("reading answer")?;
        Ok(status)
    }
}
