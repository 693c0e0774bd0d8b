//! `credential = managed_identity`: a Graph token from the platform's managed identity
//! endpoint, so no secret exists anywhere.
//!
//! Two forms (issue 8, section 2):
//! - the Azure instance metadata service (VMs, scale sets, AKS):
//!   `GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={graph}`
//!   with `Metadata: true`;
//! - App Service, Functions and Container Apps: `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource={graph}`
//!   with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`.
//!
//! Either takes an optional `client_id` to pick a user-assigned identity. Pure: requests
//! are built as [`OutboundRequest`]s and answers read into the same [`AccessToken`] as the
//! client-credentials flow, so every credential's token is cached, refreshed and retried
//! alike. Refusals are described by what to fix, never with the endpoint's raw text.

use crate::error::Error;
use crate::inbound::guid::Guid;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};
use crate::transport::pipeline::{Failure, RetryPolicy};
use crate::transport::retry::whole_seconds;
use crate::settings::secret::Secret;
use crate::settings;
use crate::identity::token::{self, AccessToken, TokenAnswer};

/// The instance metadata service's address on every Azure VM (link-local, never routed).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// API versions named by issue 8; both are current and stable.
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// The endpoints get one retry, as the token endpoint does (every credential's token is
/// fetched alike); IMDS asks for retries on 404 and 410 too (it answers them while it
/// updates), App Service only on 429 and 5xx.
pub const IMDS_RETRY_POLICY: RetryPolicy = RetryPolicy { max_retries: 1, retryable: is_temporary };
pub const APP_SERVICE_RETRY_POLICY: RetryPolicy =
    RetryPolicy { max_retries: 1, retryable: |answer| answer.status == 429 || answer.status >= 500 };

/// What `managed_identity_endpoint` says, before the header is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSetting {
    /// An origin alone: the instance metadata service's protocol at that origin (an
    /// IMDS-compatible proxy, or the metadata service's own address written out).
    Imds { origin: String },
    /// A URL with a path: App Service / Container Apps `IDENTITY_ENDPOINT`.
    AppService { url: String },
}

/// Reads `managed_identity_endpoint`. The platforms serve their endpoints on the node
/// itself, in plain HTTP (`http://169.254.169.254`, `http://localhost:42356/msi/token`,
/// `http://169.254.129.2:8081/msi/token`), so plain `http://` is allowed for loopback and
/// link-local (169.254.0.0/16) hosts only: the answer is a Graph token, which must not
/// cross a network in clear.
pub fn parse_endpoint(text: &str) -> Result<EndpointSetting, String> {
    let after_scheme = text.find("://").map_or(0, |i| i + 3);
    let origin_end = text[after_scheme..].find('/').map_or(text.len(), |i| after_scheme + i);
    let (origin, path) = text.split_at(origin_end);
    let origin = settings::parse_origin_where(
        origin,
        |host| settings::is_loopback(host) || is_link_local(host),
        "must use https:// (plain http:// is allowed only for the platform's own endpoints on a loopback or \
         link-local host, such as http://169.254.169.254 or http://localhost:42356/msi/token)",
    )
    .map_err(|rule| match rule.starts_with("must use") {
        true => rule,
        false => "must be an origin such as http://169.254.169.254, or a URL such as http://localhost:42356/msi/token".into(),
    })?;
    if path.is_empty() || path == "/" {
        return Ok(EndpointSetting::Imds { origin });
    }
    // A path and query as the platform writes them: visible ASCII, nothing that would end
    // the URL or start a fragment.
    if !path.bytes().all(|b| b.is_ascii_graphic() && !b"#\\\"<>`{}|^".contains(&b)) {
        return Err("must be a URL such as http://localhost:42356/msi/token (no spaces, fragment or non-ASCII characters)".into());
    }
    Ok(EndpointSetting::AppService { url: format!("{origin}{path}") })
}

/// An IPv4 address in 169.254.0.0/16 written as four decimal numbers.
fn is_link_local(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[..2] == ["169", "254"]
        && octets.iter().all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()) && o.parse::<u8>().is_ok())
}

