//! Key-value stores from a WASI 0.3 handler, with async calls: while one waits on its store,
//! the instance serves other requests. The same stores as [`crate::kv`] (those the manifest
//! entry's `key_value_stores` grants), through Spin's async `spin:key-value@3.0.0`, which
//! wasmfn serves over them.
//!
//! ```ignore
//! let store = wasmfn_sdk::p3::kv::Store::open("default").await?;
//! store.set_json("user:1", &user).await?;
//! let user: Option<User> = store.get_json("user:1").await?;
//! ```
//!
//! Errors are as in [`crate::kv`]: a store that is not granted is a 500 naming it, an
//! invalid key or value a 400, a store that fails a 503. Counters and batches have no
//! async form here (Spin's interface has none): [`crate::kv::Store::increment`] and the
//! batch calls work from async handlers too.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::p3::wit::kv::spin::key_value::key_value::{self as spin, Error as SpinError};

/// An open store.
pub struct Store {
    label: String,
    store: spin::Store,
}

fn error(label: &str, e: SpinError) -> Error {
    match e {
        SpinError::NoSuchStore => Error::internal(format!(
            "no key-value store is labelled `{label}` in this host's manifest"
        )),
        SpinError::AccessDenied => Error::internal(format!(
            "this function may not open the key-value store `{label}`; add it to its key_value_stores"
        )),
        SpinError::StoreTableFull => Error::retry("too many key-value stores are open"),
        SpinError::Other(reason) if reason.starts_with("invalid: ") => Error::bad_request(reason),
        SpinError::Other(reason) => Error::retry(reason),
    }
}

impl Store {
    /// Opens the store labelled `label`.
    pub async fn open(label: &str) -> Result<Self, Error> {
        let store = spin::Store::open(label.to_string())
            .await
            .map_err(|e| error(label, e))?;
        Ok(Self {
            label: label.to_string(),
            store,
        })
    }

    fn fail(&self, e: SpinError) -> Error {
        error(&self.label, e)
    }

    /// The value of `key`, if it has one.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.store
            .get(key.to_string())
            .await
            .map_err(|e| self.fail(e))
    }

    /// The value of `key` as JSON, if it has one; a value that is not the expected JSON is
    /// a 500 naming the key.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::internal(format!(
                    "the value of `{key}` is not the expected JSON: {e}"
                ))
            }),
        }
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.store
            .set(key.to_string(), value.as_ref().to_vec())
            .await
            .map_err(|e| self.fail(e))
    }

    /// Sets `key` to `value` as JSON.
    pub async fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("cannot encode `{key}` as JSON: {e}")))?;
        self.set(key, bytes).await
    }

    /// Removes `key`; removing a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.store
            .delete(key.to_string())
            .await
            .map_err(|e| self.fail(e))
    }

    /// Whether `key` has a value.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        self.store
            .exists(key.to_string())
            .await
            .map_err(|e| self.fail(e))
    }

    /// Every key in the store.
    pub async fn keys(&self) -> Result<Vec<String>, Error> {
        let (mut keys, done) = self.store.get_keys().await;
        let mut all = Vec::new();
        loop {
            let (result, batch) = keys.read(Vec::with_capacity(64)).await;
            all.extend(batch);
            if let wasip3::wit_bindgen::StreamResult::Dropped
            | wasip3::wit_bindgen::StreamResult::Cancelled = result
            {
                break;
            }
        }
        drop(keys);
        done.await.map_err(|e| self.fail(e))?;
        Ok(all)
    }
}
