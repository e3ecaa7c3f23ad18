//! PostgreSQL for guests (`spin:postgres`): a guest opens a connection by address, which its
//! `allowed_outbound_hosts` must allow (`postgres://host:port`), and holds one connection of
//! the host's pool for that address until it lets go of it (so a transaction spans its
//! calls; a connection given back is rolled back before anyone else gets it). TLS goes
//! through the same rustls roots (and `--ca-file`) as outbound HTTPS. Every call is bounded
//! by the invocation's deadline: past it the query is cancelled on the server, not merely
//! abandoned. A database error reaches the guest as the interface's structured error, with
//! its SQLSTATE.
//!
//! Values follow the richest version of the interface (4.2); older versions convert from it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use rust_decimal::Decimal;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Connections the host keeps to one address, shared by every function.
const POOL_SIZE: usize = 16;

/// Distinct addresses the host keeps pools for (a wildcard in `allowed_outbound_hosts` must
/// not let a guest make the host hold pools without end).
const MAX_ADDRESSES: usize = 64;

/// The most one result may hold: rows past it are not read, and the query fails saying so.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// How long connecting may take when the deadline leaves more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a range bound includes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    /// `[` or `]`.
    Inclusive,
    /// `(` or `)`.
    Exclusive,
}

/// A range's lower and upper bound; `None` is unbounded.
pub type Range<T> = (Option<(T, BoundKind)>, Option<(T, BoundKind)>);

/// An `interval`: months, days and microseconds, as PostgreSQL keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Microseconds.
    pub micros: i64,
    /// Days.
    pub days: i32,
    /// Months.
    pub months: i32,
}

/// A value of a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum PgValue {
    /// `boolean`.
    Boolean(bool),
    /// `"char"`.
    Int8(i8),
    /// `smallint`.
    Int16(i16),
    /// `integer`.
    Int32(i32),
    /// `bigint`.
    Int64(i64),
    /// `real`.
    Floating32(f32),
    /// `double precision`.
    Floating64(f64),
    /// `text`, `varchar`, `char(n)`, `name`.
    Str(String),
    /// `bytea`.
    Binary(Vec<u8>),
    /// `date`: year, month, day.
    Date((i32, u8, u8)),
    /// `time`: hour, minute, second, nanosecond.
    Time((u8, u8, u8, u32)),
    /// `timestamp` (and `timestamptz`, in UTC): year, month, day, hour, minute, second,
    /// nanosecond.
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    /// Seconds since the Unix epoch (a parameter for `timestamptz` or `timestamp`).
    Timestamp(i64),
    /// `uuid`, as text.
    Uuid(String),
    /// `json` or `jsonb`: the JSON text.
    Jsonb(Vec<u8>),
    /// `numeric`, in base 10.
    Decimal(String),
    /// `int4range`.
    RangeInt32(Range<i32>),
    /// `int8range`.
    RangeInt64(Range<i64>),
    /// `numrange`.
    RangeDecimal(Range<String>),
    /// `integer[]`.
    ArrayInt32(Vec<Option<i32>>),
    /// `bigint[]`.
    ArrayInt64(Vec<Option<i64>>),
    /// `numeric[]`.
    ArrayDecimal(Vec<Option<String>>),
    /// `text[]` and `varchar[]`.
    ArrayStr(Vec<Option<String>>),
    /// `interval`.
    Interval(Interval),
    /// NULL.
    Null,
    /// Any other type: its value in PostgreSQL's binary format.
    Unsupported(Vec<u8>),
}

/// A column's type, as the interface names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// `boolean`.
    Boolean,
    /// `"char"`.
    Int8,
    /// `smallint`.
    Int16,
    /// `integer`.
    Int32,
    /// `bigint`.
    Int64,
    /// `real`.
    Floating32,
    /// `double precision`.
    Floating64,
    /// Text types.
    Str,
    /// `bytea`.
    Binary,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `timestamp`.
    Datetime,
    /// `timestamptz`.
    Timestamp,
    /// `uuid`.
    Uuid,
    /// `json`, `jsonb`.
    Jsonb,
    /// `numeric`.
    Decimal,
    /// `int4range`.
    RangeInt32,
    /// `int8range`.
    RangeInt64,
    /// `numrange`.
    RangeDecimal,
    /// `integer[]`.
    ArrayInt32,
    /// `bigint[]`.
    ArrayInt64,
    /// `numeric[]`.
    ArrayDecimal,
    /// `text[]`, `varchar[]`.
    ArrayStr,
    /// `interval`.
    Interval,
    /// Anything else, by its PostgreSQL name.
    Other(String),
}

