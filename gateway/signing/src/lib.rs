//! Outbound security of Hookgate webhooks: how a request proves it comes from us
//! (signatures, JWTs, OAuth2 tokens), how it reaches the receiver (verified TLS, mTLS,
//! SSRF guard), and how the secrets behind both are kept at rest.
//!
//! # Code map
//!
//! - [`config`]: the `authentication` and `tls` blocks of a webhook as serde types, with
//!   validation (a 400 at create time), secret generation and rotation, masking and
//!   sealing. Pure: no I/O.
//! - [`signer`]: [`Signer`] turns an `AuthConfig` into the headers of each request. Built
//!   once per webhook; keys are decoded there, never per request.
//! - [`transport`]: [`Transport`] is a webhook's reqwest client (TLS from the `tls` block,
//!   connection pool, SSRF guard in both the URL check and the DNS resolver).
//! - [`secret_box`]: [`MasterKey`] seals secret fields before they are stored.
//!
//! # Use from the gateway
//!
//! ```no_run
//! # use hookgate_signing::*;
//! # async fn example(body: serde_json::Value, key: MasterKey)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! // Create: parse, generate a missing standard_webhooks secret, validate, seal, store.
//! let mut auth: AuthConfig = serde_json::from_value(body["authentication"].clone())?;
//! let tls: TlsConfig = serde_json::from_value(body["tls"].clone())?;
//! let policy = DestinationPolicy { allow_private: false };
//! let shown_once = auth.prepare_new(); // Some(secret) to return in the 201 response
//! auth.validate().map_err(|errors| format!("{errors:?}"))?; // each FieldError -> 400
//! auth.check_destinations(&policy).map_err(|e| format!("{e:?}"))?;
//! tls.validate().map_err(|errors| format!("{errors:?}"))?;
//! // Store with every secret sealed; responses show hints (`masked_json`).
//! let stored = config::secret_scope::to_sealed_json(&(&auth, &tls), &key)?;
//! let shown = config::secret_scope::masked_json(&(&auth, &tls))?;
//!
//! // Start the webhook: load with the secrets opened, then build the transport and
//! // signer once.
//! let (auth, tls): (AuthConfig, TlsConfig) =
//!     config::secret_scope::from_sealed_json(&stored, &key)?;
//! let options = TransportOptions { policy, ..TransportOptions::default() };
//! let transport = Transport::new(&tls, &options)?;
//! let signer = Signer::new(&auth, &transport)?;
//!
//! // Each attempt.
//! let url = url::Url::parse("https://erp.example.com/hook")?;
//! let payload = br#"{"id":"evt_1"}"#;
//! let request = OutgoingRequest {
//!     event_id: "evt_1",
//!     method: &reqwest::Method::POST,
//!     url: &url,
//!     body: payload,
//!     now: jiff::Timestamp::now(),
//!     claims: None,
//! };
//! let mut headers = signer.sign(&request).await?;
//! let mut response = send(&transport, &request, &headers).await?;
//! if response.status() == reqwest::StatusCode::UNAUTHORIZED && signer.invalidate(&headers) {
//!     // oauth2 only: one retry with a fresh token before the attempt counts as failed.
//!     headers = signer.sign(&request).await?;
//!     response = send(&transport, &request, &headers).await?;
//! }
//! # let _ = (shown_once, response, stored, shown); Ok(()) }
//! # async fn send(t: &Transport, r: &OutgoingRequest<'_>, h: &SignedHeaders)
//! # -> Result<reqwest::Response, Box<dyn std::error::Error>> {
//! #     let mut builder = t.request(r.method.clone(), r.url)?;
//! #     for (name, value) in h { builder = builder.header(name, value); }
//! #     Ok(builder.body(r.body.to_vec()).send().await?)
//! # }
//! ```

pub mod config;
mod key_material;
pub mod secret_box;
pub mod signer;
mod tls_material;
pub mod transport;

pub use config::{
    ApiKeyAuth, AuthConfig, ClientAuthMethod, FieldError, HmacAuth, JwtAlgorithm, JwtAuth,
    OAuth2Auth, PreviousSecret, RotateError, SecretString, StandardWebhooksAuth, TlsConfig,
};
pub use secret_box::MasterKey;
pub use signer::{BuildError, OutgoingRequest, SignError, SignedHeaders, Signer};
pub use transport::{DestinationPolicy, SsrfError, Transport, TransportError, TransportOptions};
