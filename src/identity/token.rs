//! The client-credentials token request and what its answer means.
//!
//! OAuth 2.0 client credentials against the Microsoft identity platform v2.0 endpoint
//! (`{login}/{tenant}/oauth2/v2.0/token`, scope `{graph}/.default`). The secret is
//! form-encoded, so characters such as `+`, `&` or `=` in it reach the platform
//! intact. A refusal becomes a 502 `tokenRequestFailed` whose message names the
//! AADSTS code and the setting to check, never the platform's raw text; temporary
//! trouble (5xx, 429, `temporarily_unavailable`, unreachable) becomes a 503
//! `identityPlatformUnavailable` with `Retry-After`, never a refusal.

use serde::Deserialize;

use crate::error::Error;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};
use crate::transport::pipeline::{Failure, RetryPolicy};
use crate::transport::retry::whole_seconds;
use crate::settings::secret::Secret;
use crate::settings::GraphSettings;

/// The token endpoint gets one retry, on a 5xx, a 429 or `temporarily_unavailable`; a
/// credential error is never retried (it cannot fix itself, and retrying a wrong
/// secret only adds sign-in failures to the tenant's logs).
pub const RETRY_POLICY: RetryPolicy = RetryPolicy { max_retries: 1, retryable: is_temporary };

fn is_temporary(answer: &OutboundResponse) -> bool {
    answer.status >= 500
        || answer.status == 429
        || serde_json::from_slice::<TokenAnswer>(&answer.body)
            .is_ok_and(|a| a.error.as_deref() == Some("temporarily_unavailable"))
}

/// A bearer token for Graph.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: Secret,
    /// Seconds the token stays valid, as the platform said (for the token cache, next).
    #[allow(dead_code)]
    pub expires_in: u64,
}

/// AADSTS codes a misconfigured deployment meets, and what to check for each.
/// Source: Microsoft Entra authentication and authorization error codes.
const AADSTS_FIXES: &[(u32, &str)] = &[
    (7000215, "the client secret is wrong: set client_secret to the secret's Value (not its Secret ID) from the app registration's Certificates & secrets"),
    (7000222, "the client secret has expired: create a new secret on the app registration and update client_secret"),
    (700016, "no application with client_id exists in tenant_id: check client_id, and that tenant_id is the tenant where the app is registered or consented"),
    (90002, "tenant_id names no tenant: check tenant_id (the directory's GUID or a verified domain)"),
    (900023, "tenant_id is not a valid tenant identifier: use the directory's GUID or a verified domain"),
    (500011, "the resource principal was not found: check graph_base_url (it must be the Graph endpoint of the same cloud as login_base_url)"),
    (1002012, "the requested scope is invalid: check graph_base_url"),
    (7000218, "the request carried no client credential: set client_secret, or client_certificate and client_private_key"),
    (700027, "the client assertion's signature or certificate was refused: upload the certificate in client_certificate to the app registration's Certificates & secrets, check that client_private_key is its key, and that it has not expired"),
    (700024, "the client assertion is outside its valid time range: the host's clock is off; synchronise it (the assertion is valid from now for 10 minutes)"),
];

/// The token request for these settings; `proof` is the credential's form fields
/// (`client_secret`, or the client assertion's two fields).
pub fn token_request(settings: &GraphSettings, proof: &[(&str, &str)], client_request_id: &str) -> OutboundRequest {
    let scope = format!("{}/.default", settings.graph_base_url);
    let client_id = settings.client_id.to_string();
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", &client_id).append_pair("scope", &scope);
    form.extend_pairs(proof);
    let body = form.append_pair("grant_type", "client_credentials").finish();
    OutboundRequest {
        method: "POST",
        // The same URL a client assertion names as its audience.
        url: crate::identity::client_assertion::token_endpoint(&settings.login_base_url, &settings.tenant),
        headers: vec![
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("accept", "application/json".into()),
            ("client-request-id", client_request_id.into()),
        ],
        body: body.into_bytes(),
    }
}

/// A token answer of any credential's endpoint: the identity platform's, or a managed
/// identity endpoint's (IMDS answers with the same OAuth fields, expiry as strings; App
/// Service states only `expires_on`, and errors as a `message`). One shape, read by one
/// parser, so every credential's token is read alike.
#[derive(Deserialize)]
pub struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    /// Unix seconds at which the token expires.
    expires_on: Option<serde_json::Value>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// App Service's error text.
    pub message: Option<String>,
}

