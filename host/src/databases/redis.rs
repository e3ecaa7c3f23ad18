//! Redis for guests (`spin:redis`, `fermyon:spin/redis`): a guest opens a connection by
//! address, which its `allowed_outbound_hosts` must allow (`redis://host:port`), and every
//! command is bounded by the invocation's deadline. The host keeps one multiplexed,
//! self-reconnecting connection per address (redis' `ConnectionManager`), shared by every
//! function and instance: a guest's `open` costs no round trip, and a burst of requests
//! does not become a burst of connections to Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long connecting may take; a command's own bound is the caller's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Distinct addresses the host keeps connections to; past it, opening another is
/// `too-many-connections` (a wildcard in `allowed_outbound_hosts` must not let a guest
/// make the host hold connections without end).
const MAX_ADDRESSES: usize = 64;

/// An argument of `execute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisParameter {
    /// An integer, sent as its decimal text.
    Int64(i64),
    /// Bytes.
    Binary(Vec<u8>),
}

/// One value of `execute`'s reply: arrays, sets and maps are flattened in order (a map as
/// key, value, key, value), as `HGETALL` or `SMEMBERS` read in any Redis client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisResult {
    /// No value (a missing key).
    Nil,
    /// A status reply, e.g. `OK`.
    Status(String),
    /// An integer.
    Int64(i64),
    /// Bytes (a bulk string; doubles and big numbers as their text).
    Binary(Vec<u8>),
}

/// Why a Redis call failed, in the interface's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// The address is not a Redis URL, or not allowed.
    #[error("invalid address")]
    InvalidAddress,
    /// The host holds connections to as many addresses as it will.
    #[error("too many connections")]
    TooManyConnections,
    /// The key holds a value of another type, or the reply is not of the type asked for.
    #[error("type error")]
    TypeError,
    /// Anything else: Redis' message, a connection failure, or the deadline.
    #[error("{0}")]
    Other(String),
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> Self {
        if e.code() == Some("WRONGTYPE") || e.kind() == redis::ErrorKind::UnexpectedReturnType {
            RedisError::TypeError
        } else {
            RedisError::Other(e.to_string())
        }
    }
}

/// The host's connections, by address.
#[derive(Clone, Default)]
pub struct Connections {
    by_address: Arc<Mutex<HashMap<String, Connection>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses may carry passwords.
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

impl Connections {
    /// The connection to `address`, made (lazily: nothing is sent until the first command)
    /// if the host has none. The caller has checked the address is allowed.
    pub fn open(&self, address: &str) -> Result<Connection, RedisError> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(connection) = by_address.get(address) {
            return Ok(connection.clone());
        }
        if by_address.len() >= MAX_ADDRESSES {
            return Err(RedisError::TooManyConnections);
        }
        if address.starts_with("rediss:") {
            return Err(RedisError::Other(
                "rediss:// (Redis over TLS) is not supported by this host yet; use redis://"
                    .to_string(),
            ));
        }
        let client = redis::Client::open(address).map_err(|_| RedisError::InvalidAddress)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisError::Other(e.to_string()))?;
        let connection = Connection { manager };
        by_address.insert(address.to_string(), connection.clone());
        Ok(connection)
    }
}

/// The `scheme://host:port` of a Redis address, which `allowed_outbound_hosts` is checked
/// against: the address itself may carry a password, a database and options.
pub fn authority(address: &str) -> Result<http::Uri, RedisError> {
    let url = url::Url::parse(address).map_err(|_| RedisError::InvalidAddress)?;
    let scheme = url.scheme();
    if !matches!(scheme, "redis" | "rediss") {
        return Err(RedisError::InvalidAddress);
    }
    let host = url.host_str().ok_or(RedisError::InvalidAddress)?;
    let port = url.port().unwrap_or(6379);
    format!("{scheme}://{host}:{port}")
        .parse()
        .map_err(|_| RedisError::InvalidAddress)
}

/// One address's connection; clones share it.
#[derive(Clone)]
pub struct Connection {
    manager: ConnectionManager,
}

