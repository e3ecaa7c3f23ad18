//! Spin's SQLite interface over the databases a function is granted (crate::databases::
//! sqlite), in each version a guest may import: `spin:sqlite@3.1.0` (spin-sdk 7, WASI
//! 0.3: its async functions stream rows), and `spin:sqlite@3.0.0` and
//! `fermyon:spin/sqlite@2.0.0` (spin-sdk 5.2, WASI 0.2). A guest's connection is a
//! [`Session`]; every statement is bounded by the invocation's deadline, and a database
//! error is the interface's `error`, never a trap.

use std::sync::Arc;

use super::keyvalue::OpenError;
use super::state::State;
use crate::databases::sqlite::{Database, QueryResult, Session, SqlError, SqlValue};

/// The databases one function may open, and every label the manifest declares (opening a
/// declared database that was not granted is `access-denied`; an unknown label
/// `no-such-database`).
#[derive(Debug, Clone, Default)]
pub struct SqliteGrant {
    /// The granted databases.
    pub databases: Vec<Arc<Database>>,
    /// Every database label the manifest declares.
    pub declared: Arc<[String]>,
}

impl State {
    /// A new connection to the database labelled `label`, if this function is granted it.
    fn open_database(&self, label: &str) -> Result<Session, OpenError> {
        let grant = &self.sqlite;
        match grant.databases.iter().find(|d| d.label() == label) {
            Some(database) => Ok(database.session()),
            None if grant.declared.iter().any(|l| l == label) => Err(OpenError::Denied),
            None => Err(OpenError::Unknown),
        }
    }
}

/// The conversions between one version's generated types and the host's, written once:
/// expanded inside each version's module, where `Value`, `RowResult` and `Error` are that
/// version's.
macro_rules! conversions {
    () => {
        fn value_in(value: Value) -> SqlValue {
            match value {
                Value::Integer(i) => SqlValue::Integer(i),
                Value::Real(f) => SqlValue::Real(f),
                Value::Text(s) => SqlValue::Text(s),
                Value::Blob(b) => SqlValue::Blob(b),
                Value::Null => SqlValue::Null,
            }
        }

        fn row_out(values: Vec<SqlValue>) -> RowResult {
            RowResult {
                values: values
                    .into_iter()
                    .map(|value| match value {
                        SqlValue::Integer(i) => Value::Integer(i),
                        SqlValue::Real(f) => Value::Real(f),
                        SqlValue::Text(s) => Value::Text(s),
                        SqlValue::Blob(b) => Value::Blob(b),
                        SqlValue::Null => Value::Null,
                    })
                    .collect(),
            }
        }

        fn error_out(e: SqlError) -> Error {
            match e {
                SqlError::Full => Error::DatabaseFull,
                SqlError::Io(message) => Error::Io(message),
            }
        }

        fn open_error(e: OpenError) -> Error {
            match e {
                OpenError::Denied => Error::AccessDenied,
                OpenError::Unknown => Error::NoSuchDatabase,
            }
        }
    };
}

/// Runs one statement of the session `this` in `state`'s table; the synchronous versions'
/// `execute`. The session is not borrowed across the wait.
async fn execute(
    state: &mut State,
    this: &wasmtime::component::Resource<Session>,
    statement: String,
    parameters: Vec<SqlValue>,
) -> wasmtime::Result<Result<QueryResult, SqlError>> {
    let deadline = state.call_deadline();
    let call = state.table.get_mut(this)?.call();
    let done = call.execute(statement, parameters, deadline).await;
    Ok(state.table.get_mut(this)?.finish(done))
}