/// One column of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: PgType,
}

/// What a query returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    /// Its columns.
    pub columns: Vec<Column>,
    /// Its rows, a value per column.
    pub rows: Vec<Vec<PgValue>>,
}

/// An error PostgreSQL reported, with its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// The whole error as text.
    pub as_text: String,
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE, e.g. `23505` for a unique violation.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The detail, if any.
    pub detail: Option<String>,
    /// Everything else PostgreSQL said: hint, constraint, table, column, ...
    pub extras: Vec<(String, String)>,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Without a structured error from PostgreSQL (the connection broke, the deadline).
    Text(String),
    /// PostgreSQL's error (boxed: it is large, and errors are rare).
    Db(Box<DbError>),
}

/// Why a call failed, in the interface's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    /// Connecting failed, or the address is not one the function may reach.
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    /// A parameter cannot be sent as the type the statement needs.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// The query failed.
    #[error("query failed: {}", match .0 { QueryError::Text(t) => t, QueryError::Db(d) => &d.as_text })]
    QueryFailed(QueryError),
    /// A value of the result cannot be given to the guest.
    #[error("value conversion failed: {0}")]
    ValueConversionFailed(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl PgError {
    fn from_query(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let mut extras = Vec::new();
            let mut extra = |name: &str, value: Option<&str>| {
                if let Some(v) = value {
                    extras.push((name.to_string(), v.to_string()));
                }
            };
            extra("hint", db.hint());
            extra("where", db.where_());
            extra("schema", db.schema());
            extra("table", db.table());
            extra("column", db.column());
            extra("datatype", db.datatype());
            extra("constraint", db.constraint());
            return PgError::QueryFailed(QueryError::Db(Box::new(DbError {
                as_text: db.to_string(),
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                extras,
            })));
        }
        // Our own parameter encoding's errors come back wrapped by the driver.
        if let Some(source) = e.source()
            && source.downcast_ref::<ParameterError>().is_some()
        {
            return PgError::BadParameter(source.to_string());
        }
        if e.is_closed() {
            return PgError::ConnectionFailed(crate::logging::error_chain(&e));
        }
        PgError::QueryFailed(QueryError::Text(crate::logging::error_chain(&e)))
    }
}

fn late() -> PgError {
    PgError::QueryFailed(QueryError::Text(
        "cancelled: the function's deadline passed".to_string(),
    ))
}

/// What `connection-builder` gathers before it connects: the address, and a CA root to
/// trust beside the web PKI roots.
#[derive(Debug, Clone)]
pub struct Builder {
    /// The address.
    pub address: String,
    /// A CA certificate (PEM), from `set-ca-root`.
    pub ca_root: Option<String>,
}

/// The host's pools, by address (and CA root, where a guest's builder names one).
#[derive(Clone)]
pub struct Pools {
    by_address: Arc<Mutex<HashMap<String, Pool>>>,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses carry passwords.
        f.debug_struct("Pools").finish_non_exhaustive()
    }
}

/// The `scheme://host:port` of a PostgreSQL address, which `allowed_outbound_hosts` is
/// checked against: the address itself carries a user, a password and a database.
pub fn authority(address: &str) -> Result<http::Uri, PgError> {
    let invalid = || {
        PgError::ConnectionFailed(
            "the address is not a postgres://user:password@host:port/database URL".to_string(),
        )
    };
    let url = url::Url::parse(address).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(invalid)?;
    let port = url.port().unwrap_or(5432);
    format!("postgres://{host}:{port}")
        .parse()
        .map_err(|_| invalid())
}

