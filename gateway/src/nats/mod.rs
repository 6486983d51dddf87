//! The NATS JetStream backend (`storage = "nats"`, cluster mode): the storage traits of
//! `crate::storage` on a JetStream cluster that every gateway node shares. docs/CLUSTER.md
//! is the design; this module is its implementation.
//!
//! - `subjects`: stream, subject and key names (pure);
//! - `event_log`: [`NatsEventLog`], the event log on the `HG_EVENTS` stream;
//! - `catalog`: [`NatsCatalog`], the catalog in the `HG_CATALOG` KV bucket;
//! - `delivery_state`: [`NatsDeliveryState`], every webhook's delivery state in the
//!   `HG_STATE` stream, an outcome set per atomic batch;
//! - `direct`: batched direct gets, shared by the readers;
//! - `read_cache`: the events a node read last, so a tenant's workers fetch each once;
//! - `lease`: leases as compare-and-set on a subject, and the [`lease::Fence`] a holder's
//!   outcome sets carry;
//! - `ownership`: [`NatsOwnership`], shards of webhooks leased to nodes, heartbeats,
//!   balance and takeover;
//! - `components`: [`NatsComponents`], plugin components in the `HG_PLUGINS` Object Store;
//! - `control`: [`NatsControl`], the API's requests about running webhooks, done by the
//!   node that holds them.
//!
//! Architecture invariant: nothing outside this module names `async_nats` or a subject;
//! like the embedded backend, it is reached only through the storage traits.

pub mod catalog;
pub mod components;
pub mod control;
pub mod delivery_state;
mod direct;
pub mod event_log;
pub mod lease;
pub mod ownership;
mod read_cache;
pub mod subjects;

use std::{sync::Arc, time::Duration};

use async_nats::{ConnectOptions, jetstream};

pub use catalog::NatsCatalog;
pub use components::NatsComponents;
pub use control::NatsControl;
pub use delivery_state::NatsDeliveryState;
pub use event_log::NatsEventLog;
pub use ownership::NatsOwnership;

use crate::{
    config::Config,
    storage::{StorageError, StorageResult},
};

/// The oldest server the gateway runs on: older ones silently ignore settings it relies on
/// (SCALE-OUT.md: 2.9 drops `filter_subjects`, per-message TTL and consumer pause; the
/// expected-last-sequence check on a wildcard subject and atomic batches are 2.12's).
pub const MIN_SERVER_VERSION: (u32, u32) = (2, 12);

/// The NATS backend's parts, as `app::open` wires them.
pub struct Backend {
    pub nats: Arc<Nats>,
    pub log: Arc<NatsEventLog>,
    pub catalog: Arc<NatsCatalog>,
    pub deliveries: Arc<NatsDeliveryState>,
    pub ownership: Arc<NatsOwnership>,
    pub components: Arc<NatsComponents>,
}

/// Connects, creates or opens the streams and buckets, and joins the cluster as `node`
/// (its shard leases fence this node's outcome sets).
pub async fn open(
    config: &Config,
    master_key: Arc<hookgate_signing::MasterKey>,
    node: &str,
) -> anyhow::Result<Backend> {
    use anyhow::Context;
    let storage = open_storage(config, master_key).await?;
    let ownership = NatsOwnership::start(storage.nats.clone(), node)
        .await
        .context("cannot join the cluster's ownership")?;
    Ok(Backend {
        nats: storage.nats,
        log: storage.log,
        catalog: storage.catalog,
        deliveries: storage.deliveries,
        ownership,
        components: storage.components,
    })
}

/// The cluster's stores without a place in its ownership: what `hookgate migrate` writes
/// to, running no webhook.
pub struct Storage {
    pub nats: Arc<Nats>,
    pub log: Arc<NatsEventLog>,
    pub catalog: Arc<NatsCatalog>,
    pub deliveries: Arc<NatsDeliveryState>,
    pub components: Arc<NatsComponents>,
}

/// Connects, and creates or opens the streams and buckets.
pub async fn open_storage(
    config: &Config,
    master_key: Arc<hookgate_signing::MasterKey>,
) -> anyhow::Result<Storage> {
    use anyhow::Context;
    let nats = Arc::new(Nats::connect(config).await?);
    let log = patiently("the event log", || NatsEventLog::open(nats.clone()))
        .await
        .context("cannot open the event log on NATS")?;
    let catalog = patiently("the catalog", || {
        NatsCatalog::open(&nats, master_key.clone())
    })
    .await
    .context("cannot open the catalog on NATS")?;
    let deliveries = patiently("the delivery state", || {
        NatsDeliveryState::open(nats.clone())
    })
    .await
    .context("cannot open the delivery state on NATS")?;
    let components = patiently("the plugin components", || NatsComponents::open(&nats))
        .await
        .context("cannot open the plugin components on NATS")?;
    Ok(Storage {
        nats,
        log,
        catalog: Arc::new(catalog),
        deliveries: Arc::new(deliveries),
        components: Arc::new(components),
    })
}

