//! The one `Config`: built from defaults, then a TOML file (`--config`), then
//! `HOOKGATE_*` environment variables, then flags. Flags win over env, env over file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::iso::IsoDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the gateway keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// This machine's `data_dir`: segment log and sled (one node).
    #[default]
    Embedded,
    /// A NATS JetStream cluster that every node of a Hookgate cluster shares
    /// (docs/CLUSTER.md); `data_dir` then holds only caches.
    Nats,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where sled and compiled plugins live.
    pub data_dir: PathBuf,
    /// Bearer token for `/admin/v1`; generated on first start and stored when absent.
    pub admin_token: Option<String>,
    /// Base64 key that encrypts secrets at rest; generated and stored (0600) when absent.
    pub master_key: Option<String>,
    /// Let webhooks target loopback/private addresses (tests, local use).
    pub allow_private_destinations: bool,
    /// How long messages and attempts are kept.
    pub retention: IsoDuration,
    /// How far back a restarted webhook catches up.
    pub backlog_window: IsoDuration,
    pub max_webhooks_per_tenant: usize,
    /// A webhook failing this many times in a row is disabled (CloudBlue "out of order").
    pub disable_after_failures: u64,
    /// A webhook failing without a success for this long is disabled.
    pub disable_after: IsoDuration,
    /// Ingest body limit in bytes.
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// Largest plugin component accepted at upload, in bytes. Rust components are a few
    /// hundred KiB; ones that bundle an interpreter (componentize-py: ~18 MiB) need more.
    pub plugin_max_component_bytes: usize,
    /// Linear memory one plugin call may grow to, in bytes.
    pub plugin_memory_limit_bytes: usize,
    /// Wall time one plugin call may run before it is interrupted.
    pub plugin_call_timeout: IsoDuration,
    /// Plugin calls one tenant may run at once, of the sandbox's 64 slots: the others stay
    /// free for other tenants however slow one tenant's plugins are.
    pub plugin_max_calls_per_tenant: u32,
    /// Plugin versions (all names together) one tenant may store. Each keeps its component
    /// and its compiled code on disk, so this with `plugin_max_component_bytes` bounds a
    /// tenant's share of `data_dir/plugins`.
    pub plugin_max_versions_per_tenant: usize,
    pub storage: StorageKind,
    /// NATS client URLs (`storage = "nats"`); in the file a list or one comma-separated
    /// string, in `HOOKGATE_NATS_SERVERS` comma-separated.
    #[serde(deserialize_with = "comma_separated")]
    pub nats_servers: Vec<String>,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    pub nats_credentials_file: Option<PathBuf>,
    /// A file holding an NKey seed (`SU...`).
    pub nats_nkey_seed_file: Option<PathBuf>,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    /// CA certificates (PEM) that sign the servers' certificates; setting it requires TLS.
    pub nats_tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients.
    pub nats_tls_cert_file: Option<PathBuf>,
    pub nats_tls_key_file: Option<PathBuf>,
}

/// A list of URLs, written as a TOML list or as one comma-separated string.
fn comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    let urls = match Urls::deserialize(d)? {
        Urls::One(text) => text.split(',').map(str::to_string).collect(),
        Urls::Many(urls) => urls,
    };
    Ok(urls
        .into_iter()
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty())
        .collect())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ([127, 0, 0, 1], 8080).into(),
            data_dir: PathBuf::from("./hookgate-data"),
            admin_token: None,
            master_key: None,
            allow_private_destinations: false,
            retention: "P90D".parse().expect("valid literal"),
            backlog_window: "P30D".parse().expect("valid literal"),
            max_webhooks_per_tenant: 25,
            disable_after_failures: 1000,
            disable_after: "P5D".parse().expect("valid literal"),
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            plugin_max_component_bytes: 10 << 20,
            plugin_memory_limit_bytes: 64 << 20,
            plugin_call_timeout: "PT0.1S".parse().expect("valid literal"),
            plugin_max_calls_per_tenant: hookgate_plugin_host::SANDBOX_SLOTS / 4,
            plugin_max_versions_per_tenant: 50,
            storage: StorageKind::Embedded,
            nats_servers: Vec::new(),
            nats_credentials_file: None,
            nats_nkey_seed_file: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_tls_ca_file: None,
            nats_tls_cert_file: None,
            nats_tls_key_file: None,
        }
    }
}

