//! Hostile test plugin: panics (which aborts: a trap) in every hook.

use hookgate_plugin_sdk::prelude::*;

struct Panics;

impl Plugin for Panics {
    fn filter(_config: &Config, event: &Event) -> Result<bool> {
        panic!("boom on purpose in event {}", event.id);
    }

    fn transform(_config: &Config, event: Event) -> Result<Event> {
        // An out-of-bounds index: a panic the author did not write.
        let index = std::hint::black_box(event.body.len() + 10);
        let byte = event.body[index];
        Err(Error::msg(byte))
    }
}

hookgate_plugin_sdk::export!(Panics);
