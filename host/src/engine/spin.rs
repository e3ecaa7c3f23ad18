//! Spin's key-value and variables interfaces as spin-sdk 7 imports them
//! (`spin:key-value@3.0.0`, `spin:variables@3.0.0`: WASI 0.3, async), over the same stores
//! and variables a function's `wasi:keyvalue` and `wasi:config` imports see. A store a Spin
//! guest opens is the store a wasi:keyvalue guest with the same label sees.

use wasmtime::component::{Access, Accessor, FutureReader, HasData, Resource, StreamReader};

use super::state::State;
use crate::keyvalue::{KvError, Store};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: [
            "wit/spin/key-value@3.0.0.wit",
            "wit/spin/variables@3.0.0.wit",
            "wit/spin3.wit",
        ],
        world: "wasmfn:spin-host/spin3",
        imports: { default: store | trappable },
        with: {
            "spin:key-value/key-value.store": crate::keyvalue::Store,
        },
    });
}

use bindings::spin::key_value::key_value::{self, Error as KvErrorCode};
use bindings::spin::variables::variables::{self, Error as VariableError};

/// The `HasData` of both interfaces: their host functions reach the instance's [`State`].
pub(crate) struct Spin;

impl HasData for Spin {
    type Data<'a> = &'a mut State;
}

type Result<T, E> = wasmtime::Result<std::result::Result<T, E>>;

fn other(e: KvError) -> KvErrorCode {
    KvErrorCode::Other(e.to_string())
}

/// The store behind a guest's handle.
fn store_of<T>(accessor: &Accessor<T, Spin>, handle: &Resource<Store>) -> wasmtime::Result<Store> {
    accessor.with(|mut view| Ok(view.get().table.get(handle)?.clone()))
}

