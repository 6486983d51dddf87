//! One error type per stage: upload (compile), load, call.

use serde::Serialize;

use crate::Hook;

/// Why an uploaded component was refused. Every variant is the uploader's fault (a 400),
/// except [`UploadError::Cache`], which is the gateway's (a 500).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("component is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("component imports {0}, which the hookgate:plugin world does not offer")]
    ForbiddenImports(String),
    #[error("component does not match the hookgate:plugin@0.1.0 world: {0}")]
    WorldMismatch(String),
    #[error("could not store the compiled component: {0}")]
    Cache(String),
}

/// Why a cached plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no plugin with sha256 {0} in the cache")]
    NotFound(String),
    #[error("{0:?} is not a sha256 hex digest")]
    BadDigest(String),
    #[error("cached component {sha256} is no longer valid: {reason}")]
    Invalid { sha256: String, reason: String },
    #[error("plugin cache: {0}")]
    Cache(String),
}

/// Why one plugin call failed. The event fails for that webhook with this reason; nothing
/// else is affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum PluginError {
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past the time limit.
    #[error("plugin exceeded its time limit")]
    Timeout,
    /// The call used up its fuel quota.
    #[error("plugin exceeded its CPU (fuel) quota")]
    FuelExhausted,
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit")]
    MemoryLimit,
    /// The config plus input were larger than the input limit.
    #[error("input of {size} bytes exceeds the {limit}-byte limit")]
    InputTooLarge { size: usize, limit: usize },
    /// The plugin returned more than the output limit.
    #[error("output of {size} bytes exceeds the {limit}-byte limit")]
    OutputTooLarge { size: usize, limit: usize },
    /// The plugin returned something the gateway cannot use.
    #[error("invalid plugin output: {0}")]
    InvalidOutput(String),
    /// The plugin returned an error result.
    #[error("plugin error: {0}")]
    Plugin(String),
    /// The plugin does not export this hook.
    #[error("plugin does not implement the {0} hook")]
    NotExported(Hook),
    /// Every sandbox slot was busy (only from the `*_blocking` calls, which do not queue).
    #[error("all plugin sandboxes are busy")]
    Busy,
    /// The gateway itself failed to run the call (not the plugin's fault).
    #[error("plugin host failure: {0}")]
    Host(String),
}

impl PluginError {
    /// A short stable code for records and metrics, e.g. `"timeout"`.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::Trap(_) => "trap",
            PluginError::Timeout => "timeout",
            PluginError::FuelExhausted => "fuel_exhausted",
            PluginError::MemoryLimit => "memory_limit",
            PluginError::InputTooLarge { .. } => "input_too_large",
            PluginError::OutputTooLarge { .. } => "output_too_large",
            PluginError::InvalidOutput(_) => "invalid_output",
            PluginError::Plugin(_) => "plugin_error",
            PluginError::NotExported(_) => "not_exported",
            PluginError::Busy => "busy",
            PluginError::Host(_) => "host_failure",
        }
    }
}
