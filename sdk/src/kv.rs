//! Key-value stores: the stores the function's manifest entry grants
//! (`key_value_stores = ["default"]`), through the standard `wasi:keyvalue` interface, so
//! the same guest runs on any host that offers it.
//!
//! ```ignore
//! let store = wasmfn_sdk::kv::Store::open("default")?;
//! let visits = store.increment("visits", 1)?;
//! store.set_json("user:1", &user)?;
//! ```
//!
//! Every error is a [`crate::Error`]: a store that is not granted is a 500 naming it; a
//! request no store would do (a key or value over the limits, an increment of a value that
//! is not a counter) is a 400, so an event handler's `?` rejects the event rather than have
//! it redelivered to fail again; a store that fails (Redis down) is a 503, so the broker
//! redelivers it.
//!
//! A 503 does not prove the operation was not applied: a command that timed out may take
//! effect when the store answers again, and delivery is at least once. An increment that
//! must count once is keyed by the operation's id (see `claim`, and docs/capabilities.md).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::wasi::keyvalue::{atomics, batch, store};

/// An open store.
pub struct Store {
    label: String,
    bucket: store::Bucket,
}

fn error(label: &str, e: store::Error) -> Error {
    match e {
        store::Error::NoSuchStore => Error::internal(format!(
            "no key-value store is labelled `{label}` in this host's manifest"
        )),
        store::Error::AccessDenied => Error::internal(format!(
            "this function may not open the key-value store `{label}`; add it to its key_value_stores"
        )),
        // wasmfn marks what retrying cannot fix; any other failure, on any host, may pass.
        store::Error::Other(reason) if reason.starts_with("invalid: ") => {
            Error::bad_request(reason)
        }
        store::Error::Other(reason) => Error::retry(reason),
    }
}

impl Store {
    /// Opens the store labelled `label`.
    pub fn open(label: &str) -> Result<Self, Error> {
        let bucket = store::open(label).map_err(|e| error(label, e))?;
        Ok(Self {
            label: label.to_string(),
            bucket,
        })
    }

    fn fail(&self, e: store::Error) -> Error {
        error(&self.label, e)
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.bucket.get(key).map_err(|e| self.fail(e))
    }

    /// The value at `key` as JSON; a value that is not the expected JSON is a 500.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get(key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::internal(format!(
                        "the value at {key:?} is not the expected JSON: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.bucket
            .set(key, value.as_ref())
            .map_err(|e| self.fail(e))
    }

    /// Sets `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("cannot encode the value as JSON: {e}")))?;
        self.set(key, bytes)
    }

    /// Removes `key` (a missing key is not an error).
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.bucket.delete(key).map_err(|e| self.fail(e))
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bucket.exists(key).map_err(|e| self.fail(e))
    }

    /// Every key, all pages read.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor).map_err(|e| self.fail(e))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (0 when missing), atomically for everything
    /// that shares the store, and returns the new value. Counters are decimal text, so
    /// `get` reads them too.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| self.fail(e))
    }

    /// The values of `keys`, in order.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let found = batch::get_many(&self.bucket, keys).map_err(|e| self.fail(e))?;
        Ok(found.into_iter().map(|kv| kv.map(|(_, v)| v)).collect())
    }

    /// Sets every pair.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), Error> {
        batch::set_many(&self.bucket, pairs).map_err(|e| self.fail(e))
    }

    /// Removes every key.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        batch::delete_many(&self.bucket, keys).map_err(|e| self.fail(e))
    }

    /// Claims the work named `name` for one worker at a time: `Some` to the one caller that
    /// got it, `None` while another may still hold it. For work that must run once per event
    /// however often the event is delivered: check the work's record, claim, check the
    /// record again, do the work, write the record, then [`Claim::release`].
    ///
    /// A claim lapses by itself between one and two `lease`s after it was taken, so a worker
    /// whose process died while holding it (the work neither done nor released) does not
    /// block the work for ever; `lease` must be longer than the function's timeout, so a
    /// live holder is never overtaken. wasi:keyvalue has no expiry: the claim is a counter
    /// per lease-long slot of the wall clock, and a caller may claim when neither the
    /// current slot's nor the previous slot's counter is taken.
    pub fn claim(&self, name: &str, lease: std::time::Duration) -> Result<Option<Claim>, Error> {
        let slot = claim_slot(lease);
        if self.exists(&format!("{name}:claim:{}", slot.saturating_sub(1)))? {
            return Ok(None);
        }
        let key = format!("{name}:claim:{slot}");
        if self.increment(&key, 1)? != 1 {
            return Ok(None);
        }
        Ok(Some(Claim { key }))
    }
}

/// The lease-long slot of the wall clock that a claim taken now belongs to.
fn claim_slot(lease: std::time::Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    now / lease.as_secs().max(1)
}

/// Work claimed by [`Store::claim`].
#[derive(Debug)]
pub struct Claim {
    key: String,
}

impl Claim {
    /// Gives the work up: after it is done and recorded (the record now answers every
    /// later delivery), or after it failed and may be tried again at once.
    pub fn release(self, store: &Store) -> Result<(), Error> {
        store.delete(&self.key)
    }
}
