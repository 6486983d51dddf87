//! Hostile test plugin: sleeps in a WASI host call (`std::thread::sleep` is
//! `subscribe-duration` plus `poll`), where the epoch deadline that stops running
//! WebAssembly cannot reach it. The gateway must still end the call at its time limit and
//! free its sandbox slot. Config: `{"ms": N}` sleeps N milliseconds, without it forever.
//! `authenticate` always sleeps; `filter` only with `"sleep_in_filter": true` (otherwise it
//! keeps the event at once, so a webhook's attempts, not its prepare step, sleep).

use std::time::Duration;

use hookgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    ms: Option<u64>,
    #[serde(default)]
    sleep_in_filter: bool,
}

fn settings(config: &Config) -> Result<Settings> {
    let settings: Option<Settings> = config.parse()?;
    Ok(settings.unwrap_or(Settings {
        ms: None,
        sleep_in_filter: false,
    }))
}

fn sleep(settings: &Settings) -> Result<()> {
    match settings.ms {
        Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    Ok(())
}

struct Sleeper;

impl Plugin for Sleeper {
    fn filter(config: &Config, _event: &Event) -> Result<bool> {
        let settings = settings(config)?;
        if settings.sleep_in_filter {
            sleep(&settings)?;
        }
        Ok(true)
    }

    fn authenticate(config: &Config, _request: &OutgoingRequest) -> Result<Vec<Header>> {
        sleep(&settings(config)?)?;
        Ok(vec![Header::new("x-slept", "yes")])
    }
}

hookgate_plugin_sdk::export!(Sleeper);
