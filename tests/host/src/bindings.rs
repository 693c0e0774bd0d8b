//! Host bindings for the `host-services` world of the project's `wit/world.wit`.
//!
//! Binding the very WIT files the component is built against means a change to the
//! component's interface (a version, a function) breaks the host's build instead of
//! failing at instantiation. The interfaces are Spin's pre-release versions
//! (`wasi:config@0.2.0-draft-2024-09-27`, `wasi:keyvalue@0.2.0-draft2`), which
//! wasmtime's own config and keyvalue crates do not serve.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "host-services",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::key_value::Bucket,
        "wasi:keyvalue/atomics.cas": crate::key_value::Cas,
    },
});

pub(crate) use wasi::config::store as config_store;
pub(crate) use wasi::keyvalue::atomics as keyvalue_atomics;
pub(crate) use wasi::keyvalue::store as keyvalue_store;
