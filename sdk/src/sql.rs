//! SQL databases: the SQLite databases the function's manifest entry grants
//! (`sqlite_databases = ["default"]`) and PostgreSQL at an address its
//! `allowed_outbound_hosts` allows (`postgres://host:5432`), through Spin's interfaces
//! (`spin:sqlite@3.0.0`, `spin:postgres@4.0.0`), so the component runs on Spin too.
//!
//! ```ignore
//! use wasmfn_sdk::sql::{Database, Value};
//!
//! #[derive(serde::Deserialize)]
//! struct User { id: i64, email: String }
//!
//! let db = Database::postgres(&wasmfn_sdk::variables::get("database_url")?.unwrap())?;
//! db.execute("INSERT INTO users (email) VALUES ($1)", &["ada@example.com".into()])?;
//! let users: Vec<User> = db.query_as("SELECT id, email FROM users", &[])?;
//! db.transaction(|tx| {
//!     tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", &[5.into(), 1.into()])?;
//!     tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", &[5.into(), 2.into()])
//! })?;
//! ```
//!
//! Statements are the database's own SQL (`?` placeholders for SQLite, `$1` for
//! PostgreSQL); parameters are always bound, never spliced into the text. A failure is a
//! [`SqlError`], which converts into [`crate::Error`] for `?`: a connection failure or a
//! timeout is a 503 (a broker redelivers the event), a constraint violation a 422 (it is
//! rejected for good: delivering it again would violate it again), a bad parameter a 400,
//! anything else a 500.

use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::databases::spin::postgres::postgres as pg;
use crate::wit::databases::spin::sqlite::sqlite;

/// A value of a parameter or a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// A boolean (SQLite keeps it as an integer).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text (and, from PostgreSQL, dates, times, UUIDs and numerics as their text).
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// JSON (PostgreSQL's `json` and `jsonb`; text in SQLite).
    Json(serde_json::Value),
}

macro_rules! from {
    ($($t:ty => $v:ident($e:expr)),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(x: $t) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Value::$v(($e)(x))
            }
        })*
    };
}

from! {
    bool => Bool(|b| b),
    i32 => Int(i64::from),
    i64 => Int(|i| i),
    u32 => Int(i64::from),
    f64 => Float(|f| f),
    &str => Text(str::to_string),
    String => Text(|s| s),
    Vec<u8> => Bytes(|b| b),
    serde_json::Value => Json(|j| j),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(x: Option<T>) -> Self {
        x.map_or(Value::Null, Into::into)
    }
}

impl Value {
    fn json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Text(s) => s.clone().into(),
            Value::Bytes(b) => b.clone().into(),
            Value::Json(j) => j.clone(),
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// What a query returned: its columns and rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, a value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Each row as `T`, read from an object of its columns by name.
    pub fn into_typed<T: DeserializeOwned>(self) -> Result<Vec<T>, SqlError> {
        self.rows
            .iter()
            .map(|row| {
                let object: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().map(Value::json))
                    .collect();
                serde_json::from_value(object.into())
                    .map_err(|e| SqlError::Conversion(format!("a row does not fit: {e}")))
            })
            .collect()
    }
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The database could not be reached or opened (or is not granted: see the message).
    Connection(String),
    /// A parameter could not be sent as the type the statement needs.
    Parameter(String),
    /// The database refused the statement; `sqlstate` is PostgreSQL's code, if it gave one.
    Query {
        /// PostgreSQL's SQLSTATE, e.g. `23505` for a unique violation.
        sqlstate: Option<String>,
        /// The database's message.
        message: String,
    },
    /// A value of the result could not be read.
    Conversion(String),
}

