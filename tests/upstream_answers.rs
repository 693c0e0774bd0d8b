//! What the identity platform and Graph may answer, and what the caller then gets.

mod common;

use common::*;
use graph_revoke_test_host::MockResponse;
use serde_json::json;

const REVOKE: &str = "/v1.0/users/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_graph_success_is_a_success() {
    for answer in [
        MockResponse::json(200, json!({ "@odata.context": "x", "value": true })),
        MockResponse::empty(200),
        MockResponse::text(200, "text/plain", "OK, revoked"),
        MockResponse::text(200, "text/html", "<html>not json</html>"),
        MockResponse::empty(204),
    ] {
        let env = start().await;
        env.graph.enqueue("POST", REVOKE, answer);
        let response = env.send(revoke("adele@contoso.com")).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json(), json!({ "value": true }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_404_is_user_not_found() {
    let env = start().await;
    env.graph.enqueue(
        "POST",
        REVOKE,
        MockResponse::json(404, json!({ "error": { "code": "Request_ResourceNotFound", "message": "Resource 'ghost@contoso.com' does not exist." } }))
            .header("request-id", "4e1c2a3b-0000-4000-8000-00000000abcd"),
    );
    let response = env.send(revoke("ghost@contoso.com")).await;
    let message = assert_error(&response, 404, "userNotFound");
    assert!(message.contains("ghost@contoso.com") && message.contains("tenant_id"), "{message}");
    assert_eq!(response.json()["error"]["innerError"]["request-id"], "4e1c2a3b-0000-4000-8000-00000000abcd");
    assert_eq!(response.header("request-id"), Some("4e1c2a3b-0000-4000-8000-00000000abcd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_403_carries_graphs_message_and_the_fix() {
    for graph_message in [
        "Insufficient privileges to complete the operation.",
        "Authorization_RequestDenied: the target user is a privileged administrator.",
    ] {
        let env = start().await;
        env.graph.enqueue(
            "POST",
            REVOKE,
            MockResponse::json(403, json!({ "error": { "code": "Authorization_RequestDenied", "message": graph_message } })),
        );
        let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 403, "graphForbidden");
        assert!(message.contains(graph_message), "{message}");
        assert!(message.contains("User.RevokeSessions.All") && message.contains("admin consent"), "{message}");
        assert!(message.contains("privileged"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_graph_failures_are_graph_errors_never_echoed_raw() {
    let cases = [
        MockResponse::json(400, json!({ "error": { "code": "Request_BadRequest", "message": "internal detail 7f3a" } })),
        MockResponse::json(500, json!({ "error": { "code": "generalException", "message": "internal detail 7f3a" } })),
        MockResponse::text(500, "text/html", "<html><body>internal detail 7f3a</body></html>"),
        MockResponse::text(502, "text/html", "<html>Bad gateway internal detail 7f3a</html>"),
    ];
    for answer in cases {
        let status = answer.status;
        let env = start().await;
        env.graph.enqueue("POST", REVOKE, answer);
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 502, "graphError");
        assert!(message.contains(&status.to_string()), "{message}");
        assert!(!response.text().contains("internal detail") && !response.text().contains("<html"), "{}", response.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refusals_name_the_aadsts_code_and_what_to_check() {
    let cases = [
        (401, "invalid_client", 7000215, "client_secret"),
        (401, "invalid_client", 7000222, "expired"),
        (400, "unauthorized_client", 700016, "client_id"),
        (400, "invalid_request", 90002, "tenant_id"),
    ];
    for (status, error, code, setting) in cases {
        let env = start().await;
        env.login.enqueue(
            "POST",
            "/",
            MockResponse::json(status, json!({
                "error": error,
                "error_description": format!("AADSTS{code}: platform text. Trace ID: 11111111-2222"),
                "error_codes": [code],
                "trace_id": "11111111-2222",
            })),
        );
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 502, "tokenRequestFailed");
        assert!(message.contains(&format!("AADSTS{code}")), "{message}");
        assert!(message.contains(setting), "{code}: {message}");
        assert!(!message.contains("Trace ID"), "{message}");
        assert_eq!(env.graph.calls().len(), 0, "no Graph call without a token");
        assert_eq!(env.login.calls().len(), 1);
    }
}
