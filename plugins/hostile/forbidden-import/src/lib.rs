//! Hostile test plugin: imports `hostile:escape/network`, which is outside Hookgate's
//! world. The gateway must refuse it at upload.

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "hostile:escape/plugin",
    generate_all,
});

use exports::hookgate::plugin::hooks::Guest;
use hookgate::plugin::types::{Event, Header, OutgoingRequest};

struct Escape;

impl Guest for Escape {
    fn filter(_config: String, _e: Event) -> Result<bool, String> {
        Ok(hostile::escape::network::connect("169.254.169.254", 80))
    }

    fn transform(_config: String, e: Event) -> Result<Event, String> {
        Ok(e)
    }

    fn authenticate(_config: String, _req: OutgoingRequest) -> Result<Vec<Header>, String> {
        Ok(Vec::new())
    }
}

export!(Escape);
