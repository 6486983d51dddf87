//! End-to-end tests: each starts the real `hookgate` binary on a free loopback port with
//! its own temporary data directory and drives it over HTTP, like a user would.

mod harness;
mod receiver;

mod cluster;
mod cluster_failures;
mod deep_json;
mod delivery;
mod delivery_crash;
mod delivery_records;
mod delivery_replay;
mod durability;
mod export;
mod foundation;
mod migrate;
mod openapi_fuzz;
mod plugin_cli;
mod plugin_isolation;
mod plugins;
mod plugins_py;
mod plugins_ts;
mod reference_platforms;
mod signing;
