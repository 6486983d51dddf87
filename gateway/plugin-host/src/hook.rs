use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the three hooks a plugin can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Filter,
    Transform,
    Authenticate,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Filter, Hook::Transform, Hook::Authenticate];

    /// The function's name in the WIT `hooks` interface (also the API's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Filter => "filter",
            Hook::Transform => "transform",
            Hook::Authenticate => "authenticate",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Hook {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hook::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| format!("unknown hook {s:?}"))
    }
}