/// Which managed identity endpoint, and how to reach it.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The instance metadata service at this origin (normally [`IMDS_ENDPOINT`]).
    Imds { origin: String },
    /// App Service / Container Apps: `IDENTITY_ENDPOINT` (a full URL) and `IDENTITY_HEADER`.
    AppService { url: String, header: Secret },
}

/// A managed identity: the endpoint, and the user-assigned identity's client id if any
/// (none: the system-assigned identity).
#[derive(Debug, Clone)]
pub struct ManagedIdentity {
    pub endpoint: Endpoint,
    pub client_id: Option<Guid>,
}

impl ManagedIdentity {
    /// The token request for `resource` (the Graph origin, e.g. `https://graph.microsoft.com`).
    pub fn token_request(&self, resource: &str) -> OutboundRequest {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let (base, headers) = match &self.endpoint {
            Endpoint::Imds { origin } => {
                query.append_pair("api-version", IMDS_API_VERSION);
                (format!("{origin}/metadata/identity/oauth2/token"), vec![("metadata", "true".to_string())])
            }
            Endpoint::AppService { url, header } => {
                query.append_pair("api-version", APP_SERVICE_API_VERSION);
                (url.clone(), vec![("x-identity-header", header.expose().to_string())])
            }
        };
        query.append_pair("resource", resource);
        if let Some(client_id) = self.client_id {
            query.append_pair("client_id", &client_id.to_string());
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        let mut headers = headers;
        headers.push(("accept", "application/json".into()));
        OutboundRequest { method: "GET", url: format!("{base}{separator}{}", query.finish()), headers, body: Vec::new() }
    }

    /// The retry policy of this endpoint.
    pub fn retry_policy(&self) -> &'static RetryPolicy {
        match self.endpoint {
            Endpoint::Imds { .. } => &IMDS_RETRY_POLICY,
            Endpoint::AppService { .. } => &APP_SERVICE_RETRY_POLICY,
        }
    }

    /// What the caller gets when the pipeline gave up on the endpoint: temporary trouble
    /// is a 503 with the wait, as for the token endpoint; a host that refuses the call by
    /// policy (the endpoint is not in `allowed_outbound_hosts`) or cannot find it is a
    /// 502 naming what to check.
    pub fn gave_up(&self, failure: Failure, budget_ms: u64) -> Error {
        let kind = self.kind();
        match failure {
            Failure::Exhausted { last, retry_after } => Error::IdentityPlatformUnavailable {
                detail: format!("the {kind} answered {}", last.status),
                retry_after: Some(whole_seconds(retry_after)),
            },
            Failure::Unreachable { error, retry_after } if error.temporary => Error::IdentityPlatformUnavailable {
                detail: format!(
                    "could not reach the {kind}: {error}; check that this runs on Azure with a managed identity, or set managed_identity_endpoint"
                ),
                retry_after: Some(whole_seconds(retry_after)),
            },
            Failure::Unreachable { error, .. } => Error::TokenRequestFailed(format!(
                "Could not reach the {kind} ({error}); check managed_identity_endpoint, and that allowed_outbound_hosts in \
                 spin.toml lists the endpoint's origin (http://169.254.169.254 for the instance metadata service)."
            )),
            Failure::TimedOut => Error::UpstreamTimeout { budget_ms },
        }
    }