impl SqlError {
    /// PostgreSQL's SQLSTATE, if the database gave one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SqlError::Query { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// Whether a constraint (unique, foreign key, check, not null) refused the statement.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            // PostgreSQL's class 23 is "integrity constraint violation"; SQLite says so.
            SqlError::Query { sqlstate, message } => {
                sqlstate.as_deref().is_some_and(|s| s.starts_with("23"))
                    || message.contains("constraint failed")
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::Connection(m) => write!(f, "the database is unavailable: {m}"),
            SqlError::Parameter(m) => write!(f, "bad parameter: {m}"),
            SqlError::Query {
                sqlstate: Some(code),
                message,
            } => write!(f, "{message} (SQLSTATE {code})"),
            SqlError::Query { message, .. } => write!(f, "{message}"),
            SqlError::Conversion(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        let message = e.to_string();
        match e {
            SqlError::Connection(_) => Error::retry(message),
            SqlError::Parameter(_) => Error::bad_request(message),
            _ if e.is_constraint_violation() => Error::reject(message),
            // A deadline or a lost connection mid-query: another try may pass.
            SqlError::Query { sqlstate: None, .. }
                if message.contains("deadline") || message.contains("closed") =>
            {
                Error::retry(message)
            }
            _ => Error::internal(message),
        }
    }
}

enum Backend {
    Sqlite(sqlite::Connection),
    Postgres(pg::Connection),
}

/// An open database connection.
pub struct Database(Backend);

fn sqlite_error(e: sqlite::Error) -> SqlError {
    match e {
        sqlite::Error::NoSuchDatabase => SqlError::Connection(
            "no SQLite database has this label in the host's manifest".to_string(),
        ),
        sqlite::Error::AccessDenied => SqlError::Connection(
            "this function may not open the database; add it to its sqlite_databases".to_string(),
        ),
        sqlite::Error::InvalidConnection => {
            SqlError::Connection("the connection is not valid".to_string())
        }
        sqlite::Error::DatabaseFull => SqlError::Query {
            sqlstate: None,
            message: "the database is full".to_string(),
        },
        sqlite::Error::Io(message) => {
            if message.contains("deadline") {
                SqlError::Connection(message)
            } else {
                SqlError::Query {
                    sqlstate: None,
                    message,
                }
            }
        }
    }
}

fn pg_error(e: pg::Error) -> SqlError {
    match e {
        pg::Error::ConnectionFailed(m) => SqlError::Connection(m),
        pg::Error::BadParameter(m) => SqlError::Parameter(m),
        pg::Error::QueryFailed(pg::QueryError::DbError(d)) => SqlError::Query {
            sqlstate: Some(d.code),
            message: d.message,
        },
        pg::Error::QueryFailed(pg::QueryError::Text(m)) => SqlError::Query {
            sqlstate: None,
            message: m,
        },
        pg::Error::ValueConversionFailed(m) => SqlError::Conversion(m),
        pg::Error::Other(m) => SqlError::Query {
            sqlstate: None,
            message: m,
        },
    }
}

fn sqlite_param(v: &Value) -> sqlite::Value {
    match v {
        Value::Null => sqlite::Value::Null,
        Value::Bool(b) => sqlite::Value::Integer(i64::from(*b)),
        Value::Int(i) => sqlite::Value::Integer(*i),
        Value::Float(f) => sqlite::Value::Real(*f),
        Value::Text(s) => sqlite::Value::Text(s.clone()),
        Value::Bytes(b) => sqlite::Value::Blob(b.clone()),
        Value::Json(j) => sqlite::Value::Text(j.to_string()),
    }
}

fn sqlite_value(v: sqlite::Value) -> Value {
    match v {
        sqlite::Value::Null => Value::Null,
        sqlite::Value::Integer(i) => Value::Int(i),
        sqlite::Value::Real(f) => Value::Float(f),
        sqlite::Value::Text(s) => Value::Text(s),
        sqlite::Value::Blob(b) => Value::Bytes(b),
    }
}

fn pg_param(v: &Value) -> pg::ParameterValue {
    match v {
        Value::Null => pg::ParameterValue::DbNull,
        Value::Bool(b) => pg::ParameterValue::Boolean(*b),
        // The host sends an integer as whatever integer type the statement needs.
        Value::Int(i) => pg::ParameterValue::Int64(*i),
        Value::Float(f) => pg::ParameterValue::Floating64(*f),
        Value::Text(s) => pg::ParameterValue::Str(s.clone()),
        Value::Bytes(b) => pg::ParameterValue::Binary(b.clone()),
        Value::Json(j) => pg::ParameterValue::Jsonb(j.to_string().into_bytes()),
    }
}

fn pg_value(v: pg::DbValue) -> Value {
    use pg::DbValue as D;
    let two = |n: u8| format!("{n:02}");
    match v {
        D::DbNull => Value::Null,
        D::Boolean(b) => Value::Bool(b),
        D::Int8(i) => Value::Int(i.into()),
        D::Int16(i) => Value::Int(i.into()),
        D::Int32(i) => Value::Int(i.into()),
        D::Int64(i) => Value::Int(i),
        D::Floating32(f) => Value::Float(f.into()),
        D::Floating64(f) => Value::Float(f),
        D::Str(s) | D::Uuid(s) | D::Decimal(s) => Value::Text(s),
        D::Binary(b) | D::Unsupported(b) => Value::Bytes(b),
        D::Jsonb(j) => serde_json::from_slice(&j).map_or(Value::Bytes(j), Value::Json),
        D::Date((y, m, d)) => Value::Text(format!("{y:04}-{}-{}", two(m), two(d))),
        D::Time((h, m, s, ns)) => Value::Text(format!("{}:{}:{}.{ns:09}", two(h), two(m), two(s))),
        D::Datetime((y, mo, d, h, mi, s, ns)) => Value::Text(format!(
            "{y:04}-{}-{}T{}:{}:{}.{ns:09}Z",
            two(mo),
            two(d),
            two(h),
            two(mi),
            two(s)
        )),
        D::Timestamp(t) => Value::Int(t),
        D::ArrayInt32(a) => Value::Json(a.into()),
        D::ArrayInt64(a) => Value::Json(a.into()),
        D::ArrayDecimal(a) | D::ArrayStr(a) => Value::Json(a.into()),
        other => Value::Text(format!("{other:?}")),
    }
}

impl Database {
    /// Opens the SQLite database labelled `label` (`"default"`, or one the manifest
    /// declares), which the function must be granted.
    pub fn sqlite(label: &str) -> Result<Self, SqlError> {
        sqlite::Connection::open(label)
            .map(|c| Database(Backend::Sqlite(c)))
            .map_err(sqlite_error)
    }

