//! The secretless Sentinel playbook in `examples/logic-app/`: the managed-identity workflow
//! (`workflow-managed-identity.json`) and the deployable ARM template that carries the same
//! workflow (`azuredeploy.json`). Checked offline, as documents: the template is an ARM
//! deployment template whose expressions name only what it declares, the workflow
//! authenticates with the Logic App's managed identity and posts the incident's Account
//! entities to `/revoke`, and neither holds a key or a secret. Then the body the workflow
//! builds from a Sentinel incident goes through the compiled component.
//!
//! `tests/automation_surface.rs` keeps checking the API-key variant (`workflow.json`) and
//! that every JSON file under `examples/` parses.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use graph_revoke_test_host::TestRequest;
use serde_json::{json, Value};

const TEMPLATE: &str = "examples/logic-app/azuredeploy.json";
const WORKFLOW: &str = "examples/logic-app/workflow-managed-identity.json";

/// The resource types the template deploys, each with the API version it must use (both
/// exist and are the ones Microsoft's template reference documents for these properties:
/// `identity` on workflows came with 2019-05-01; connections have only 2016-06-01 (and
/// previews)).
const API_VERSIONS: [(&str, &str); 2] = [("Microsoft.Web/connections", "2016-06-01"), ("Microsoft.Logic/workflows", "2019-05-01")];

/// Top-level members an ARM deployment template may have.
const TEMPLATE_MEMBERS: [&str; 9] =
    ["$schema", "contentVersion", "apiProfile", "definitions", "parameters", "variables", "functions", "resources", "outputs"];

fn read_text(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read_text(relative)).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// Every string in `value` with its JSON path; `skip` names a member (by path) whose
/// subtree is left out.
fn strings<'a>(value: &'a Value, at: &str, skip: Option<&str>, out: &mut Vec<(String, &'a str)>) {
    if skip == Some(at) {
        return;
    }
    match value {
        Value::String(s) => out.push((at.to_string(), s)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| strings(v, &format!("{at}[{i}]"), skip, out)),
        Value::Object(members) => {
            for (name, v) in members {
                out.push((format!("{at}.{name}#key"), name));
                strings(v, &format!("{at}.{name}"), skip, out);
            }
        }
        _ => {}
    }
}

/// The names `function('name')` refers to in `text`, e.g. `parameters('x')`.
fn references(text: &str, function: &str) -> Vec<String> {
    let pattern = format!("{function}('");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        // `body(` must not match the tail of e.g. `triggerBody(`.
        let whole_word = rest[..at].chars().last().is_none_or(|c| !c.is_ascii_alphanumeric());
        rest = &rest[at + pattern.len()..];
        let end = rest.find('\'').expect("a closing quote");
        if whole_word {
            found.push(rest[..end].to_string());
        }
        rest = &rest[end..];
    }
    found
}

/// Every action of a workflow definition by name, nested ones (If, Scope, Foreach) included.
fn all_actions(actions: &Value, out: &mut Vec<(String, Value)>) {
    for (name, action) in actions.as_object().expect("actions is an object") {
        out.push((name.clone(), action.clone()));
        if let Some(nested) = action.get("actions") {
            all_actions(nested, out);
        }
        if let Some(nested) = action.pointer("/else/actions") {
            all_actions(nested, out);
        }
    }
}

/// An ISO 8601 duration of hours, minutes and seconds (`PT15S`, `PT2M`, `PT1H30M`), in seconds.
fn duration_seconds(text: &str) -> Option<u64> {
    let mut rest = text.strip_prefix("PT")?;
    let mut total = 0;
    let mut seen = false;
    for (unit, factor) in [('H', 3600), ('M', 60), ('S', 1)] {
        if let Some(at) = rest.find(unit) {
            let n: u64 = rest[..at].parse().ok()?;
            total += n * factor;
            rest = &rest[at + 1..];
            seen = true;
        }
    }
    (seen && rest.is_empty()).then_some(total)
}

/// What a secret or key would look like in a document: the words people use for one,
/// PEM blocks, JWTs, SAS signatures, and long random-looking runs of characters.
fn secret_like(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    for word in [
        "x-api-key", "apikey", "api_key", "securestring", "secureobject", "client_secret", "clientsecret", "password",
        "-----begin", "sig=", "bearer ", "eyj",
    ] {
        if lower.contains(word) {
            found.push(word.to_string());
        }
    }
    for run in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_~.-".contains(c))) {
        let mixed = run.chars().any(|c| c.is_ascii_digit()) && run.chars().any(|c| c.is_ascii_alphabetic());
        if run.len() >= 24 && mixed && !run.contains('/') {
            found.push(run.to_string());
        }
    }
    found
}