    fn kind(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Imds { .. } => "instance metadata service",
            Endpoint::AppService { .. } => "App Service identity endpoint",
        }
    }

    /// Reads the endpoint's answer at `now_unix` (App Service states only `expires_on`).
    pub fn read_token_response(&self, response: &OutboundResponse, now_unix: u64) -> Result<AccessToken, Error> {
        token::read_answer(response, Some(now_unix))
            .map_err(|answer| Error::TokenRequestFailed(self.refusal(response.status, answer.as_ref())))
    }

    fn refusal(&self, status: u16, answer: Option<&TokenAnswer>) -> String {
        // The error texts, only to look for known phrases in; never shown.
        let says = |phrase: &str| {
            answer.is_some_and(|a| {
                [&a.error, &a.error_description, &a.message].into_iter().flatten().any(|t| t.to_ascii_lowercase().contains(phrase))
            })
        };
        let aadsts = answer.and_then(TokenAnswer::aadsts_code);
        let fix = if aadsts == Some(500011) || says("invalid_resource") {
            "the resource was refused: check graph_base_url (the Graph endpoint of this cloud)"
        } else if matches!(self.endpoint, Endpoint::AppService { .. }) && matches!(status, 401 | 403) {
            "it refused the identity header: set managed_identity_header to the app's current IDENTITY_HEADER"
        } else if says("identity not found") || says("unable to load the proper managed identity") {
            match self.client_id {
                Some(_) => "no identity with managed_identity_client_id is assigned to this resource: assign the user-assigned identity, or fix managed_identity_client_id",
                None => "this resource has no system-assigned managed identity: turn it on, or set managed_identity_client_id to a user-assigned identity's client id",
            }
        } else if (200..300).contains(&status) {
            "it answered without a token: check that managed_identity_endpoint is the platform's managed identity endpoint"
        } else {
            "check that this resource has a managed identity with Graph permissions"
        };
        let code = aadsts.map(|c| format!(", AADSTS{c}")).unwrap_or_default();
        format!("The {} gave no Graph token (it answered {status}{code}): {fix}.", self.kind())
    }
}

