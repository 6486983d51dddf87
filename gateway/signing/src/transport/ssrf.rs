//! The SSRF guard's rules: which destination addresses a webhook may reach.
//!
//! Two enforcement points use these rules (see `transport/mod.rs` for why both exist):
//! [`check_url`] for URLs (IP literals never reach a DNS resolver) and the guarded resolver
//! for host names (it filters the addresses that will actually be connected to).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Whether webhooks may reach private addresses. Mirrors the gateway's
/// `allow_private_destinations` setting (tests and local use set it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Allow loopback, private, link-local, CGNAT and other non-public addresses. Cloud
    /// metadata endpoints stay refused even then: no webhook has a reason to call them,
    /// and they hand out credentials.
    pub allow_private: bool,
}

/// Why an address is not a public destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    /// RFC 1918, and the deprecated IPv6 site-local range.
    Private,
    /// 169.254/16 and fe80::/10.
    LinkLocal,
    /// 100.64/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    Multicast,
    /// 0.0.0.0/8 and `::` (connecting to them reaches the local host on Linux).
    Unspecified,
    Broadcast,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// Documentation, benchmarking, reserved and deprecated ranges: never a real receiver.
    Reserved,
    /// Instance metadata services (AWS, GCP, Azure, Alibaba, …): refused under any policy.
    CloudMetadata,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::SharedAddressSpace => "a carrier-grade NAT (100.64.0.0/10) address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Broadcast => "a broadcast address",
            AddressClass::UniqueLocal => "a unique-local (fc00::/7) address",
            AddressClass::Reserved => "a reserved or documentation address",
            AddressClass::CloudMetadata => "a cloud metadata endpoint",
        })
    }
}

/// A destination the guard refused. The texts are meant for API clients and attempt logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error("destination {addr} is {class}; {}", remedy(*.class))]
    Address { addr: IpAddr, class: AddressClass },
    #[error(
        "destination host `{host}` is a local name; set allow_private_destinations = true to allow"
    )]
    LocalName { host: String },
    #[error("destination host `{host}` is a cloud metadata endpoint and is always refused")]
    MetadataName { host: String },
    #[error(
        "destination host `{host}` resolves only to refused addresses ({}){}",
        list(.refused),
        hint(.refused)
    )]
    Resolved {
        host: String,
        refused: Vec<(IpAddr, AddressClass)>,
    },
    #[error("destination scheme `{0}` is not allowed; use http or https")]
    Scheme(String),
    #[error("destination URL has no host")]
    NoHost,
}

fn remedy(class: AddressClass) -> &'static str {
    if class == AddressClass::CloudMetadata {
        "it is always refused"
    } else {
        "set allow_private_destinations = true to allow"
    }
}

fn list(refused: &[(IpAddr, AddressClass)]) -> String {
    refused
        .iter()
        .map(|(addr, class)| format!("{addr} is {class}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hint(refused: &[(IpAddr, AddressClass)]) -> &'static str {
    let only_metadata = refused
        .iter()
        .all(|(_, class)| *class == AddressClass::CloudMetadata);
    if only_metadata {
        ""
    } else {
        "; set allow_private_destinations = true to allow"
    }
}

/// Host names of metadata services that resolve inside the cloud only.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Checks a URL before anything is sent to it: scheme, local host names, and IP-literal
/// hosts (which reqwest connects to without consulting the resolver). Call it when a
/// webhook is created and before every send; [`super::Transport::request`] does the latter.
pub fn check_url(url: &Url, policy: &DestinationPolicy) -> Result<(), SsrfError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SsrfError::Scheme(url.scheme().to_owned()));
    }
    match url.host() {
        None => Err(SsrfError::NoHost),
        Some(Host::Ipv4(addr)) => check_ip(IpAddr::V4(addr), policy),
        Some(Host::Ipv6(addr)) => check_ip(IpAddr::V6(addr), policy),
        Some(Host::Domain(name)) => check_host_name(name, policy),
    }
}

/// Refuses host names that are local or metadata services by name, before DNS.
pub(crate) fn check_host_name(name: &str, policy: &DestinationPolicy) -> Result<(), SsrfError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if METADATA_HOSTS.contains(&name.as_str()) {
        return Err(SsrfError::MetadataName { host: name });
    }
    let is_local = name == "localhost" || name.ends_with(".localhost");
    if is_local && !policy.allow_private {
        return Err(SsrfError::LocalName { host: name });
    }
    Ok(())
}

/// Checks one address against the policy.
pub fn check_ip(addr: IpAddr, policy: &DestinationPolicy) -> Result<(), SsrfError> {
    match classify(addr) {
        None => Ok(()),
        Some(class) if class != AddressClass::CloudMetadata && policy.allow_private => Ok(()),
        Some(class) => Err(SsrfError::Address { addr, class }),
    }
}

