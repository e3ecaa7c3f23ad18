//! Spin's PostgreSQL interface over the host's pools (crate::databases::postgres), in each
//! version a guest may import: `spin:postgres@4.2.0` (spin-sdk 7, WASI 0.3: its async
//! functions stream rows), and `@4.0.0` and `@3.0.0` (spin-sdk 5.2, WASI 0.2). A guest
//! opens a connection by address, which its `allowed_outbound_hosts` must allow, and holds
//! one of the function's connections (8 at most) until it lets go of it. Every call is
//! bounded by the invocation's deadline; a database error is the interface's structured
//! error, with its SQLSTATE, never a trap.

use std::sync::Arc;
use std::time::Instant;

use super::outgoing::OutboundGrant;
use super::state::State;
use crate::databases::postgres::{
    self as pg, Builder, Connection, PgError, PgType, PgValue, QueryError as PgQueryError,
};

impl State {
    /// What a connection to `address` goes through, if the function may reach it, and
    /// when opening it must be done.
    fn postgres_grant(&self, address: &str) -> Result<(Arc<OutboundGrant>, Instant), PgError> {
        let uri = pg::authority(address)?;
        match self.hooks.grant.as_ref().filter(|g| g.hosts.allows(&uri)) {
            Some(grant) => Ok((grant.clone(), self.call_deadline())),
            None => {
                tracing::warn!(function = %self.hooks.function, address = %uri, "PostgreSQL connection denied: not in allowed_outbound_hosts");
                Err(PgError::ConnectionFailed(format!(
                    "{} is not in this component's allowed_outbound_hosts",
                    uri.to_string().trim_end_matches('/')
                )))
            }
        }
    }

    /// The connection behind a guest's handle, and when its call must be done.
    fn postgres_call(
        &self,
        this: &wasmtime::component::Resource<Connection>,
    ) -> wasmtime::Result<(Connection, Instant)> {
        Ok((self.table.get(this)?.clone(), self.call_deadline()))
    }
}

/// Opens `builder`'s connection through `grant` by `deadline`: a slot of the function's
/// connections first, then one of the pool's.
async fn open(
    grant: Arc<OutboundGrant>,
    builder: Builder,
    deadline: Instant,
) -> Result<Connection, PgError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let slot = grant.postgres_connections.enter(left).await.map_err(|_| {
        PgError::ConnectionFailed(
            "every PostgreSQL connection this function may hold is in use until its deadline"
                .to_string(),
        )
    })?;
    let connection = grant
        .postgres
        .open(&builder.address, builder.ca_root.as_deref(), deadline)
        .await?;
    Ok(connection.holding(slot))
}

