//! The component's own bindings for the host services it imports besides wasi:http
//! (Spin variables through `wasi:config/store`, the token cache through
//! `wasi:keyvalue/store`, the abuse brake's counters through `wasi:keyvalue/atomics`), generated from the project's `wit/world.wit`, world
//! `host-services`: the very file the test host binds, so the component and its test
//! host cannot drift apart on a version or a function.
//!
//! Only [`crate::platform::host`] uses them. wit-bindgen is the version spin-sdk 5.2 builds on, so
//! its runtime is in the component once.

wit_bindgen::generate!({
    path: "wit",
    world: "graph-revoke:component/host-services",
    generate_all,
});