/// Whether an answer is worth one more try: IMDS asks for retries on 404 and 410 (it is
/// updating), 429, and every 5xx; App Service on 429 and 5xx.
pub fn is_temporary(answer: &OutboundResponse) -> bool {
    matches!(answer.status, 404 | 410 | 429) || answer.status >= 500
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = "https://graph.microsoft.com";
    const USER_ASSIGNED: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
    const NOW: u64 = 1_795_000_000;

    fn imds(client_id: Option<&str>) -> ManagedIdentity {
        ManagedIdentity { endpoint: Endpoint::Imds { origin: IMDS_ENDPOINT.into() }, client_id: client_id.and_then(Guid::parse) }
    }

    fn app_service(client_id: Option<&str>) -> ManagedIdentity {
        ManagedIdentity {
            endpoint: Endpoint::AppService { url: "http://localhost:42356/msi/token".into(), header: Secret::new("hdr-secret-123") },
            client_id: client_id.and_then(Guid::parse),
        }
    }

    fn answer(status: u16, body: &str) -> OutboundResponse {
        OutboundResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
    }

    fn refusal(identity: &ManagedIdentity, status: u16, body: &str) -> String {
        let error = identity.read_token_response(&answer(status, body), NOW).unwrap_err();
        assert_eq!(error.code(), "tokenRequestFailed");
        error.to_string()
    }

    #[test]
    fn the_imds_request_is_a_get_with_the_metadata_header() {
        let request = imds(None).token_request(GRAPH);
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.url,
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fgraph.microsoft.com"
        );
        assert_eq!(request.header("metadata"), Some("true"));
        assert_eq!(request.header("x-identity-header"), None);
        assert!(request.body.is_empty());
        let user = imds(Some(USER_ASSIGNED)).token_request(GRAPH);
        assert!(user.url.ends_with(&format!("&client_id={USER_ASSIGNED}")), "{}", user.url);
    }

    #[test]
    fn the_app_service_request_carries_the_identity_header() {
        let request = app_service(Some(USER_ASSIGNED)).token_request("https://graph.microsoft.us");
        assert_eq!(
            request.url,
            format!(
                "http://localhost:42356/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fgraph.microsoft.us&client_id={USER_ASSIGNED}"
            )
        );
        assert_eq!(request.header("x-identity-header"), Some("hdr-secret-123"));
        assert_eq!(request.header("metadata"), None);
        assert!(!format!("{request:?} {:?}", app_service(None)).contains("hdr-secret"));
        // An endpoint that already has a query keeps it.
        let mut with_query = app_service(None);
        with_query.endpoint = Endpoint::AppService { url: "http://127.0.0.1:8081/token?x=1".into(), header: Secret::new("h") };
        assert!(with_query.token_request(GRAPH).url.starts_with("http://127.0.0.1:8081/token?x=1&api-version=2019-08-01&"));
    }

    #[test]
    fn imds_answers_with_string_expiry_are_read() {
        let body = r#"{"access_token":"eyJ0","refresh_token":"","expires_in":"86399","expires_on":"1795086399","not_before":"1794999700","resource":"https://graph.microsoft.com","token_type":"Bearer"}"#;
        let token = imds(None).read_token_response(&answer(200, body), NOW).unwrap();
        assert_eq!((token.value.expose(), token.expires_in), ("eyJ0", 86399));
        let numeric = imds(None).read_token_response(&answer(200, r#"{"access_token":"t","expires_in":3599}"#), NOW).unwrap();
        assert_eq!(numeric.expires_in, 3599);
    }

    #[test]
    fn app_service_answers_give_expiry_as_expires_on() {
        let body = format!(
            r#"{{"access_token":"eyJ0","expires_on":"{}","resource":"https://graph.microsoft.com","token_type":"Bearer","client_id":"{USER_ASSIGNED}"}}"#,
            NOW + 3600
        );
        let token = app_service(None).read_token_response(&answer(200, &body), NOW).unwrap();
        assert_eq!(token.expires_in, 3600);
        // An expiry that cannot be read leaves the token uncached (0), never trusted for long.
        let token = app_service(None).read_token_response(&answer(200, r#"{"access_token":"t","expires_on":"soon"}"#), NOW).unwrap();
        assert_eq!(token.expires_in, 0);
    }

    #[test]
    fn a_missing_identity_names_what_to_assign() {
        let body = r#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        let message = refusal(&imds(None), 400, body);
        assert!(message.contains("instance metadata service") && message.contains("system-assigned"), "{message}");
        let message = refusal(&imds(Some(USER_ASSIGNED)), 400, body);
        assert!(message.contains("managed_identity_client_id"), "{message}");
        assert!(!message.contains(USER_ASSIGNED));
        let body = r#"{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"c0ffee"}"#;
        let message = refusal(&app_service(None), 400, body);
        assert!(message.contains("App Service") && message.contains("system-assigned"), "{message}");
        assert!(!message.contains("c0ffee"));
    }

    #[test]
    fn a_wrong_resource_points_at_graph_base_url() {
        let body = r#"{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named https://graph.example was not found in the tenant. Trace ID: abc"}"#;
        let message = refusal(&imds(None), 400, body);
        assert!(message.contains("AADSTS500011") && message.contains("graph_base_url"), "{message}");
        assert!(!message.contains("Trace ID") && !message.contains("graph.example"), "{message}");
    }

    #[test]
    fn a_refused_identity_header_is_named() {
        let message = refusal(&app_service(None), 401, r#"{"message":"Unauthorized"}"#);
        assert!(message.contains("IDENTITY_HEADER"), "{message}");
        assert!(!message.contains("hdr-secret"));
    }

    #[test]
    fn temporary_answers_are_retried() {
        for status in [404, 410, 429, 500, 503] {
            assert!(is_temporary(&answer(status, "")), "{status}");
            assert!((IMDS_RETRY_POLICY.retryable)(&answer(status, "")), "{status}");
        }
        for status in [200, 400, 401, 403] {
            assert!(!is_temporary(&answer(status, "")), "{status}");
        }
        // App Service asks for retries on 429 and 5xx only.
        for (status, retried) in [(404, false), (410, false), (429, true), (500, true), (503, true), (400, false)] {
            assert_eq!((APP_SERVICE_RETRY_POLICY.retryable)(&answer(status, "")), retried, "{status}");
            assert_eq!(app_service(None).retry_policy().max_retries, 1);
        }
    }

    #[test]
    fn answers_without_a_token_are_described_not_echoed() {
        for (status, body) in [(200, "<html>portal</html>"), (200, r#"{"access_token":""}"#), (400, "odd text")] {
            let message = refusal(&imds(None), status, body);
            assert!(!message.contains("portal") && !message.contains("odd text"), "{message}");
            assert!(message.contains(&status.to_string()) || message.contains("without a token"), "{message}");
        }
    }
}