impl<T> key_value::HostStoreWithStore<T> for Spin {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> Result<Resource<Store>, KvErrorCode> {
        accessor.with(|mut view| {
            let state = view.get();
            match state.open_store(label) {
                Ok(store) => Ok(Ok(state.table.push(store)?)),
                Err(super::keyvalue::OpenError::Denied) => Ok(Err(KvErrorCode::AccessDenied)),
                Err(super::keyvalue::OpenError::Unknown) => Ok(Err(KvErrorCode::NoSuchStore)),
            }
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        this: Resource<Store>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvErrorCode> {
        let store = store_of(accessor, &this)?;
        Ok(store.get(&key).await.map_err(other))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        this: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvErrorCode> {
        let store = store_of(accessor, &this)?;
        Ok(store.set(&key, &value).await.map_err(other))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        this: Resource<Store>,
        key: String,
    ) -> Result<(), KvErrorCode> {
        let store = store_of(accessor, &this)?;
        Ok(store.delete(&key).await.map_err(other))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        this: Resource<Store>,
        key: String,
    ) -> Result<bool, KvErrorCode> {
        let store = store_of(accessor, &this)?;
        Ok(store.exists(&key).await.map_err(other))
    }

    fn drop(mut access: Access<'_, T, Self>, store: Resource<Store>) -> wasmtime::Result<()> {
        access.get().table.delete(store)?;
        Ok(())
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        this: Resource<Store>,
    ) -> wasmtime::Result<(
        StreamReader<String>,
        FutureReader<std::result::Result<(), KvErrorCode>>,
    )> {
        // Every page is read before the stream starts: a failure part-way is then the
        // future's error with no keys sent, rather than a list cut short without a word.
        let store = store_of(accessor, &this)?;
        let (keys, outcome) = match all_keys(&store).await {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(other(e))),
        };
        accessor.with(|mut view| {
            let stream = StreamReader::new(&mut view, keys)?;
            let done = FutureReader::new(
                &mut view,
                std::future::ready(Ok::<_, wasmtime::Error>(outcome)),
            )?;
            Ok((stream, done))
        })
    }
}

impl key_value::HostStore for &mut State {}

/// Every key of `store`, page after page: Spin's interfaces list them all at once.
async fn all_keys(store: &Store) -> std::result::Result<Vec<String>, KvError> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_keys(cursor).await?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

impl key_value::Host for &mut State {}

impl<T> variables::HostWithStore<T> for Spin {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, VariableError> {
        accessor.with(|mut view| {
            Ok(match view.get().variable(&name) {
                Some(value) => Ok(value.to_string()),
                None => Err(VariableError::Undefined(format!(
                    "no variable `{name}` is set for this component"
                ))),
            })
        })
    }
}

impl variables::Host for &mut State {}

/// The same over `fermyon:spin/key-value@2.0.0` and `fermyon:spin/variables@2.0.0`, as
/// spin-sdk 5.2 (the Spin 3 line, WASI 0.2, synchronous to the guest) imports them.
pub(crate) mod v2 {
    use wasmtime::component::Resource;

    use super::super::state::State;
    use crate::keyvalue::Store;

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/fermyon-spin@2.0.0.wit",
                "wit/spin/wasi-config@0.2.0-draft-2024-09-27.wit",
                "wit/spin2.wit",
            ],
            world: "wasmfn:spin2-host/spin2",
            imports: { default: async | trappable },
            with: {
                "fermyon:spin/key-value.store": crate::keyvalue::Store,
            },
        });
    }

    use bindings::fermyon::spin::key_value::{self, Error};
    use bindings::fermyon::spin::variables;
    use bindings::wasi::config::store as config;

    type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

    fn other(e: crate::keyvalue::KvError) -> Error {
        Error::Other(e.to_string())
    }

    impl key_value::HostStore for State {
        async fn open(&mut self, label: String) -> Result<Resource<Store>> {
            use super::super::keyvalue::OpenError;
            Ok(match self.open_store(label) {
                Ok(store) => Ok(self.table.push(store)?),
                Err(OpenError::Denied) => Err(Error::AccessDenied),
                Err(OpenError::Unknown) => Err(Error::NoSuchStore),
            })
        }

        async fn get(&mut self, this: Resource<Store>, key: String) -> Result<Option<Vec<u8>>> {
            let store = self.table.get(&this)?.clone();
            Ok(store.get(&key).await.map_err(other))
        }

        async fn set(&mut self, this: Resource<Store>, key: String, value: Vec<u8>) -> Result<()> {
            let store = self.table.get(&this)?.clone();
            Ok(store.set(&key, &value).await.map_err(other))
        }

        async fn delete(&mut self, this: Resource<Store>, key: String) -> Result<()> {
            let store = self.table.get(&this)?.clone();
            Ok(store.delete(&key).await.map_err(other))
        }

        async fn exists(&mut self, this: Resource<Store>, key: String) -> Result<bool> {
            let store = self.table.get(&this)?.clone();
            Ok(store.exists(&key).await.map_err(other))
        }

        async fn get_keys(&mut self, this: Resource<Store>) -> Result<Vec<String>> {
            let store = self.table.get(&this)?.clone();
            Ok(super::all_keys(&store).await.map_err(other))
        }

        async fn drop(&mut self, this: Resource<Store>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl key_value::Host for State {}

    impl variables::Host for State {
        async fn get(&mut self, name: String) -> Result<String, variables::Error> {
            Ok(match self.variable(&name) {
                Some(value) => Ok(value.to_string()),
                None => Err(variables::Error::Undefined(format!(
                    "no variable `{name}` is set for this component"
                ))),
            })
        }
    }

    impl config::Host for State {
        async fn get(&mut self, key: String) -> Result<Option<String>, config::Error> {
            Ok(Ok(self.variable(&key).map(str::to_string)))
        }

        async fn get_all(&mut self) -> Result<Vec<(String, String)>, config::Error> {
            Ok(Ok(self.variables_all()))
        }
    }
}
