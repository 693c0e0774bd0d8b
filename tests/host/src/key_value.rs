//! `wasi:keyvalue/store`: the app's `default` store, in memory.
//!
//! Spin gives an application one `default` store (a SQLite file) that every request of
//! every instance shares; the component keeps its Graph token there. Here the store is a
//! map shared by all requests of one [`TestApp`], which tests can also read and change
//! directly. Access follows Spin: a label the manifest's `key_value_stores` does not list
//! is `access-denied`; a listed label the host has no store for is `no-such-store`.
//!
//! [`TestApp`]: crate::TestApp

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;

use crate::bindings::keyvalue_store::{Error, Host, HostBucket, KeyResponse};
use crate::state::HostState;

/// The label of the only store the test host can provide.
pub(crate) const DEFAULT_STORE: &str = "default";

/// The contents of an app's `default` store.
pub(crate) type SharedMap = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// The contents of a `default` store that several apps may share: one Redis (or other
/// `[key_value_store.default]` of a runtime config) behind several replicas. Give the
/// same backend to several [`AppBuilder`](crate::AppBuilder)s with
/// [`AppBuilder::shared_key_value`](crate::AppBuilder::shared_key_value). Each `set`
/// replaces a whole value at once, as Redis `SET` does.
#[derive(Clone, Default)]
pub struct KeyValueBackend(pub(crate) SharedMap);

impl KeyValueBackend {
    /// An empty store.
    pub fn new() -> KeyValueBackend {
        KeyValueBackend::default()
    }

    /// A value, as any replica would read it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.0.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// What a guest's `bucket` handle refers to.
pub struct Bucket {
    map: SharedMap,
}

/// Per-request view of the key-value configuration.
#[derive(Clone)]
pub(crate) struct KeyValueAccess {
    /// The manifest's `key_value_stores`.
    pub(crate) allowed: Vec<String>,
    /// The `default` store, if the host has one.
    pub(crate) default_store: Option<SharedMap>,
}

impl Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        if !self.key_value.allowed.contains(&identifier) {
            return Ok(Err(Error::AccessDenied));
        }
        let store = match &self.key_value.default_store {
            Some(map) if identifier == DEFAULT_STORE => map.clone(),
            _ => return Ok(Err(Error::NoSuchStore)),
        };
        Ok(Ok(self.table.push(Bucket { map: store })?))
    }
}

impl HostState {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<SharedMap> {
        Ok(self.table.get(bucket)?.map.clone())
    }
}

impl HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let map = self.bucket(&bucket)?;
        let value = map.lock().unwrap().get(&key).cloned();
        Ok(Ok(value))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let map = self.bucket(&bucket)?;
        map.lock().unwrap().insert(key, value);
        Ok(Ok(()))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let map = self.bucket(&bucket)?;
        map.lock().unwrap().remove(&key);
        Ok(Ok(()))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let map = self.bucket(&bucket)?;
        let exists = map.lock().unwrap().contains_key(&key);
        Ok(Ok(exists))
    }

    /// Like Spin: all keys in one page; a cursor is an error.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        if cursor.is_some() {
            return Ok(Err(Error::Other(
                "list_keys: cursor not supported".to_string(),
            )));
        }
        let map = self.bucket(&bucket)?;
        let mut keys: Vec<String> = map.lock().unwrap().keys().cloned().collect();
        keys.sort();
        Ok(Ok(KeyResponse { keys, cursor: None }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}
