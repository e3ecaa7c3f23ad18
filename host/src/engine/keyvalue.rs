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

/// `wasi:keyvalue@0.2.0-draft2`, which Spin's SDKs and wasmCloud import, over the same
/// stores: a string cursor, signed counters (counting up only: the stores' counters are
/// non-negative) and a compare-and-swap.
pub(crate) mod draft2 {
    use wasmtime::component::Resource;

    use super::super::state::State;
    use super::OpenError;
    use crate::keyvalue::{KvError, Store};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: ["wit/wasi-keyvalue@0.2.0-draft2.wit", "wit/keyvalue2.wit"],
            world: "wasmfn:keyvalue2-host/keyvalue2",
            imports: { default: async | trappable },
            with: {
                "wasi:keyvalue/store.bucket": crate::keyvalue::Store,
                "wasi:keyvalue/atomics.cas": super::Cas,
            },
        });
    }

    use bindings::wasi::keyvalue::{atomics, batch, store};

    /// A compare-and-swap: the value `key` had when it was read, which a swap expects.
    pub struct Cas {
        store: Store,
        key: String,
        current: Option<Vec<u8>>,
    }

    impl Cas {
        async fn read(store: Store, key: String) -> std::result::Result<Self, store::Error> {
            let current = store.get(&key).await.map_err(other)?;
            Ok(Self {
                store,
                key,
                current,
            })
        }
    }

    type Result<T, E = store::Error> = wasmtime::Result<std::result::Result<T, E>>;

    fn other(e: KvError) -> store::Error {
        store::Error::Other(e.to_string())
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

    impl store::HostBucket for State {
        async fn get(&mut self, bucket: Resource<Store>, key: String) -> Result<Option<Vec<u8>>> {
            let store = self.bucket(&bucket)?;
            Ok(store.get(&key).await.map_err(other))
        }

        async fn set(
            &mut self,
            bucket: Resource<Store>,
            key: String,
            value: Vec<u8>,
        ) -> Result<()> {
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
            cursor: Option<String>,
        ) -> Result<store::KeyResponse> {
            let store = self.bucket(&bucket)?;
            // The first draft's numeric cursor, written out.
            let cursor = match cursor.map(|c| c.parse::<u64>()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return Ok(Err(store::Error::Other(
                        "invalid: the cursor is not one this store returned".to_string(),
                    )));
                }
            };
            Ok(store
                .list_keys(cursor)
                .await
                .map(|page| store::KeyResponse {
                    keys: page.keys,
                    cursor: page.cursor.map(|n| n.to_string()),
                })
                .map_err(other))
        }

        async fn drop(&mut self, bucket: Resource<Store>) -> wasmtime::Result<()> {
            self.table.delete(bucket)?;
            Ok(())
        }
    }

    impl atomics::HostCas for State {
        async fn new(&mut self, bucket: Resource<Store>, key: String) -> Result<Resource<Cas>> {
            let store = self.bucket(&bucket)?;
            Ok(match Cas::read(store, key).await {
                Ok(cas) => Ok(self.table.push(cas)?),
                Err(e) => Err(e),
            })
        }

        async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>> {
            Ok(Ok(self.table.get(&cas)?.current.clone()))
        }

        async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
            self.table.delete(cas)?;
            Ok(())
        }
    }

    impl atomics::Host for State {
        async fn increment(
            &mut self,
            bucket: Resource<Store>,
            key: String,
            delta: i64,
        ) -> Result<i64> {
            let store = self.bucket(&bucket)?;
            let Ok(delta) = u64::try_from(delta) else {
                return Ok(Err(store::Error::Other(format!(
                    "invalid: this host's counters only count up (they are non-negative), so the delta must not be negative, got {delta}"
                ))));
            };
            // The stores keep counters within i64.
            Ok(store
                .increment(&key, delta)
                .await
                .map(|n| n as i64)
                .map_err(other))
        }

        async fn swap(
            &mut self,
            cas: Resource<Cas>,
            value: Vec<u8>,
        ) -> Result<(), atomics::CasError> {
            let cas = self.table.delete(cas)?;
            match cas
                .store
                .swap_if(&cas.key, cas.current.as_deref(), &value)
                .await
            {
                Ok(true) => Ok(Ok(())),
                // Another writer came first: the guest gets the value now there to retry
                // from, as Spin's own host does.
                Ok(false) => Ok(match Cas::read(cas.store, cas.key).await {
                    Ok(fresh) => Err(atomics::CasError::CasFailed(self.table.push(fresh)?)),
                    Err(e) => Err(atomics::CasError::StoreError(e)),
                }),
                Err(e) => Ok(Err(atomics::CasError::StoreError(other(e)))),
            }
        }
    }

    impl batch::Host for State {
        async fn get_many(
            &mut self,
            bucket: Resource<Store>,
            keys: Vec<String>,
        ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
            let store = self.bucket(&bucket)?;
            Ok(store
                .get_many(&keys)
                .await
                .map(|values| keys.into_iter().zip(values).collect())
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
}
