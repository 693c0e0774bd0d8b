//! National clouds: which identity platform goes with which Graph endpoint.
//!
//! A token from one cloud's identity platform is useless at another cloud's Graph, and
//! the usual symptom (AADSTS90002 or AADSTS500011 from the token endpoint, or a Graph
//! 401) does not say why. So `/healthz` reports a `login_base_url`/`graph_base_url`
//! pair that mixes clouds. Hosts that are not Microsoft's (a proxy, the test mocks) are
//! not judged. Source: Microsoft Graph "National cloud deployments" (Germany's cloud is
//! retired and not listed).

/// A Microsoft cloud, by its public name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    /// US Government L4 (GCC High) and L5 (DoD) share one identity platform.
    UsGovernment,
    /// Operated by 21Vianet.
    China,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Cloud::Global => "the global cloud",
            Cloud::UsGovernment => "US Government",
            Cloud::China => "China (21Vianet)",
        }
    }
}

/// Identity platform hosts and their cloud.
const LOGIN_HOSTS: &[(&str, Cloud)] = &[
    ("login.microsoftonline.com", Cloud::Global),
    ("login.microsoft.com", Cloud::Global),
    ("login.microsoftonline.us", Cloud::UsGovernment),
    ("login.chinacloudapi.cn", Cloud::China),
    ("login.partner.microsoftonline.cn", Cloud::China),
];

/// Graph hosts and their cloud (`graph.microsoft.us` is L4, `dod-graph.microsoft.us` L5).
const GRAPH_HOSTS: &[(&str, Cloud)] = &[
    ("graph.microsoft.com", Cloud::Global),
    ("graph.microsoft.us", Cloud::UsGovernment),
    ("dod-graph.microsoft.us", Cloud::UsGovernment),
    ("microsoftgraph.chinacloudapi.cn", Cloud::China),
];

/// The cloud of an origin such as `https://graph.microsoft.us`, if it is a known host.
fn cloud_of(origin: &str, hosts: &[(&str, Cloud)]) -> Option<Cloud> {
    let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let host = host.split(':').next().unwrap_or(host);
    hosts.iter().find(|(known, _)| host.eq_ignore_ascii_case(known)).map(|(_, cloud)| *cloud)
}

/// `Err` (the rule, naming both settings but neither value) when the two origins are
/// known hosts of different clouds.
pub fn check_pair(login_base_url: &str, graph_base_url: &str) -> Result<(), String> {
    match (cloud_of(login_base_url, LOGIN_HOSTS), cloud_of(graph_base_url, GRAPH_HOSTS)) {
        (Some(login), Some(graph)) if login != graph => Err(format!(
            "belongs to {} while login_base_url belongs to {}: a token from one cloud is refused by \
             the other (AADSTS90002/500011); use the pair of one cloud (see the README, \"National clouds\")",
            graph.name(),
            login.name()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_pairs_are_consistent() {
        for (login, graph) in [
            ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
            ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
            ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
            ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
            ("https://LOGIN.microsoftonline.com:443", "https://graph.microsoft.com"),
        ] {
            assert_eq!(check_pair(login, graph), Ok(()), "{login} {graph}");
        }
    }

    #[test]
    fn a_mixed_pair_is_named() {
        let rule = check_pair("https://login.microsoftonline.com", "https://graph.microsoft.us").unwrap_err();
        assert!(rule.contains("US Government") && rule.contains("global"), "{rule}");
        assert!(check_pair("https://login.chinacloudapi.cn", "https://graph.microsoft.com").is_err());
        assert!(check_pair("https://login.microsoftonline.us", "https://microsoftgraph.chinacloudapi.cn").is_err());
    }

    #[test]
    fn unknown_hosts_are_not_judged() {
        assert_eq!(check_pair("http://127.0.0.1:4000", "https://graph.microsoft.us"), Ok(()));
        assert_eq!(check_pair("https://login.microsoftonline.com", "https://graph-proxy.contoso.com"), Ok(()));
    }
}