impl TokenAnswer {
    /// The AADSTS code: the first of `error_codes`, else the one a text names.
    pub fn aadsts_code(&self) -> Option<u32> {
        self.error_codes.first().copied().or_else(|| {
            [&self.error_description, &self.message].into_iter().flatten().find_map(|text| {
                let digits = text.split("AADSTS").nth(1)?;
                digits.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
            })
        })
    }
}

/// The token in `response` (a 2xx with a non-empty `access_token`), else the answer as
/// far as it is JSON of this shape. Its lifetime from `expires_in`, else (given the time
/// `now_unix`) from `expires_on`, else 0 (not cached, never trusted for long).
pub fn read_answer(response: &OutboundResponse, now_unix: Option<u64>) -> Result<AccessToken, Option<TokenAnswer>> {
    let answer: Option<TokenAnswer> = serde_json::from_slice(&response.body).ok();
    match answer {
        Some(TokenAnswer { access_token: Some(token), expires_in, expires_on, .. })
            if (200..300).contains(&response.status) && !token.is_empty() =>
        {
            let expires_in = seconds(expires_in)
                .or_else(|| Some(seconds(expires_on)?.saturating_sub(now_unix?)))
                .unwrap_or(0);
            Ok(AccessToken { value: Secret::new(token), expires_in })
        }
        answer => Err(answer),
    }
}