/// Classifies an address; `None` means a public (globally routable) address.
pub fn classify(addr: IpAddr) -> Option<AddressClass> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(addr: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, d] = addr.octets();
    let class = match (a, b, c, d) {
        // Metadata first: these sit inside ranges with other classes.
        (169, 254, 169, 254) | (100, 100, 100, 200) | (168, 63, 129, 16) | (192, 0, 0, 192) => {
            AddressClass::CloudMetadata
        }
        (0, ..) => AddressClass::Unspecified,
        (127, ..) => AddressClass::Loopback,
        (10, ..) | (192, 168, ..) => AddressClass::Private,
        (172, 16..=31, ..) => AddressClass::Private,
        (169, 254, ..) => AddressClass::LinkLocal,
        (100, 64..=127, ..) => AddressClass::SharedAddressSpace,
        (255, 255, 255, 255) => AddressClass::Broadcast,
        (224..=239, ..) => AddressClass::Multicast,
        (240..=255, ..) => AddressClass::Reserved,
        // IETF protocol assignments, documentation nets, benchmarking, 6to4 relay anycast.
        (192, 0, 0, _) | (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => {
            AddressClass::Reserved
        }
        (198, 18..=19, ..) | (192, 88, 99, _) => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(addr: Ipv6Addr) -> Option<AddressClass> {
    if addr.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if addr.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    // Forms that carry an IPv4 address and reach it: judge the IPv4 address.
    if let Some(v4) = embedded_ipv4(addr) {
        return classify_v4(v4);
    }
    let segments = addr.segments();
    // AWS's IPv6 metadata endpoint, inside fc00::/7.
    if addr == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(AddressClass::CloudMetadata);
    }
    let class = match segments[0] {
        s if s & 0xfe00 == 0xfc00 => AddressClass::UniqueLocal,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        // Documentation (2001:db8::/32), Teredo (2001::/32, hides its IPv4 target),
        // discard-only (100::/64), IPv4-compatible (::/96, deprecated).
        0x2001 if segments[1] == 0x0db8 || segments[1] == 0 => AddressClass::Reserved,
        0x0100 if segments[1..4] == [0, 0, 0] => AddressClass::Reserved,
        0 if segments[1..6] == [0, 0, 0, 0, 0] => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address reached through an IPv4-mapped (`::ffff:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::/48`) address.
fn embedded_ipv4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    let from_pair = |hi: u16, lo: u16| {
        Ipv4Addr::new(
            (hi >> 8) as u8,
            (hi & 0xff) as u8,
            (lo >> 8) as u8,
            (lo & 0xff) as u8,
        )
    };
    if let Some(v4) = addr.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(from_pair(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(from_pair(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(addr: &str) -> Option<AddressClass> {
        classify(addr.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450:4001:82a::200e",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(addr), None, "{addr}");
        }
    }

    #[test]
    fn non_public_addresses_are_classified() {
        use AddressClass::*;
        for (addr, expected) in [
            ("127.0.0.1", Loopback),
            ("127.8.9.10", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("100.64.0.1", SharedAddressSpace),
            ("224.0.0.1", Multicast),
            ("0.0.0.0", Unspecified),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.10", Reserved),
            ("198.18.0.1", Reserved),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("fe80::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2001:0:4136:e378::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("64:ff9b::a00:1", Private),
            ("2002:a00:1::1", Private),
            ("::10.0.0.1", Reserved),
        ] {
            assert_eq!(class(addr), Some(expected), "{addr}");
        }
    }

    #[test]
    fn policy_allows_private_but_never_metadata() {
        let open = DestinationPolicy {
            allow_private: true,
        };
        assert!(check_ip("127.0.0.1".parse().unwrap(), &open).is_ok());
        assert!(check_ip("10.1.2.3".parse().unwrap(), &open).is_ok());
        assert!(check_ip("169.254.169.254".parse().unwrap(), &open).is_err());
        assert!(check_ip("fd00:ec2::254".parse().unwrap(), &open).is_err());
    }

    #[test]
    fn urls_are_checked_by_scheme_literal_and_name() {
        let closed = DestinationPolicy::default();
        let check = |url: &str| check_url(&Url::parse(url).unwrap(), &closed);
        assert!(check("https://example.com/hook").is_ok());
        assert!(check("https://93.184.216.34/hook").is_ok());
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://metadata.google.internal/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0/",
        ] {
            assert!(check(url).is_err(), "{url} should be refused");
        }
        assert_eq!(
            check("ftp://example.com/").unwrap_err(),
            SsrfError::Scheme("ftp".into())
        );
    }

    #[test]
    fn error_texts_name_the_address_and_the_remedy() {
        let closed = DestinationPolicy::default();
        let error = check_url(&Url::parse("http://10.0.0.1/").unwrap(), &closed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "destination 10.0.0.1 is a private address; set allow_private_destinations = true to allow"
        );
        let error =
            check_url(&Url::parse("http://169.254.169.254/").unwrap(), &closed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "destination 169.254.169.254 is a cloud metadata endpoint; it is always refused"
        );
    }
}
