//! SQLite databases for guests (`sqlite_databases = ["default"]`): one file per label in the
//! data directory, or where `[sqlite.<label>] path` says. A statement runs on tokio's
//! blocking pool on a connection of the database's own small pool (WAL, so readers never
//! wait for the writer), bounded by the caller's deadline: past it the statement is
//! interrupted inside SQLite, not merely abandoned, so it stops holding a connection and
//! the write lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

/// How long a write waits for another connection's (or process's) write lock before it
/// fails, unless the caller's deadline comes first.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements of one database that may run at once; more wait their turn (until their
/// deadline). SQLite serialises writers anyway, and each running statement holds a thread
/// of the blocking pool.
const MAX_CONNECTIONS: usize = 8;

/// The most one result may hold: rows past it are not read, and the statement fails
/// saying so, rather than the host's memory growing with one guest's `SELECT *`.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// One value of a row or a parameter, as every version of `spin:sqlite` has it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
            SqlValue::Null => ValueRef::Null,
        }))
    }
}

impl SqlValue {
    fn read(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            // SQLite may hold text that is not UTF-8; the interface's text is a string.
            ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            ValueRef::Null => SqlValue::Null,
        }
    }

    fn size(&self) -> usize {
        match self {
            SqlValue::Text(s) => s.len(),
            SqlValue::Blob(b) => b.len(),
            _ => 8,
        }
    }
}

/// What one statement returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// The names of its columns.
    pub columns: Vec<String>,
    /// Its rows, each a value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// The rowid of the connection's last successful INSERT, as of this statement.
    pub last_insert_rowid: i64,
    /// Rows the statement inserted, updated or deleted.
    pub changes: u64,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SqlError {
    /// The disk or the database's size limit is full.
    #[error("the database is full")]
    Full,
    /// Anything else: SQLite's message (a syntax error, a constraint, a busy lock), or the
    /// deadline.
    #[error("{0}")]
    Io(String),
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => SqlError::Full,
            _ => SqlError::Io(e.to_string()),
        }
    }
}

/// One database: its file and the connections open on it.
pub struct Database {
    label: String,
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    running: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("label", &self.label)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating it and its directory if need be) the database at `path`.
    pub fn open(label: &str, path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let database = Self {
            label: label.to_string(),
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        };
        // Opened once now, so a path that cannot hold a database fails the start.
        let first = database.connect()?;
        database.put_back(first);
        Ok(database)
    }

    /// Its label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn connect(&self) -> Result<Connection, String> {
        let path = &self.path;
        let connection =
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| {
                // As the embedded key-value store: WAL lets readers and one writer work at
                // once; NORMAL syncs at checkpoints rather than at every commit.
                connection.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
            })
            .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
        Ok(connection)
    }

    fn take(&self) -> Result<Connection, SqlError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self.connect().map_err(SqlError::Io),
        }
    }

    fn put_back(&self, connection: Connection) {
        // A transaction its session left open is rolled back, never handed on.
        if !connection.is_autocommit() && connection.execute_batch("ROLLBACK").is_err() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_CONNECTIONS {
            idle.push(connection);
        }
    }

    /// A guest's connection to this database: what `open` gives it.
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            database: self.clone(),
            pinned: None,
            last_insert_rowid: 0,
            changes: 0,
        }
    }
}

/// A pooled connection held by one session, with its turn of the database.
struct Pinned {
    connection: Connection,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// One guest connection. Between statements it holds no pooled connection, unless a
/// transaction it began is open: then the same connection serves its next statements
/// (`BEGIN` ... `COMMIT` work across calls), and is rolled back if the guest lets go of
/// it first.
pub struct Session {
    database: Arc<Database>,
    pinned: Option<Pinned>,
    last_insert_rowid: i64,
    changes: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(pinned) = self.pinned.take() {
            self.database.put_back(pinned.connection);
        }
    }
}

/// A statement on its way: what [`Session::call`] takes out of the session so the session
/// need not be borrowed across the wait (it lives in a guest's resource table).
pub struct Call {
    database: Arc<Database>,
    pinned: Option<Pinned>,
}

/// A statement's outcome, for [`Session::finish`].
pub struct Done {
    pinned: Option<Pinned>,
    result: Result<QueryResult, SqlError>,
}