/// `spin:sqlite@3.1.0`, as spin-sdk 7 imports it.
pub(crate) mod v3 {
    use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};

    use super::super::state::State;
    use super::{OpenError, Session, SqlError, SqlValue};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/sqlite@3.1.0.wit",
                "wit/spin/sqlite@3.0.0.wit",
                "wit/spin/redis@3.0.0.wit",
                "wit/spin/fermyon-spin@2.0.0.wit",
                "wit/spin-data.wit",
            ],
            world: "wasmfn:spin-data-host/sqlite3",
            imports: {
                // The synchronous functions of the interface do I/O: async on the host.
                "spin:sqlite/sqlite.[static]connection.open": async | trappable,
                "spin:sqlite/sqlite.[method]connection.execute": async | trappable,
                default: trappable,
            },
            with: {
                "spin:sqlite/sqlite.connection": crate::databases::sqlite::Session,
            },
        });
    }

    use bindings::spin::sqlite3_1_0::sqlite::{self, Error, QueryResult, RowResult, Value};

    conversions!();

    /// The `HasData` of the async functions: they reach the instance's [`State`].
    pub(crate) struct Sqlite;

    impl HasData for Sqlite {
        type Data<'a> = &'a mut State;
    }

    type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

    impl sqlite::HostConnection for &mut State {
        async fn open(&mut self, database: String) -> Result<Resource<Session>> {
            Ok(match self.open_database(&database) {
                Ok(session) => Ok(self.table.push(session)?),
                Err(e) => Err(open_error(e)),
            })
        }

        async fn execute(
            &mut self,
            this: Resource<Session>,
            statement: String,
            parameters: Vec<Value>,
        ) -> Result<QueryResult> {
            let parameters = parameters.into_iter().map(value_in).collect();
            Ok(super::execute(self, &this, statement, parameters)
                .await?
                .map(|r| QueryResult {
                    columns: r.columns,
                    rows: r.rows.into_iter().map(row_out).collect(),
                })
                .map_err(error_out))
        }

        fn last_insert_rowid(&mut self, this: Resource<Session>) -> wasmtime::Result<i64> {
            Ok(self.table.get(&this)?.last_insert_rowid())
        }

        fn changes(&mut self, this: Resource<Session>) -> wasmtime::Result<u64> {
            Ok(self.table.get(&this)?.changes())
        }

        fn drop(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl sqlite::Host for &mut State {}

    impl<T> sqlite::HostConnectionWithStore<T> for Sqlite {
        async fn open_async(
            accessor: &Accessor<T, Self>,
            database: String,
        ) -> Result<Resource<Session>> {
            accessor.with(|mut view| {
                let state = view.get();
                Ok(match state.open_database(&database) {
                    Ok(session) => Ok(state.table.push(session)?),
                    Err(e) => Err(open_error(e)),
                })
            })
        }

        async fn execute_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Session>,
            statement: String,
            parameters: Vec<Value>,
        ) -> Result<(
            Vec<String>,
            StreamReader<RowResult>,
            FutureReader<std::result::Result<(), Error>>,
        )> {
            let parameters: Vec<SqlValue> = parameters.into_iter().map(value_in).collect();
            let (call, deadline) = accessor.with(|mut view| {
                let state = view.get();
                let call = state.table.get_mut(&this)?.call();
                wasmtime::Result::<_>::Ok((call, state.call_deadline()))
            })?;
            let done = call.execute(statement, parameters, deadline).await;
            accessor.with(|mut view| {
                let result = view.get().table.get_mut(&this)?.finish(done);
                let result = match result {
                    Ok(result) => result,
                    Err(e) => return Ok(Err(error_out(e))),
                };
                // Every row was read before the reply: a failure part-way is the call's
                // error, never a stream cut short.
                let rows: Vec<RowResult> = result.rows.into_iter().map(row_out).collect();
                let stream = StreamReader::new(&mut view, rows)?;
                let done = FutureReader::new(
                    &mut view,
                    std::future::ready(Ok::<_, wasmtime::Error>(Ok(()))),
                )?;
                Ok(Ok((result.columns, stream, done)))
            })
        }

        async fn last_insert_rowid_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Session>,
        ) -> wasmtime::Result<i64> {
            accessor.with(|mut view| Ok(view.get().table.get(&this)?.last_insert_rowid()))
        }

        async fn changes_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Session>,
        ) -> wasmtime::Result<u64> {
            accessor.with(|mut view| Ok(view.get().table.get(&this)?.changes()))
        }
    }
}

/// `spin:sqlite@3.0.0` and `fermyon:spin/sqlite@2.0.0`, as spin-sdk 5.2 imports them.
pub(crate) mod v2 {
    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/sqlite@3.1.0.wit",
                "wit/spin/sqlite@3.0.0.wit",
                "wit/spin/redis@3.0.0.wit",
                "wit/spin/fermyon-spin@2.0.0.wit",
                "wit/spin-data.wit",
            ],
            world: "wasmfn:spin-data-host/sqlite2",
            imports: { default: async | trappable },
            with: {
                "spin:sqlite/sqlite.connection": crate::databases::sqlite::Session,
                "fermyon:spin/sqlite.connection": crate::databases::sqlite::Session,
            },
        });
    }

    /// One version's host functions; the two differ only in their types' module and in
    /// what 3.0.0 adds (last-insert-rowid, changes).
    macro_rules! connection {
        ($name:ident, $($module:ident)::+, { $($extra:tt)* }) => {
            mod $name {
                use wasmtime::component::Resource;

                use super::super::super::state::State;
                use super::super::{OpenError, Session, SqlError, SqlValue};
                use super::bindings::$($module)::+::{self as sqlite, Error, QueryResult, RowResult, Value};

                conversions!();

                type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

                impl sqlite::HostConnection for State {
                    async fn open(&mut self, database: String) -> Result<Resource<Session>> {
                        Ok(match self.open_database(&database) {
                            Ok(session) => Ok(self.table.push(session)?),
                            Err(e) => Err(open_error(e)),
                        })
                    }

                    async fn execute(
                        &mut self,
                        this: Resource<Session>,
                        statement: String,
                        parameters: Vec<Value>,
                    ) -> Result<QueryResult> {
                        let parameters = parameters.into_iter().map(value_in).collect();
                        Ok(super::super::execute(self, &this, statement, parameters)
                            .await?
                            .map(|r| QueryResult {
                                columns: r.columns,
                                rows: r.rows.into_iter().map(row_out).collect(),
                            })
                            .map_err(error_out))
                    }

                    $($extra)*

                    async fn drop(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
                        self.table.delete(this)?;
                        Ok(())
                    }
                }

                impl sqlite::Host for State {}
            }
        };
    }

    connection!(fermyon2, fermyon::spin::sqlite, {});
    connection!(spin3, spin::sqlite3_0_0::sqlite, {
        async fn last_insert_rowid(&mut self, this: Resource<Session>) -> wasmtime::Result<i64> {
            Ok(self.table.get(&this)?.last_insert_rowid())
        }

        async fn changes(&mut self, this: Resource<Session>) -> wasmtime::Result<u64> {
            Ok(self.table.get(&this)?.changes())
        }
    });
}
