//! The runtime's knobs, with defaults suited to webhook payloads.

use std::path::PathBuf;
use std::time::Duration;

/// Default [`RuntimeConfig::max_concurrent_calls`]: the sandbox's pool slots.
pub const SANDBOX_SLOTS: u32 = 64;

/// Limits and locations for a [`PluginRuntime`](crate::PluginRuntime). Every limit applies
/// per call, to every tenant alike.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where uploaded components (`{sha256}.wasm`) and their compiled form
    /// (`{sha256}.cwasm`) are kept. Created if missing.
    pub cache_dir: PathBuf,
    /// Calls that may run at once; further calls wait for a slot. Also sizes the pooling
    /// allocator, so it bounds the sandbox's memory reservation too.
    pub max_concurrent_calls: u32,
    /// Of those, calls one tenant may run at once (at least 1, at most
    /// `max_concurrent_calls`): the rest of the slots stay free for other tenants, however
    /// slow one tenant's plugins are. Freed slots go to the waiting tenant holding the
    /// fewest.
    pub max_calls_per_tenant: u32,
    /// Linear memory a plugin may grow to, in bytes.
    pub memory_limit_bytes: usize,
    /// Wall time a call may run before it is interrupted.
    pub call_timeout: Duration,
    /// Optional deterministic CPU quota in WebAssembly fuel units, on top of the timeout.
    /// `None` (the default) skips fuel metering, which costs a little on every call.
    pub fuel_per_call: Option<u64>,
    /// Size of one call's input: config plus event (ids, type, headers, body), in bytes.
    pub max_input_bytes: usize,
    /// Size of one call's result (event or headers), in bytes.
    pub max_output_bytes: usize,
    /// Bytes of log messages kept per call; later lines are dropped and a note says so.
    pub max_log_bytes: usize,
    /// Largest component accepted by [`compile`](crate::PluginRuntime::compile).
    pub max_component_bytes: usize,
}

impl RuntimeConfig {
    /// Defaults for everything but the cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            max_concurrent_calls: SANDBOX_SLOTS,
            max_calls_per_tenant: SANDBOX_SLOTS / 4,
            memory_limit_bytes: 64 << 20,
            call_timeout: Duration::from_millis(100),
            fuel_per_call: None,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 16 << 10,
            max_component_bytes: 10 << 20,
        }
    }
}
