//! The WebAssembly plugin sandbox of Hookgate.
//!
//! Tenants upload plugins: WebAssembly components of the `hookgate:plugin@0.1.0` world
//! (`wit/plugin.wit`) that export up to three hooks — `filter`, `transform`,
//! `authenticate`. This crate validates and compiles uploads, caches the compiled code on
//! disk, and runs hooks with strict per-call limits.
//!
//! ```no_run
//! # async fn demo(wasm: Vec<u8>, event: hookgate_plugin_host::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hookgate_plugin_host::{CallContext, NoSecrets, PluginRuntime, RuntimeConfig};
//!
//! let runtime = PluginRuntime::new(RuntimeConfig::new("/var/lib/hookgate/plugins"))?;
//! // Upload (blocking: tens of ms of compilation).
//! let artifact = runtime.compile(&wasm)?;
//! // At startup, for every stored plugin version: reuses the cached compilation. Each
//! // tenant gets its own handle (shared code, never shared state).
//! let plugin = runtime.load("acme", &artifact.sha256)?;
//! // Per event: fresh sandbox per call, runs on a blocking thread.
//! let report = runtime
//!     .call_filter(&plugin, r#"{"min_total": 100}"#, event, CallContext::new(Arc::new(NoSecrets)))
//!     .await;
//! match report.result {
//!     Ok(keep) => println!("keep: {keep}, logs: {:?}", report.logs),
//!     Err(reason) => println!("failed: {reason}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Code map
//!
//! - `runtime` — [`PluginRuntime`]: upload, load, the call entry points, the slots that
//!   bound concurrent calls. The only public way in.
//! - `engine` — the shared `Engine` (pooling allocator, epoch interruption, minimal
//!   features) and the epoch ticker thread. Every setting that affects compiled code.
//! - `validate` — upload checks that need no instance: size, component or not, imports.
//! - `plugin` — [`LoadedPlugin`]: linked `InstancePre` plus the location of each hook.
//! - `call` — one call: fresh store, limits, instantiate, call, classify the outcome into
//!   a [`CallReport`]. Synchronous: on a blocking thread with the full time limit, or
//!   inline on an async worker with a deadline of a few milliseconds
//!   ([`PluginRuntime::with_slot`]).
//! - `host` — the store's data and the `host` interface (log, secrets, crypto, time).
//! - `wasi` — the WASI subset Rust guests import, backed by a deny-everything context;
//!   its `wasi:io` never blocks an async worker.
//! - `limits` — the memory/table limiter that remembers denials (→ `MemoryLimit`).
//! - `cache` — the only writer of the cache directory (atomic `.wasm`/`.cwasm` files).
//! - `bindings` — types generated from the WIT.
//!
//! # Which hooks a plugin implements
//!
//! [`PluginArtifact::exports`] lists the hooks the component *exports*, each type-checked
//! at upload. Components built with the SDK (or any `wit-bindgen` world targeting
//! `plugin`) export all three; a hook the author did not write keeps its neutral default
//! (keep, identity, no headers), so attaching it is harmless. A component made by other
//! means may export a subset; calling a missing hook yields [`PluginError::NotExported`].

mod bindings;
mod cache;
mod call;
mod config;
mod cpu;
mod engine;
mod error;
mod hook;
mod host;
mod limits;
mod plugin;
mod runtime;
mod slots;
mod validate;
mod wasi;

pub use bindings::{Event, Header, OutgoingRequest};
pub use call::CallReport;
pub use config::{RuntimeConfig, SANDBOX_SLOTS};
pub use error::{LoadError, PluginError, UploadError};
pub use hook::Hook;
pub use host::{CallContext, LogLevel, LogLine, NOT_IMPLEMENTED_MARKER, NoSecrets, SecretSource};
pub use plugin::LoadedPlugin;
pub use runtime::{CacheStats, PluginArtifact, PluginRuntime, RunStats, RuntimeError, Slot};