/// The conversions between a 4.x version's generated types and the host's, expanded inside
/// each version's module (4.0 and 4.2 have the same types).
macro_rules! v4_conversions {
    () => {
        fn kind_in(k: RangeBoundKind) -> pg::BoundKind {
            match k {
                RangeBoundKind::Inclusive => pg::BoundKind::Inclusive,
                RangeBoundKind::Exclusive => pg::BoundKind::Exclusive,
            }
        }

        fn kind_out(k: pg::BoundKind) -> RangeBoundKind {
            match k {
                pg::BoundKind::Inclusive => RangeBoundKind::Inclusive,
                pg::BoundKind::Exclusive => RangeBoundKind::Exclusive,
            }
        }

        fn range_in<T>(
            (lo, hi): (Option<(T, RangeBoundKind)>, Option<(T, RangeBoundKind)>),
        ) -> pg::Range<T> {
            (
                lo.map(|(v, k)| (v, kind_in(k))),
                hi.map(|(v, k)| (v, kind_in(k))),
            )
        }

        fn range_out<T>(
            (lo, hi): pg::Range<T>,
        ) -> (Option<(T, RangeBoundKind)>, Option<(T, RangeBoundKind)>) {
            (
                lo.map(|(v, k)| (v, kind_out(k))),
                hi.map(|(v, k)| (v, kind_out(k))),
            )
        }

        fn parameter_in(p: ParameterValue) -> PgValue {
            match p {
                ParameterValue::Boolean(v) => PgValue::Boolean(v),
                ParameterValue::Int8(v) => PgValue::Int8(v),
                ParameterValue::Int16(v) => PgValue::Int16(v),
                ParameterValue::Int32(v) => PgValue::Int32(v),
                ParameterValue::Int64(v) => PgValue::Int64(v),
                ParameterValue::Floating32(v) => PgValue::Floating32(v),
                ParameterValue::Floating64(v) => PgValue::Floating64(v),
                ParameterValue::Str(v) => PgValue::Str(v),
                ParameterValue::Binary(v) => PgValue::Binary(v),
                ParameterValue::Date(v) => PgValue::Date(v),
                ParameterValue::Time(v) => PgValue::Time(v),
                ParameterValue::Datetime(v) => PgValue::Datetime(v),
                ParameterValue::Timestamp(v) => PgValue::Timestamp(v),
                ParameterValue::Uuid(v) => PgValue::Uuid(v),
                ParameterValue::Jsonb(v) => PgValue::Jsonb(v),
                ParameterValue::Decimal(v) => PgValue::Decimal(v),
                ParameterValue::RangeInt32(r) => PgValue::RangeInt32(range_in(r)),
                ParameterValue::RangeInt64(r) => PgValue::RangeInt64(range_in(r)),
                ParameterValue::RangeDecimal(r) => PgValue::RangeDecimal(range_in(r)),
                ParameterValue::ArrayInt32(v) => PgValue::ArrayInt32(v),
                ParameterValue::ArrayInt64(v) => PgValue::ArrayInt64(v),
                ParameterValue::ArrayDecimal(v) => PgValue::ArrayDecimal(v),
                ParameterValue::ArrayStr(v) => PgValue::ArrayStr(v),
                ParameterValue::Interval(i) => PgValue::Interval(pg::Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
                ParameterValue::DbNull => PgValue::Null,
            }
        }

        fn value_out(v: PgValue) -> DbValue {
            match v {
                PgValue::Boolean(v) => DbValue::Boolean(v),
                PgValue::Int8(v) => DbValue::Int8(v),
                PgValue::Int16(v) => DbValue::Int16(v),
                PgValue::Int32(v) => DbValue::Int32(v),
                PgValue::Int64(v) => DbValue::Int64(v),
                PgValue::Floating32(v) => DbValue::Floating32(v),
                PgValue::Floating64(v) => DbValue::Floating64(v),
                PgValue::Str(v) => DbValue::Str(v),
                PgValue::Binary(v) => DbValue::Binary(v),
                PgValue::Date(v) => DbValue::Date(v),
                PgValue::Time(v) => DbValue::Time(v),
                PgValue::Datetime(v) => DbValue::Datetime(v),
                PgValue::Timestamp(v) => DbValue::Timestamp(v),
                PgValue::Uuid(v) => DbValue::Uuid(v),
                PgValue::Jsonb(v) => DbValue::Jsonb(v),
                PgValue::Decimal(v) => DbValue::Decimal(v),
                PgValue::RangeInt32(r) => DbValue::RangeInt32(range_out(r)),
                PgValue::RangeInt64(r) => DbValue::RangeInt64(range_out(r)),
                PgValue::RangeDecimal(r) => DbValue::RangeDecimal(range_out(r)),
                PgValue::ArrayInt32(v) => DbValue::ArrayInt32(v),
                PgValue::ArrayInt64(v) => DbValue::ArrayInt64(v),
                PgValue::ArrayDecimal(v) => DbValue::ArrayDecimal(v),
                PgValue::ArrayStr(v) => DbValue::ArrayStr(v),
                PgValue::Interval(i) => DbValue::Interval(Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
                PgValue::Null => DbValue::DbNull,
                PgValue::Unsupported(raw) => DbValue::Unsupported(raw),
            }
        }

        fn column_out(c: pg::Column) -> Column {
            Column {
                name: c.name,
                data_type: match c.data_type {
                    PgType::Boolean => DbDataType::Boolean,
                    PgType::Int8 => DbDataType::Int8,
                    PgType::Int16 => DbDataType::Int16,
                    PgType::Int32 => DbDataType::Int32,
                    PgType::Int64 => DbDataType::Int64,
                    PgType::Floating32 => DbDataType::Floating32,
                    PgType::Floating64 => DbDataType::Floating64,
                    PgType::Str => DbDataType::Str,
                    PgType::Binary => DbDataType::Binary,
                    PgType::Date => DbDataType::Date,
                    PgType::Time => DbDataType::Time,
                    PgType::Datetime => DbDataType::Datetime,
                    PgType::Timestamp => DbDataType::Timestamp,
                    PgType::Uuid => DbDataType::Uuid,
                    PgType::Jsonb => DbDataType::Jsonb,
                    PgType::Decimal => DbDataType::Decimal,
                    PgType::RangeInt32 => DbDataType::RangeInt32,
                    PgType::RangeInt64 => DbDataType::RangeInt64,
                    PgType::RangeDecimal => DbDataType::RangeDecimal,
                    PgType::ArrayInt32 => DbDataType::ArrayInt32,
                    PgType::ArrayInt64 => DbDataType::ArrayInt64,
                    PgType::ArrayDecimal => DbDataType::ArrayDecimal,
                    PgType::ArrayStr => DbDataType::ArrayStr,
                    PgType::Interval => DbDataType::Interval,
                    PgType::Other(name) => DbDataType::Other(name),
                },
            }
        }

        fn error_out(e: PgError) -> Error {
            match e {
                PgError::ConnectionFailed(m) => Error::ConnectionFailed(m),
                PgError::BadParameter(m) => Error::BadParameter(m),
                PgError::QueryFailed(PgQueryError::Text(m)) => {
                    Error::QueryFailed(QueryError::Text(m))
                }
                PgError::QueryFailed(PgQueryError::Db(d)) => {
                    let d = *d;
                    Error::QueryFailed(QueryError::DbError(DbError {
                        as_text: d.as_text,
                        severity: d.severity,
                        code: d.code,
                        message: d.message,
                        detail: d.detail,
                        extras: d.extras,
                    }))
                }
                PgError::ValueConversionFailed(m) => Error::ValueConversionFailed(m),
                PgError::Other(m) => Error::Other(m),
            }
        }

        fn row_set_out(rows: pg::RowSet) -> RowSet {
            RowSet {
                columns: rows.columns.into_iter().map(column_out).collect(),
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(value_out).collect())
                    .collect(),
            }
        }
    };
}

/// The synchronous functions every version has (`open`, `query`, `execute`), over `State`,
/// expanded inside each version's module.
macro_rules! sync_connection {
    () => {
        async fn open(&mut self, address: String) -> Result<Resource<Connection>> {
            let opened = match self.postgres_grant(&address) {
                Ok((grant, deadline)) => {
                    let builder = crate::databases::postgres::Builder {
                        address,
                        ca_root: None,
                    };
                    crate::engine::spin_postgres::open(grant, builder, deadline).await
                }
                Err(e) => Err(e),
            };
            Ok(match opened {
                Ok(connection) => Ok(self.table.push(connection)?),
                Err(e) => Err(error_out(e)),
            })
        }

        async fn query(
            &mut self,
            this: Resource<Connection>,
            statement: String,
            params: Vec<ParameterValue>,
        ) -> Result<RowSet> {
            let (c, deadline) = self.postgres_call(&this)?;
            let params: Vec<PgValue> = params.into_iter().map(parameter_in).collect();
            Ok(c.query(&statement, &params, deadline)
                .await
                .map(row_set_out)
                .map_err(error_out))
        }

        async fn execute(
            &mut self,
            this: Resource<Connection>,
            statement: String,
            params: Vec<ParameterValue>,
        ) -> Result<u64> {
            let (c, deadline) = self.postgres_call(&this)?;
            let params: Vec<PgValue> = params.into_iter().map(parameter_in).collect();
            Ok(c.execute(&statement, &params, deadline)
                .await
                .map_err(error_out))
        }
    };
}

/// `spin:postgres@4.2.0`, as spin-sdk 7 imports it.
pub(crate) mod v4_2 {
    use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};

    use super::super::state::State;
    use super::{Builder, Connection, PgError, PgQueryError, PgType, PgValue, pg};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/postgres@4.2.0.wit",
                "wit/spin/postgres@4.0.0.wit",
                "wit/spin/postgres@3.0.0.wit",
                "wit/spin-postgres.wit",
            ],
            world: "wasmfn:spin-postgres-host/postgres3",
            imports: {
                // The synchronous functions of the interface do I/O: async on the host.
                "spin:postgres/postgres.[static]connection.open": async | trappable,
                "spin:postgres/postgres.[method]connection.query": async | trappable,
                "spin:postgres/postgres.[method]connection.execute": async | trappable,
                "spin:postgres/postgres.[method]connection-builder.build": async | trappable,
                default: trappable,
            },
            with: {
                "spin:postgres/postgres.connection": crate::databases::postgres::Connection,
                "spin:postgres/postgres.connection-builder": crate::databases::postgres::Builder,
            },
        });
    }

    use bindings::spin::postgres4_2_0::postgres::{
        self, Column, DbDataType, DbError, DbValue, Error, Interval, ParameterValue, QueryError,
        RangeBoundKind, RowSet,
    };

    v4_conversions!();

    /// The `HasData` of the async functions: they reach the instance's [`State`].
    pub(crate) struct Postgres;

    impl HasData for Postgres {
        type Data<'a> = &'a mut State;
    }

    type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

    impl postgres::HostConnection for &mut State {
        sync_connection!();

        fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl postgres::HostConnectionBuilder for &mut State {
        fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
            Ok(self.table.push(Builder {
                address,
                ca_root: None,
            })?)
        }

        fn set_ca_root(&mut self, this: Resource<Builder>, certificate: String) -> Result<()> {
            self.table.get_mut(&this)?.ca_root = Some(certificate);
            Ok(Ok(()))
        }

        async fn build(&mut self, this: Resource<Builder>) -> Result<Resource<Connection>> {
            let builder = self.table.get(&this)?.clone();
            let opened = match self.postgres_grant(&builder.address) {
                Ok((grant, deadline)) => super::open(grant, builder, deadline).await,
                Err(e) => Err(e),
            };
            Ok(match opened {
                Ok(connection) => Ok(self.table.push(connection)?),
                Err(e) => Err(error_out(e)),
            })
        }

        fn drop(&mut self, this: Resource<Builder>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl postgres::Host for &mut State {}

    /// Opens `builder` for a guest calling through `accessor`, and hands it the handle.
    async fn open_for<T>(
        accessor: &Accessor<T, Postgres>,
        builder: Builder,
    ) -> Result<Resource<Connection>> {
        let grant = accessor.with(|mut view| view.get().postgres_grant(&builder.address));
        let opened = match grant {
            Ok((grant, deadline)) => super::open(grant, builder, deadline).await,
            Err(e) => Err(e),
        };
        accessor.with(|mut view| {
            Ok(match opened {
                Ok(connection) => Ok(view.get().table.push(connection)?),
                Err(e) => Err(error_out(e)),
            })
        })
    }

    fn call<T>(
        accessor: &Accessor<T, Postgres>,
        this: &Resource<Connection>,
    ) -> wasmtime::Result<(Connection, std::time::Instant)> {
        accessor.with(|mut view| view.get().postgres_call(this))
    }

    impl<T> postgres::HostConnectionBuilderWithStore<T> for Postgres {
        async fn build_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Builder>,
        ) -> Result<Resource<Connection>> {
            let builder = accessor.with(|mut view| view.get().table.get(&this).cloned())?;
            open_for(accessor, builder).await
        }
    }

    impl<T> postgres::HostConnectionWithStore<T> for Postgres {
        async fn open_async(
            accessor: &Accessor<T, Self>,
            address: String,
        ) -> Result<Resource<Connection>> {
            let builder = Builder {
                address,
                ca_root: None,
            };
            open_for(accessor, builder).await
        }

        async fn query_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            statement: String,
            params: Vec<ParameterValue>,
        ) -> Result<(
            Vec<Column>,
            StreamReader<Vec<DbValue>>,
            FutureReader<std::result::Result<(), Error>>,
        )> {
            let (c, deadline) = call(accessor, &this)?;
            let params: Vec<PgValue> = params.into_iter().map(parameter_in).collect();
            let rows = match c.query(&statement, &params, deadline).await {
                Ok(rows) => row_set_out(rows),
                Err(e) => return Ok(Err(error_out(e))),
            };
            // Every row was read before the reply: a failure part-way is the call's error,
            // never a stream cut short.
            accessor.with(|mut view| {
                let stream = StreamReader::new(&mut view, rows.rows)?;
                let done = FutureReader::new(
                    &mut view,
                    std::future::ready(Ok::<_, wasmtime::Error>(Ok(()))),
                )?;
                Ok(Ok((rows.columns, stream, done)))
            })
        }

        async fn execute_async(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            statement: String,
            params: Vec<ParameterValue>,
        ) -> Result<u64> {
            let (c, deadline) = call(accessor, &this)?;
            let params: Vec<PgValue> = params.into_iter().map(parameter_in).collect();
            Ok(c.execute(&statement, &params, deadline)
                .await
                .map_err(error_out))
        }
    }
}

