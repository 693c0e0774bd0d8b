//! The automation surface: `GET /openapi.json` is a valid OpenAPI 2.0 (Swagger) document that
//! Power Automate can import, it describes what the component answers, and the examples under
//! `examples/` parse and agree with it.
//!
//! Validation is offline: the Swagger 2.0 schema ships in `tests/schemas/`, the draft-04
//! meta-schema it references is bundled in the `jsonschema` crate, and a retriever that fetches
//! nothing proves no other document is needed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use graph_revoke_test_host::{TestRequest, TestResponse};
use serde_json::{json, Value};

/// The error codes of SPEC.md's "Responses" table with their status, mirrored by hand (the
/// tests run on a clean clone, without `../shared`). A code added to the SPEC goes here and
/// into `src/openapi.json`; this test then holds the two together.
const SPEC_ERRORS: [(u16, &str); 17] = [
    (400, "invalidRequest"),
    (400, "invalidUserId"),
    (401, "unauthenticated"),
    (403, "forbidden"),
    (403, "graphForbidden"),
    (404, "userNotFound"),
    (404, "notFound"),
    (405, "methodNotAllowed"),
    (413, "payloadTooLarge"),
    (415, "unsupportedMediaType"),
    (429, "throttled"),
    (500, "configurationError"),
    (502, "tokenRequestFailed"),
    (502, "graphError"),
    (503, "graphUnavailable"),
    (503, "identityPlatformUnavailable"),
    (504, "upstreamTimeout"),
];

/// Codes about routing, not about an operation: the document names them in `info.description`.
const ROUTING_CODES: [&str; 2] = ["notFound", "methodNotAllowed"];

const ROUTES: [(&str, &str); 4] = [
    ("/revoke", "post"),
    ("/users/{userId}/revokeSignInSessions", "post"),
    ("/healthz", "get"),
    ("/openapi.json", "get"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read_json(relative: &str) -> Value {
    let path = root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Fetches nothing; remembers what it was asked for.
struct Offline(Arc<Mutex<Vec<String>>>);

impl jsonschema::Retrieve for Offline {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().push(uri.as_str().to_string());
        Err(format!("offline test: refusing to fetch {uri}").into())
    }
}

/// A draft-4 validator that can only use what is in `schema` and the bundled meta-schemas.
fn draft4(schema: &Value) -> jsonschema::Validator {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_retriever(Offline(asked.clone()))
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema compiles offline: {e}"));
    assert_eq!(*asked.lock().unwrap(), Vec::<String>::new(), "the validator wanted remote documents");
    validator
}

fn swagger_2_validator() -> jsonschema::Validator {
    let schema = read_json("tests/schemas/swagger-2.0.schema.json");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    draft4(&schema)
}

fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// How `instance` fails `#/definitions/{name}` of the OpenAPI document (Swagger's schema
/// objects are draft-4 schemas; the `x-ms-*` keywords are ignored). Objects are closed first
/// (`additionalProperties: false`), so a field the component sends but the document does not
/// name fails too.
fn definition_violations(document: &Value, name: &str, instance: &Value) -> Vec<String> {
    fn close(schema: &mut Value) {
        let Some(object) = schema.as_object_mut() else { return };
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            properties.values_mut().for_each(close);
            object.entry("additionalProperties").or_insert(json!(false));
        }
        if let Some(items) = object.get_mut("items") {
            close(items);
        }
    }
    let mut definitions = document["definitions"].clone();
    for (_, definition) in definitions.as_object_mut().unwrap() {
        close(definition);
    }
    let schema = json!({ "$ref": format!("#/definitions/{name}"), "definitions": definitions });
    violations(&draft4(&schema), instance)
}

fn assert_matches_definition(document: &Value, name: &str, instance: &Value) {
    let found = definition_violations(document, name, instance);
    assert!(found.is_empty(), "{instance} does not match definitions.{name}: {found:#?}");
}

/// Every operation of the document, with its path and method.
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if !method.starts_with("x-") && method != "parameters" {
                found.push((path.clone(), method.clone(), operation));
            }
        }
    }
    found
}

