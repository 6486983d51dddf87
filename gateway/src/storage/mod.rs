//! The storage seams: what the engines and the API need from storage, as traits, so a
//! backend is chosen at startup and the rest of the gateway never learns which one runs.
//!
//! - [`EventLog`]: each tenant's events by seq, id and type/time, with retention and a
//!   wake-up when new events are durable.
//! - [`Catalog`]: what tenants configured (tenants, keys, event types, webhooks, plugins
//!   and their secrets); every change is durable when its call returns.
//! - [`DeliveryState`]: per webhook, its cursor, statistics, delivery records, attempts,
//!   retry ("due") and rejected entries and integration log. Written in [`OutcomeSet`]s.
//! - [`Ownership`]: which worker runs a webhook ([`Lease`]s).
//! - [`ComponentStore`]: plugin components for every node (cluster mode only).
//!
//! The embedded backend (segment log + sled) implements them in `crate::store`; the
//! conformance suite (`conformance`) states the contract as tests every backend passes.
//!
//! Architecture invariant: the traits speak in records and positions (seqs, times), never
//! in keys, trees or batches. How a backend lays out and indexes its data, and how it makes
//! a set of changes safe against a crash, is its own business; what a caller may observe
//! is written on each method.

pub mod catalog;
mod components;
mod delivery_state;
pub mod event_log;
mod ownership;

#[cfg(test)]
pub mod conformance;

pub use catalog::Catalog;
pub use components::ComponentStore;
pub use delivery_state::{DeliveryState, OutcomeSet, RejectedPage, WebhookRef};
pub use event_log::{Appended, EventLog, NewEvent, StoredEvent, TimePage};
pub use ownership::{Lease, Ownership, ValidUntil};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend cannot serve the call now (I/O error, lost quorum); it may succeed later.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read back (or a record cannot be encoded).
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The write was refused because the writer's lease was replaced: another node runs
    /// the webhook now. The writer must stop.
    #[error("the webhook's lease moved to another node: {0}")]
    Fenced(String),
}

pub type StorageResult<T> = Result<T, StorageError>;