/// How long a starting node keeps trying to create or open its streams and buckets while
/// the cluster cannot answer (a cluster that is itself starting, electing a leader, or
/// has lost quorum for a moment): long enough to ride out an election, short enough that
/// a misconfigured node exits with the reason instead of hanging.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `open` until it succeeds, fails with something other than
/// [`StorageError::Unavailable`], or [`OPEN_PATIENCE`] has passed.
pub(crate) async fn patiently<T, F>(what: &str, mut open: impl FnMut() -> F) -> StorageResult<T>
where
    F: std::future::Future<Output = Result<T, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
    loop {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(StorageError::Unavailable(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%reason, "cannot open {what} on NATS yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Waits until a publish to `subject` reaches its (just created) stream: for a moment
/// after a stream is created, a server that has not yet applied the assignment answers
/// publishes with "no stream found". The probe carries an expected last sequence no
/// stream has, so the stream refuses it and stores nothing; that refusal is the answer.
pub(crate) async fn wait_until_writable(nats: &Nats, subject: &str) -> StorageResult<()> {
    use async_nats::jetstream::context::PublishErrorKind;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            u64::MAX.to_string().as_str(),
        );
        let answer = match nats
            .jetstream
            .publish_with_headers(
                subject.to_string(),
                headers,
                bytes::Bytes::from_static(b"-"),
            )
            .await
        {
            Ok(ack) => ack.await.map(|_| ()),
            Err(error) => return Err(unavailable(error)),
        };
        match answer {
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => return Ok(()),
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(unavailable(e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Replicas of every stream and bucket when the cluster has at least this many servers.
pub const FULL_REPLICATION: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error(
        "nats-server {version} at {server} is too old: Hookgate needs {}.{} or newer \
         (older servers silently ignore features cluster mode relies on)",
        MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
    )]
    TooOld { version: String, server: String },
    #[error("nats-server at {server} does not have JetStream enabled (start it with -js)")]
    NoJetStream { server: String },
    #[error("cannot read {what} {path}: {reason}")]
    Credentials {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// A connection to the cluster and what was learned about it at connect time.
pub struct Nats {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Replicas of every stream and bucket this backend creates.
    pub replicas: usize,
}

impl Nats {
    /// Connects with the configured servers, credentials and TLS, and checks the server:
    /// its version and that JetStream is on.
    pub async fn connect(config: &Config) -> Result<Nats, NatsError> {
        let servers = config.nats_servers.join(",");
        let client = connect_options(config)
            .await?
            .connect(config.nats_servers.as_slice())
            .await
            .map_err(|e| NatsError::Connect {
                servers: servers.clone(),
                reason: e.to_string(),
            })?;
        let info = client.server_info();
        let server = format!("{}:{}", info.host, info.port);
        if !version_at_least(&info.version, MIN_SERVER_VERSION) {
            return Err(NatsError::TooOld {
                version: info.version,
                server,
            });
        }
        if !info.jetstream {
            return Err(NatsError::NoJetStream { server });
        }
        let replicas = replicas_for(info.cluster.is_some());
        tracing::info!(server = %server, version = %info.version, replicas, "connected to NATS");
        let jetstream = jetstream::new(client.clone());
        Ok(Nats {
            client,
            jetstream,
            replicas,
        })
    }
}

async fn connect_options(config: &Config) -> Result<ConnectOptions, NatsError> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| NatsError::Credentials {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let mut options = ConnectOptions::new()
        .name(format!("hookgate {}", env!("CARGO_PKG_VERSION")))
        .connection_timeout(Duration::from_secs(5))
        // Requests (JetStream API calls, publish acks) wait this long for an answer: a
        // cluster without quorum answers nothing, and the caller must learn that soon.
        .request_timeout(Some(Duration::from_secs(5)));
    if let Some(path) = &config.nats_credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| NatsError::Credentials {
                what: "credentials file",
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    if let Some(path) = &config.nats_nkey_seed_file {
        options = options.nkey(read("NKey seed file", path)?.trim().to_string());
    }
    if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.nats_token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.nats_tls_ca_file {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert_file, &config.nats_tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}

/// Whether `version` ("2.12.8", "2.14.0-beta.1") is `min` or newer.
fn version_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// The rule: R3 on a cluster, R1 on a lone server. Whether the server is in a cluster is
/// what it says of itself; how many servers the cluster has is not known reliably at
/// connect time (the client URLs a server advertises arrive by gossip, and leave out the
/// servers that are down), and streams keep the replicas they were created with. A
/// cluster must therefore have three servers or more: on two, creating an R3 stream fails
/// and the node exits saying so (two servers cannot keep a quorum when one fails, so
/// they would buy no safety).
pub fn replicas_for(clustered: bool) -> usize {
    if clustered { FULL_REPLICATION } else { 1 }
}

/// A NATS failure as the storage traits report it: the cluster cannot serve the call now.
fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("NATS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_at_least("2.12.0", (2, 12)));
        assert!(version_at_least("2.12.8", (2, 12)));
        assert!(version_at_least("v2.14.0-beta.1", (2, 12)));
        assert!(version_at_least("3.0.0", (2, 12)));
        assert!(!version_at_least("2.11.11", (2, 12)));
        assert!(!version_at_least("2.9.10", (2, 12)));
        assert!(!version_at_least("garbage", (2, 12)));
    }

    #[test]
    fn replication_rule() {
        assert_eq!(replicas_for(false), 1);
        assert_eq!(replicas_for(true), 3);
    }
}
