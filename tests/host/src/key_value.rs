//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics`: the app's `default` store, a map in memory (with Spin's SQLite beside it on demand).
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
//! What a store costs the host depends on what backs it, so a backend can also run every
//! operation against SQLite the way Spin's `spin` store does
//! ([`KeyValueBackend::spin_sqlite`]): Spin's default store is such a file
//! (`.spin/sqlite_key_value.db`), where an `increment` is a write transaction the disk
//! must make durable, under one lock for the whole app. The map stays the record tests
//! read; SQLite is run for its cost.
//!
//! [`TestApp`]: crate::TestApp

use std::collections::HashMap;
use std::path::Path;
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
pub struct KeyValueBackend {
    pub(crate) map: SharedMap,
    /// Spin's SQLite store, run beside the map for its cost.
    sqlite: Option<Arc<SpinSqlite>>,
}

impl KeyValueBackend {
    /// An empty store.
    pub fn new() -> KeyValueBackend {
        KeyValueBackend::default()
    }

    /// An empty store whose every guest operation also runs Spin's statements against a
    /// SQLite database: the file at `file` (created; Spin's default store is
    /// `.spin/sqlite_key_value.db`), or one in memory (`None`: a `type = "spin"` store
    /// without `path`), with SQLite's defaults, as Spin opens it.
    pub fn spin_sqlite(file: Option<&Path>) -> anyhow::Result<KeyValueBackend> {
        Ok(KeyValueBackend { map: SharedMap::default(), sqlite: Some(Arc::new(SpinSqlite::open(file)?)) })
    }

    /// A value, as any replica would read it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.lock().unwrap().get(key).cloned()
    }

    /// A counter `increment` keeps, as any replica would read it; `None` when absent or
    /// not a counter.
    pub fn counter(&self, key: &str) -> Option<i64> {
        decode_counter(self.map.lock().unwrap().get(key)?)
    }

    /// Sets a value, as a replica or an operator would.
    pub fn set(&self, key: &str, value: &[u8]) {
        self.map.lock().unwrap().insert(key.to_string(), value.to_vec());
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Runs `statement` against Spin's SQLite store, if this backend has one.
    fn sqlite(&self, statement: impl FnOnce(&SpinSqlite) -> rusqlite::Result<()>) {
        if let Some(sqlite) = &self.sqlite {
            statement(sqlite).expect("Spin's SQLite statements run");
        }
    }
}

/// Spin's `spin` key-value store (`crates/key-value-spin/src/store.rs`, v3.6.3 and
/// v4.0.2): one connection behind a lock, its table, and the statements each operation
/// runs (an `increment` is a transaction: read, upsert, commit).
struct SpinSqlite {
    connection: Mutex<rusqlite::Connection>,
}

/// The store's name in Spin's table (its label).
const SQLITE_STORE_NAME: &str = DEFAULT_STORE;
/// Spin's read of one value (`get`, and the first step of `increment`).
const SQLITE_SELECT: &str = "SELECT value FROM spin_key_value WHERE store=$1 AND key=$2";
/// Spin's write of one value (`set`, and the second step of `increment`).
const SQLITE_UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT(store, key) DO UPDATE SET value=$3";

impl SpinSqlite {
    fn open(file: Option<&Path>) -> anyhow::Result<SpinSqlite> {
        let connection = match file {
            Some(path) => rusqlite::Connection::open(path)?,
            None => rusqlite::Connection::open_in_memory()?,
        };
        connection.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(SpinSqlite { connection: Mutex::new(connection) })
    }

    fn get(&self, key: &str) -> rusqlite::Result<()> {
        let connection = self.connection.lock().unwrap();
        let mut statement = connection.prepare_cached(SQLITE_SELECT)?;
        let mut rows = statement.query_map([SQLITE_STORE_NAME, key], |row| row.get::<_, Vec<u8>>(0))?;
        rows.next().transpose()?;
        Ok(())
    }

    fn set(&self, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        let connection = self.connection.lock().unwrap();
        connection.prepare_cached(SQLITE_UPSERT)?.execute(rusqlite::params![SQLITE_STORE_NAME, key, value])?;
        Ok(())
    }

    fn delete(&self, key: &str) -> rusqlite::Result<()> {
        let connection = self.connection.lock().unwrap();
        connection
            .prepare_cached("DELETE FROM spin_key_value WHERE store=$1 AND key=$2")?
            .execute([SQLITE_STORE_NAME, key])?;
        Ok(())
    }

