//! Hostile test plugin: uses `std::fs`, which makes the component import
//! `wasi:filesystem`. The gateway must refuse it at upload.

use hookgate_plugin_sdk::prelude::*;

struct ReadsFiles;

impl Plugin for ReadsFiles {
    fn filter(_config: &Config, _event: &Event) -> Result<bool> {
        let secrets = std::fs::read_to_string("/etc/passwd").map_err(Error::msg)?;
        log::info(&secrets);
        Ok(true)
    }
}

hookgate_plugin_sdk::export!(ReadsFiles);