impl Session {
    /// The rowid of the last successful INSERT of this session, or 0.
    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid
    }

    /// Rows changed by this session's last statement.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Starts a statement.
    pub fn call(&mut self) -> Call {
        Call {
            database: self.database.clone(),
            pinned: self.pinned.take(),
        }
    }

    /// Ends a statement: the session keeps its connection if a transaction is open.
    pub fn finish(&mut self, done: Done) -> Result<QueryResult, SqlError> {
        self.pinned = done.pinned;
        if let Ok(result) = &done.result {
            self.changes = result.changes;
            if result.last_insert_rowid != 0 {
                self.last_insert_rowid = result.last_insert_rowid;
            }
        }
        done.result
    }
}

impl Call {
    /// Runs `statement` with `parameters` bound in order, reading every row, by `deadline`.
    pub async fn execute(
        self,
        statement: String,
        parameters: Vec<SqlValue>,
        deadline: Instant,
    ) -> Done {
        let failed = |result| Done {
            pinned: None,
            result: Err(result),
        };
        let late = || SqlError::Io("interrupted: the function's deadline passed".to_string());
        let deadline = tokio::time::Instant::from_std(deadline);
        let database = self.database;
        let pinned = match self.pinned {
            Some(pinned) => pinned,
            None => {
                let permit =
                    tokio::time::timeout_at(deadline, database.running.clone().acquire_owned())
                        .await;
                let Ok(Ok(permit)) = permit else {
                    return failed(late());
                };
                match database.take() {
                    Ok(connection) => Pinned {
                        connection,
                        _permit: permit,
                    },
                    Err(e) => return failed(e),
                }
            }
        };
        let interrupt = pinned.connection.get_interrupt_handle();
        let run = tokio::task::spawn_blocking(move || {
            let result = run(&pinned.connection, &statement, &parameters);
            (pinned, result)
        });
        match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok((pinned, result))) => {
                // Within a transaction the session keeps the connection; otherwise it goes
                // back to the pool for any session's next statement.
                let pinned = if pinned.connection.is_autocommit() {
                    database.put_back(pinned.connection);
                    None
                } else {
                    Some(pinned)
                };
                Done { pinned, result }
            }
            Ok(Err(e)) => failed(SqlError::Io(format!("the statement failed: {e}"))),
            Err(_) => {
                // SQLite stops the statement at its next check; the connection is then
                // dropped with the abandoned task (any transaction rolled back), and its
                // turn of the database returned.
                interrupt.interrupt();
                failed(late())
            }
        }
    }
}

fn run(
    connection: &Connection,
    statement: &str,
    parameters: &[SqlValue],
) -> Result<QueryResult, SqlError> {
    let mut prepared = connection.prepare(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let expected = prepared.parameter_count();
    if parameters.len() != expected {
        return Err(SqlError::Io(format!(
            "the statement takes {expected} parameters, {} were given",
            parameters.len()
        )));
    }
    let mut rows = prepared.query(rusqlite::params_from_iter(parameters))?;
    let mut out = Vec::new();
    let mut size = 0usize;
    while let Some(row) = rows.next()? {
        let values: Vec<SqlValue> = (0..columns.len())
            .map(|i| row.get_ref(i).map(SqlValue::read))
            .collect::<Result<_, _>>()?;
        size += values.iter().map(SqlValue::size).sum::<usize>();
        if size > MAX_RESULT_BYTES {
            return Err(SqlError::Io(format!(
                "the result is over {} MiB: read it in pages (LIMIT ... OFFSET, or WHERE on a key)",
                MAX_RESULT_BYTES >> 20
            )));
        }
        out.push(values);
    }
    drop(rows);
    Ok(QueryResult {
        columns,
        rows: out,
        last_insert_rowid: connection.last_insert_rowid(),
        changes: connection.changes(),
    })
}

/// The databases some function is granted, by label.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    by_label: BTreeMap<String, (PathBuf, Arc<Database>)>,
}

/// Why a database could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("SQLite database `{label}`: {reason}")]
pub struct OpenError {
    /// Its label.
    pub label: String,
    /// Why.
    pub reason: String,
}

impl Databases {
    /// Opens the databases of `manifest` some function is granted, keeping those of `self`
    /// whose file did not change (a reload). A database without a `path` is
    /// `<label>.db` in `data_dir`.
    pub fn reopen(
        &self,
        manifest: &crate::manifest::Manifest,
        data_dir: &Path,
    ) -> Result<Self, OpenError> {
        let mut by_label = BTreeMap::new();
        for spec in &manifest.sqlite {
            let granted = manifest
                .functions
                .iter()
                .any(|f| f.sqlite_databases.contains(&spec.label));
            if !granted {
                continue;
            }
            let path = spec
                .path
                .clone()
                .unwrap_or_else(|| data_dir.join(format!("{}.db", spec.label)));
            let database = match self.by_label.get(&spec.label) {
                Some((kept, database)) if *kept == path => database.clone(),
                _ => Arc::new(
                    Database::open(&spec.label, &path).map_err(|reason| OpenError {
                        label: spec.label.clone(),
                        reason,
                    })?,
                ),
            };
            by_label.insert(spec.label.clone(), (path, database));
        }
        Ok(Self { by_label })
    }

