//! A DNS resolver for reqwest that hands back only addresses the policy allows.
//!
//! reqwest connects to exactly the addresses its resolver returns, so filtering here checks
//! the IP that is actually connected to. A name that resolved to a public address when the
//! webhook was created and to 127.0.0.1 now (DNS rebinding) is refused at connect time.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::ssrf::{DestinationPolicy, SsrfError, check_host_name, check_ip, classify};

/// Resolves with the system resolver (`getaddrinfo` on tokio's blocking pool) and drops
/// every refused address; fails with [`SsrfError::Resolved`] when none is left.
#[derive(Clone, Debug)]
pub(crate) struct GuardedResolver {
    policy: DestinationPolicy,
}

impl GuardedResolver {
    pub(crate) fn new(policy: DestinationPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            check_host_name(&host, &policy)?;
            // Port 0: reqwest substitutes the URL's port.
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if resolved.is_empty() {
                return Err(format!("destination host `{host}` resolved to no address").into());
            }
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|addr| check_ip(addr.ip(), &policy).is_ok());
            if allowed.is_empty() {
                let refused = refused
                    .iter()
                    .filter_map(|addr| classify(addr.ip()).map(|class| (addr.ip(), class)))
                    .collect();
                return Err(SsrfError::Resolved { host, refused }.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolve(host: &str, policy: DestinationPolicy) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().unwrap();
        GuardedResolver::new(policy)
            .resolve(name)
            .await
            .map(|addrs| addrs.collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn loopback_answers_are_dropped_unless_allowed() {
        // `localhost` is refused by name before DNS; the open policy shows what DNS says.
        let error = resolve("localhost", DestinationPolicy::default())
            .await
            .unwrap_err();
        assert!(error.contains("local name"), "{error}");
        let open = DestinationPolicy {
            allow_private: true,
        };
        let addrs = resolve("localhost", open).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn numeric_names_resolving_to_private_addresses_are_refused() {
        // getaddrinfo resolves a dotted quad to itself: the same path a rebinding name takes.
        let error = resolve("10.0.0.1", DestinationPolicy::default())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            "destination host `10.0.0.1` resolves only to refused addresses (10.0.0.1 is a \
             private address); set allow_private_destinations = true to allow"
        );
    }
}
