//! The HTTP client of a webhook: TLS trust and identity from its `tls` block, pooled
//! keep-alive connections, and the SSRF guard.
//!
//! The guard has two halves because reqwest has two paths to a socket:
//! - host names go through the resolver, and [`GuardedResolver`](resolver) drops refused
//!   addresses from the answer, so the IP that is connected to is the IP that was checked
//!   (DNS rebinding cannot slip past a check made earlier);
//! - IP-literal URLs never reach a resolver, so [`check_url`] refuses them, and
//!   [`Transport::request`] runs it before every request.
//!
//! Redirects are not followed: a 3xx is the receiver's answer (Standard Webhooks treats it
//! as a failure), and following it would send signed payloads to a URL nobody validated.
//! Proxies from the environment are ignored for the same reason: the proxy would resolve
//! the destination, out of the guard's sight.

mod resolver;
mod ssrf;

use std::error::Error as _;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder};
use url::Url;

use crate::config::TlsConfig;
use crate::tls_material::{self, IdentityField};

pub use ssrf::{AddressClass, DestinationPolicy, SsrfError, check_ip, check_url, classify};

/// Tunables of a [`Transport`]. The defaults suit webhook delivery; per-request timeouts
/// (the webhook's `timeout`) are set on each request with `RequestBuilder::timeout`.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub policy: DestinationPolicy,
    /// Time allowed for DNS, TCP and TLS setup.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (a webhook's `max_in_flight` is a good value).
    pub max_idle_per_host: usize,
    pub user_agent: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            policy: DestinationPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 16,
            user_agent: concat!("hookgate/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A `tls` field did not parse; [`TlsConfig::validate`] reports the same at creation.
    #[error("tls.{field}: {message}")]
    InvalidTls {
        field: &'static str,
        message: String,
    },
    #[error("could not build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// A webhook's HTTP client. Build it once per webhook (or share one among webhooks whose
/// `tls` block is empty) and clone it freely: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Transport {
    client: Client,
    policy: DestinationPolicy,
}

impl Transport {
    /// Builds the client: certificates verified against the system/webpki roots plus
    /// `ca_pem`, client identity from `client_cert_pem` + `client_key_pem`, guarded DNS,
    /// no redirects, no environment proxies. `tls` secrets must be opened first.
    pub fn new(tls: &TlsConfig, options: &TransportOptions) -> Result<Self, TransportError> {
        let mut builder = Client::builder()
            .dns_resolver(resolver::GuardedResolver::new(options.policy))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.max_idle_per_host)
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(options.user_agent.clone());

        if let Some(ca_pem) = &tls.ca_pem {
            let certs = tls_material::parse_ca_bundle(ca_pem).map_err(|message| {
                TransportError::InvalidTls {
                    field: "ca_pem",
                    message,
                }
            })?;
            let certs = certs
                .iter()
                .map(|der| reqwest::Certificate::from_der(der.as_ref()))
                .collect::<Result<Vec<_>, _>>()?;
            // Merge, not replace: a private CA adds trust, public receivers keep working.
            builder = builder.tls_certs_merge(certs);
        }

        match (&tls.client_cert_pem, &tls.client_key_pem) {
            (Some(cert), Some(key)) => {
                if key.is_sealed() {
                    return Err(TransportError::InvalidTls {
                        field: "client_key_pem",
                        message: "is still sealed; open it with the master key first".into(),
                    });
                }
                let identity = tls_material::parse_client_identity(cert, key.expose()).map_err(
                    |(which, message)| TransportError::InvalidTls {
                        field: match which {
                            IdentityField::Cert => "client_cert_pem",
                            IdentityField::Key => "client_key_pem",
                        },
                        message,
                    },
                )?;
                builder =
                    builder.identity(reqwest::Identity::from_pem(identity.to_pem().as_bytes())?);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(TransportError::InvalidTls {
                    field: "client_key_pem",
                    message: "required when client_cert_pem is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(TransportError::InvalidTls {
                    field: "client_cert_pem",
                    message: "required when client_key_pem is set".into(),
                });
            }
        }

        Ok(Self {
            client: builder.build()?,
            policy: options.policy,
        })
    }

    /// Starts a request after checking `url` with [`check_url`]; the resolver checks host
    /// names again at connect time. This is the way to send through a transport.
    pub fn request(&self, method: Method, url: &Url) -> Result<RequestBuilder, SsrfError> {
        check_url(url, &self.policy)?;
        Ok(self.client.request(method, url.clone()))
    }

    /// The underlying client. Requests made on it directly skip the IP-literal check;
    /// prefer [`Transport::request`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn policy(&self) -> DestinationPolicy {
        self.policy
    }
}

/// The SSRF refusal behind a failed request, if that is why it failed (the resolver's
/// refusal reaches the caller wrapped in a reqwest connect error). Use it to record
/// "destination … is a private address" on the attempt instead of a generic connect error.
pub fn ssrf_refusal(error: &reqwest::Error) -> Option<&SsrfError> {
    let mut source = error.source();
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<SsrfError>() {
            return Some(refusal);
        }
        source = current.source();
    }
    None
}

/// One line describing a failed request and its causes, for the attempt record. reqwest's
/// own message stops at "error sending request"; the cause (refused, reset, certificate
/// unknown, …) is further down the chain. An SSRF refusal is reported by itself.
pub fn describe_error(error: &reqwest::Error) -> String {
    if let Some(refusal) = ssrf_refusal(error) {
        return refusal.to_string();
    }
    error_chain(error)
}

/// An error and its causes on one line, each cause once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