/// Every property schema under `schema`, with where it is.
fn properties<'a>(schema: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, property) in props {
            let here = format!("{at}.{name}");
            out.push((here.clone(), property));
            properties(property, &here, out);
        }
    }
    if schema["items"].is_object() {
        properties(&schema["items"], &format!("{at}[]"), out);
    }
}

async fn served_document(env: &Env) -> (TestResponse, Value) {
    // No x-api-key: the route is public.
    let response = env.send(TestRequest::get("/openapi.json")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let document = response.json();
    (response, document)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_public_and_valid_swagger_2() {
    let env = start().await;
    let (response, document) = served_document(&env).await;

    let found = violations(&swagger_2_validator(), &document);
    assert!(found.is_empty(), "GET /openapi.json is not valid Swagger 2.0: {found:#?}");
    assert_eq!(document["swagger"], "2.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version follows Cargo.toml");
    // What the component carries is src/openapi.json, minified.
    assert_eq!(document, read_json("src/openapi.json"));
    // 12 KiB until `verify` added a body field, two query parameters and the proof's fields.
    assert!(response.body.len() < 14 * 1024, "the minified document grew to {} bytes", response.body.len());
    assert!(!response.text().contains("\n  "), "the served document is minified");

    // Nothing but the document: no token request, no Graph call.
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_describes_every_route_for_power_automate() {
    let env = start().await;
    let (_, document) = served_document(&env).await;

    let described: BTreeSet<(String, String)> =
        operations(&document).into_iter().map(|(path, method, _)| (path, method)).collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(described, routes);

    // The caller's credential: an API key in the x-api-key header, required unless an
    // operation says otherwise; /healthz and /openapi.json say otherwise.
    assert_eq!(
        document["securityDefinitions"],
        json!({ "api_key": { "type": "apiKey", "in": "header", "name": "x-api-key" } })
    );
    assert_eq!(document["security"], json!([{ "api_key": [] }]));
    for public in ["/healthz", "/openapi.json"] {
        assert_eq!(document["paths"][public]["get"]["security"], json!([]), "{public} needs no key");
    }
    assert!(document["paths"]["/revoke"]["post"].get("security").is_none());

    let mut operation_ids = BTreeSet::new();
    for (path, method, operation) in operations(&document) {
        let at = format!("{method} {path}");
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{at}: operationId {id:?}");
        assert!(operation_ids.insert(id.to_string()), "{at}: operationId {id} twice");
        let summary = operation["summary"].as_str().unwrap_or_else(|| panic!("{at}: no summary"));
        // Power Automate shows the summary as the action's name.
        assert!(summary.len() <= 80 && !summary.contains('/'), "{at}: summary {summary:?}");
        assert!(summary.ends_with(|c: char| c.is_ascii_alphanumeric() || c == ')'), "{at}: summary {summary:?}");
        assert!(operation["description"].as_str().is_some_and(|d| !d.is_empty()), "{at}: no description");
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = &parameter["name"];
            assert!(parameter["x-ms-summary"].as_str().is_some_and(|s| !s.is_empty()), "{at}: parameter {name} has no x-ms-summary");
            if parameter["in"] == "path" {
                // Single encoding: the component percent-decodes the segment once ('@' and '#' in UPNs).
                assert_eq!(parameter["x-ms-url-encoding"], "single", "{at}: {name}");
            }
        }
        assert!(operation["responses"]["200"]["schema"].is_object(), "{at}: the 200 answer has no schema");
    }

    // Every property a user sees in the designer has a label.
    for (name, definition) in document["definitions"].as_object().unwrap() {
        let mut found = Vec::new();
        properties(definition, name, &mut found);
        for (at, property) in found {
            let labelled = property.get("$ref").is_some() || property["x-ms-summary"].as_str().is_some_and(|s| !s.is_empty());
            assert!(labelled, "{at} has no x-ms-summary");
        }
    }

    // The request body names every field the component accepts, aliases hidden.
    let request = &document["definitions"]["RevokeRequest"]["properties"];
    let fields: BTreeSet<&str> = request.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["userId", "UserId", "userPrincipalName", "userIds", "entities", "whatIf", "verify"]));
    for alias in ["UserId", "userPrincipalName"] {
        assert_eq!(request[alias]["x-ms-visibility"], "internal", "{alias}");
    }
    for (path, _) in ROUTES.iter().filter(|(_, m)| *m == "post") {
        let parameters = document["paths"][path]["post"]["parameters"].as_array().unwrap();
        for name in ["whatIf", "verify"] {
            assert!(
                parameters.iter().any(|p| p["name"] == name && p["in"] == "query" && p["type"] == "boolean"),
                "{path}: no {name} query parameter"
            );
        }
    }
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_error_code_is_documented_with_its_status() {
    let env = start().await;
    let (_, document) = served_document(&env).await;

    let error = &document["definitions"]["Error"]["properties"]["error"];
    let documented: BTreeSet<&str> =
        error["properties"]["code"]["enum"].as_array().expect("Error.code enum").iter().map(|c| c.as_str().unwrap()).collect();
    let spec: BTreeSet<&str> = SPEC_ERRORS.iter().map(|(_, code)| *code).collect();
    assert_eq!(documented, spec, "definitions.Error's code enum and SPEC.md's table differ");
    let inner = &error["properties"]["innerError"]["properties"];
    for field in ["request-id", "client-request-id", "date"] {
        assert!(inner[field].is_object(), "innerError.{field} is not described");
    }

    let revoke = &document["paths"]["/revoke"]["post"]["responses"];
    for (status, code) in SPEC_ERRORS {
        if ROUTING_CODES.contains(&code) {
            let info = document["info"]["description"].as_str().unwrap();
            assert!(info.contains(code) && info.contains(&status.to_string()), "info.description does not name {status} {code}");
            continue;
        }
        let response = &revoke[status.to_string()];
        assert!(
            response["description"].as_str().is_some_and(|d| d.contains(code)),
            "POST /revoke does not document {status} {code}: {response}"
        );
        assert_eq!(response["schema"], json!({ "$ref": "#/definitions/Error" }), "{status}");
    }
    // The Graph-shaped route answers the same errors, and any status it documents the other does too.
    let graph_shaped = &document["paths"]["/users/{userId}/revokeSignInSessions"]["post"]["responses"];
    let statuses = |responses: &Value| -> BTreeSet<String> {
        responses.as_object().unwrap().keys().filter(|s| s.starts_with(['4', '5'])).cloned().collect()
    };
    assert_eq!(statuses(graph_shaped), statuses(revoke));
    for status in ["429", "503"] {
        assert!(revoke[status]["headers"]["Retry-After"].is_object(), "{status} documents Retry-After");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_documented_schemas() {
    let env = start().await;
    let (_, document) = served_document(&env).await;

    let revoked = env.send(revoke("adele.vance@contoso.com")).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_matches_definition(&document, "RevokeResult", &revoked.json());

    let guest = env.send(revoke("adele_fabrikam.com#EXT#@contoso.onmicrosoft.com")).await;
    assert_eq!(guest.status, 200, "{}", guest.text());
    assert!(guest.json()["warnings"].is_array());
    assert_matches_definition(&document, "RevokeResult", &guest.json());

    let graph_shaped =
        env.send(TestRequest::post("/users/adele.vance%40contoso.com/revokeSignInSessions").header("x-api-key", API_KEY)).await;
    assert_eq!(graph_shaped.status, 200, "{}", graph_shaped.text());
    assert_matches_definition(&document, "RevokeResult", &graph_shaped.json());

    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 200);
    assert_matches_definition(&document, "Health", &health.json());

    let bad_id = env.send(revoke("not a user")).await;
    assert_error(&bad_id, 400, "invalidUserId");
    assert_matches_definition(&document, "Error", &bad_id.json());

    let no_key = env.send(TestRequest::post("/revoke").json(&json!({ "userId": "adele@contoso.com" }))).await;
    assert_error(&no_key, 401, "unauthenticated");
    assert_matches_definition(&document, "Error", &no_key.json());

    let misconfigured = start_with(&[("api_keys", None)]).await;
    let health = misconfigured.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503);
    assert_matches_definition(&document, "Health", &health.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_and_dry_run_answers_match_the_documented_schema() {
    let env = start().await;
    let (_, document) = served_document(&env).await;

    let many = TestRequest::post("/revoke")
        .header("x-api-key", API_KEY)
        .json(&json!({ "userIds": ["adele.vance@contoso.com", "alex.wilber@contoso.com"] }));
    let many = env.send(many).await;
    assert!(matches!(many.status, 200 | 207), "{} {}", many.status, many.text());
    assert!(many.json()["results"].is_array(), "{}", many.text());
    assert_matches_definition(&document, "RevokeResult", &many.json());

    let entities = json!({ "entities": [
        { "kind": "Account", "properties": { "aadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "friendlyName": "Adele" } },
        { "$id": "2", "Type": "account", "Name": "alex.wilber", "UPNSuffix": "contoso.com" },
        { "kind": "Host", "properties": { "hostName": "pc1" } }
    ] });
    let sentinel = env.send(TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&entities)).await;
    assert!(matches!(sentinel.status, 200 | 207), "{} {}", sentinel.status, sentinel.text());
    assert!(sentinel.json()["skipped"].is_array(), "{}", sentinel.text());
    assert_matches_definition(&document, "RevokeResult", &sentinel.json());

    let dry_run = env.send(TestRequest::post("/revoke?whatIf=true").header("x-api-key", API_KEY).json(&json!({ "userId": "adele.vance@contoso.com" }))).await;
    assert_eq!(dry_run.status, 200, "{}", dry_run.text());
    assert_eq!(dry_run.json()["whatIf"], true, "{}", dry_run.text());
    assert_matches_definition(&document, "RevokeResult", &dry_run.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_answers_match_the_documented_schema() {
    let env = start().await;
    let (_, document) = served_document(&env).await;
    let verify = |body: Value| TestRequest::post("/revoke?verify=true").header("x-api-key", API_KEY).json(&body);

    let verified = env.send(verify(json!({ "userId": "adele.vance@contoso.com" }))).await;
    assert_eq!(verified.json()["verified"], true, "{}", verified.text());
    assert_matches_definition(&document, "RevokeResult", &verified.json());

    env.graph.set_stale_reads(true);
    let stale = env.send(verify(json!({ "userIds": ["adele.vance@contoso.com", "alex.wilber@contoso.com"] }))).await;
    assert_eq!(stale.json()["results"][1]["verification"]["code"], "staleRead", "{}", stale.text());
    assert_matches_definition(&document, "RevokeResult", &stale.json());

    let dry_run = env.send(verify(json!({ "userIds": ["adele.vance@contoso.com"], "whatIf": true }))).await;
    assert!(dry_run.json()["results"][0]["signInSessionsValidFrom"].is_string(), "{}", dry_run.text());
    assert_matches_definition(&document, "RevokeResult", &dry_run.json());
}

#[test]
fn the_validators_reject_broken_documents_and_undocumented_answers() {
    // The validator is not vacuous: broken documents fail.
    let validator = swagger_2_validator();
    let good = read_json("src/openapi.json");
    let broken: [(&str, fn(&mut Value)); 4] = [
        ("OpenAPI 3", |d| d["swagger"] = json!("3.0.0")),
        ("no paths", |d| {
            d.as_object_mut().unwrap().remove("paths");
        }),
        ("a parameter without `in`", |d| {
            d["paths"]["/revoke"]["post"]["parameters"][1].as_object_mut().unwrap().remove("in");
        }),
        ("an unknown security type", |d| d["securityDefinitions"]["api_key"]["type"] = json!("apikey")),
    ];
    for (what, breaks) in broken {
        let mut document = good.clone();
        breaks(&mut document);
        assert!(!violations(&validator, &document).is_empty(), "{what} passed validation");
    }

    // Nor is the check of answers against the document's definitions.
    let undocumented = [
        json!({ "value": "yes" }),
        json!({ "value": true, "surprise": 1 }),
        json!({ "value": false, "results": [{ "userId": "a@b.com", "value": false, "status": 404, "reason": "?" }] }),
        json!({ "value": false, "results": [{ "userId": "a@b.com", "value": false }] }),
    ];
    for answer in undocumented {
        assert!(!definition_violations(&good, "RevokeResult", &answer).is_empty(), "{answer} passed");
    }
    assert!(!definition_violations(&good, "Error", &json!({ "error": { "code": "oops", "message": "m", "innerError": { "client-request-id": "c", "date": "2026-11-25T10:00:00Z" } } })).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_parse_and_the_connector_is_what_openapi_json_serves() {
    let mut json_files = Vec::new();
    let mut dirs = vec![root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                json_files.push(path);
            }
        }
    }
    json_files.sort();
    let relative: Vec<String> =
        json_files.iter().map(|p| p.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/")).collect();
    for expected in [
        "examples/logic-app/workflow.json",
        "examples/power-automate/apiDefinition.swagger.json",
        "examples/power-automate/apiProperties.json",
    ] {
        assert!(relative.iter().any(|r| r == expected), "{expected} is missing: {relative:?}");
    }
    for file in &relative {
        read_json(file);
    }

    let env = start().await;
    let (_, served) = served_document(&env).await;
    assert_eq!(
        read_json("examples/power-automate/apiDefinition.swagger.json"),
        served,
        "examples/power-automate/apiDefinition.swagger.json differs from GET /openapi.json: copy src/openapi.json over it"
    );

    // The connection asks for the key that the definition's api_key scheme sends.
    let properties = read_json("examples/power-automate/apiProperties.json");
    let api_key = &properties["properties"]["connectionParameters"]["api_key"];
    assert_eq!(api_key["type"], "securestring");
    assert!(served["securityDefinitions"]["api_key"].is_object());

    // The Logic App posts the incident's entities to /revoke with the key from a secure parameter,
    // then comments on the incident.
    let workflow = read_json("examples/logic-app/workflow.json");
    let definition = &workflow["definition"];
    assert_eq!(
        definition["$schema"],
        "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
    );
    assert_eq!(definition["parameters"]["graphRevokeApiKey"]["type"], "SecureString");
    assert_eq!(definition["triggers"]["Microsoft_Sentinel_incident"]["inputs"]["path"], "/incident-creation");
    let actions = definition["actions"].as_object().unwrap();
    let http: Vec<&Value> = actions.values().filter(|a| a["type"] == "Http").collect();
    assert_eq!(http.len(), 1, "one HTTP action");
    let inputs = &http[0]["inputs"];
    assert_eq!(inputs["method"], "POST");
    assert!(inputs["uri"].as_str().unwrap().ends_with("/revoke"));
    assert_eq!(inputs["headers"]["x-api-key"], "@parameters('graphRevokeApiKey')");
    assert!(inputs["body"]["entities"].as_str().unwrap().contains("relatedEntities"));
    assert!(actions.values().any(|a| a["inputs"]["path"] == "/Incidents/Comment"), "no incident comment");
    assert_eq!(env.outbound_calls(), 0);
}

#[test]
fn the_curl_example_is_valid_bash() {
    let script = root().join("examples/revoke.sh");
    let status = std::process::Command::new("bash").arg("-n").arg(&script).status().expect("bash runs");
    assert!(status.success(), "bash -n {}", script.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "examples/revoke.sh is not executable");
    }
}