    fn increment(&self, key: &str, new_value: i64) -> rusqlite::Result<()> {
        let mut connection = self.connection.lock().unwrap();
        let transaction = connection.transaction()?;
        transaction
            .prepare_cached(SQLITE_SELECT)?
            .query_map([SQLITE_STORE_NAME, key], |row| row.get::<_, Vec<u8>>(0))?
            .next()
            .transpose()?;
        transaction
            .prepare_cached(SQLITE_UPSERT)?
            .execute(rusqlite::params![SQLITE_STORE_NAME, key, new_value.to_le_bytes()])?;
        transaction.commit()
    }
}

/// What a guest's `bucket` handle refers to.
pub struct Bucket {
    store: KeyValueBackend,
}

/// What a guest's `cas` handle refers to: a key and the value seen when it was made.
pub struct Cas {
    store: KeyValueBackend,
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
    pub(crate) default_store: Option<KeyValueBackend>,
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
            Some(store) if identifier == DEFAULT_STORE => store.clone(),
            _ => return Ok(Err(Error::NoSuchStore)),
        };
        Ok(Ok(self.table.push(Bucket { store })?))
    }
}

impl HostState {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<KeyValueBackend> {
        Ok(self.table.get(bucket)?.store.clone())
    }
}

impl HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let store = self.bucket(&bucket)?;
        let map = store.map.lock().unwrap();
        store.sqlite(|sqlite| sqlite.get(&key));
        Ok(Ok(map.get(&key).cloned()))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.bucket(&bucket)?;
        let mut map = store.map.lock().unwrap();
        store.sqlite(|sqlite| sqlite.set(&key, &value));
        map.insert(key, value);
        Ok(Ok(()))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.bucket(&bucket)?;
        let mut map = store.map.lock().unwrap();
        store.sqlite(|sqlite| sqlite.delete(&key));
        map.remove(&key);
        Ok(Ok(()))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let store = self.bucket(&bucket)?;
        let map = store.map.lock().unwrap();
        store.sqlite(|sqlite| sqlite.get(&key));
        Ok(Ok(map.contains_key(&key)))
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
        let store = self.bucket(&bucket)?;
        let mut keys: Vec<String> = store.map.lock().unwrap().keys().cloned().collect();
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
        let store = self.bucket(&bucket)?;
        let mut map = store.map.lock().unwrap();
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
        store.sqlite(|sqlite| sqlite.increment(&key, new));
        map.insert(key, new.to_le_bytes().to_vec());
        Ok(Ok(new))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let cas = self.table.delete(cas)?;
        let mut map = cas.store.map.lock().unwrap();
        let current = map.get(&cas.key).cloned();
        if current != cas.seen {
            drop(map);
            let fresh = self.table.push(Cas { store: cas.store.clone(), key: cas.key, seen: current })?;
            return Ok(Err(CasError::CasFailed(fresh)));
        }
        cas.store.sqlite(|sqlite| sqlite.set(&cas.key, &value));
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
        let store = self.bucket(&bucket)?;
        let seen = store.map.lock().unwrap().get(&key).cloned();
        store.sqlite(|sqlite| sqlite.get(&key));
        Ok(Ok(self.table.push(Cas { store, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SpinSqlite {
        fn value(&self, key: &str) -> Option<Vec<u8>> {
            let connection = self.connection.lock().unwrap();
            let mut statement = connection.prepare(SQLITE_SELECT).unwrap();
            let value = statement.query_map([SQLITE_STORE_NAME, key], |row| row.get(0)).unwrap().next().transpose().unwrap();
            value
        }
    }

    /// Spin's statements, run as the guest's operations run them, leave SQLite holding
    /// what the map holds: the cost measured is the cost of the real work.
    #[test]
    fn the_sqlite_store_holds_what_the_map_holds() {
        let file = std::env::temp_dir().join(format!("graph-revoke-test-host-{}.db", std::process::id()));
        for location in [None, Some(file.as_path())] {
            let sqlite = SpinSqlite::open(location).unwrap();
            sqlite.set("token", b"abc").unwrap();
            sqlite.set("token", b"def").unwrap();
            sqlite.increment("brake", 1).unwrap();
            sqlite.increment("brake", 5).unwrap();
            sqlite.get("token").unwrap();
            assert_eq!(sqlite.value("token"), Some(b"def".to_vec()));
            assert_eq!(sqlite.value("brake"), Some(5i64.to_le_bytes().to_vec()));
            sqlite.delete("token").unwrap();
            assert_eq!(sqlite.value("token"), None);
            drop(sqlite);
        }
        assert!(file.is_file(), "the file store is a file");
        let _ = std::fs::remove_file(&file);
    }
}
