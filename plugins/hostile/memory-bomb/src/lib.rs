//! Hostile test plugin: allocates 1 MiB blocks until memory runs out. The gateway must
//! stop it at its memory cap and report that clearly. (Each block is written once, not
//! filled, so the bomb reaches the cap in a millisecond or two instead of racing the time
//! limit on a busy machine.)

use hookgate_plugin_sdk::prelude::*;

struct MemoryBomb;

impl Plugin for MemoryBomb {
    fn transform(_config: &Config, event: Event) -> Result<Event> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = Vec::<u8>::with_capacity(1 << 20);
            block.push(1);
            hoard.push(std::hint::black_box(block));
            if std::hint::black_box(hoard.len()) == usize::MAX {
                return Ok(event);
            }
        }
    }
}

hookgate_plugin_sdk::export!(MemoryBomb);
