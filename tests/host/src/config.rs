//! `wasi:config/store`: the component's variables, as Spin serves them.
//!
//! Spin answers `get` with the resolved value of a variable from the component's
//! `[component.<id>.variables]` table and `none` for any other key (undeclared, or not a
//! valid variable name); application variables the table does not map stay invisible.
//! Every read resolves through the provider chain again (see `variables`); a provider
//! error (e.g. an Azure Key Vault miss) is an `upstream` error. `get-all` returns the
//! whole table, resolved.
//!
//! Every `get` is counted by key ([`crate::TestApp::config_reads`]): in Spin each read
//! goes through the variable providers uncached, so a read can be a vault round trip.

use crate::bindings::config_store::{Error, Host};
use crate::state::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        *self.config_reads.lock().unwrap().entry(key.clone()).or_default() += 1;
        Ok(self.variables.component_value(&key).await.map_err(Error::Upstream))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        Ok(self.variables.component_values().await.map_err(Error::Upstream))
    }
}