    /// The database labelled `label`.
    pub fn get(&self, label: &str) -> Option<&Arc<Database>> {
        self.by_label.get(label).map(|(_, database)| database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    async fn exec(
        session: &mut Session,
        statement: &str,
        parameters: Vec<SqlValue>,
        deadline: Instant,
    ) -> Result<QueryResult, SqlError> {
        let done = session
            .call()
            .execute(statement.to_string(), parameters, deadline)
            .await;
        session.finish(done)
    }

    fn open(dir: &tempfile::TempDir) -> Arc<Database> {
        Arc::new(Database::open("t", &dir.path().join("t.db")).unwrap())
    }

    #[tokio::test]
    async fn statements_bind_parameters_and_read_typed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir).session();
        exec(
            &mut s,
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
            vec![],
            soon(),
        )
        .await
        .unwrap();
        let row = vec![
            SqlValue::Integer(-7),
            SqlValue::Real(1.5),
            SqlValue::Text("x'); DROP TABLE t; --".into()),
            SqlValue::Blob(vec![0, 255]),
            SqlValue::Null,
        ];
        let inserted = exec(
            &mut s,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            row.clone(),
            soon(),
        )
        .await
        .unwrap();
        assert_eq!((inserted.changes, s.last_insert_rowid()), (1, 1));
        let read = exec(&mut s, "SELECT * FROM t", vec![], soon())
            .await
            .unwrap();
        assert_eq!(read.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(read.rows, [row], "a parameter is a value, never SQL");

        let e = exec(&mut s, "SELECT ?", vec![], soon()).await.unwrap_err();
        assert!(e.to_string().contains("takes 1 parameters"), "{e}");
        let e = exec(&mut s, "SELEKT 1", vec![], soon()).await.unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
    }

    #[tokio::test]
    async fn a_transaction_spans_calls_and_is_rolled_back_if_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let (mut a, mut b) = (db.session(), db.session());
        exec(&mut a, "CREATE TABLE t (x)", vec![], soon())
            .await
            .unwrap();
        exec(&mut a, "BEGIN", vec![], soon()).await.unwrap();
        exec(&mut a, "INSERT INTO t VALUES (1)", vec![], soon())
            .await
            .unwrap();
        let count = |r: QueryResult| r.rows[0][0].clone();
        let seen = exec(&mut b, "SELECT count(*) FROM t", vec![], soon()).await;
        assert_eq!(
            count(seen.unwrap()),
            SqlValue::Integer(0),
            "not yet committed"
        );
        exec(&mut a, "COMMIT", vec![], soon()).await.unwrap();
        let seen = exec(&mut b, "SELECT count(*) FROM t", vec![], soon()).await;
        assert_eq!(count(seen.unwrap()), SqlValue::Integer(1));

        exec(&mut a, "BEGIN", vec![], soon()).await.unwrap();
        exec(&mut a, "INSERT INTO t VALUES (2)", vec![], soon())
            .await
            .unwrap();
        drop(a);
        let seen = exec(&mut b, "SELECT count(*) FROM t", vec![], soon()).await;
        assert_eq!(count(seen.unwrap()), SqlValue::Integer(1), "rolled back");
    }

    #[tokio::test]
    async fn a_statement_past_the_deadline_is_interrupted_and_its_turn_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let mut s = db.session();
        // Counts to a billion: far longer than the deadline.
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c";
        let e = exec(
            &mut s,
            endless,
            vec![],
            Instant::now() + Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("deadline"), "{e}");
        // Every turn of the database is free again.
        let mut sessions: Vec<Session> = (0..MAX_CONNECTIONS).map(|_| db.session()).collect();
        for s in &mut sessions {
            exec(s, "BEGIN", vec![], soon()).await.unwrap();
        }
        let mut late = db.session();
        let e = exec(
            &mut late,
            "SELECT 1",
            vec![],
            Instant::now() + Duration::from_millis(50),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("deadline"),
            "all {MAX_CONNECTIONS} are held: {e}"
        );
        drop(sessions);
        exec(&mut late, "SELECT 1", vec![], soon()).await.unwrap();
    }
}
