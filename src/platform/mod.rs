//! The host. `seam::Host` is what the flow asks of it (outbound HTTP, waiting, clocks,
//! randomness, Spin variables, the key-value store); `host::WasiHost` is its one real
//! implementation and the only code that touches WASI (through the generated `bindings`);
//! `fake_host` (tests only) is a scripted one with a virtual clock, so the flow runs natively
//! in `cargo test`.

pub(crate) mod seam;
pub(crate) mod host;
pub(crate) mod bindings;
#[cfg(test)]
pub(crate) mod fake_host;
