use serde::de::DeserializeOwned;

use crate::Result;

/// The JSON configuration of one attachment of the plugin to a webhook, as the tenant
/// wrote it. Parse it into your own `serde` type with [`Config::parse`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    raw: String,
}

impl Config {
    pub(crate) fn new(raw: String) -> Self {
        Config { raw }
    }

    /// Deserializes the configuration. An empty configuration reads as `null`, so an
    /// `Option<T>` or a struct with all-default fields (`#[serde(default)]`) accepts it.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        let text = if self.raw.trim().is_empty() {
            "null"
        } else {
            &self.raw
        };
        serde_json::from_str(text).map_err(|e| crate::Error::msg(format!("config: {e}")))
    }

    /// The configuration as an untyped JSON value (`null` when empty).
    pub fn value(&self) -> Result<serde_json::Value> {
        self.parse()
    }

    /// The configuration text exactly as stored.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}