impl Connection {
    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        deadline: Instant,
    ) -> Result<T, RedisError> {
        let mut manager = self.manager.clone();
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, cmd.query_async::<T>(&mut manager)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Other(
                "interrupted: the function's deadline passed".to_string(),
            )),
        }
    }

    /// `PUBLISH channel payload`.
    pub async fn publish(
        &self,
        channel: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.query::<i64>(cmd, deadline).await.map(drop)
    }

    /// `GET key`.
    pub async fn get(&self, key: &str, deadline: Instant) -> Result<Option<Vec<u8>>, RedisError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(cmd, deadline).await
    }

    /// `SET key value`.
    pub async fn set(&self, key: &str, value: &[u8], deadline: Instant) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        self.query::<()>(cmd, deadline).await
    }

    /// `INCR key`.
    pub async fn incr(&self, key: &str, deadline: Instant) -> Result<i64, RedisError> {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(key);
        self.query(cmd, deadline).await.map_err(|e| match e {
            // Redis answers a value that is not an integer with a plain error, which the
            // interface names a type error.
            RedisError::Other(m) if m.contains("not an integer") => RedisError::TypeError,
            e => e,
        })
    }

    /// `command` with one key and several members (`DEL`, `SADD`, `SREM`): how many it
    /// counted.
    pub async fn count(
        &self,
        command: &str,
        key: Option<&str>,
        members: &[String],
        deadline: Instant,
    ) -> Result<u32, RedisError> {
        let mut cmd = redis::cmd(command);
        cmd.arg(key).arg(members);
        let n: i64 = self.query(cmd, deadline).await?;
        u32::try_from(n).map_err(|_| RedisError::TypeError)
    }

    /// `SMEMBERS key`.
    pub async fn smembers(&self, key: &str, deadline: Instant) -> Result<Vec<String>, RedisError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        self.query(cmd, deadline).await
    }

    /// Any command, its reply flattened.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Vec<RedisParameter>,
        deadline: Instant,
    ) -> Result<Vec<RedisResult>, RedisError> {
        let mut cmd = redis::cmd(command);
        for argument in arguments {
            match argument {
                RedisParameter::Int64(i) => cmd.arg(i),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let reply: redis::Value = self.query(cmd, deadline).await?;
        let mut out = Vec::new();
        flatten(reply, &mut out)?;
        Ok(out)
    }
}

fn flatten(value: redis::Value, out: &mut Vec<RedisResult>) -> Result<(), RedisError> {
    use redis::Value;
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Okay => out.push(RedisResult::Status("OK".to_string())),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Int(i) => out.push(RedisResult::Int64(i)),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
        Value::BigNumber(digits) => out.push(RedisResult::Binary(digits)),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            for item in items {
                flatten(item, out)?;
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out)?;
                flatten(v, out)?;
            }
        }
        Value::Attribute { data, .. } => flatten(*data, out)?,
        Value::ServerError(e) => return Err(RedisError::Other(e.to_string())),
        other => {
            return Err(RedisError::Other(format!(
                "a reply this host cannot pass on: {other:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_by_scheme_host_and_port_without_their_password() {
        let uri = authority("redis://:secret@cache.example.com/2").unwrap();
        assert_eq!(uri.to_string(), "redis://cache.example.com:6379/");
        let uri = authority("rediss://cache:6380").unwrap();
        assert_eq!(uri.to_string(), "rediss://cache:6380/");
        for bad in ["http://cache:6379", "cache:6379", "redis://"] {
            assert_eq!(authority(bad), Err(RedisError::InvalidAddress), "{bad}");
        }
    }

    #[test]
    fn replies_are_flattened_in_order() {
        use redis::Value;
        let mut out = Vec::new();
        let reply = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Int(1),
            Value::Nil,
            Value::Map(vec![(Value::SimpleString("k".into()), Value::Double(1.5))]),
        ]);
        flatten(reply, &mut out).unwrap();
        assert_eq!(
            out,
            [
                RedisResult::Binary(b"a".to_vec()),
                RedisResult::Int64(1),
                RedisResult::Nil,
                RedisResult::Status("k".into()),
                RedisResult::Binary(b"1.5".to_vec()),
            ]
        );
    }
}
