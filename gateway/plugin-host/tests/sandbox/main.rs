//! End-to-end tests of the plugin sandbox with real components built from `plugins/`.

mod examples;
mod hostile;
mod isolation;
mod lifecycle;
mod support;
