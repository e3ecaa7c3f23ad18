//! The Redis backend, for Knative, where a Service runs many pods and scales to zero, so
//! state must live outside the pod. One multiplexed connection per store (redis'
//! `ConnectionManager`, which reconnects by itself), made on first use: a Redis that is down
//! at start neither stops nor slows the start, and one that goes away mid-run fails only
//! the operations made while it is gone. Keys carry the store's prefix, so several stores
//! can share one Redis.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Backend, BackendError, KeyPage, PAGE_KEYS};

/// How long connecting, or one command, may take before the operation fails: a guest
/// waiting on a Redis that is down should learn it well within its own deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A store in Redis.
pub struct Redis {
    client: redis::Client,
    prefix: String,
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only the prefix.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn failed(e: redis::RedisError) -> BackendError {
    BackendError::Failed(e.to_string())
}

impl Redis {
    /// A store at `url` (`redis://[:password@]host[:port][/db]`) whose keys start with
    /// `prefix`. Nothing is connected yet.
    pub fn new(url: &str, prefix: String) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| {
            // The error may quote the URL, password and all.
            format!("the Redis URL is not valid: {}", e.kind_description())
        })?;
        Ok(Self {
            client,
            prefix,
            connection: OnceCell::new(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(failed)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut connection = self.connection().await?;
        cmd.query_async(&mut connection).await.map_err(failed)
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// `prefix` as a SCAN pattern that matches it literally.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

#[async_trait::async_trait]
impl Backend for Redis {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.query(redis::cmd("GET").arg(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.query(redis::cmd("SET").arg(self.key(key)).arg(value))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.query(redis::cmd("DEL").arg(self.key(key))).await
    }

    async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        self.query(redis::cmd("EXISTS").arg(self.key(key))).await
    }

    async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, BackendError> {
        // SCAN's own cursor; a page may come back empty with more to follow, which the
        // interface allows.
        let (next, keys): (u64, Vec<String>) = self
            .query(
                redis::cmd("SCAN")
                    .arg(cursor.unwrap_or(0))
                    .arg("MATCH")
                    .arg(glob_escape(&self.prefix))
                    .arg("COUNT")
                    .arg(PAGE_KEYS),
            )
            .await?;
        Ok(KeyPage {
            keys: keys
                .into_iter()
                .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
                .collect(),
            cursor: (next != 0).then_some(next),
        })
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64, BackendError> {
        let not_a_counter =
            || BackendError::Invalid("the value is not a counter (a non-negative decimal)".into());
        let mut connection = self.connection().await?;
        let n: i64 = redis::cmd("INCRBY")
            .arg(self.key(key))
            .arg(delta)
            .query_async(&mut connection)
            .await
            .map_err(|e| {
                // INCRBY refuses a value that is not an integer, or a sum past i64.
                if e.code() == Some("ERR") {
                    not_a_counter()
                } else {
                    failed(e)
                }
            })?;
        u64::try_from(n).map_err(|_| not_a_counter())
    }

    async fn swap_if(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, BackendError> {
        // A script runs atomically in Redis: no other client's write lands between its
        // read and its write. ARGV[1] says whether a value is expected at all.
        const SWAP_IF: &str = "local v = redis.call('GET', KEYS[1]) \
            if ARGV[1] == '0' then if v then return 0 end \
            elseif v ~= ARGV[2] then return 0 end \
            redis.call('SET', KEYS[1], ARGV[3]) return 1";
        let swapped: i64 = self
            .query(
                redis::cmd("EVAL")
                    .arg(SWAP_IF)
                    .arg(1)
                    .arg(self.key(key))
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or_default())
                    .arg(value),
            )
            .await?;
        Ok(swapped == 1)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.query(redis::cmd("MGET").arg(keys)).await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("MSET");
        for (key, value) in pairs {
            cmd.arg(self.key(key)).arg(value.as_slice());
        }
        self.query(&cmd).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.query(redis::cmd("DEL").arg(keys)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("wasmfn:users:"), "wasmfn:users:*");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        let e = Redis::new("nonsense://:secret@host", "p:".into()).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