/// The checks every managed-identity definition passes, wherever it is (the workflow file,
/// or the template's `properties.definition`). Returns the HTTP action.
fn check_managed_identity_definition(definition: &Value, at: &str) -> Value {
    assert_eq!(
        definition["$schema"],
        "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#",
        "{at}"
    );
    let declared: BTreeSet<String> = definition["parameters"].as_object().expect("parameters").keys().cloned().collect();
    assert_eq!(
        declared,
        BTreeSet::from(["$connections".to_string(), "graphRevokeUrl".to_string(), "graphRevokeAudience".to_string()]),
        "{at}: the definition's parameters"
    );
    for (name, parameter) in definition["parameters"].as_object().unwrap() {
        assert!(!parameter["type"].as_str().unwrap().to_ascii_lowercase().starts_with("secure"), "{at}: {name} is a secure parameter");
    }

    // The Microsoft Sentinel incident trigger on the azuresentinel connection.
    let triggers = definition["triggers"].as_object().expect("triggers");
    assert_eq!(triggers.len(), 1, "{at}: one trigger");
    let trigger = triggers.values().next().unwrap();
    assert_eq!(trigger["type"], "ApiConnectionWebhook", "{at}");
    assert_eq!(trigger["inputs"]["path"], "/incident-creation", "{at}");
    assert_eq!(trigger["inputs"]["host"]["connection"]["name"], "@parameters('$connections')['azuresentinel']['connectionId']", "{at}");

    let mut actions = Vec::new();
    all_actions(&definition["actions"], &mut actions);
    let names: BTreeSet<&str> = actions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), actions.len(), "{at}: action names are unique");

    // The Account entities of the incident, and nothing else, go to graph-revoke.
    let accounts = &actions.iter().find(|(n, _)| n == "Account_entities").unwrap_or_else(|| panic!("{at}: no Account_entities")).1;
    assert_eq!(accounts["type"], "Query", "{at}");
    assert!(accounts["inputs"]["from"].as_str().unwrap().contains("triggerBody()?['object']?['properties']?['relatedEntities']"), "{at}");
    assert_eq!(accounts["inputs"]["where"], "@equals(item()?['kind'], 'Account')", "{at}");

    let http: Vec<&Value> = actions.iter().filter(|(_, a)| a["type"] == "Http").map(|(_, a)| a).collect();
    assert_eq!(http.len(), 1, "{at}: one HTTP action");
    let inputs = &http[0]["inputs"];
    assert_eq!(inputs["method"], "POST", "{at}");
    assert_eq!(inputs["uri"], "@{parameters('graphRevokeUrl')}/revoke", "{at}");
    assert_eq!(inputs["body"], json!({ "entities": "@body('Account_entities')" }), "{at}");
    assert_eq!(
        inputs["authentication"],
        json!({ "type": "ManagedServiceIdentity", "audience": "@parameters('graphRevokeAudience')" }),
        "{at}: the HTTP action authenticates with the Logic App's system-assigned identity"
    );
    for name in inputs["headers"].as_object().expect("headers").keys() {
        let name = name.to_ascii_lowercase();
        assert!(name != "x-api-key" && name != "authorization", "{at}: the HTTP action sets {name} itself");
    }

    // A retry policy for graph-revoke's 429/503 with Retry-After (Logic Apps retries 408, 429, 5xx).
    let retry = &inputs["retryPolicy"];
    assert_eq!(retry["type"], "exponential", "{at}");
    let count = retry["count"].as_u64().expect("retry count");
    assert!((1..=90).contains(&count), "{at}: retry count {count}");
    let interval = |name: &str| duration_seconds(retry[name].as_str().unwrap_or_default()).unwrap_or_else(|| panic!("{at}: retryPolicy.{name}"));
    let (minimum, interval_s, maximum) = (interval("minimumInterval"), interval("interval"), interval("maximumInterval"));
    assert!(5 <= minimum && minimum <= interval_s && interval_s <= maximum && maximum <= 86_400, "{at}: {retry}");

    // Only an incident with accounts makes the call (graph-revoke answers 400 to no accounts).
    let condition = &actions.iter().find(|(_, a)| a["actions"].get("Revoke_sessions").is_some()).expect("the HTTP action is inside a condition").1;
    assert_eq!(condition["type"], "If", "{at}");
    assert_eq!(condition["expression"], json!({ "and": [{ "greater": ["@length(body('Account_entities'))", 0] }] }), "{at}");

    // The results go back on the incident as a comment, on success and failure alike.
    let comment = actions.iter().find(|(_, a)| a["inputs"]["path"] == "/Incidents/Comment").expect("an incident comment");
    assert_eq!(comment.1["inputs"]["body"]["incidentArmId"], "@triggerBody()?['object']?['id']", "{at}");
    let format = &actions.iter().find(|(n, _)| n == "Format_results").expect("Format_results").1;
    assert_eq!(format["runAfter"]["Revoke_sessions"], json!(["Succeeded", "Failed"]), "{at}");

    // Every expression names a declared parameter and an existing action; every runAfter too.
    let mut texts = Vec::new();
    strings(definition, at, None, &mut texts);
    for (path, text) in &texts {
        for parameter in references(text, "parameters") {
            assert!(declared.contains(&parameter), "{path}: parameters('{parameter}') is not declared");
        }
        for function in ["body", "outputs", "actions"] {
            for action in references(text, function) {
                assert!(names.contains(action.as_str()), "{path}: {function}('{action}') names no action");
            }
        }
    }
    for (name, action) in &actions {
        for after in action["runAfter"].as_object().into_iter().flat_map(|r| r.keys()) {
            assert!(names.contains(after.as_str()), "{at}: {name} runs after {after}, which does not exist");
        }
    }
    http[0].clone()
}

