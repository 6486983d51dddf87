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
            plugin_max_versions_per_tenant
        );
        if self.admin_token.is_some() {
            config.admin_token = self.admin_token;
        }
        if self.master_key.is_some() {
            config.master_key = self.master_key;
        }
        config.validate()?;
        Ok(config)
    }
}

impl Config {
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
}
