//! Key-value stores, declared once in the manifest (`[key_value.<label>]`) and granted per
//! function (`key_value_stores`); guests reach them through `wasi:keyvalue` (engine/
//! keyvalue.rs). Three backends behind one [`Backend`] trait:
//! - [`sqlite`]: embedded, on local disk, the default: data survives a restart with nothing
//!   else running, and several processes may share the file;
//! - [`redis`]: a real Redis, for Knative, where a Service runs many pods and scales to zero;
//! - [`memory`]: for tests and throwaway runs.
//!
//! What every backend shares is here: the limits on keys and values, counters as decimal
//! ASCII, and one [`Store`] per label however many functions use it.

pub mod memory;
pub mod redis;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{KeyValueKind, Manifest};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// The most keys one `list-keys` call returns; the cursor gives the next page.
pub const PAGE_KEYS: usize = 1000;
/// The most keys one batch call takes.
pub const MAX_BATCH: usize = 1000;

/// Why an operation failed. The guest sees `error::other` with this message; a backend that
/// is down never traps the guest nor stops the host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The guest asked for something no backend would do (a key or value over the limits,
    /// an increment of a value that is not a counter). Its text starts with `invalid: `, the
    /// guest's only way to tell it from a backend failure through `error::other`:
    /// wasmfn-sdk answers it 400, not 503, as retrying cannot help.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend failed (Redis down, a disk error); trying later may succeed.
    #[error("store `{store}` is unavailable: {reason}")]
    Unavailable {
        /// The store's label.
        store: String,
        /// What the backend said.
        reason: String,
    },
}

/// One page of keys, and where the next starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// The keys.
    pub keys: Vec<String>,
    /// Give this to the next call for the next page.
    pub cursor: Option<u64>,
}

/// How a backend failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The request cannot succeed (an increment of a value that is not a counter).
    #[error("{0}")]
    Invalid(String),
    /// The backend itself failed; trying later may succeed.
    #[error("{0}")]
    Failed(String),
}

/// A key-value backend. Keys reach it checked against the limits; `increment` is atomic
/// among everything that shares the backend, and counters are decimal ASCII.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// Sets `key` to `value`.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), BackendError>;
    /// Whether `key` has a value.
    async fn exists(&self, key: &str) -> Result<bool, BackendError>;
    /// A page of keys from `cursor` on.
    async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, BackendError>;
    /// Adds `delta` to the counter at `key` (0 when missing) and returns the new value.
    async fn increment(&self, key: &str, delta: u64) -> Result<u64, BackendError>;
    /// Sets `key` to `value` if its value is still `expected` (`None`: absent), atomically
    /// among everything that shares the backend; whether it did.
    async fn swap_if(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, BackendError>;
    /// The values of `keys`, in order.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }
    /// Sets every pair.
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        for (key, value) in pairs {
            self.set(key, value).await?;
        }
        Ok(())
    }
    /// Removes every key.
    async fn delete_many(&self, keys: &[String]) -> Result<(), BackendError> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }
}

/// A declared store: its label and backend, with the checks every backend shares. Cheap
/// to clone; every function granted the label holds the same one.
#[derive(Clone)]
pub struct Store {
    label: Arc<str>,
    backend: Arc<dyn Backend>,
    /// Whether the last operation that reached the backend found it working; a change is
    /// logged, and `wasmfn_store_up` reports it.
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("label", &self.label).finish()
    }
}

impl Store {
    /// A store named `label` over `backend`.
    pub fn new(label: &str, backend: Arc<dyn Backend>) -> Self {
        Self {
            label: label.into(),
            backend,
            up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// The store's label in the manifest.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the last operation that reached the backend found it working.
    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes that the backend answered, logging a recovery.
    fn answered(&self) {
        if !self.up.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(store = %self.label, "key-value store available again");
        }
    }

    fn unavailable(&self, e: BackendError) -> KvError {
        match e {
            // The caller's request was wrong: the backend itself answered.
            BackendError::Invalid(reason) => {
                self.answered();
                KvError::Invalid(reason)
            }
            BackendError::Failed(reason) => {
                if self.up.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(store = %self.label, %reason, "key-value store unavailable: its operations fail (503) until it answers again");
                }
                KvError::Unavailable {
                    store: self.label.to_string(),
                    reason,
                }
            }
        }
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.backend
            .get(key)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        self.backend
            .set(key, value)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.backend
            .delete(key)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Whether `key` has a value.
    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        self.backend
            .exists(key)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// A page of keys.
    pub async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        self.backend
            .list_keys(cursor)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Adds `delta` to the counter at `key`, atomically.
    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        check_key(key)?;
        if i64::try_from(delta).is_err() {
            return Err(KvError::Invalid(format!(
                "an increment may be at most {}, got {delta}",
                i64::MAX
            )));
        }
        self.backend
            .increment(key, delta)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Sets `key` to `value` if its value is still `expected` (`None`: absent); whether it
    /// did. What `wasi:keyvalue`'s compare-and-swap is built on.
    pub async fn swap_if(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        check_key(key)?;
        check_value(value)?;
        self.backend
            .swap_if(key, expected, value)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// The values of `keys`.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.backend
            .get_many(keys)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Sets every pair.
    pub async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        check_batch(pairs.len())?;
        for (key, value) in pairs {
            check_key(key)?;
            check_value(value)?;
        }
        self.backend
            .set_many(pairs)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }

    /// Removes every key.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.backend
            .delete_many(keys)
            .await
            .map_err(|e| self.unavailable(e))
            .inspect(|_| self.answered())
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("a key must not be empty".to_string()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "a key may be at most {MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Invalid(format!(
            "a value may be at most {MAX_VALUE_BYTES} bytes, this one is {}",
            value.len()
        )));
    }
    Ok(())
}

