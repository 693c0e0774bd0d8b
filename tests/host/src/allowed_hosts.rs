//! `allowed_outbound_hosts`: which destinations a component may call.
//!
//! Entries are `<scheme>://<host>[:<port>]`, each part possibly a `*` wildcard, the host
//! possibly `*.domain` or an IP network, the port possibly a range `a..b`; a missing port is
//! the scheme's well-known one; paths are refused. This follows Spin's rules so that a
//! manifest entry that would block a call in Spin blocks it in tests too, including the
//! classic mistakes: a base URL with a path, or a Graph host that differs from the one the
//! component calls.

use std::net::IpAddr;

use anyhow::{bail, ensure, Context, Result};

/// One parsed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AllowedHost {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Subdomain(String),
    /// `self`: only relative (same-app) URLs, which this host does not serve.
    ToSelf,
    Exact(String),
    Network(IpAddr, u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    /// `a..b`: `a` inclusive, `b` exclusive, as in Spin.
    Range(u16, u16),
}

impl AllowedHost {
    /// Parses one entry (templates already resolved).
    pub(crate) fn parse(entry: &str) -> Result<AllowedHost> {
        let trimmed = entry.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            bail!(
                "allowed_outbound_hosts entry {entry:?} has no scheme; \
                 entries are <scheme>://<host>[:<port>]"
            );
        };
        let (host, port_and_path) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match port_and_path.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                bail!("allowed_outbound_hosts entry {entry:?} has a path, which is not allowed")
            }
            Some((port, _)) => port,
            None => port_and_path,
        };
        Ok(AllowedHost {
            scheme: parse_scheme(scheme, entry)?,
            host: parse_host(host, entry)?,
            port: parse_port(port, scheme, entry)?,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::ToSelf => false,
            HostPattern::Exact(h) => h == host,
            HostPattern::Network(net, prefix) => {
                parse_ip(host).is_some_and(|ip| in_network(ip, *net, *prefix))
            }
        };
        let port_ok = match (&self.port, port.or_else(|| well_known_port(scheme))) {
            (PortPattern::Any, _) => true,
            (_, None) => false,
            (PortPattern::Port(p), Some(port)) => *p == port,
            (PortPattern::Range(a, b), Some(port)) => (*a..*b).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

/// All entries of a component, resolved.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    pub(crate) fn parse(entries: &[String]) -> Result<AllowedHosts> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e))
            .collect::<Result<_>>()
            .map(AllowedHosts)
    }

    /// Whether an outgoing request to `uri` may go out. A URI without a host (a relative,
    /// same-app request) is refused: the test host serves one component only.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.0
            .iter()
            .any(|h| h.allows(&scheme, &host, uri.port_u16()))
    }
}

fn parse_scheme(scheme: &str, entry: &str) -> Result<Option<String>> {
    if scheme == "*" {
        return Ok(None);
    }
    ensure!(
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()),
        "allowed_outbound_hosts entry {entry:?}: scheme {scheme:?} must be letters or '*'"
    );
    Ok(Some(scheme.to_string()))
}

fn parse_host(host: &str, entry: &str) -> Result<HostPattern> {
    let host = host.trim();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if host == "self" || host == "self.alt" {
        return Ok(HostPattern::ToSelf);
    }
    ensure!(
        !host.starts_with('{'),
        "allowed_outbound_hosts entry {entry:?}: host lists are not supported"
    );
    if let Some((net, prefix)) = parse_network(host) {
        return Ok(HostPattern::Network(net, prefix));
    }
    ensure!(
        !matches!(host.split('/').nth(1), Some(path) if !path.is_empty()),
        "allowed_outbound_hosts entry {entry:?} has a path, which is not allowed"
    );
    if let Some(domain) = host.strip_prefix("*.") {
        ensure!(
            !domain.contains('*'),
            "allowed_outbound_hosts entry {entry:?}: '*' only as the first label"
        );
        return Ok(HostPattern::Subdomain(format!(".{domain}")));
    }
    ensure!(
        !host.contains('*'),
        "allowed_outbound_hosts entry {entry:?}: '*' only as the first label"
    );
    Ok(HostPattern::Exact(host.trim_end_matches('/').to_string()))
}

fn parse_port(port: &str, scheme: &str, entry: &str) -> Result<PortPattern> {
    if port.is_empty() {
        return well_known_port(scheme)
            .map(PortPattern::Port)
            .with_context(|| {
                format!(
                    "allowed_outbound_hosts entry {entry:?}: no port and no default for {scheme:?}"
                )
            });
    }
    if port == "*" {
        return Ok(PortPattern::Any);
    }
    let number = |s: &str| {
        s.parse::<u16>()
            .with_context(|| format!("allowed_outbound_hosts entry {entry:?}: bad port {port:?}"))
    };
    match port.split_once("..") {
        Some((a, b)) => Ok(PortPattern::Range(number(a)?, number(b)?)),
        None => Ok(PortPattern::Port(number(port)?)),
    }
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

/// `10.0.0.0/8`, `127.0.0.1` (a /32), `[::1]`.
fn parse_network(host: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match host.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
        None => (host, None),
    };
    let ip = parse_ip(addr)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some((ip, prefix))
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(prefix);
    shift >= width || (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries)
            .unwrap()
            .allows(&url.parse().unwrap())
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let graph = ["https://graph.microsoft.com"];
        assert!(allows(&graph, "https://graph.microsoft.com/v1.0/users"));
        assert!(allows(&graph, "https://graph.microsoft.com:443/v1.0"));
        assert!(allows(&graph, "https://GRAPH.microsoft.com/v1.0"));
        assert!(!allows(&graph, "http://graph.microsoft.com/v1.0"));
        assert!(!allows(&graph, "https://graph.microsoft.com:8443/"));
        assert!(!allows(&graph, "https://graph.microsoft.us/"));
        assert!(!allows(&graph, "https://evil.com/graph.microsoft.com"));

        let mock = ["http://127.0.0.1:4000"];
        assert!(allows(&mock, "http://127.0.0.1:4000/x"));
        assert!(!allows(&mock, "http://127.0.0.1:4001/x"));
        assert!(!allows(&mock, "http://localhost:4000/x"));
        assert!(!allows(&mock, "http://127.0.0.1/x"));
    }

    #[test]
    fn wildcards_networks_and_trailing_slashes() {
        assert!(allows(&["https://*.example.com"], "https://a.example.com/"));
        assert!(!allows(&["https://*.example.com"], "https://example.com/"));
        assert!(allows(&["*://*:*"], "http://anything:1234/"));
        assert!(allows(&["http://localhost:*"], "http://localhost:9/"));
        assert!(allows(
            &["http://localhost:8000..8010"],
            "http://localhost:8009/"
        ));
        assert!(!allows(
            &["http://localhost:8000..8010"],
            "http://localhost:8010/"
        ));
        assert!(allows(&["http://127.0.0.0/8:80"], "http://127.1.2.3/"));
        assert!(allows(&["https://example.com/"], "https://example.com/x"));
        assert!(allows(
            &["http://127.0.0.1:4000/"],
            "http://127.0.0.1:4000/x"
        ));
        assert!(!allows(&["http://self"], "http://self/x"));
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in [
            "example.com",
            "*",
            "https://example.com/v1.0",
            "https://example.com:443/v1.0",
            "https://a.*.com",
            "https://example.com:port",
            "ftp://example.com",
            "https://{a,b}.com",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "accepted {bad}");
        }
    }
}
