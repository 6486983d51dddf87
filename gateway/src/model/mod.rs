//! The validated domain records the API accepts and the store persists. This module never
//! does I/O: it parses, validates and renders.

pub mod destination;
pub mod filter;
pub mod problems;
pub mod webhook;
