//! Hookgate: a self-hosted webhook gateway. See docs/ARCHITECTURE.md for the map.

pub mod api;
pub mod app;
pub mod config;
pub mod context;
pub mod delivery;
pub mod ids;
pub mod iso;
pub mod json_depth;
pub mod log;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod nats;
pub mod pipeline;
pub mod plugin_cli;
pub mod plugin_registry;
pub mod plugin_trial;
pub mod schemas;
pub mod storage;
pub mod store;
