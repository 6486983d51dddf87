//! Write Hookgate webhook plugins in plain Rust.
//!
//! A plugin is a WebAssembly component that Hookgate runs in a sandbox for each event of a
//! webhook it is attached to. It can implement up to three hooks, each with a neutral
//! default, so you implement only what you need:
//!
//! | hook | runs | default |
//! |---|---|---|
//! | [`Plugin::filter`] | once per event and webhook; `false` drops the event | keep |
//! | [`Plugin::transform`] | once per event and webhook, after the filters | unchanged |
//! | [`Plugin::authenticate`] | on every delivery attempt; returns headers to add | none |
//!
//! A complete plugin that keeps only orders of at least the configured total:
//!
//! ```no_run
//! use hookgate_plugin_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { min_total: f64 }
//!
//! struct LargeOrders;
//!
//! impl Plugin for LargeOrders {
//!     fn filter(config: &Config, event: &Event) -> Result<bool> {
//!         let settings: Settings = config.parse()?;
//!         let body: serde_json::Value = event.json()?;
//!         let total = body.pointer("/payload/total").and_then(|t| t.as_f64()).unwrap_or(0.0);
//!         log::debug(&format!("total {total}"));
//!         Ok(total >= settings.min_total)
//!     }
//! }
//!
//! hookgate_plugin_sdk::export!(LargeOrders);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (see `docs/PLUGINS.md`):
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! Inside the sandbox there is no filesystem, network, environment or real clock: use the
//! [`host`] helpers for logging, the tenant's secrets, HMAC/SHA-256 and the time.
//! A panic fails only the current call; its message is logged first.

// The generated bindings name the runtime as `::hookgate_plugin_sdk::…` (so that the
// export macro works in plugin crates that do not depend on wit-bindgen); this alias makes
// the same path resolve inside this crate.
extern crate self as hookgate_plugin_sdk;

mod config;
mod error;
mod event;
pub mod host;
mod plugin;
mod pointers;

pub use config::Config;
pub use error::{Error, Result};
pub use event::{Event, Header, Headers, OutgoingRequest};
pub use host::log;
pub use plugin::Plugin;

/// `use hookgate_plugin_sdk::prelude::*;` brings in everything a plugin usually needs.
pub mod prelude {
    pub use crate::host::{self, hex, hmac_sha256, log, now_ms, secret, sha256};
    pub use crate::{Config, Error, Event, Header, Headers, OutgoingRequest, Plugin, Result};
}

/// Exports a type implementing [`Plugin`] as the plugin's hooks. Call it once per plugin
/// crate, at the top level:
///
/// ```ignore
/// hookgate_plugin_sdk::export!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            // The generated export macro wants a plain type name, so name the adapter.
            type HookgateExports = $crate::__private::Exports<$plugin>;
            $crate::__private::__export_hookgate_plugin!(
                HookgateExports with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Used by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::Exports;
    pub use wit_bindgen;

    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "plugin",
            export_macro_name: "__export_hookgate_plugin",
            pub_export_macro: true,
            default_bindings_module: "::hookgate_plugin_sdk::__private::bindings",
            runtime_path: "::hookgate_plugin_sdk::__private::wit_bindgen::rt",
        });
    }

    pub use bindings::__export_hookgate_plugin;
}
