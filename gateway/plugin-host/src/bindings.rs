//! Rust types and host traits generated from `wit/plugin.wit`, the single source of truth
//! for the contract. Only the `types` and `host` interfaces are used from here: hook
//! exports are looked up by name in `call.rs`, so that a component exporting only some
//! hooks still loads.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
});

pub(crate) use hookgate::plugin::host;
pub use hookgate::plugin::types::{Event, Header, OutgoingRequest};

/// The exported interface holding the hooks, with its exact version: components built
/// against another version of the contract are refused.
pub(crate) const HOOKS_INTERFACE: &str = "hookgate:plugin/hooks@0.1.0";
/// Interfaces of our own package that a component may import.
pub(crate) const OWN_IMPORTS: &[&str] =
    &["hookgate:plugin/host@0.1.0", "hookgate:plugin/types@0.1.0"];
