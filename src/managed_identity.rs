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

use serde::Deserialize;

use crate::error::Error;
use crate::guid::Guid;
use crate::outbound::{OutboundRequest, OutboundResponse};
use crate::secret::Secret;
use crate::token::AccessToken;

/// The instance metadata service's address on every Azure VM (link-local, never routed).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// API versions named by issue 8; both are current and stable.
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

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

    /// Reads the endpoint's answer at `now_unix` (App Service states only `expires_on`).
    pub fn read_token_response(&self, response: &OutboundResponse, now_unix: u64) -> Result<AccessToken, Error> {
        let answer: Option<Answer> = serde_json::from_slice(&response.body).ok();
        if let Some(Answer { access_token: Some(token), expires_in, expires_on, .. }) = &answer {
            if (200..300).contains(&response.status) && !token.is_empty() {
                // IMDS sends both as strings of seconds; App Service sends `expires_on` only.
                let expires_in = number(expires_in.as_ref())
                    .or_else(|| number(expires_on.as_ref()).map(|on| on.saturating_sub(now_unix)))
                    .unwrap_or(0);
                return Ok(AccessToken { value: Secret::new(token.clone()), expires_in });
            }
        }
        Err(Error::TokenRequestFailed(self.refusal(response.status, answer.as_ref())))
    }

    fn refusal(&self, status: u16, answer: Option<&Answer>) -> String {
        let (kind, client_id_setting) = match self.endpoint {
            Endpoint::Imds { .. } => ("instance metadata service", "managed_identity_client_id"),
            Endpoint::AppService { .. } => ("App Service identity endpoint", "managed_identity_client_id"),
        };
        let text = answer.map(Answer::text).unwrap_or_default();
        let aadsts = aadsts_code(&text);
        let fix = if is_temporary_status(status) {
            format!("it is temporarily unavailable (it answered {status}); retry later")
        } else if aadsts == Some(500011) || text.contains("invalid_resource") {
            "the resource was refused: check graph_base_url (the Graph endpoint of this cloud)".into()
        } else if matches!(self.endpoint, Endpoint::AppService { .. }) && matches!(status, 401 | 403) {
            "it refused the identity header: set it to the app's current IDENTITY_HEADER".into()
        } else if text.to_ascii_lowercase().contains("identity not found")
            || text.contains("Unable to load the proper Managed Identity")
        {
            match self.client_id {
                Some(_) => format!(
                    "no identity with {client_id_setting} is assigned to this resource: assign the user-assigned identity, or fix {client_id_setting}"
                ),
                None => "this resource has no system-assigned managed identity: turn it on, or set the user-assigned identity's client id".into(),
            }
        } else if answer.is_none() && (200..300).contains(&status) {
            "it answered without a token: check that the endpoint is the platform's managed identity endpoint".into()
        } else {
            format!("it answered {status}: check that this resource has a managed identity with Graph permissions")
        };
        let code = aadsts.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
        format!("The {kind} gave no Graph token{code}: {fix}.")
    }
}

/// Whether an answer is worth one more try: IMDS asks for retries on 404 and 410 (it is
/// updating), 429, and every 5xx; App Service on 429 and 5xx.
pub fn is_temporary(answer: &OutboundResponse) -> bool {
    is_temporary_status(answer.status)
}

fn is_temporary_status(status: u16) -> bool {
    matches!(status, 404 | 410 | 429) || status >= 500
}

/// Both endpoints' answers; errors come as OAuth fields (IMDS) or a `message` (App Service).
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    expires_on: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
}

impl Answer {
    /// The error text, only to look for known phrases and codes in; never shown.
    fn text(&self) -> String {
        [&self.error, &self.error_description, &self.message].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// Seconds as a JSON number or a string of digits.
fn number(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn aadsts_code(text: &str) -> Option<u32> {
    let digits = text.split("AADSTS").nth(1)?;
    digits.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
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
    fn temporary_answers_say_retry_later_and_are_retried() {
        for status in [404, 410, 429, 500, 503] {
            let message = refusal(&imds(None), status, "");
            assert!(message.contains("temporarily unavailable") && message.contains(&status.to_string()), "{message}");
            assert!(is_temporary(&answer(status, "")));
        }
        for status in [200, 400, 401, 403] {
            assert!(!is_temporary(&answer(status, "")), "{status}");
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
