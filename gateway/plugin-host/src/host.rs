//! What a plugin can reach: the state of one call's `Store` and the `host` interface.
//!
//! Everything here is per call: the secrets handle, the fixed time, the log buffer and
//! its budget, the limits, and a WASI context that denies everything.

use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::host;
use crate::limits::CallLimits;

/// Tenant-scoped secrets for one plugin. The gateway implements this over its encrypted
/// store; a plugin can only ask for names, never list them.
pub trait SecretSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// No secrets at all.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

impl SecretSource for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl SecretSource for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// What one call may read from the gateway: the tenant's secrets for this plugin and the
/// time the plugin sees (the only clock in the sandbox).
#[derive(Clone)]
pub struct CallContext {
    pub secrets: Arc<dyn SecretSource>,
    /// Unix time in milliseconds returned by `now-ms` (and WASI's wall clock) for the
    /// whole call.
    pub now_ms: u64,
}

impl CallContext {
    /// These secrets, and the current system time.
    pub fn new(secrets: Arc<dyn SecretSource>) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        CallContext { secrets, now_ms }
    }

    /// Fixes the time the plugin sees (tests, replays).
    pub fn at(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext::new(Arc::new(NoSecrets))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// One line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Collects a call's log lines up to a byte budget.
pub(crate) struct LogBuffer {
    lines: Vec<LogLine>,
    remaining: usize,
    truncated: bool,
}

impl LogBuffer {
    fn new(budget: usize) -> Self {
        LogBuffer {
            lines: Vec::new(),
            remaining: budget,
            truncated: false,
        }
    }

    fn push(&mut self, level: LogLevel, mut message: String) {
        if self.truncated {
            return;
        }
        if message.len() > self.remaining {
            let mut cut = self.remaining;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            self.truncated = true;
        }
        self.remaining -= message.len();
        if !message.is_empty() {
            self.lines.push(LogLine { level, message });
        }
        if self.truncated {
            self.lines.push(LogLine {
                level: LogLevel::Warn,
                message: "log limit reached; further lines dropped".into(),
            });
        }
    }

    pub(crate) fn into_lines(self) -> Vec<LogLine> {
        self.lines
    }
}

/// What a hook logs (at level `debug`, nothing else in the message) to say that it is not
/// implemented: it returns the neutral result without looking at its input. The SDK's
/// default hooks do this; any other toolchain may. The line is not kept as a log line.
pub const NOT_IMPLEMENTED_MARKER: &str = "hookgate:hook-not-implemented";

/// The data of one call's `Store`.
pub(crate) struct CallState {
    context: CallContext,
    pub(crate) logs: LogBuffer,
    /// The hook logged [`NOT_IMPLEMENTED_MARKER`].
    pub(crate) not_implemented: bool,
    pub(crate) limits: CallLimits,
    /// Made on the first WASI call: most calls make none, and building one costs
    /// allocations (streams, clocks, random generators) on every call.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    /// The call runs inline on an async worker (see `wasi::IoView`).
    pub(crate) inline: bool,
    /// On an inline call, a WASI operation would have waited: the call failed and must run
    /// again on a blocking thread.
    pub(crate) blocked_inline: bool,
    /// When the call's time is up: WASI operations never wait past it.
    deadline: Instant,
    /// A WASI operation was still waiting at the deadline: the call failed with a timeout.
    pub(crate) waited_past_deadline: bool,
}

impl CallState {
    pub(crate) fn new(
        context: CallContext,
        limits: CallLimits,
        log_budget: usize,
        deadline: Instant,
    ) -> Self {
        CallState {
            context,
            logs: LogBuffer::new(log_budget),
            not_implemented: false,
            limits,
            wasi: None,
            table: ResourceTable::new(),
            inline: false,
            blocked_inline: false,
            deadline,
            waited_past_deadline: false,
        }
    }

    /// What `wasi:io` works on.
    pub(crate) fn io(&mut self) -> crate::wasi::IoView<'_> {
        crate::wasi::IoView {
            table: &mut self.table,
            inline: self.inline,
            blocked: &mut self.blocked_inline,
            deadline: self.deadline,
            timed_out: &mut self.waited_past_deadline,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let now_ms = self.context.now_ms;
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| crate::wasi::deny_all_context(now_ms)),
            table: &mut self.table,
        }
    }
}

impl host::Host for CallState {
    fn log(&mut self, level: host::Level, message: String) {
        if matches!(level, host::Level::Debug) && message == NOT_IMPLEMENTED_MARKER {
            self.not_implemented = true;
            return;
        }
        let level = match level {
            host::Level::Debug => LogLevel::Debug,
            host::Level::Info => LogLevel::Info,
            host::Level::Warn => LogLevel::Warn,
            host::Level::Error => LogLevel::Error,
        };
        self.logs.push(level, message);
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.context.secrets.get(&name)
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(&data);
        mac.finalize().into_bytes().to_vec()
    }

    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        Sha256::digest(&data).to_vec()
    }

    fn now_ms(&mut self) -> u64 {
        self.context.now_ms
    }
}

// The `types` interface defines only types; bindgen still wants its (empty) host trait.
impl crate::bindings::hookgate::plugin::types::Host for CallState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_truncates_and_notes_it_once() {
        let mut logs = LogBuffer::new(10);
        logs.push(LogLevel::Info, "12345".into());
        logs.push(LogLevel::Info, "67890abc".into());
        logs.push(LogLevel::Info, "dropped".into());
        let lines = logs.into_lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].message, "12345");
        assert_eq!(lines[1].message, "67890");
        assert_eq!(lines[2].level, LogLevel::Warn);
    }

    #[test]
    fn log_truncation_respects_utf8() {
        let mut logs = LogBuffer::new(3);
        logs.push(LogLevel::Info, "aé€".into());
        assert_eq!(logs.into_lines()[0].message, "aé"[..3].to_string());
    }
}
