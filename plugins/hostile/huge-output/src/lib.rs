//! Hostile test plugin: tries to hand the gateway far more data than it accepts.
//!
//! - `transform` returns a body of `{"bytes": N}` bytes (default 1 GiB, which cannot even
//!   be allocated under the memory cap; a few MiB fits in memory but not in the output cap).
//! - `authenticate` returns 20,000 headers of 64-byte values (about 1.4 MB).
//! - `filter` floods the log with `{"lines": N}` lines of 1 KiB (default 1,000), then
//!   keeps the event.

use hookgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    bytes: Option<usize>,
    lines: Option<usize>,
}

struct HugeOutput;

impl Plugin for HugeOutput {
    fn filter(config: &Config, _event: &Event) -> Result<bool> {
        let settings: Settings = config.parse::<Option<Settings>>()?.unwrap_or_default();
        let line = "x".repeat(1024);
        for _ in 0..settings.lines.unwrap_or(1_000) {
            log::info(&line);
        }
        Ok(true)
    }

    fn transform(config: &Config, mut event: Event) -> Result<Event> {
        let settings: Settings = config.parse::<Option<Settings>>()?.unwrap_or_default();
        // 1 GiB: wasi-libc's allocator aborts outright on requests of 2 GiB or more
        // (before asking for memory), so this is the largest request that actually hits
        // the gateway's memory limit.
        event.body = vec![b'x'; settings.bytes.unwrap_or(1 << 30)];
        Ok(event)
    }

    fn authenticate(_config: &Config, _request: &OutgoingRequest) -> Result<Vec<Header>> {
        Ok((0..20_000)
            .map(|i| Header::new(format!("x-h{i}"), "y".repeat(64)))
            .collect())
    }
}

hookgate_plugin_sdk::export!(HugeOutput);
