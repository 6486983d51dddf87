//! Hostile test plugin: allocates 1 MiB blocks (touching every page) until memory runs
//! out. The gateway must stop it at its memory cap and report that clearly.

use hookgate_plugin_sdk::prelude::*;

struct MemoryBomb;

impl Plugin for MemoryBomb {
    fn transform(_config: &Config, event: Event) -> Result<Event> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
            if std::hint::black_box(hoard.len()) == usize::MAX {
                return Ok(event);
            }
        }
    }
}

hookgate_plugin_sdk::export!(MemoryBomb);