impl Pools {
    /// Pools whose TLS trusts what `tls` trusts.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            by_address: Arc::default(),
            tls: tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone()),
        }
    }

    fn pool(&self, address: &str, ca_root: Option<&str>) -> Result<Pool, PgError> {
        let key = match ca_root {
            Some(pem) => format!("{address}\n{pem}"),
            None => address.to_string(),
        };
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = by_address.get(&key) {
            return Ok(pool.clone());
        }
        if by_address.len() >= MAX_ADDRESSES {
            return Err(PgError::ConnectionFailed(format!(
                "this host keeps pools for {MAX_ADDRESSES} addresses already"
            )));
        }
        let config = tokio_postgres::Config::from_str(address)
            .map_err(|e| PgError::ConnectionFailed(format!("the address is not valid: {e}")))?;
        let tls = match ca_root {
            Some(pem) => trusting(pem)?,
            None => self.tls.clone(),
        };
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // A connection a guest gave back may be inside its transaction: rolled
                // back before anyone else gets it (a warning, no error, when there is none).
                recycling_method: RecyclingMethod::Custom("ROLLBACK".to_string()),
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Other(e.to_string()))?;
        by_address.insert(key, pool.clone());
        Ok(pool)
    }

    /// A connection to `address` (which the caller has checked is allowed), waiting for
    /// the pool at most until `deadline`.
    pub async fn open(
        &self,
        address: &str,
        ca_root: Option<&str>,
        deadline: Instant,
    ) -> Result<Connection, PgError> {
        let pool = self.pool(address, ca_root)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let timeouts = Timeouts {
            wait: Some(left),
            create: Some(left.min(CONNECT_TIMEOUT)),
            recycle: Some(left.min(CONNECT_TIMEOUT)),
        };
        let client = pool.timeout_get(&timeouts).await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => PgError::ConnectionFailed(format!(
                "no connection to the database was free before the function's deadline ({POOL_SIZE} are in use)"
            )),
            deadpool_postgres::PoolError::Backend(e) => PgError::ConnectionFailed(crate::logging::error_chain(&e)),
            e => PgError::ConnectionFailed(e.to_string()),
        })?;
        Ok(Connection {
            client: Arc::new(client),
            tls: self.tls.clone(),
            held: None,
        })
    }
}

