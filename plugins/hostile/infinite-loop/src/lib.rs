//! Hostile test plugin: never returns. The gateway must cut it off at the call deadline.

use hookgate_plugin_sdk::prelude::*;

struct InfiniteLoop;

impl Plugin for InfiniteLoop {
    fn filter(_config: &Config, event: &Event) -> Result<bool> {
        let mut spins: u64 = 0;
        // black_box keeps the optimizer from proving anything about the loop.
        while std::hint::black_box(!event.body.is_empty() || spins < u64::MAX) {
            spins = spins.wrapping_add(1);
        }
        Ok(true)
    }

    fn transform(_config: &Config, _event: Event) -> Result<Event> {
        #[allow(clippy::empty_loop)]
        loop {}
    }
}

hookgate_plugin_sdk::export!(InfiniteLoop);
