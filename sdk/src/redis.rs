//! Redis at an address the function's `allowed_outbound_hosts` allows
//! (`redis://host:6379`), through Spin's interface (`fermyon:spin/redis@2.0.0`), so the
//! component runs on Spin too. Any command goes through [`Redis::execute`]; the common ones
//! have their own methods.
//!
//! ```ignore
//! use wasmfn_sdk::redis::{Arg, Redis};
//!
//! let redis = Redis::open(&wasmfn_sdk::variables::get("redis_url")?.unwrap())?;
//! redis.execute("HINCRBY", &["metrics:spring".into(), "clicks".into(), 1.into()])?;
//! redis.execute("EXPIRE", &["metrics:spring".into(), 3600.into()])?;
//! let fields = redis.hgetall("metrics:spring")?;
//! ```
//!
//! Every error is a [`crate::Error`]: Redis unreachable or failing is a 503 (a broker
//! redelivers the event), a value of the wrong type a 400 (retrying cannot fix it), an
//! address the function may not reach a 500 naming it.

use crate::Error;
use crate::wit::databases::fermyon::spin::redis as wit;

/// An argument of [`Redis::execute`].
#[derive(Debug, Clone)]
pub struct Arg(wit::RedisParameter);

impl From<i64> for Arg {
    fn from(i: i64) -> Self {
        Arg(wit::RedisParameter::Int64(i))
    }
}

impl From<i32> for Arg {
    fn from(i: i32) -> Self {
        Arg(wit::RedisParameter::Int64(i.into()))
    }
}

impl From<f64> for Arg {
    fn from(f: f64) -> Self {
        Arg(wit::RedisParameter::Binary(f.to_string().into_bytes()))
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg(wit::RedisParameter::Binary(s.as_bytes().to_vec()))
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg(wit::RedisParameter::Binary(s.into_bytes()))
    }
}

impl From<&[u8]> for Arg {
    fn from(b: &[u8]) -> Self {
        Arg(wit::RedisParameter::Binary(b.to_vec()))
    }
}

/// One value of a reply: arrays, sets and maps arrive flattened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No value.
    Nil,
    /// A status, e.g. `OK`.
    Status(String),
    /// An integer.
    Int(i64),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Reply {
    /// The reply as text (an integer as its digits); `None` for nil.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Nil => None,
            Reply::Status(s) => Some(s.clone()),
            Reply::Int(i) => Some(i.to_string()),
            Reply::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

fn error(e: wit::Error) -> Error {
    match e {
        wit::Error::InvalidAddress => Error::internal("the Redis address is not valid"),
        wit::Error::TooManyConnections => Error::retry("Redis: too many connections"),
        wit::Error::TypeError => {
            Error::bad_request("Redis: the value is not of the type the command needs")
        }
        // wasmfn names an address the function may not reach; retrying cannot fix that.
        wit::Error::Other(m) if m.contains("allowed_outbound_hosts") => Error::internal(m),
        wit::Error::Other(m) => Error::retry(format!("Redis: {m}")),
    }
}

/// A connection to one Redis.
pub struct Redis(wit::Connection);

impl Redis {
    /// Connects to `address` (`redis://[:password@]host[:port][/db]`).
    pub fn open(address: &str) -> Result<Self, Error> {
        wit::Connection::open(address).map(Redis).map_err(error)
    }

    /// Any command, e.g. `execute("HINCRBYFLOAT", &[key.into(), "spend".into(), 2.5.into()])`.
    pub fn execute(&self, command: &str, args: &[Arg]) -> Result<Vec<Reply>, Error> {
        let args: Vec<_> = args.iter().map(|a| a.0.clone()).collect();
        let replies = self.0.execute(command, &args).map_err(error)?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                wit::RedisResult::Nil => Reply::Nil,
                wit::RedisResult::Status(s) => Reply::Status(s),
                wit::RedisResult::Int64(i) => Reply::Int(i),
                wit::RedisResult::Binary(b) => Reply::Bytes(b),
            })
            .collect())
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key).map_err(error)
    }

    /// `SET key value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.0.set(key, value).map_err(error)
    }

    /// `INCR key`: the new value.
    pub fn incr(&self, key: &str) -> Result<i64, Error> {
        self.0.incr(key).map_err(error)
    }

    /// `DEL keys...`: how many existed.
    pub fn del(&self, keys: &[&str]) -> Result<u32, Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        self.0.del(&keys).map_err(error)
    }

    /// `SADD key members...`: how many were new.
    pub fn sadd(&self, key: &str, members: &[&str]) -> Result<u32, Error> {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        self.0.sadd(key, &members).map_err(error)
    }

    /// `SREM key members...`: how many were there.
    pub fn srem(&self, key: &str, members: &[&str]) -> Result<u32, Error> {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        self.0.srem(key, &members).map_err(error)
    }

    /// `SMEMBERS key`.
    pub fn smembers(&self, key: &str) -> Result<Vec<String>, Error> {
        self.0.smembers(key).map_err(error)
    }

    /// `PUBLISH channel payload`.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), Error> {
        self.0.publish(channel, payload).map_err(error)
    }

    /// `HGETALL key`: its fields and values, as text.
    pub fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, Error> {
        let replies = self.execute("HGETALL", &[key.into()])?;
        Ok(replies
            .chunks(2)
            .map(|pair| {
                let text = |i: usize| pair.get(i).and_then(Reply::text).unwrap_or_default();
                (text(0), text(1))
            })
            .collect())
    }
}
