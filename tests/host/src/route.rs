//! The HTTP trigger's route, and the `spin-*` headers Spin derives from it.
//!
//! Spin matches the request path against the trigger's `route` before it instantiates
//! anything (no match: 404 without the component), then tells the component how the path
//! matched in `spin-*` request headers; spin-sdk's suffix router reads `spin-path-info`.
//! The project uses `route = "/..."`; exact routes and `<prefix>/...` are supported here,
//! named segments (`:name`) are not.

use anyhow::{ensure, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The route as written in the manifest.
    raw: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `<prefix>/...`; the prefix is empty for `/...`.
    Wildcard(String),
    Exact(String),
}

impl Route {
    pub(crate) fn parse(raw: &str) -> Result<Route> {
        ensure!(raw.starts_with('/'), "route {raw:?} must start with '/'");
        ensure!(
            !raw.contains(':'),
            "route {raw:?}: named segments are not supported by the test host"
        );
        let kind = match raw.strip_suffix("/...") {
            Some(prefix) => Kind::Wildcard(prefix.to_string()),
            None => Kind::Exact(raw.trim_end_matches('/').to_string()),
        };
        Ok(Route {
            raw: raw.to_string(),
            kind,
        })
    }

    /// If `path` (no query) is served by this route, the `spin-*` headers for it.
    pub(crate) fn spin_headers(
        &self,
        path: &str,
        full_url: &str,
        client_addr: &str,
    ) -> Option<Vec<(&'static str, String)>> {
        let (component_route, path_info) = match &self.kind {
            Kind::Wildcard(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                (prefix.clone(), rest.to_string())
            }
            Kind::Exact(exact) => {
                if path.trim_end_matches('/') != exact.as_str() {
                    return None;
                }
                (exact.clone(), String::new())
            }
        };
        Some(vec![
            ("spin-path-info", path_info),
            ("spin-full-url", full_url.to_string()),
            ("spin-matched-route", self.raw.clone()),
            ("spin-base-path", "/".to_string()),
            ("spin-raw-component-route", self.raw.clone()),
            ("spin-component-route", component_route),
            ("spin-client-addr", client_addr.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_info(route: &str, path: &str) -> Option<String> {
        let headers = Route::parse(route).unwrap().spin_headers(path, "u", "a")?;
        Some(headers[0].1.clone())
    }

    #[test]
    fn wildcard_and_exact_routes() {
        assert_eq!(path_info("/...", "/revoke").as_deref(), Some("/revoke"));
        assert_eq!(path_info("/...", "/").as_deref(), Some("/"));
        assert_eq!(path_info("/api/...", "/api/x/y").as_deref(), Some("/x/y"));
        assert_eq!(path_info("/api/...", "/api").as_deref(), Some(""));
        assert_eq!(path_info("/api/...", "/apix"), None);
        assert_eq!(path_info("/healthz", "/healthz").as_deref(), Some(""));
        assert_eq!(path_info("/healthz", "/other"), None);
        assert!(Route::parse("/users/:id").is_err());
    }
}
