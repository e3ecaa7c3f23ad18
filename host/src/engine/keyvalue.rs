//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) over the stores a function is
//! granted (crate::keyvalue). A bucket is the granted [`Store`] itself; a backend failure is
//! `error::other` to the guest, never a trap.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::state::State;
use crate::keyvalue::{KvError, Store};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit/host.wit"],
        world: "wasmfn:host/keyvalue",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::keyvalue::Store,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// The stores one function may open, and every label the manifest declares (opening a
/// declared store that was not granted is `access-denied`; an unknown label
/// `no-such-store`).
#[derive(Debug, Clone, Default)]
pub struct KeyValueGrant {
    /// The granted stores.
    pub stores: Vec<Store>,
    /// Every store label the manifest declares.
    pub declared: Arc<[String]>,
}

type Result<T> = wasmtime::Result<std::result::Result<T, store::Error>>;

fn other(e: KvError) -> store::Error {
    store::Error::Other(e.to_string())
}

impl State {
    fn bucket(&self, bucket: &Resource<Store>) -> wasmtime::Result<Store> {
        Ok(self.table.get(bucket)?.clone())
    }
}

impl store::Host for State {
    async fn open(&mut self, identifier: String) -> Result<Resource<Store>> {
        Ok(match self.open_store(identifier) {
            Ok(store) => Ok(self.table.push(store)?),
            Err(OpenError::Denied) => Err(store::Error::AccessDenied),
            Err(OpenError::Unknown) => Err(store::Error::NoSuchStore),
        })
    }
}

/// Why a guest cannot open a store.
pub(crate) enum OpenError {
    /// The manifest declares it, but not for this function.
    Denied,
    /// No store has that label.
    Unknown,
}

impl State {
    /// The store labelled `label` if this function is granted it, for any interface a
    /// guest opens stores through: one label, one store.
    pub(crate) fn open_store(&self, label: String) -> std::result::Result<Store, OpenError> {
        // `wasmtime serve -S keyvalue` serves one store, which its guests open by the empty
        // identifier: here that is the function's `default` store.
        let label = if label.is_empty() {
            crate::manifest::DEFAULT_STORE.to_string()
        } else {
            label
        };
        let grant = &self.kv;
        match grant.stores.iter().find(|s| s.label() == label) {
            Some(store) => Ok(store.clone()),
            None if grant.declared.contains(&label) => Err(OpenError::Denied),
            None => Err(OpenError::Unknown),
        }
    }
}

impl store::HostBucket for State {
    async fn get(&mut self, bucket: Resource<Store>, key: String) -> Result<Option<Vec<u8>>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get(&key).await.map_err(other))
    }

    async fn set(&mut self, bucket: Resource<Store>, key: String, value: Vec<u8>) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set(&key, &value).await.map_err(other))
    }

    async fn delete(&mut self, bucket: Resource<Store>, key: String) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete(&key).await.map_err(other))
    }

    async fn exists(&mut self, bucket: Resource<Store>, key: String) -> Result<bool> {
        let store = self.bucket(&bucket)?;
        Ok(store.exists(&key).await.map_err(other))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Store>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse> {
        let store = self.bucket(&bucket)?;
        Ok(store
            .list_keys(cursor)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(other))
    }

    async fn drop(&mut self, bucket: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for State {
    async fn increment(&mut self, bucket: Resource<Store>, key: String, delta: u64) -> Result<u64> {
        let store = self.bucket(&bucket)?;
        Ok(store.increment(&key, delta).await.map_err(other))
    }
}

impl batch::Host for State {
    async fn get_many(
        &mut self,
        bucket: Resource<Store>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        let store = self.bucket(&bucket)?;
        Ok(store
            .get_many(&keys)
            .await
            .map(|values| {
                keys.into_iter()
                    .zip(values)
                    .map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            })
            .map_err(other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Store>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set_many(&key_values).await.map_err(other))
    }

    async fn delete_many(&mut self, bucket: Resource<Store>, keys: Vec<String>) -> Result<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete_many(&keys).await.map_err(other))
    }
}