#[test]
fn the_managed_identity_workflow_posts_the_account_entities_with_its_identity() {
    let workflow = read_json(WORKFLOW);
    check_managed_identity_definition(&workflow["definition"], WORKFLOW);

    // The values pasted next to the definition: the connection authenticates with the identity too.
    let parameters = &workflow["parameters"];
    assert_eq!(parameters["$connections"]["value"]["azuresentinel"]["connectionProperties"]["authentication"]["type"], "ManagedServiceIdentity");
    assert!(parameters["graphRevokeAudience"]["value"].as_str().unwrap().starts_with("api://"));
    let text = read_text(WORKFLOW);
    assert!(secret_like(&text).is_empty(), "{WORKFLOW}: {:?}", secret_like(&text));
}

#[test]
fn the_playbook_template_is_an_arm_template_that_deploys_the_same_workflow() {
    let template = read_json(TEMPLATE);
    assert_eq!(template["$schema"], "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#");
    let version = template["contentVersion"].as_str().expect("contentVersion");
    assert!(version.split('.').count() == 4 && version.split('.').all(|p| p.parse::<u32>().is_ok()), "contentVersion {version}");
    for member in template.as_object().unwrap().keys() {
        assert!(TEMPLATE_MEMBERS.contains(&member.as_str()) || member == "metadata", "unknown template member {member}");
    }

    // Parameters: the URL and the audience are required (no default that would deploy a
    // playbook calling nowhere); no secure parameter at all.
    let parameters = template["parameters"].as_object().expect("parameters");
    for (name, parameter) in parameters {
        let kind = parameter["type"].as_str().unwrap_or_else(|| panic!("parameter {name} has no type"));
        assert!(["string", "int", "bool", "object", "array"].contains(&kind), "parameter {name}: type {kind}");
        assert!(parameter["metadata"]["description"].is_string(), "parameter {name} has no description");
    }
    let required: BTreeSet<&str> =
        parameters.iter().filter(|(_, p)| p.get("defaultValue").is_none()).map(|(n, _)| n.as_str()).collect();
    assert_eq!(required, BTreeSet::from(["graphRevokeUrl", "graphRevokeAudience"]));

    // The resources, each at an API version that exists for it.
    let resources = template["resources"].as_array().expect("resources");
    let types: Vec<&str> = resources.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, API_VERSIONS.iter().map(|(t, _)| *t).collect::<Vec<_>>());
    for (resource, (kind, api_version)) in resources.iter().zip(API_VERSIONS) {
        assert_eq!(resource["apiVersion"], api_version, "{kind}");
        assert!(resource["name"].is_string() && resource["location"] == "[parameters('location')]", "{kind}");
    }
    let (connection, workflow) = (&resources[0], &resources[1]);

    // The Microsoft Sentinel connection, authenticated by the managed identity.
    assert_eq!(connection["kind"], "V1");
    assert_eq!(connection["properties"]["parameterValueType"], "Alternative", "a managed-identity connection");
    let managed_api = "[subscriptionResourceId('Microsoft.Web/locations/managedApis', parameters('location'), 'azuresentinel')]";
    assert_eq!(connection["properties"]["api"]["id"], managed_api);
    let connection_id = "[resourceId('Microsoft.Web/connections', variables('sentinelConnectionName'))]";
    assert_eq!(connection["name"], "[variables('sentinelConnectionName')]");

    // The Logic App: a system-assigned identity, the workflow of workflow-managed-identity.json.
    assert_eq!(workflow["identity"], json!({ "type": "SystemAssigned" }));
    assert_eq!(workflow["dependsOn"], json!([connection_id]));
    assert_eq!(workflow["properties"]["state"], "Enabled");
    let definition = &workflow["properties"]["definition"];
    check_managed_identity_definition(definition, TEMPLATE);
    assert_eq!(definition, &read_json(WORKFLOW)["definition"], "{TEMPLATE} and {WORKFLOW} must carry the same definition");
    let values = &workflow["properties"]["parameters"];
    let sentinel = &values["$connections"]["value"]["azuresentinel"];
    assert_eq!(sentinel["connectionId"], connection_id);
    assert_eq!(sentinel["id"], managed_api);
    assert_eq!(sentinel["connectionProperties"], json!({ "authentication": { "type": "ManagedServiceIdentity" } }));
    assert_eq!(values["graphRevokeUrl"]["value"], "[variables('graphRevokeBaseUrl')]");
    assert_eq!(values["graphRevokeAudience"]["value"], "[parameters('graphRevokeAudience')]");
    let given: BTreeSet<&String> = values.as_object().unwrap().keys().collect();
    let declared: BTreeSet<&String> = definition["parameters"].as_object().unwrap().keys().collect();
    assert_eq!(given, declared, "every definition parameter gets a value");

    // The identity's object id comes out, for the app role assignment (README).
    assert_eq!(
        template["outputs"]["principalId"]["value"],
        "[reference(resourceId('Microsoft.Logic/workflows', parameters('playbookName')), '2019-05-01', 'full').identity.principalId]"
    );

    // ARM evaluates every string that starts with `[`: outside the definition, each is a
    // whole expression naming declared parameters and variables; inside the definition
    // (Logic Apps' own `@` expressions) none may start with `[`.
    let variables: BTreeSet<&String> = template["variables"].as_object().expect("variables").keys().collect();
    let mut arm = Vec::new();
    strings(&template, "$", Some("$.resources[1].properties.definition"), &mut arm);
    let mut used = BTreeSet::new();
    for (path, text) in &arm {
        if !text.starts_with('[') || text.starts_with("[[") {
            assert!(!text.contains("parameters('") && !text.contains("variables('"), "{path}: an expression outside [...]: {text}");
            continue;
        }
        assert!(text.ends_with(']'), "{path}: {text}");
        for parameter in references(text, "parameters") {
            assert!(parameters.contains_key(&parameter), "{path}: parameters('{parameter}') is not declared");
            used.insert(parameter);
        }
        for variable in references(text, "variables") {
            assert!(variables.contains(&variable), "{path}: variables('{variable}') is not declared");
        }
    }
    let declared: BTreeSet<String> = parameters.keys().cloned().collect();
    assert_eq!(used, declared, "every template parameter is used");
    let mut inside = Vec::new();
    strings(definition, "definition", None, &mut inside);
    for (path, text) in inside {
        assert!(!text.starts_with('['), "{path}: ARM would evaluate {text}");
    }

    let text = read_text(TEMPLATE);
    assert!(secret_like(&text).is_empty(), "{TEMPLATE}: {:?}", secret_like(&text));
}