/// Seconds as a JSON number or a string of digits: the v2.0 endpoint sends a number;
/// IMDS, App Service, some proxies and AD FS send a string.
fn seconds(value: Option<serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads the token endpoint's answer.
pub fn read_token_response(response: &OutboundResponse) -> Result<AccessToken, Error> {
    match read_answer(response, None) {
        Ok(token) => Ok(token),
        Err(Some(answer)) if answer.error.is_some() => Err(refusal(response.status, &answer)),
        Err(_) => Err(Error::TokenRequestFailed(format!(
            "The identity platform answered {} without a token; check login_base_url (it must be the \
             identity platform, e.g. https://login.microsoftonline.com).",
            response.status
        ))),
    }
}

/// What the caller gets when the pipeline gave up on the token endpoint: temporary
/// trouble is a 503 with the wait; a host that refuses the call by policy, or cannot
/// find the endpoint, is a 502 pointing at `login_base_url`.
pub fn gave_up(failure: Failure, budget_ms: u64) -> Error {
    match failure {
        Failure::Exhausted { last, retry_after } => Error::IdentityPlatformUnavailable {
            detail: format!("it answered {}", last.status),
            retry_after: Some(whole_seconds(retry_after)),
        },
        Failure::Unreachable { error, retry_after } if error.temporary => Error::IdentityPlatformUnavailable {
            detail: format!("could not reach it: {error}"),
            retry_after: Some(whole_seconds(retry_after)),
        },
        Failure::Unreachable { error, .. } => Error::TokenRequestFailed(format!(
            "Could not reach the identity platform ({error}); check login_base_url and the network."
        )),
        Failure::TimedOut => Error::UpstreamTimeout { budget_ms },
    }
}

fn refusal(status: u16, answer: &TokenAnswer) -> Error {
    let code = answer.aadsts_code();
    let error = answer.error.as_deref().unwrap_or("unknown");
    let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
    let fix = code
        .and_then(|c| AADSTS_FIXES.iter().find(|(k, _)| *k == c).map(|(_, fix)| *fix))
        .unwrap_or("check tenant_id, client_id and the credential, and that the app registration is enabled");
    let code = code.map(|c| format!("AADSTS{c}")).unwrap_or_else(|| "no AADSTS code".into());
    Error::TokenRequestFailed(format!(
        "The identity platform refused the app's credentials ({status} {error}, {code}): {fix}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GraphSettings {
        crate::settings::example()
    }

    /// A client secret with characters that need form encoding.
    fn credential() -> [(&'static str, &'static str); 1] {
        [("client_secret", "a+b&c=d~e/f")]
    }

    fn answer(status: u16, body: &str) -> OutboundResponse {
        OutboundResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn the_request_is_form_encoded_client_credentials() {
        let request = token_request(&settings(), &credential(), "cid");
        assert_eq!(request.url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(request.header("client-request-id"), Some("cid"));
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "client_id=11111111-2222-3333-4444-555555555555\
             &scope=https%3A%2F%2Fgraph.microsoft.com%2F.default\
             &client_secret=a%2Bb%26c%3Dd%7Ee%2Ff&grant_type=client_credentials"
        );
    }

    #[test]
    fn debug_of_the_request_hides_the_secret() {
        assert!(!format!("{:?}", token_request(&settings(), &credential(), "cid")).contains("a+b"));
    }

    #[test]
    fn a_token_is_read_with_numeric_or_string_expiry() {
        let t = read_token_response(&answer(200, r#"{"token_type":"Bearer","expires_in":3599,"access_token":"tok"}"#)).unwrap();
        assert_eq!((t.value.expose(), t.expires_in), ("tok", 3599));
        let t = read_token_response(&answer(200, r#"{"expires_in":"60","access_token":"tok"}"#)).unwrap();
        assert_eq!(t.expires_in, 60);
    }

    #[test]
    fn known_aadsts_codes_name_the_setting_to_fix() {
        for (code, setting) in [
            (7000215, "client_secret"),
            (7000222, "expired"),
            (700016, "client_id"),
            (90002, "tenant_id"),
        ] {
            let body = format!(
                r#"{{"error":"invalid_client","error_description":"AADSTS{code}: something. Trace ID: x","error_codes":[{code}]}}"#
            );
            let message = read_token_response(&answer(401, &body)).unwrap_err().to_string();
            assert!(message.contains(&format!("AADSTS{code}")), "{message}");
            assert!(message.contains(setting), "{message}");
            assert!(!message.contains("Trace ID"), "raw description echoed: {message}");
        }
    }

    #[test]
    fn certificate_refusals_name_the_fix() {
        for (code, says) in [(700027, "client_certificate"), (700024, "clock")] {
            let body = format!(r#"{{"error":"invalid_client","error_description":"AADSTS{code}: x. Trace ID: y","error_codes":[{code}]}}"#);
            let error = read_token_response(&answer(401, &body)).unwrap_err();
            assert_eq!((error.status(), error.code()), (502, "tokenRequestFailed"));
            assert!(error.to_string().contains(&format!("AADSTS{code}")) && error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn the_code_is_found_in_the_description_when_error_codes_is_absent() {
        let body = r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}"#;
        assert!(read_token_response(&answer(400, body)).unwrap_err().to_string().contains("AADSTS90002"));
    }

    #[test]
    fn only_temporary_failures_are_retried() {
        assert!(is_temporary(&answer(503, "")));
        assert!(is_temporary(&answer(429, r#"{"error":"invalid_request","error_codes":[50196]}"#)));
        assert!(is_temporary(&answer(400, r#"{"error":"temporarily_unavailable"}"#)));
        assert!(!is_temporary(&answer(401, r#"{"error":"invalid_client","error_codes":[7000215]}"#)));
        assert!(!is_temporary(&answer(200, r#"{"access_token":"t"}"#)));
    }

    #[test]
    fn non_token_answers_point_at_login_base_url() {
        for (status, body) in [(200, "<html>portal</html>"), (500, ""), (200, r#"{"access_token":""}"#)] {
            let error = read_token_response(&answer(status, body)).unwrap_err();
            assert_eq!(error.code(), "tokenRequestFailed");
            assert!(error.to_string().contains("login_base_url"));
        }
    }

    #[test]
    fn temporary_trouble_is_503_with_the_wait_and_never_a_refusal() {
        use crate::transport::outbound::TransportError;
        use std::time::Duration;
        let throttled = answer(429, r#"{"error":"invalid_client","error_codes":[7000215]}"#);
        let error = gave_up(Failure::Exhausted { last: throttled, retry_after: Duration::from_millis(1500) }, 1000);
        assert_eq!((error.status(), error.code(), error.retry_after()), (503, "identityPlatformUnavailable", Some(2)));
        assert!(!error.to_string().contains("refused"), "{error}");
        let refused = TransportError { code: "ConnectionRefused".into(), temporary: true };
        let error = gave_up(Failure::Unreachable { error: refused, retry_after: Duration::from_secs(1) }, 1000);
        assert_eq!((error.code(), error.retry_after()), ("identityPlatformUnavailable", Some(1)));
        let denied = TransportError { code: "HttpRequestDenied".into(), temporary: false };
        let error = gave_up(Failure::Unreachable { error: denied, retry_after: Duration::ZERO }, 1000);
        assert_eq!(error.code(), "tokenRequestFailed");
        assert!(error.to_string().contains("login_base_url"));
        assert_eq!(gave_up(Failure::TimedOut, 1000).code(), "upstreamTimeout");
    }
}
