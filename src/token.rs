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
use crate::outbound::{OutboundRequest, OutboundResponse};
use crate::pipeline::{Failure, RetryPolicy};
use crate::retry::whole_seconds;
use crate::secret::Secret;
use crate::settings::{Credential, GraphSettings};

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
    (7000218, "the request carried no client credential: set client_secret"),
];

/// The token request for these settings and this credential.
pub fn token_request(settings: &GraphSettings, credential: &Credential, client_request_id: &str) -> OutboundRequest {
    let scope = format!("{}/.default", settings.graph_base_url);
    let client_id = settings.client_id.to_string();
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", &client_id).append_pair("scope", &scope);
    match credential {
        Credential::ClientSecret(secret) => form.append_pair("client_secret", secret.expose()),
    };
    let body = form.append_pair("grant_type", "client_credentials").finish();
    OutboundRequest {
        method: "POST",
        url: format!("{}/{}/oauth2/v2.0/token", settings.login_base_url, settings.tenant),
        headers: vec![
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("accept", "application/json".into()),
            ("client-request-id", client_request_id.into()),
        ],
        body: body.into_bytes(),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// Reads the token endpoint's answer.
pub fn read_token_response(response: &OutboundResponse) -> Result<AccessToken, Error> {
    let answer: Option<TokenAnswer> = serde_json::from_slice(&response.body).ok();
    match answer {
        Some(TokenAnswer { access_token: Some(token), expires_in, .. })
            if (200..300).contains(&response.status) && !token.is_empty() =>
        {
            // The v2.0 endpoint sends a number; some proxies and AD FS send a string.
            let expires_in = match expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .unwrap_or(0);
            Ok(AccessToken { value: Secret::new(token), expires_in })
        }
        Some(answer) if answer.error.is_some() => Err(refusal(response.status, &answer)),
        _ => Err(Error::TokenRequestFailed(format!(
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
    let code = answer.error_codes.first().copied().or_else(|| {
        let description = answer.error_description.as_deref()?;
        let digits = description.split("AADSTS").nth(1)?;
        digits.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    });
    let error = answer.error.as_deref().unwrap_or("unknown");
    let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
    let fix = code
        .and_then(|c| AADSTS_FIXES.iter().find(|(k, _)| *k == c).map(|(_, fix)| *fix))
        .unwrap_or("check tenant_id, client_id and client_secret, and that the app registration is enabled");
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

    fn credential() -> Credential {
        crate::settings::example_credential()
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
        use crate::outbound::TransportError;
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