    /// Connects to PostgreSQL at `address` (`postgres://user:password@host:port/db`), which
    /// the function's `allowed_outbound_hosts` must allow. The connection is the function's
    /// until this value is dropped.
    pub fn postgres(address: &str) -> Result<Self, SqlError> {
        pg::Connection::open(address)
            .map(|c| Database(Backend::Postgres(c)))
            .map_err(pg_error)
    }

    /// PostgreSQL at the address in the variable `variable` where the manifest sets it (on
    /// Knative, from a Secret), else the SQLite database `label`: one guest that runs with
    /// nothing installed on a laptop and on a shared database in the cluster.
    pub fn postgres_or_sqlite(variable: &str, label: &str) -> Result<Self, SqlError> {
        match crate::variables::get(variable).filter(|v| !v.is_empty()) {
            Some(address) => Self::postgres(&address),
            None => Self::sqlite(label),
        }
    }

    /// Whether this is PostgreSQL (for the statements whose SQL differs, such as DDL).
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Backend::Postgres(_))
    }

    /// Runs a statement that returns no rows: how many rows it changed.
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, SqlError> {
        match &self.0 {
            Backend::Sqlite(c) => {
                let params: Vec<_> = params.iter().map(sqlite_param).collect();
                c.execute(statement, &params).map_err(sqlite_error)?;
                Ok(c.changes())
            }
            Backend::Postgres(c) => {
                let params: Vec<_> = params.iter().map(pg_param).collect();
                c.execute(statement, &params).map_err(pg_error)
            }
        }
    }

    /// Runs a query: its rows.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        match &self.0 {
            Backend::Sqlite(c) => {
                let params: Vec<_> = params.iter().map(sqlite_param).collect();
                let result = c.execute(statement, &params).map_err(sqlite_error)?;
                Ok(Rows {
                    columns: result.columns,
                    rows: result
                        .rows
                        .into_iter()
                        .map(|r| r.values.into_iter().map(sqlite_value).collect())
                        .collect(),
                })
            }
            Backend::Postgres(c) => {
                let params: Vec<_> = params.iter().map(pg_param).collect();
                let result = c.query(statement, &params).map_err(pg_error)?;
                Ok(Rows {
                    columns: result.columns.into_iter().map(|c| c.name).collect(),
                    rows: result
                        .rows
                        .into_iter()
                        .map(|r| r.into_iter().map(pg_value).collect())
                        .collect(),
                })
            }
        }
    }

    /// Runs a query, each row read as `T` from its columns by name (`#[derive(Deserialize)]`).
    pub fn query_as<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: &[Value],
    ) -> Result<Vec<T>, SqlError> {
        self.query(statement, params)?.into_typed()
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled back if it returns
    /// an error (which is returned).
    pub fn transaction<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("BEGIN", &[])?;
        match f(self) {
            Ok(value) => {
                self.execute("COMMIT", &[])?;
                Ok(value)
            }
            Err(e) => {
                // The error that ended it is the one to report.
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}
