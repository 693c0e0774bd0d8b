//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics`: the app's `default` store, in memory.
//!
//! Spin gives an application one `default` store (a SQLite file) that every request of
//! every instance shares; the component keeps its Graph token and the abuse brake's
//! counters there. Here the store is a map shared by all requests of one [`TestApp`] (or
//! of several, through one [`KeyValueBackend`]), which tests can also read and change
//! directly. Access follows Spin: a label the manifest's `key_value_stores` does not list
//! is `access-denied`; a listed label the host has no store for is `no-such-store`.
//!
//! `increment` adds under the map's lock, so concurrent requests of every app sharing
//! the backend see one sum, as with Spin's SQLite store (a transaction) or Redis
//! (`INCRBY`). It keeps a counter as Spin's SQLite store does, 8 little-endian bytes of
//! an `i64`; a value of any other length is an error (Spin's SQLite store panics on it,
//! Redis answers "value is not an integer"). Compare-and-swap is served too (a `cas`
//! remembers the value it saw; `swap` writes only if that is still the value).
//!
//! [`TestApp`]: crate::TestApp

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;

use crate::bindings::keyvalue_atomics::{self, CasError, HostCas};
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

    /// A counter `increment` keeps, as any replica would read it; `None` when absent or
    /// not a counter.
    pub fn counter(&self, key: &str) -> Option<i64> {
        decode_counter(self.0.lock().unwrap().get(key)?)
    }

    /// Sets a value, as a replica or an operator would.
    pub fn set(&self, key: &str, value: &[u8]) {
        self.0.lock().unwrap().insert(key.to_string(), value.to_vec());
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

/// What a guest's `cas` handle refers to: a key and the value seen when it was made.
pub struct Cas {
    map: SharedMap,
    key: String,
    seen: Option<Vec<u8>>,
}

/// A counter's value as Spin's SQLite store keeps it.
pub(crate) fn decode_counter(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
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

impl keyvalue_atomics::Host for HostState {
    /// Adds under the lock: one step for every request of every app on this backend.
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let map = self.bucket(&bucket)?;
        let mut map = map.lock().unwrap();
        let old = match map.get(&key) {
            None => 0,
            Some(bytes) => match decode_counter(bytes) {
                Some(n) => n,
                None => return Ok(Err(Error::Other("increment: the value is not a counter".to_string()))),
            },
        };
        let Some(new) = old.checked_add(delta) else {
            return Ok(Err(Error::Other("increment: overflow".to_string())));
        };
        map.insert(key, new.to_le_bytes().to_vec());
        Ok(Ok(new))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let cas = self.table.delete(cas)?;
        let mut map = cas.map.lock().unwrap();
        let current = map.get(&cas.key).cloned();
        if current != cas.seen {
            drop(map);
            let fresh = self.table.push(Cas { map: cas.map.clone(), key: cas.key, seen: current })?;
            return Ok(Err(CasError::CasFailed(fresh)));
        }
        map.insert(cas.key.clone(), value);
        Ok(Ok(()))
    }
}

impl HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let map = self.bucket(&bucket)?;
        let seen = map.lock().unwrap().get(&key).cloned();
        Ok(Ok(self.table.push(Cas { map, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
