//! The compiled component's own promises: it imports only what `wit/world.wit`
//! names, exports the HTTP handler, and stays small.

use graph_revoke_test_host::Component;

/// The size target of the component (issue: "under 400 KiB").
const MAX_COMPONENT_BYTES: u64 = 400 * 1024;

#[test]
fn the_component_imports_only_what_the_world_names() {
    let component = Component::shared().unwrap();
    let allowed = graph_revoke_test_host::world_imports("graph-revoke").expect("wit/ resolves");
    let imports = component.imports();
    assert!(!imports.is_empty());
    let outside: Vec<_> = imports.iter().filter(|i| !allowed.contains(i)).collect();
    assert!(outside.is_empty(), "imports outside wit/world.wit: {outside:?}\nallowed: {allowed:?}");
    for needed in [
        "wasi:config/store@0.2.0-draft-2024-09-27",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:http/outgoing-handler@0.2.6",
    ] {
        assert!(imports.iter().any(|i| i == needed), "{needed} not imported: {imports:?}");
    }
}

#[test]
fn the_component_exports_the_http_handler() {
    let exports = Component::shared().unwrap().exports();
    assert!(exports.iter().any(|e| e == "wasi:http/incoming-handler@0.2.0"), "{exports:?}");
}

#[test]
fn the_release_component_is_small() {
    let size = Component::shared().unwrap().size_bytes();
    println!("component size: {size} bytes ({:.1} KiB)", size as f64 / 1024.0);
    assert!(size < MAX_COMPONENT_BYTES, "{size} bytes");
}