fn check_batch(n: usize) -> Result<(), KvError> {
    if n > MAX_BATCH {
        return Err(KvError::Invalid(format!(
            "a batch may hold at most {MAX_BATCH} keys, this one holds {n}"
        )));
    }
    Ok(())
}

/// A counter's next value: the stored decimal (none: 0) plus `delta`, or why not.
pub(crate) fn next_count(current: Option<&[u8]>, delta: u64) -> Result<u64, BackendError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                BackendError::Invalid(
                    "the value is not a counter (a non-negative decimal)".to_string(),
                )
            })?,
    };
    current
        .checked_add(delta)
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| BackendError::Invalid(format!("the counter would pass {}", i64::MAX)))
}

/// Why a store could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("key-value store `{label}`: {reason}")]
pub struct OpenError {
    /// The store's label.
    pub label: String,
    /// Why.
    pub reason: String,
}

/// The stores some function is granted, opened, by label, with how each was declared.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    by_label: BTreeMap<String, (KeyValueKind, Store)>,
}

impl Stores {
    /// Opens the stores of `manifest` that some function is granted; embedded ones keep
    /// their files in `data_dir`
    /// unless they name a path. Redis connects on first use, so a Redis that is down does
    /// not stop (or slow) the start.
    pub fn open(manifest: &Manifest, data_dir: &Path) -> Result<Self, OpenError> {
        Self::default().reopen(manifest, data_dir)
    }

    /// [`Stores::open`], keeping this set's stores whose declaration did not change (a
    /// reload): their data, and their connections, stay.
    pub fn reopen(&self, manifest: &Manifest, data_dir: &Path) -> Result<Self, OpenError> {
        let mut by_label = BTreeMap::new();
        for spec in &manifest.key_value {
            // A store no function may open is not opened: declaring one costs nothing.
            let granted = manifest
                .functions
                .iter()
                .any(|f| f.key_value_stores.contains(&spec.label));
            if !granted {
                continue;
            }
            if let Some((kind, store)) = self.by_label.get(&spec.label)
                && *kind == spec.kind
            {
                by_label.insert(spec.label.clone(), (kind.clone(), store.clone()));
                continue;
            }
            let error = |reason: String| OpenError {
                label: spec.label.clone(),
                reason,
            };
            let backend: Arc<dyn Backend> = match &spec.kind {
                KeyValueKind::Memory => Arc::new(memory::Memory::default()),
                KeyValueKind::Embedded { path } => {
                    let path = path
                        .clone()
                        .unwrap_or_else(|| data_dir.join(format!("{}.sqlite", spec.label)));
                    Arc::new(sqlite::Sqlite::open(&path).map_err(error)?)
                }
                KeyValueKind::Redis { url, prefix } => {
                    let url = url.resolve().map_err(|e| error(e.to_string()))?;
                    let prefix = prefix
                        .clone()
                        .unwrap_or_else(|| format!("wasmfn:{}:", spec.label));
                    Arc::new(redis::Redis::new(&url, prefix).map_err(error)?)
                }
            };
            let store = Store::new(&spec.label, backend);
            by_label.insert(spec.label.clone(), (spec.kind.clone(), store));
        }
        Ok(Self { by_label })
    }

    /// The store with `label`.
    pub fn get(&self, label: &str) -> Option<&Store> {
        self.by_label.get(label).map(|(_, store)| store)
    }

    /// Every open store's label and whether it is up ([`Store::is_up`]).
    pub fn health(&self) -> Vec<(String, bool)> {
        self.by_label
            .iter()
            .map(|(label, (_, store))| (label.clone(), store.is_up()))
            .collect()
    }
}

/// Where embedded stores keep their files when neither the store nor `--data-dir` says:
/// `.wasmfn/data` beside the manifest.
pub fn default_data_dir(manifest: &Path) -> PathBuf {
    manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join(".wasmfn")
        .join("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_decimal_and_bounded() {
        assert_eq!(next_count(None, 5).unwrap(), 5);
        assert_eq!(next_count(Some(b"41"), 1).unwrap(), 42);
        for bad in [&b"x"[..], b"-3", b"1.5"] {
            let e = next_count(Some(bad), 1).unwrap_err().to_string();
            assert!(e.contains("not a counter"), "{e}");
        }
        let max = i64::MAX.to_string();
        assert!(next_count(Some(max.as_bytes()), 1).is_err());
    }

    #[tokio::test]
    async fn the_store_checks_keys_values_and_batches_before_the_backend() {
        let store = Store::new("t", Arc::new(memory::Memory::default()));
        assert!(matches!(store.get("").await, Err(KvError::Invalid(_))));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(
            store
                .set(&long, b"v")
                .await
                .unwrap_err()
                .to_string()
                .contains("at most 1024")
        );
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(store.set("k", &big).await.is_err());
        assert!(store.increment("k", u64::MAX).await.is_err());
        let many: Vec<String> = (0..=MAX_BATCH).map(|i| i.to_string()).collect();
        assert!(store.get_many(&many).await.is_err());
        // Nothing of the refused calls reached the backend.
        assert_eq!(store.list_keys(None).await.unwrap(), KeyPage::default());
    }
}
