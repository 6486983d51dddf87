//! The S3 sink (NewStore's S3 integrations): an `object_store` S3 client built from the
//! webhook's destination, and the upload of one sealed NDJSON file — one PUT, or a
//! multipart upload with parts sent in parallel above `MULTIPART_THRESHOLD`.
//!
//! object_store signs (SigV4) and retries transient failures itself; we keep its own
//! retries short, because the webhook's retry schedule is what decides when a failed file
//! is tried again, and an attempt should be recorded in seconds, not minutes.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use hookgate_signing::{
    DestinationPolicy, TlsConfig, Transport, TransportOptions, transport::check_url,
};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    client::{
        HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    },
    path::Path,
};

use super::{BatchSink, Sent, SinkError, http::USER_AGENT};
use crate::{
    delivery::{
        batcher::{Naming, Rotation, Sealed},
        records::Attempt,
    },
    ids,
    iso::now_millis,
    model::destination::S3Destination,
};

/// Files above this size go up as multipart uploads.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// S3 wants parts of at least 5 MiB (but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one file in flight at once.
const PARALLEL_PARTS: usize = 4;
/// Error text kept on an attempt, like the response body of an HTTP attempt.
const ERROR_CAP: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("destination.endpoint `{endpoint}`: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("destination.key_prefix: {0}")]
    Key(#[from] object_store::path::Error),
    #[error("s3 client: {0}")]
    Client(#[from] object_store::Error),
    #[error("http client: {0}")]
    Http(#[from] hookgate_signing::TransportError),
}

/// Why an upload failed: the HTTP status S3 answered with, when it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailure {
    pub status: Option<u16>,
    pub error: String,
}

/// Files of a webhook's events into its bucket.
pub struct S3Sink {
    uploader: Uploader,
    rotation: Rotation,
    naming: Naming,
}

impl S3Sink {
    pub fn new(
        destination: &S3Destination,
        tenant: &str,
        policy: DestinationPolicy,
    ) -> Result<S3Sink, SinkError> {
        let timeout = destination.timeout.duration();
        let naming = Naming::new(&destination.key_prefix, tenant);
        // A bad key prefix shows up now rather than at the first upload.
        Path::parse(naming.key(0, "0")).map_err(|e| SinkError(ConfigError::from(e).to_string()))?;
        Ok(S3Sink {
            uploader: Uploader::new(destination, timeout, policy)
                .map_err(|e| SinkError(e.to_string()))?,
            rotation: Rotation {
                max_bytes: usize::try_from(destination.max_file_bytes).unwrap_or(usize::MAX),
                flush_interval: destination.flush_interval.duration(),
            },
            naming,
        })
    }
}

#[async_trait]
impl BatchSink for S3Sink {
    fn layout(&self) -> (Rotation, Naming) {
        (self.rotation, self.naming.clone())
    }

    async fn send(&self, webhook_id: &str, file: &Sealed) -> Sent {
        let at = now_millis();
        let started = std::time::Instant::now();
        let result = self.uploader.upload(&file.key, file.body.clone()).await;
        let url = self.uploader.url_of(&file.key);
        let mut attempt = Attempt {
            id: ids::generate("att"),
            event_id: file.first.id.clone(),
            webhook_id: webhook_id.to_string(),
            at,
            duration_ms: started.elapsed().as_millis() as u64,
            status_code: None,
            error: None,
            response_headers: BTreeMap::new(),
            response_body: String::new(),
        };
        let failure = match result {
            Ok(e_tag) => {
                // S3 answers 200 to a PUT and to completing a multipart upload.
                attempt.status_code = Some(200);
                if let Some(e_tag) = e_tag {
                    attempt.response_headers.insert("etag".into(), e_tag);
                }
                attempt.response_body = format!(
                    "uploaded {url}: {} events, {} bytes",
                    file.events,
                    file.body.len()
                );
                None
            }
            Err(failure) => {
                attempt.status_code = failure.status;
                attempt.error = Some(failure.error);
                Some(match failure.status {
                    Some(code) => format!("upload of {url} failed: HTTP {code} from S3"),
                    None => format!(
                        "upload of {url} failed: {}",
                        attempt.error.as_deref().unwrap_or_default()
                    ),
                })
            }
        };
        Sent {
            attempt,
            retry_after: None,
            failure,
        }
    }
}

struct Uploader {
    store: AmazonS3,
    bucket: String,
    /// Why the endpoint may not be contacted (SSRF policy), reported on every attempt like
    /// a refused HTTP destination, so it shows in attempts and the log.
    refused: Option<String>,
    /// Status of the latest failed exchange (0: none, or no response). Uploads of one
    /// `Uploader` run one at a time (a [`BatchSink`] gets one call at a time), so
    /// after a failed upload this is that upload's status.
    last_failure_status: Arc<AtomicU16>,
}

impl Uploader {
    fn new(
        destination: &S3Destination,
        timeout: Duration,
        policy: DestinationPolicy,
    ) -> Result<Uploader, ConfigError> {
        let last_failure_status = Arc::new(AtomicU16::new(0));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&destination.bucket)
            .with_region(&destination.region)
            .with_access_key_id(&destination.access_key_id)
            .with_secret_access_key(destination.secret_access_key.expose())
            .with_virtual_hosted_style_request(!destination.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: timeout,
            })
            .with_http_connector(Connector {
                client: http_client(policy)?,
                timeout,
                last_failure_status: last_failure_status.clone(),
            });
        let mut refused = None;
        if let Some(endpoint) = &destination.endpoint {
            // Host names are checked again by the transport's resolver at connect time;
            // IP literals never reach a resolver.
            if let Ok(url) = url::Url::parse(endpoint)
                && let Err(refusal) = check_url(&url, &policy)
            {
                refused = Some(format!("destination.endpoint refused: {refusal}"));
            }
            builder = builder
                .with_endpoint(bucket_endpoint(
                    endpoint,
                    &destination.bucket,
                    destination.path_style,
                )?)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(Uploader {
            store: builder.build()?,
            bucket: destination.bucket.clone(),
            refused,
            last_failure_status,
        })
    }

    /// `s3://bucket/key`, for attempts and the log.
    fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Uploads one file; returns its ETag.
    async fn upload(&self, key: &str, body: Bytes) -> Result<Option<String>, UploadFailure> {
        let location = Path::parse(key).map_err(|e| UploadFailure {
            status: None,
            error: format!("invalid object key `{key}`: {e}"),
        })?;
        if let Some(refused) = &self.refused {
            return Err(UploadFailure {
                status: None,
                error: refused.clone(),
            });
        }
        self.last_failure_status.store(0, Ordering::Relaxed);
        let result = if body.len() > MULTIPART_THRESHOLD {
            self.multipart(&location, body).await
        } else {
            self.store
                .put(&location, PutPayload::from_bytes(body))
                .await
                .map(|put| put.e_tag)
        };
        result.map_err(|error| {
            let status = match self.last_failure_status.load(Ordering::Relaxed) {
                0 => None,
                code => Some(code),
            };
            let mut error = describe(&error);
            truncate(&mut error, ERROR_CAP);
            UploadFailure { status, error }
        })
    }

    async fn multipart(
        &self,
        location: &Path,
        body: Bytes,
    ) -> Result<Option<String>, object_store::Error> {
        let upload = self.store.put_multipart(location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut offset = 0;
        while offset < body.len() {
            if let Err(error) = writer.wait_for_capacity(PARALLEL_PARTS).await {
                // Best effort: S3 keeps parts of an unfinished upload until it is aborted.
                let _ = writer.abort().await;
                return Err(error);
            }
            let end = (offset + PART_SIZE).min(body.len());
            writer.put(body.slice(offset..end));
            offset = end;
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        Ok(writer.finish().await?.e_tag)
    }
}

/// The endpoint object_store expects: with virtual-hosted addressing it must already name
/// the bucket (`https://bucket.minio.example`), while our API takes the service endpoint
/// in both styles.
pub fn bucket_endpoint(
    endpoint: &str,
    bucket: &str,
    path_style: bool,
) -> Result<String, ConfigError> {
    let invalid = |message: &str| ConfigError::Endpoint {
        endpoint: endpoint.to_string(),
        message: message.to_string(),
    };
    let mut url = url::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if path_style {
        return Ok(endpoint.trim_end_matches('/').to_string());
    }
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host.to_string(),
        Some(_) => {
            return Err(invalid(
                "an IP address cannot carry the bucket in its host name; set path_style: true",
            ));
        }
        None => return Err(invalid("needs a host")),
    };
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The HTTP client under object_store: the same guarded transport as webhook delivery
/// (SSRF policy checked on the resolved address, no redirects — S3 answers 301 for a wrong
/// region and following it would hide that — and no proxies from the environment).
fn http_client(policy: DestinationPolicy) -> Result<reqwest::Client, ConfigError> {
    let options = TransportOptions {
        policy,
        max_idle_per_host: PARALLEL_PARTS,
        user_agent: USER_AGENT.to_string(),
        ..TransportOptions::default()
    };
    Ok(Transport::new(&TlsConfig::default(), &options)?
        .client()
        .clone())
}

/// The error and its causes on one line: object_store's message stops at "error sending
/// request", while the cause (refused, reset, refused by the SSRF policy) is further down.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    hookgate_signing::transport::error_chain(error)
}

/// Hands object_store our client, wrapped so the status of a failed exchange is kept:
/// object_store's error type does not expose it, and attempts record it.
#[derive(Debug)]
struct Connector {
    client: reqwest::Client,
    /// Per request; the transport has only a connect timeout.
    timeout: Duration,
    last_failure_status: Arc<AtomicU16>,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(StatusRecorder {
            client: self.client.clone(),
            timeout: self.timeout,
            last_failure_status: self.last_failure_status.clone(),
        }))
    }
}

#[derive(Debug)]
struct StatusRecorder {
    client: reqwest::Client,
    timeout: Duration,
    last_failure_status: Arc<AtomicU16>,
}

#[async_trait]
impl HttpService for StatusRecorder {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let call = HttpService::call(&self.client, request);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(elapsed) => Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
        };
        match &result {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => self
                .last_failure_status
                .store(response.status().as_u16(), Ordering::Relaxed),
            Err(_) => self.last_failure_status.store(0, Ordering::Relaxed),
        }
        result
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        assert_eq!(
            bucket_endpoint("https://minio.example:9000/", "logs", false).unwrap(),
            "https://logs.minio.example:9000"
        );
        assert_eq!(
            bucket_endpoint("http://127.0.0.1:9000/", "logs", true).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(matches!(
            bucket_endpoint("http://127.0.0.1:9000", "logs", false),
            Err(ConfigError::Endpoint { .. })
        ));
    }

    #[test]
    fn errors_are_capped_on_a_char_boundary() {
        let mut text = "é".repeat(10);
        truncate(&mut text, 5);
        assert_eq!(text, "éé");
    }
}