/// Flags of `hookgate serve`; each also reads `HOOKGATE_<KEY>` from the environment.
#[derive(Debug, Default, Args)]
pub struct ConfigArgs {
    /// TOML file with any of the keys below.
    #[arg(long, env = "HOOKGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "HOOKGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "HOOKGATE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    #[arg(long, env = "HOOKGATE_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: Option<bool>,
    #[arg(long, env = "HOOKGATE_RETENTION")]
    pub retention: Option<IsoDuration>,
    #[arg(long, env = "HOOKGATE_BACKLOG_WINDOW")]
    pub backlog_window: Option<IsoDuration>,
    #[arg(long, env = "HOOKGATE_MAX_WEBHOOKS_PER_TENANT")]
    pub max_webhooks_per_tenant: Option<usize>,
    #[arg(long, env = "HOOKGATE_DISABLE_AFTER_FAILURES")]
    pub disable_after_failures: Option<u64>,
    #[arg(long, env = "HOOKGATE_DISABLE_AFTER")]
    pub disable_after: Option<IsoDuration>,
    #[arg(long, env = "HOOKGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "HOOKGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES")]
    pub plugin_max_component_bytes: Option<usize>,
    #[arg(long, env = "HOOKGATE_PLUGIN_MEMORY_LIMIT_BYTES")]
    pub plugin_memory_limit_bytes: Option<usize>,
    #[arg(long, env = "HOOKGATE_PLUGIN_CALL_TIMEOUT")]
    pub plugin_call_timeout: Option<IsoDuration>,
    #[arg(long, env = "HOOKGATE_PLUGIN_MAX_CALLS_PER_TENANT")]
    pub plugin_max_calls_per_tenant: Option<u32>,
    #[arg(long, env = "HOOKGATE_PLUGIN_MAX_VERSIONS_PER_TENANT")]
    pub plugin_max_versions_per_tenant: Option<usize>,
    #[arg(long, env = "HOOKGATE_STORAGE", value_enum)]
    pub storage: Option<StorageKind>,
    #[arg(long, env = "HOOKGATE_NATS_SERVERS", value_delimiter = ',')]
    pub nats_servers: Option<Vec<String>>,
    #[arg(long, env = "HOOKGATE_NATS_CREDENTIALS_FILE")]
    pub nats_credentials_file: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_NATS_NKEY_SEED_FILE")]
    pub nats_nkey_seed_file: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "HOOKGATE_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    #[arg(long, env = "HOOKGATE_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    #[arg(long, env = "HOOKGATE_NATS_TLS_CA_FILE")]
    pub nats_tls_ca_file: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_NATS_TLS_CERT_FILE")]
    pub nats_tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "HOOKGATE_NATS_TLS_KEY_FILE")]
    pub nats_tls_key_file: Option<PathBuf>,
}

