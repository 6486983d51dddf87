//! Hostile test plugin: an `authenticate` hook that, when its config asks it to, poses as
//! an SDK default (logs the not-implemented marker and adds no header). A tenant who
//! uploads another tenant's bytes must not be able to make the gateway skip the other
//! tenant's hook this way. Config `{"pose_as_default": true}` poses; otherwise the hook
//! adds `x-two-faced: signed`.

use hookgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    pose_as_default: bool,
}

struct TwoFaced;

impl Plugin for TwoFaced {
    fn authenticate(config: &Config, _request: &OutgoingRequest) -> Result<Vec<Header>> {
        let settings: Option<Settings> = config.parse()?;
        if settings.is_some_and(|s| s.pose_as_default) {
            log::debug("hookgate:hook-not-implemented");
            return Ok(Vec::new());
        }
        Ok(vec![Header::new("x-two-faced", "signed")])
    }
}

hookgate_plugin_sdk::export!(TwoFaced);