#[test]
fn the_checks_catch_a_key_a_wrong_authentication_and_a_dangling_reference() {
    // The secret scan is not vacuous: a key, its header, a PEM block, a JWT are found.
    assert!(!secret_like(API_KEY).is_empty());
    assert!(!secret_like(r#"{"x-api-key": "@parameters('k')"}"#).is_empty());
    assert!(!secret_like("-----BEGIN PRIVATE KEY-----").is_empty());
    assert!(!secret_like("eyJ0eXAiOiJKV1QifQ").is_empty());
    assert!(!secret_like(&read_text("examples/logic-app/workflow.json")).is_empty(), "the API-key variant has a key parameter");

    let good = read_json(WORKFLOW)["definition"].clone();
    let broken: [(&str, fn(&mut Value)); 5] = [
        ("an API key header", |d| {
            d["actions"]["If_the_incident_names_accounts"]["actions"]["Revoke_sessions"]["inputs"]["headers"]["x-api-key"] = json!("k");
        }),
        ("Active Directory OAuth with a secret", |d| {
            d["actions"]["If_the_incident_names_accounts"]["actions"]["Revoke_sessions"]["inputs"]["authentication"] =
                json!({ "type": "ActiveDirectoryOAuth", "audience": "@parameters('graphRevokeAudience')", "secret": "s" });
        }),
        ("a fixed audience", |d| {
            d["actions"]["If_the_incident_names_accounts"]["actions"]["Revoke_sessions"]["inputs"]["authentication"]["audience"] =
                json!("api://graph-revoke");
        }),
        ("an undeclared parameter", |d| {
            d["actions"]["If_the_incident_names_accounts"]["actions"]["Revoke_sessions"]["inputs"]["uri"] =
                json!("@{parameters('graphRevokeUri')}/revoke");
        }),
        ("a comment reading an action that does not exist", |d| {
            d["actions"]["If_the_incident_names_accounts"]["actions"]["Add_comment_to_incident_(V3)"]["inputs"]["body"]["message"] =
                json!("@{body('Revoke')}");
        }),
    ];
    for (what, breaks) in broken {
        let mut definition = good.clone();
        breaks(&mut definition);
        let caught = std::panic::catch_unwind(|| check_managed_identity_definition(&definition, what));
        assert!(caught.is_err(), "{what} passed the checks");
    }
    assert_eq!(references("@{triggerBody()?['x']} @{body('A')} @{outputs('B')}", "body"), vec!["A"]);
    assert_eq!(duration_seconds("PT1H30M"), Some(5400));
    assert_eq!(duration_seconds("P1D"), None);
}

/// A Microsoft Sentinel incident as the incident trigger hands it over (`object` is the
/// incident resource), with the entity kinds a real one mixes.
fn sentinel_incident() -> Value {
    let entity = |id: &str, kind: &str, properties: Value| {
        json!({
            "id": format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/soc/providers/Microsoft.SecurityInsights/Entities/{id}"),
            "name": id,
            "type": "Microsoft.SecurityInsights/Entities",
            "kind": kind,
            "properties": properties,
        })
    };
    json!({
        "eventUniqueId": "6a1b2c3d-0000-4000-8000-000000000001",
        "objectSchemaType": "Incident",
        "objectEventType": "Create",
        "workspaceInfo": { "SubscriptionId": "00000000-0000-0000-0000-000000000000", "ResourceGroupName": "soc", "WorkspaceName": "soc" },
        "workspaceId": "0f0e0d0c-0000-4000-8000-000000000002",
        "object": {
            "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/soc/providers/Microsoft.SecurityInsights/Incidents/7c1d",
            "name": "7c1d",
            "type": "Microsoft.SecurityInsights/Incidents",
            "properties": {
                "title": "Impossible travel",
                "severity": "High",
                "status": "New",
                "incidentNumber": 42,
                "relatedEntities": [
                    entity("a1", "Account", json!({
                        "accountName": "adele.vance", "upnSuffix": "contoso.com",
                        "aadTenantId": "0f0e0d0c-0000-4000-8000-000000000003",
                        "aadUserId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B",
                        "isDomainJoined": false, "displayName": "Adele Vance", "friendlyName": "adele.vance",
                        "additionalData": { "IsMfaRegistered": "True" }
                    })),
                    entity("h1", "Host", json!({ "hostName": "pc-adele", "osFamily": "Windows", "friendlyName": "pc-adele" })),
                    entity("a2", "Account", json!({
                        "accountName": "alex.wilber", "upnSuffix": "contoso.com", "ntDomain": "CONTOSO",
                        "isDomainJoined": true, "friendlyName": "alex.wilber"
                    })),
                    entity("i1", "Ip", json!({ "address": "203.0.113.7", "friendlyName": "203.0.113.7" })),
                ]
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_the_playbook_builds_from_an_incident_is_revoked_by_the_component() {
    let definition = read_json(WORKFLOW)["definition"].clone();
    let http = check_managed_identity_definition(&definition, WORKFLOW);

    // What the Query action computes (its `where` is checked above to be exactly this).
    let incident = sentinel_incident();
    let accounts: Vec<Value> = incident["object"]["properties"]["relatedEntities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "Account")
        .cloned()
        .collect();
    assert_eq!(accounts.len(), 2);
    let mut body = http["inputs"]["body"].clone();
    body["entities"] = Value::Array(accounts.clone());
    let path = http["inputs"]["uri"].as_str().unwrap().strip_prefix("@{parameters('graphRevokeUrl')}").unwrap();

    // The caller's credential is not what this test is about (tests/caller_auth.rs is):
    // the key stands in for the managed identity's token.
    let env = start().await;
    let client_request_id = "3b8c6a0e-2f4d-4c1b-9a7e-5d6f7a8b9c0d";
    let request = TestRequest::post(path)
        .header("x-api-key", API_KEY)
        .header("client-request-id", client_request_id)
        .json(&body);
    let response = env.send(request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("client-request-id"), Some(client_request_id));
    let answer = response.json();
    assert_eq!(answer["value"], true, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{answer}");
    // The fields the comment reads (Format_results) are the ones the component answers with.
    for result in results {
        assert!(result["userId"].is_string() && result["value"] == true && result["status"] == 200, "{result}");
    }
    assert_eq!(results[0]["userId"], "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "the object id wins over the name");
    assert!(results[0].get("derivedFrom").is_none());
    assert_eq!(results[1]["userId"], "alex.wilber@contoso.com");
    assert_eq!(results[1]["derivedFrom"], "name@upnSuffix", "the comment flags a guessed user id");
    let select = definition["actions"]["If_the_incident_names_accounts"]["actions"]["Format_results"]["inputs"]["select"].as_str().unwrap();
    for field in ["userId", "value", "status", "error", "derivedFrom"] {
        assert!(select.contains(&format!("item()?['{field}']")), "Format_results does not read {field}");
    }
    let mut revoked: Vec<String> = env.graph.revocations().into_keys().collect();
    revoked.sort();
    assert_eq!(revoked, ["6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "alex.wilber@contoso.com"]);

    // Why the call sits behind "if the incident names accounts": without one the component
    // refuses the body (400, nothing sent), and Logic Apps would mark the run failed.
    let before = env.outbound_calls();
    let none = env.send(TestRequest::post(path).header("x-api-key", API_KEY).json(&json!({ "entities": [] }))).await;
    assert_error(&none, 400, "invalidRequest");
    assert_eq!(env.outbound_calls(), before);
}

/// The `sh` blocks of a Markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match current.as_mut() {
            None if fence == "```sh" => current = Some(String::new()),
            Some(_) if fence == "```" => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed sh block");
    blocks
}

#[test]
fn the_set_up_commands_are_valid_bash() {
    // What a responder pastes: README's Entra ID set-up and the playbook's deployment steps.
    let readme = read_text("README.md");
    let start = readme.find("\n## Setting it up in Entra ID\n").expect("the Entra ID set-up section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("a section after it");
    let mut blocks = shell_blocks(&readme[start..end]);
    assert!(blocks.len() >= 6, "README's set-up has {} sh blocks", blocks.len());
    let section = &readme[start..end];
    for command in ["--cert @cert.pem --append", "appRoleAssignedTo", "az vm identity assign", "az containerapp identity assign"] {
        assert!(section.contains(command), "the set-up does not show {command}");
    }
    blocks.extend(shell_blocks(&read_text("examples/logic-app/README.md")));
    for block in &blocks {
        let output = std::process::Command::new("bash").arg("-n").arg("-c").arg(block).output().expect("bash runs");
        assert!(output.status.success(), "bash -n fails ({}) on:\n{block}", String::from_utf8_lossy(&output.stderr));
    }
    // Not vacuous: a placeholder where a value belongs is a syntax error.
    let placeholder = "az ad app credential delete --id \"$APP_ID\" --key-id <keyId>";
    assert!(!std::process::Command::new("bash").arg("-n").arg("-c").arg(placeholder).output().unwrap().status.success());
}
