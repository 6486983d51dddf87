//! `custom-signer`: signs every delivery attempt for a receiver with its own scheme:
//!
//! ```text
//! X-Acme-Signature: t=<unix seconds>,s=<hex HMAC-SHA256 of "<t>.<body>">
//! ```
//!
//! The key is a tenant secret stored for this plugin
//! (`PUT /{tenant}/v1/plugins/custom-signer/secrets/{name}`). Configuration:
//!
//! ```json
//! {"secret": "acme-signing-key", "header": "X-Acme-Signature"}
//! ```
//!
//! `header` is optional. A missing secret fails the attempt with a clear reason rather
//! than sending an unsigned request.

use hookgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    secret: String,
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "X-Acme-Signature".to_owned()
}

struct CustomSigner;

impl Plugin for CustomSigner {
    fn authenticate(config: &Config, request: &OutgoingRequest) -> Result<Vec<Header>> {
        let settings: Settings = config.parse()?;
        let key = secret(&settings.secret).ok_or_else(|| {
            Error::msg(format!(
                "secret '{}' is not set for this plugin",
                settings.secret
            ))
        })?;
        let timestamp = now_ms() / 1000;
        let mut signed = format!("{timestamp}.").into_bytes();
        signed.extend_from_slice(&request.body);
        let signature = hex(&hmac_sha256(key.as_bytes(), &signed));
        Ok(vec![Header::new(
            settings.header,
            format!("t={timestamp},s={signature}"),
        )])
    }
}

hookgate_plugin_sdk::export!(CustomSigner);