/// A plugin call holds a sandbox slot (and, past its inline budget, a blocking thread) for
/// as long as it runs; more than this is a misconfiguration, not a plugin's need.
const MAX_PLUGIN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a 32-bit WebAssembly memory can address.
const MAX_PLUGIN_MEMORY: usize = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ConfigArgs {
    /// Resolves the final configuration: file, then env/flags (clap already applied
    /// "flag over env"), then validation.
    pub fn load(self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field { config.$field = value; }
            )*};
        }
        overlay!(
            listen,
            data_dir,
            allow_private_destinations,
            retention,
            backlog_window,
            max_webhooks_per_tenant,
            disable_after_failures,
            disable_after,
            max_body_bytes,
            log_format,
            plugin_max_component_bytes,
            plugin_memory_limit_bytes,
            plugin_call_timeout,
            plugin_max_calls_per_tenant,
            plugin_max_versions_per_tenant,
            storage
        );
        if let Some(servers) = self.nats_servers {
            config.nats_servers = servers
                .into_iter()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty())
                .collect();
        }
        // Settings that are unset by default: given, they replace the file's.
        macro_rules! overlay_optional {
            ($($field:ident),*) => {$(
                if self.$field.is_some() { config.$field = self.$field; }
            )*};
        }
        overlay_optional!(
            admin_token,
            master_key,
            nats_credentials_file,
            nats_nkey_seed_file,
            nats_user,
            nats_password,
            nats_token,
            nats_tls_ca_file,
            nats_tls_cert_file,
            nats_tls_key_file
        );
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// The sandbox's limits: the runtime's defaults, with the ones operators may set;
    /// compiled plugins are cached in `cache_dir`.
    pub fn plugin_runtime(&self, cache_dir: PathBuf) -> hookgate_plugin_host::RuntimeConfig {
        let mut runtime = hookgate_plugin_host::RuntimeConfig::new(cache_dir);
        runtime.max_component_bytes = self.plugin_max_component_bytes;
        runtime.memory_limit_bytes = self.plugin_memory_limit_bytes;
        runtime.call_timeout = self.plugin_call_timeout.duration();
        runtime.max_calls_per_tenant = self.plugin_max_calls_per_tenant;
        runtime
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.max_webhooks_per_tenant == 0 {
            return Err(ConfigError::Invalid(
                "max_webhooks_per_tenant must be at least 1".into(),
            ));
        }
        if self.plugin_max_component_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "plugin_max_component_bytes must be at least 1024".into(),
            ));
        }
        if !(1 << 20..=MAX_PLUGIN_MEMORY).contains(&self.plugin_memory_limit_bytes) {
            return Err(ConfigError::Invalid(format!(
                "plugin_memory_limit_bytes must be between 1 MiB (1048576) and 4 GiB ({MAX_PLUGIN_MEMORY})"
            )));
        }
        let timeout = self.plugin_call_timeout.duration();
        if timeout < Duration::from_millis(1) || timeout > MAX_PLUGIN_CALL_TIMEOUT {
            return Err(ConfigError::Invalid(format!(
                "plugin_call_timeout must be between 1 ms and {} s",
                MAX_PLUGIN_CALL_TIMEOUT.as_secs()
            )));
        }
        let slots = hookgate_plugin_host::SANDBOX_SLOTS;
        if !(1..=slots).contains(&self.plugin_max_calls_per_tenant) {
            return Err(ConfigError::Invalid(format!(
                "plugin_max_calls_per_tenant must be between 1 and {slots} (the sandbox's slots)"
            )));
        }
        if self.plugin_max_versions_per_tenant == 0 {
            return Err(ConfigError::Invalid(
                "plugin_max_versions_per_tenant must be at least 1".into(),
            ));
        }
        self.validate_nats()?;
        if let Some(token) = &self.admin_token
            && token.len() < 16
        {
            return Err(ConfigError::Invalid(
                "admin_token must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The NATS settings are all-or-nothing: `storage = "nats"` needs servers, and NATS
    /// settings without it would be ignored, so they are refused instead.
    fn validate_nats(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_string()));
        let any_nats_setting = !self.nats_servers.is_empty()
            || self.nats_credentials_file.is_some()
            || self.nats_nkey_seed_file.is_some()
            || self.nats_user.is_some()
            || self.nats_password.is_some()
            || self.nats_token.is_some()
            || self.nats_tls_ca_file.is_some()
            || self.nats_tls_cert_file.is_some()
            || self.nats_tls_key_file.is_some();
        match self.storage {
            StorageKind::Embedded if any_nats_setting => {
                return invalid("nats_* settings apply only with storage = \"nats\"");
            }
            StorageKind::Embedded => return Ok(()),
            StorageKind::Nats if self.nats_servers.is_empty() => {
                return invalid(
                    "storage = \"nats\" needs nats_servers (HOOKGATE_NATS_SERVERS), e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222",
                );
            }
            // Each node would otherwise make its own key file, and no node could open the
            // secrets another one sealed.
            StorageKind::Nats if self.master_key.is_none() => {
                return invalid(
                    "storage = \"nats\" needs master_key (HOOKGATE_MASTER_KEY), the same on every node: 32 random bytes in base64, e.g. from `head -c 32 /dev/urandom | base64`",
                );
            }
            StorageKind::Nats => {}
        }
        for url in &self.nats_servers {
            let scheme = url.split_once("://").map(|(scheme, _)| scheme);
            if !matches!(scheme, Some("nats" | "tls")) {
                return Err(ConfigError::Invalid(format!(
                    "nats_servers: {url:?} is not a nats:// or tls:// URL"
                )));
            }
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            return invalid("nats_user and nats_password go together");
        }
        if self.nats_tls_cert_file.is_some() != self.nats_tls_key_file.is_some() {
            return invalid("nats_tls_cert_file and nats_tls_key_file go together");
        }
        let methods = [
            self.nats_credentials_file.is_some(),
            self.nats_nkey_seed_file.is_some(),
            self.nats_user.is_some(),
            self.nats_token.is_some(),
        ];
        if methods.into_iter().filter(|set| *set).count() > 1 {
            return invalid(
                "choose one way to authenticate to NATS: nats_credentials_file, nats_nkey_seed_file, nats_user/nats_password or nats_token",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nretention = \"P7D\"\nmax_webhooks_per_tenant = 3\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(path),
            max_webhooks_per_tenant: Some(5),
            ..Default::default()
        };
        let config = args.load().unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.retention.as_str(), "P7D");
        assert_eq!(config.max_webhooks_per_tenant, 5);
        assert_eq!(config.backlog_window.as_str(), "P30D");
    }

    #[test]
    fn unknown_keys_in_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let args = ConfigArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(args.load(), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn plugin_limits_are_settable_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        std::fs::write(
            &path,
            "plugin_max_component_bytes = 33554432\nplugin_call_timeout = \"PT0.25S\"\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(path),
            plugin_memory_limit_bytes: Some(128 << 20),
            ..Default::default()
        };
        let config = args.load().unwrap();
        assert_eq!(config.plugin_max_component_bytes, 32 << 20);
        assert_eq!(config.plugin_memory_limit_bytes, 128 << 20);
        assert_eq!(
            config.plugin_call_timeout.duration(),
            Duration::from_millis(250)
        );

        for (timeout, memory) in [
            ("PT0S", 64 << 20),
            ("PT1M", 64 << 20),
            ("PT0.1S", 4096),
            ("PT0.1S", 8 << 30),
        ] {
            let args = ConfigArgs {
                plugin_call_timeout: Some(timeout.parse().unwrap()),
                plugin_memory_limit_bytes: Some(memory),
                ..Default::default()
            };
            assert!(
                matches!(args.load(), Err(ConfigError::Invalid(_))),
                "{timeout} {memory}"
            );
        }
    }

    #[test]
    fn nats_settings_need_storage_nats_and_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        std::fs::write(
            &path,
            "storage = \"nats\"\nnats_servers = \"nats://10.0.0.1:4222, nats://10.0.0.2:4222\"\n\
             master_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
        )
        .unwrap();
        let config = ConfigArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .load()
        .unwrap();
        assert_eq!(config.storage, StorageKind::Nats);
        assert_eq!(
            config.nats_servers,
            ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
        );
        // The environment's list replaces the file's.
        let config = ConfigArgs {
            config: Some(path),
            nats_servers: Some(vec!["nats://127.0.0.1:4222".into()]),
            ..Default::default()
        }
        .load()
        .unwrap();
        assert_eq!(config.nats_servers, ["nats://127.0.0.1:4222"]);

        let refused = |args: ConfigArgs| match args.load() {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let nats = || ConfigArgs {
            storage: Some(StorageKind::Nats),
            nats_servers: Some(vec!["nats://127.0.0.1:4222".into()]),
            master_key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
            ..Default::default()
        };
        assert!(
            refused(ConfigArgs {
                storage: Some(StorageKind::Nats),
                ..Default::default()
            })
            .contains("needs nats_servers")
        );
        assert!(
            refused(ConfigArgs {
                nats_servers: Some(vec!["nats://127.0.0.1:4222".into()]),
                ..Default::default()
            })
            .contains("only with storage")
        );
        assert!(
            refused(ConfigArgs {
                nats_servers: Some(vec!["http://127.0.0.1:4222".into()]),
                ..nats()
            })
            .contains("not a nats://")
        );
        assert!(
            refused(ConfigArgs {
                nats_user: Some("hookgate".into()),
                ..nats()
            })
            .contains("go together")
        );
        assert!(
            refused(ConfigArgs {
                nats_token: Some("t".into()),
                nats_user: Some("u".into()),
                nats_password: Some("p".into()),
                ..nats()
            })
            .contains("one way")
        );
        assert!(
            refused(ConfigArgs {
                master_key: None,
                ..nats()
            })
            .contains("needs master_key")
        );
    }
}