/// TLS trusting the web PKI roots and `pem`, for a guest's `set-ca-root`.
fn trusting(pem: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| PgError::ConnectionFailed(format!("the CA root is not usable: {e}"));
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate".to_string()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A guest's connection: one of its pool's, held until the guest lets go of it. Clones
/// share it.
#[derive(Clone)]
pub struct Connection {
    client: Arc<deadpool_postgres::Object>,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    held: Option<Arc<crate::admission::Slot>>,
}

impl Connection {
    /// Keeps `slot` (of the function's connection limit) as long as the connection lives.
    pub fn holding(mut self, slot: crate::admission::Slot) -> Self {
        self.held = Some(Arc::new(slot));
        self
    }

    /// Runs `f` with the client by `deadline`. Past it, or when the caller gives up first
    /// (the invocation's own deadline drops it), the query is cancelled on the server, so
    /// it stops holding the connection and its locks.
    async fn bounded<T>(
        &self,
        deadline: Instant,
        f: impl Future<Output = Result<T, PgError>>,
    ) -> Result<T, PgError> {
        let mut guard = CancelOnDrop(Some((self.client.cancel_token(), self.tls.clone())));
        let deadline = tokio::time::Instant::from_std(deadline);
        let result = tokio::time::timeout_at(deadline, f).await;
        if result.is_ok() {
            guard.0 = None;
        }
        result.unwrap_or_else(|_| Err(late()))
    }

    /// `statement`, prepared once per connection, if `parameters` are as many as it takes.
    async fn prepare(
        &self,
        statement: &str,
        parameters: &[PgValue],
    ) -> Result<tokio_postgres::Statement, PgError> {
        let prepared = self
            .client
            .prepare_cached(statement)
            .await
            .map_err(PgError::from_query)?;
        let expected = prepared.params().len();
        if parameters.len() != expected {
            return Err(PgError::BadParameter(format!(
                "the statement takes {expected} parameters, {} were given",
                parameters.len()
            )));
        }
        Ok(prepared)
    }

    /// Runs `statement` with `parameters`, reading every row.
    pub async fn query(
        &self,
        statement: &str,
        parameters: &[PgValue],
        deadline: Instant,
    ) -> Result<RowSet, PgError> {
        self.bounded(deadline, async {
            let prepared = self.prepare(statement, parameters).await?;
            let columns: Vec<Column> = prepared
                .columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_string(),
                    data_type: pg_type(c.type_()),
                })
                .collect();
            let rows = self
                .client
                .query_raw(&prepared, parameters.iter())
                .await
                .map_err(PgError::from_query)?;
            let mut rows = std::pin::pin!(rows);
            let mut out = Vec::new();
            let mut size = 0usize;
            use futures_util::StreamExt;
            while let Some(row) = rows.next().await {
                let row = row.map_err(PgError::from_query)?;
                let mut values = Vec::with_capacity(columns.len());
                for (i, column) in prepared.columns().iter().enumerate() {
                    let value = read(&row, i, column.type_())?;
                    size += value_size(&value);
                    values.push(value);
                }
                if size > MAX_RESULT_BYTES {
                    return Err(PgError::Other(format!(
                        "the result is over {} MiB: read it in pages (LIMIT, or WHERE on a key)",
                        MAX_RESULT_BYTES >> 20
                    )));
                }
                out.push(values);
            }
            Ok(RowSet { columns, rows: out })
        })
        .await
    }

    /// Runs `statement` with `parameters`: the rows it changed.
    pub async fn execute(
        &self,
        statement: &str,
        parameters: &[PgValue],
        deadline: Instant,
    ) -> Result<u64, PgError> {
        self.bounded(deadline, async {
            let prepared = self.prepare(statement, parameters).await?;
            self.client
                .execute_raw(&prepared, parameters.iter())
                .await
                .map_err(PgError::from_query)
        })
        .await
    }
}

/// Cancels the connection's running query on the server when dropped armed.
struct CancelOnDrop(
    Option<(
        tokio_postgres::CancelToken,
        tokio_postgres_rustls::MakeRustlsConnect,
    )>,
);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((token, tls)) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    tracing::warn!(error = %e, "a query past its deadline could not be cancelled");
                }
            });
        }
    }
}

fn value_size(value: &PgValue) -> usize {
    match value {
        PgValue::Str(s) | PgValue::Decimal(s) | PgValue::Uuid(s) => s.len(),
        PgValue::Binary(b) | PgValue::Jsonb(b) | PgValue::Unsupported(b) => b.len(),
        PgValue::ArrayStr(a) | PgValue::ArrayDecimal(a) => {
            a.iter().map(|s| s.as_ref().map_or(1, String::len)).sum()
        }
        PgValue::ArrayInt32(a) => a.len() * 4,
        PgValue::ArrayInt64(a) => a.len() * 8,
        _ => 8,
    }
}

fn pg_type(ty: &Type) -> PgType {
    match *ty {
        Type::BOOL => PgType::Boolean,
        Type::CHAR => PgType::Int8,
        Type::INT2 => PgType::Int16,
        Type::INT4 => PgType::Int32,
        Type::INT8 => PgType::Int64,
        Type::FLOAT4 => PgType::Floating32,
        Type::FLOAT8 => PgType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => PgType::Str,
        Type::BYTEA => PgType::Binary,
        Type::DATE => PgType::Date,
        Type::TIME => PgType::Time,
        Type::TIMESTAMP => PgType::Datetime,
        Type::TIMESTAMPTZ => PgType::Timestamp,
        Type::UUID => PgType::Uuid,
        Type::JSON | Type::JSONB => PgType::Jsonb,
        Type::NUMERIC => PgType::Decimal,
        Type::INT4_RANGE => PgType::RangeInt32,
        Type::INT8_RANGE => PgType::RangeInt64,
        Type::NUM_RANGE => PgType::RangeDecimal,
        Type::INT4_ARRAY => PgType::ArrayInt32,
        Type::INT8_ARRAY => PgType::ArrayInt64,
        Type::NUMERIC_ARRAY => PgType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => PgType::ArrayStr,
        Type::INTERVAL => PgType::Interval,
        _ => PgType::Other(ty.name().to_string()),
    }
}

