//! The embedded backend: one SQLite file per store (rusqlite, bundled), in WAL mode. It was
//! chosen over redb by a benchmark (benches/README.md): writes and increments 2-3x faster
//! at the durability we use, reads alike, and, unlike redb, several processes may open one
//! file, so `wasmfn invoke` or a second host on a laptop sees the same data as the running
//! one.
//!
//! Writes run on tokio's blocking pool: a commit may wait for another process's write lock
//! or run a checkpoint that syncs the disk. Reads have a connection of their own and run
//! where they are called when it is free: in WAL mode a read never waits for a writer, and
//! takes a few microseconds, less than handing it to another thread.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Backend, BackendError, KeyPage, PAGE_KEYS, next_count};

/// How long a write waits for another process's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store in a SQLite file.
pub struct Sqlite {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(e.to_string())
}

impl Sqlite {
    /// Opens (creating if need be) the store at `path`, and its directory.
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let open = || {
            let connection = Connection::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            connection
                .busy_timeout(BUSY_TIMEOUT)
                .and_then(|()| {
                    // WAL lets readers and one writer work at once, across processes;
                    // NORMAL syncs at checkpoints rather than at every commit: a committed
                    // write survives the process, though the last ones may not survive a
                    // power cut.
                    connection.execute_batch(
                        "PRAGMA journal_mode = WAL;
                         PRAGMA synchronous = NORMAL;
                         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);",
                    )
                })
                .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
            Ok::<_, String>(Arc::new(Mutex::new(connection)))
        };
        Ok(Self {
            writer: open()?,
            reader: open()?,
        })
    }

    /// Runs `f`, which writes, on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let connection = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut connection)
        })
        .await
        .map_err(failed)?
    }

    /// Runs `f`, which only reads, here if the read connection is free, else on the
    /// blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        if let Ok(connection) = self.reader.try_lock() {
            return f(&connection);
        }
        let connection = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&connection)
        })
        .await
        .map_err(failed)?
    }
}

const UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

fn get(c: &Connection, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
    c.prepare_cached("SELECT value FROM kv WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
        .map_err(failed)
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = key.to_string();
        self.read(move |c| get(c, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.with(move |c| {
            c.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![key, value]))
                .map(drop)
                .map_err(failed)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let key = key.to_string();
        self.with(move |c| {
            c.prepare_cached("DELETE FROM kv WHERE key = ?1")
                .and_then(|mut s| s.execute([key]))
                .map(drop)
                .map_err(failed)
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        let key = key.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT 1 FROM kv WHERE key = ?1")
                .and_then(|mut s| s.exists([key]))
                .map_err(failed)
        })
        .await
    }

    async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, BackendError> {
        // The cursor is the rowid of the last key returned: stable while keys are added
        // and removed, and an index seek rather than a scan.
        self.read(move |c| {
            let after = i64::try_from(cursor.unwrap_or(0)).unwrap_or(i64::MAX);
            let mut statement = c
                .prepare_cached(
                    "SELECT rowid, key FROM kv WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )
                .map_err(failed)?;
            let rows = statement
                .query_map(params![after, PAGE_KEYS as i64 + 1], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(failed)?;
            let more = rows.len() > PAGE_KEYS;
            let rows = &rows[..rows.len().min(PAGE_KEYS)];
            Ok(KeyPage {
                keys: rows.iter().map(|(_, k)| k.clone()).collect(),
                cursor: rows.last().filter(|_| more).map(|(id, _)| *id as u64),
            })
        })
        .await
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64, BackendError> {
        let key = key.to_string();
        self.with(move |c| {
            // IMMEDIATE takes the write lock before reading, so two processes cannot both
            // read the old value.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed)?;
            let next = next_count(get(&tx, &key)?.as_deref(), delta)?;
            tx.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![key, next.to_string().into_bytes()]))
                .map_err(failed)?;
            tx.commit().map_err(failed)?;
            Ok(next)
        })
        .await
    }

    async fn swap_if(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, BackendError> {
        let (key, expected, value) = (
            key.to_string(),
            expected.map(<[u8]>::to_vec),
            value.to_vec(),
        );
        self.with(move |c| {
            // As in `increment`: the write lock before the read.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed)?;
            if get(&tx, &key)? != expected {
                return Ok(false);
            }
            tx.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![key, value]))
                .map_err(failed)?;
            tx.commit().map_err(failed)?;
            Ok(true)
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let keys = keys.to_vec();
        self.read(move |c| keys.iter().map(|k| get(c, k)).collect())
            .await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        let pairs = pairs.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(failed)?;
            {
                let mut upsert = tx.prepare_cached(UPSERT).map_err(failed)?;
                for (key, value) in &pairs {
                    upsert.execute(params![key, value]).map_err(failed)?;
                }
            }
            tx.commit().map_err(failed)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), BackendError> {
        let keys = keys.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(failed)?;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM kv WHERE key = ?1")
                    .map_err(failed)?;
                for key in &keys {
                    delete.execute([key]).map_err(failed)?;
                }
            }
            tx.commit().map_err(failed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_survives_reopening_and_pages_cover_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/kv.sqlite");
        {
            let db = Sqlite::open(&path).unwrap();
            db.set("a", b"1").await.unwrap();
            assert_eq!(db.increment("n", 2).await.unwrap(), 2);
            assert_eq!(db.increment("n", 3).await.unwrap(), 5);
            assert!(db.increment("a", 1).await.is_ok(), "\"1\" is a counter");
            db.set("b", b"not a number").await.unwrap();
            assert!(matches!(
                db.increment("b", 1).await,
                Err(BackendError::Invalid(_))
            ));
        }
        let db = Sqlite::open(&path).unwrap();
        assert_eq!(db.get("n").await.unwrap().as_deref(), Some(&b"5"[..]));
        assert_eq!(db.get("a").await.unwrap().as_deref(), Some(&b"2"[..]));

        let pairs: Vec<(String, Vec<u8>)> =
            (0..2500).map(|i| (format!("k{i:04}"), vec![1])).collect();
        db.set_many(&pairs).await.unwrap();
        let (mut seen, mut cursor, mut pages) = (0, None, 0);
        loop {
            let page = db.list_keys(cursor).await.unwrap();
            seen += page.keys.len();
            pages += 1;
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!((seen, pages), (2503, 3));
        db.delete_many(&pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert!(!db.exists("k0001").await.unwrap());
        assert_eq!(db.list_keys(None).await.unwrap().keys.len(), 3);
    }

    #[test]
    fn an_unusable_path_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = Sqlite::open(&file.join("kv.sqlite")).unwrap_err();
        assert!(e.contains("cannot create"), "{e}");
    }
}