/// `spin:postgres@4.0.0` and `@3.0.0`, as spin-sdk 5.2 imports them.
pub(crate) mod v2 {
    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/postgres@4.2.0.wit",
                "wit/spin/postgres@4.0.0.wit",
                "wit/spin/postgres@3.0.0.wit",
                "wit/spin-postgres.wit",
            ],
            world: "wasmfn:spin-postgres-host/postgres2",
            imports: { default: async | trappable },
            with: {
                "spin:postgres/postgres.connection": crate::databases::postgres::Connection,
            },
        });
    }

    /// `spin:postgres@4.0.0`: the types of 4.2, the synchronous functions only.
    mod v4_0 {
        use wasmtime::component::Resource;

        use super::super::super::state::State;
        use super::super::{Connection, PgError, PgQueryError, PgType, PgValue, pg};
        use super::bindings::spin::postgres4_0_0::postgres::{
            self, Column, DbDataType, DbError, DbValue, Error, Interval, ParameterValue,
            QueryError, RangeBoundKind, RowSet,
        };

        v4_conversions!();

        type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

        impl postgres::HostConnection for State {
            sync_connection!();

            async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
                self.table.delete(this)?;
                Ok(())
            }
        }

        impl postgres::Host for State {}
    }

    /// `spin:postgres@3.0.0`: fewer types; the others read as `unsupported`.
    mod v3_0 {
        use wasmtime::component::Resource;

        use super::super::super::state::State;
        use super::super::{Connection, PgError, PgQueryError, PgType, PgValue, pg};
        use super::bindings::spin::postgres3_0_0::postgres::{
            self, Column, DbDataType, DbValue, Error, ParameterValue, RowSet,
        };

        type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

        fn parameter_in(p: ParameterValue) -> PgValue {
            match p {
                ParameterValue::Boolean(v) => PgValue::Boolean(v),
                ParameterValue::Int8(v) => PgValue::Int8(v),
                ParameterValue::Int16(v) => PgValue::Int16(v),
                ParameterValue::Int32(v) => PgValue::Int32(v),
                ParameterValue::Int64(v) => PgValue::Int64(v),
                ParameterValue::Floating32(v) => PgValue::Floating32(v),
                ParameterValue::Floating64(v) => PgValue::Floating64(v),
                ParameterValue::Str(v) => PgValue::Str(v),
                ParameterValue::Binary(v) => PgValue::Binary(v),
                ParameterValue::Date(v) => PgValue::Date(v),
                ParameterValue::Time(v) => PgValue::Time(v),
                ParameterValue::Datetime(v) => PgValue::Datetime(v),
                ParameterValue::Timestamp(v) => PgValue::Timestamp(v),
                ParameterValue::DbNull => PgValue::Null,
            }
        }

        fn value_out(v: PgValue) -> DbValue {
            match v {
                PgValue::Boolean(v) => DbValue::Boolean(v),
                PgValue::Int8(v) => DbValue::Int8(v),
                PgValue::Int16(v) => DbValue::Int16(v),
                PgValue::Int32(v) => DbValue::Int32(v),
                PgValue::Int64(v) => DbValue::Int64(v),
                PgValue::Floating32(v) => DbValue::Floating32(v),
                PgValue::Floating64(v) => DbValue::Floating64(v),
                PgValue::Str(v) => DbValue::Str(v),
                PgValue::Binary(v) => DbValue::Binary(v),
                PgValue::Date(v) => DbValue::Date(v),
                PgValue::Time(v) => DbValue::Time(v),
                PgValue::Datetime(v) => DbValue::Datetime(v),
                PgValue::Timestamp(v) => DbValue::Timestamp(v),
                PgValue::Null => DbValue::DbNull,
                _ => DbValue::Unsupported,
            }
        }

        fn column_out(c: pg::Column) -> Column {
            Column {
                name: c.name,
                data_type: match c.data_type {
                    PgType::Boolean => DbDataType::Boolean,
                    PgType::Int8 => DbDataType::Int8,
                    PgType::Int16 => DbDataType::Int16,
                    PgType::Int32 => DbDataType::Int32,
                    PgType::Int64 => DbDataType::Int64,
                    PgType::Floating32 => DbDataType::Floating32,
                    PgType::Floating64 => DbDataType::Floating64,
                    PgType::Str => DbDataType::Str,
                    PgType::Binary => DbDataType::Binary,
                    PgType::Date => DbDataType::Date,
                    PgType::Time => DbDataType::Time,
                    PgType::Datetime => DbDataType::Datetime,
                    PgType::Timestamp => DbDataType::Timestamp,
                    _ => DbDataType::Other,
                },
            }
        }

        fn error_out(e: PgError) -> Error {
            match e {
                PgError::ConnectionFailed(m) => Error::ConnectionFailed(m),
                PgError::BadParameter(m) => Error::BadParameter(m),
                PgError::QueryFailed(PgQueryError::Text(m)) => Error::QueryFailed(m),
                PgError::QueryFailed(PgQueryError::Db(d)) => Error::QueryFailed(d.as_text),
                PgError::ValueConversionFailed(m) => Error::ValueConversionFailed(m),
                PgError::Other(m) => Error::Other(m),
            }
        }

        fn row_set_out(rows: pg::RowSet) -> RowSet {
            RowSet {
                columns: rows.columns.into_iter().map(column_out).collect(),
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(value_out).collect())
                    .collect(),
            }
        }

        impl postgres::HostConnection for State {
            sync_connection!();

            async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
                self.table.delete(this)?;
                Ok(())
            }
        }

        impl postgres::Host for State {}
    }
}