/// Column `i` of `row`, of type `ty`.
fn read(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Result<PgValue, PgError> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
    ) -> Result<Option<T>, PgError> {
        row.try_get::<_, Option<T>>(i)
            .map_err(|e| PgError::ValueConversionFailed(format!("column {i}: {e}")))
    }
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> PgValue) -> PgValue {
        v.map_or(PgValue::Null, f)
    }
    Ok(match *ty {
        Type::BOOL => or_null(get(row, i)?, PgValue::Boolean),
        Type::CHAR => or_null(get(row, i)?, PgValue::Int8),
        Type::INT2 => or_null(get(row, i)?, PgValue::Int16),
        Type::INT4 => or_null(get(row, i)?, PgValue::Int32),
        Type::INT8 => or_null(get(row, i)?, PgValue::Int64),
        Type::FLOAT4 => or_null(get(row, i)?, PgValue::Floating32),
        Type::FLOAT8 => or_null(get(row, i)?, PgValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            or_null(get(row, i)?, PgValue::Str)
        }
        Type::BYTEA => or_null(get(row, i)?, PgValue::Binary),
        Type::DATE => or_null(get::<NaiveDate>(row, i)?, |d| {
            PgValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }),
        Type::TIME => or_null(get::<NaiveTime>(row, i)?, |t| PgValue::Time(time_parts(t))),
        Type::TIMESTAMP => or_null(get::<NaiveDateTime>(row, i)?, |dt| {
            PgValue::Datetime(datetime_parts(dt))
        }),
        Type::TIMESTAMPTZ => or_null(get::<chrono::DateTime<chrono::Utc>>(row, i)?, |dt| {
            PgValue::Datetime(datetime_parts(dt.naive_utc()))
        }),
        Type::UUID => or_null(get::<uuid::Uuid>(row, i)?, |u| PgValue::Uuid(u.to_string())),
        Type::JSON | Type::JSONB => or_null(get::<Json>(row, i)?, |j| PgValue::Jsonb(j.0)),
        Type::NUMERIC => or_null(get::<Numeric>(row, i)?, |n| PgValue::Decimal(n.0)),
        Type::INT4_RANGE => or_null(get::<PgRange<i32>>(row, i)?, |r| PgValue::RangeInt32(r.0)),
        Type::INT8_RANGE => or_null(get::<PgRange<i64>>(row, i)?, |r| PgValue::RangeInt64(r.0)),
        Type::NUM_RANGE => or_null(get::<PgRange<Numeric>>(row, i)?, |r| {
            let bound = |b: Option<(Numeric, BoundKind)>| b.map(|(n, k)| (n.0, k));
            PgValue::RangeDecimal((bound(r.0.0), bound(r.0.1)))
        }),
        Type::INT4_ARRAY => or_null(get(row, i)?, PgValue::ArrayInt32),
        Type::INT8_ARRAY => or_null(get(row, i)?, PgValue::ArrayInt64),
        Type::NUMERIC_ARRAY => or_null(get::<Vec<Option<Numeric>>>(row, i)?, |a| {
            PgValue::ArrayDecimal(a.into_iter().map(|n| n.map(|n| n.0)).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => or_null(get(row, i)?, PgValue::ArrayStr),
        Type::INTERVAL => or_null(get::<Interval>(row, i)?, PgValue::Interval),
        _ => or_null(get::<Raw>(row, i)?, |r| PgValue::Unsupported(r.0)),
    })
}

fn time_parts(t: NaiveTime) -> (u8, u8, u8, u32) {
    (
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
}

fn datetime_parts(dt: NaiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    let (h, m, s, ns) = time_parts(dt.time());
    (dt.year(), dt.month() as u8, dt.day() as u8, h, m, s, ns)
}

/// A parameter that cannot be sent as the type the statement needs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ParameterError(String);

type BoxError = Box<dyn StdError + Sync + Send>;

fn refuse(value: &PgValue, ty: &Type) -> BoxError {
    let what = format!("{value:?}");
    let what = what.split('(').next().unwrap_or("a value").to_lowercase();
    Box::new(ParameterError(format!(
        "a {what} parameter cannot be sent as {}",
        ty.name()
    )))
}

fn naive_date((y, m, d): (i32, u8, u8)) -> Result<NaiveDate, BoxError> {
    NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .ok_or_else(|| Box::new(ParameterError(format!("{y}-{m}-{d} is not a date"))) as BoxError)
}

fn naive_time((h, m, s, ns): (u8, u8, u8, u32)) -> Result<NaiveTime, BoxError> {
    NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns).ok_or_else(|| {
        Box::new(ParameterError(format!("{h}:{m}:{s}.{ns} is not a time"))) as BoxError
    })
}

fn decimal(text: &str) -> Result<Decimal, BoxError> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|e| {
            Box::new(ParameterError(format!("{text:?} is not a decimal: {e}"))) as BoxError
        })
}

