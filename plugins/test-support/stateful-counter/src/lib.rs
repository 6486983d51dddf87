//! Test plugin: counts its calls in a global. The gateway gives every call a fresh
//! instance, so each hook must always see the count 1. It also echoes what the host
//! functions return, so tests can check them.

use std::sync::atomic::{AtomicU32, Ordering};

use hookgate_plugin_sdk::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

fn next_call() -> u32 {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    log::info(&format!("call {n}"));
    n
}

struct StatefulCounter;

impl Plugin for StatefulCounter {
    /// Keeps the event only on the first call of an instance.
    fn filter(_config: &Config, _event: &Event) -> Result<bool> {
        Ok(next_call() == 1)
    }

    /// Replaces the body with `{"calls": n, "config": <raw config>}`.
    fn transform(config: &Config, mut event: Event) -> Result<Event> {
        let calls = next_call();
        event.set_json(&serde_json::json!({"calls": calls, "config": config.raw()}))?;
        Ok(event)
    }

    /// Echoes the host helpers as headers.
    fn authenticate(config: &Config, request: &OutgoingRequest) -> Result<Vec<Header>> {
        let calls = next_call();
        let name = config.raw();
        Ok(vec![
            Header::new("x-calls", calls.to_string()),
            Header::new("x-secret", secret(name).unwrap_or_else(|| "<none>".into())),
            Header::new("x-sha256", hex(&sha256(&request.body))),
            Header::new("x-now-ms", now_ms().to_string()),
        ])
    }
}

hookgate_plugin_sdk::export!(StatefulCounter);