/// An integer parameter, sent as the integer type the statement needs if it fits.
fn int_to_sql(v: i64, value: &PgValue, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let fits = |e| {
        Box::new(ParameterError(format!(
            "{v} does not fit {}: {e}",
            ty.name()
        ))) as BoxError
    };
    match *ty {
        Type::CHAR => i8::try_from(v).map_err(fits)?.to_sql(ty, out),
        Type::INT2 => i16::try_from(v).map_err(fits)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(v).map_err(fits)?.to_sql(ty, out),
        Type::INT8 => v.to_sql(ty, out),
        Type::NUMERIC => Decimal::from(v).to_sql(ty, out),
        Type::FLOAT8 => (v as f64).to_sql(ty, out),
        _ => Err(refuse(value, ty)),
    }
}

impl ToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            PgValue::Null => Ok(IsNull::Yes),
            PgValue::Boolean(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            PgValue::Int8(v) => int_to_sql((*v).into(), self, ty, out),
            PgValue::Int16(v) => int_to_sql((*v).into(), self, ty, out),
            PgValue::Int32(v) => int_to_sql((*v).into(), self, ty, out),
            PgValue::Int64(v) => int_to_sql(*v, self, ty, out),
            PgValue::Floating32(f) if *ty == Type::FLOAT4 => f.to_sql(ty, out),
            PgValue::Floating32(f) if *ty == Type::FLOAT8 => f64::from(*f).to_sql(ty, out),
            PgValue::Floating64(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            PgValue::Floating64(f) if *ty == Type::FLOAT4 => (*f as f32).to_sql(ty, out),
            PgValue::Str(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(&Type::TEXT, out)
                }
                Type::JSON | Type::JSONB => Json(s.as_bytes().to_vec()).to_sql(ty, out),
                Type::UUID => uuid::Uuid::parse_str(s)
                    .map_err(|e| {
                        Box::new(ParameterError(format!("{s:?} is not a UUID: {e}"))) as BoxError
                    })?
                    .to_sql(ty, out),
                Type::NUMERIC => decimal(s)?.to_sql(ty, out),
                _ => Err(refuse(self, ty)),
            },
            PgValue::Binary(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            PgValue::Date(d) if *ty == Type::DATE => naive_date(*d)?.to_sql(ty, out),
            PgValue::Time(t) if *ty == Type::TIME => naive_time(*t)?.to_sql(ty, out),
            PgValue::Datetime((y, mo, d, h, mi, s, ns)) => {
                let dt = naive_date((*y, *mo, *d))?.and_time(naive_time((*h, *mi, *s, *ns))?);
                match *ty {
                    Type::TIMESTAMP => dt.to_sql(ty, out),
                    Type::TIMESTAMPTZ => dt.and_utc().to_sql(ty, out),
                    _ => Err(refuse(self, ty)),
                }
            }
            PgValue::Timestamp(secs) => {
                let dt = chrono::DateTime::from_timestamp(*secs, 0).ok_or_else(|| {
                    Box::new(ParameterError(format!("{secs} is not a timestamp"))) as BoxError
                })?;
                match *ty {
                    Type::TIMESTAMPTZ => dt.to_sql(ty, out),
                    Type::TIMESTAMP => dt.naive_utc().to_sql(ty, out),
                    _ => Err(refuse(self, ty)),
                }
            }
            PgValue::Uuid(s) if *ty == Type::UUID => uuid::Uuid::parse_str(s)
                .map_err(|e| {
                    Box::new(ParameterError(format!("{s:?} is not a UUID: {e}"))) as BoxError
                })?
                .to_sql(ty, out),
            PgValue::Jsonb(j) if matches!(*ty, Type::JSON | Type::JSONB) => {
                Json(j.clone()).to_sql(ty, out)
            }
            PgValue::Decimal(s) if *ty == Type::NUMERIC => decimal(s)?.to_sql(ty, out),
            PgValue::RangeInt32(r) if *ty == Type::INT4_RANGE => range_to_sql(r, &Type::INT4, out),
            PgValue::RangeInt64(r) if *ty == Type::INT8_RANGE => range_to_sql(r, &Type::INT8, out),
            PgValue::RangeDecimal((lo, hi)) if *ty == Type::NUM_RANGE => {
                let bound = |b: &Option<(String, BoundKind)>| {
                    b.as_ref()
                        .map(|(s, k)| decimal(s).map(|d| (d, *k)))
                        .transpose()
                };
                range_to_sql(&(bound(lo)?, bound(hi)?), &Type::NUMERIC, out)
            }
            PgValue::ArrayInt32(a) if *ty == Type::INT4_ARRAY => a.to_sql(ty, out),
            PgValue::ArrayInt64(a) if *ty == Type::INT8_ARRAY => a.to_sql(ty, out),
            PgValue::ArrayDecimal(a) if *ty == Type::NUMERIC_ARRAY => {
                let decimals = a
                    .iter()
                    .map(|s| s.as_deref().map(decimal).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                decimals.to_sql(ty, out)
            }
            PgValue::ArrayStr(a) if matches!(*ty, Type::TEXT_ARRAY | Type::VARCHAR_ARRAY) => {
                a.to_sql(ty, out)
            }
            PgValue::Interval(i) if *ty == Type::INTERVAL => i.to_sql(ty, out),
            _ => Err(refuse(self, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value checks the type it is sent as, in `to_sql`, and says what is wrong.
        true
    }

    to_sql_checked!();
}

/// JSON or JSONB as its text (JSONB's binary format is a version byte, then the text).
#[derive(Debug)]
struct Json(Vec<u8>);

impl<'a> FromSql<'a> for Json {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unknown JSONB version".into()),
            }
        } else {
            raw
        };
        Ok(Json(text.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

impl ToSql for Json {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // The driver sends it as is: check it is JSON here, so the guest hears why.
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.0).map_err(|e| {
            Box::new(ParameterError(format!("the JSON is not valid: {e}"))) as BoxError
        })?;
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// NUMERIC as base-10 text: through a decimal where it fits one (28 digits), else
/// PostgreSQL's own digits.
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        match Decimal::from_sql(ty, raw) {
            Ok(d) => Ok(Numeric(d.to_string())),
            Err(_) => numeric_text(raw).map(Numeric),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// PostgreSQL's binary NUMERIC (base-10000 digits, a weight, a sign and a scale) as text,
/// for values a decimal cannot hold (NaN, infinities, more than 28 digits).
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a NUMERIC cut short".into())
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits as usize)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut w = weight as i32 + 1;
    while frac.len() < dscale as usize {
        let d = if w >= 0 {
            digits.get(w as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if w < 0 {
            w += 1;
            frac.push_str("0000");
            continue;
        }
        frac.push_str(&format!("{d:04}"));
        w += 1;
    }
    frac.truncate(dscale as usize);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    })
}

/// Any value as PostgreSQL's binary bytes.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let raw: [u8; 16] = raw.try_into().map_err(|_| "an interval is 16 bytes")?;
        Ok(Interval {
            micros: i64::from_be_bytes(raw[0..8].try_into()?),
            days: i32::from_be_bytes(raw[8..12].try_into()?),
            months: i32::from_be_bytes(raw[12..16].try_into()?),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.micros);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

// A range's binary format: a flags byte, then each bound present as a length and its value.
const RANGE_EMPTY: u8 = 0x01;
const RANGE_LB_INC: u8 = 0x02;
const RANGE_UB_INC: u8 = 0x04;
const RANGE_LB_INF: u8 = 0x08;
const RANGE_UB_INF: u8 = 0x10;

struct PgRange<T>(Range<T>);

impl<'a, T: FromSql<'a>> FromSql<'a> for PgRange<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let element = match ty.kind() {
            tokio_postgres::types::Kind::Range(element) => element,
            _ => return Err("not a range".into()),
        };
        let (&flags, mut rest) = raw.split_first().ok_or("an empty range value")?;
        if flags & RANGE_EMPTY != 0 {
            // Empty: both bounds the same, excluded (the interface has no "empty").
            return Ok(PgRange((None, None)));
        }
        let mut bound = |infinite: u8, inclusive: u8| -> Result<Option<(T, BoundKind)>, BoxError> {
            if flags & infinite != 0 {
                return Ok(None);
            }
            let len = rest.get(..4).ok_or("a range cut short")?;
            let len = i32::from_be_bytes(len.try_into()?) as usize;
            let value = rest.get(4..4 + len).ok_or("a range cut short")?;
            rest = &rest[4 + len..];
            let kind = if flags & inclusive != 0 {
                BoundKind::Inclusive
            } else {
                BoundKind::Exclusive
            };
            Ok(Some((T::from_sql(element, value)?, kind)))
        };
        let lower = bound(RANGE_LB_INF, RANGE_LB_INC)?;
        let upper = bound(RANGE_UB_INF, RANGE_UB_INC)?;
        Ok(PgRange((lower, upper)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), tokio_postgres::types::Kind::Range(_))
    }
}

fn range_to_sql<T: ToSql>(
    (lower, upper): &Range<T>,
    element: &Type,
    out: &mut BytesMut,
) -> Result<IsNull, BoxError> {
    let mut flags = 0;
    for (bound, infinite, inclusive) in [
        (lower, RANGE_LB_INF, RANGE_LB_INC),
        (upper, RANGE_UB_INF, RANGE_UB_INC),
    ] {
        match bound {
            None => flags |= infinite,
            Some((_, BoundKind::Inclusive)) => flags |= inclusive,
            Some((_, BoundKind::Exclusive)) => {}
        }
    }
    out.put_u8(flags);
    for (value, _) in [lower, upper].into_iter().flatten() {
        let at = out.len();
        out.put_i32(0);
        if let IsNull::Yes = value.to_sql(element, out)? {
            return Err("a range bound cannot be NULL".into());
        }
        let len = i32::try_from(out.len() - at - 4)?;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(IsNull::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_by_host_and_port_without_their_credentials() {
        let uri = authority("postgres://app:secret@db.example.com/orders").unwrap();
        assert_eq!(uri.to_string(), "postgres://db.example.com:5432/");
        let uri = authority("postgresql://app@db:6432/orders?sslmode=require").unwrap();
        assert_eq!(uri.to_string(), "postgres://db:6432/");
        for bad in ["host=db user=app", "http://db", "postgres://"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numerics_past_a_decimal_read_as_their_digits() {
        // 12345678901234567890123456789.5: digits 1,2345,6789,0123,4567,8901,2345,6789 5000
        let mut raw = Vec::new();
        let digits: [i16; 9] = [1, 2345, 6789, 123, 4567, 8901, 2345, 6789, 5000];
        raw.extend((digits.len() as i16).to_be_bytes());
        raw.extend(7i16.to_be_bytes());
        raw.extend(0u16.to_be_bytes());
        raw.extend(1i16.to_be_bytes());
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        assert_eq!(
            numeric_text(&raw).unwrap(),
            "12345678901234567890123456789.5"
        );
        let mut nan = vec![0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(numeric_text(&nan).unwrap(), "NaN");
        nan.truncate(3);
        assert!(numeric_text(&nan).is_err());
    }
}
