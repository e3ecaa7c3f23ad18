//! Event sourcing with CQRS, from the Knative patterns seed, for a bank account.
//!
//! - **The event store** (`events` key-value store): each account is a stream of
//!   [`Recorded`] events, `opened`, `deposited`, `withdrawn`, numbered from 1 with no gaps.
//!   An append names the version it extends: a concurrent append that read the same
//!   version loses (409), so no command decides on a stale balance.
//! - **Commands** (`account-commands`) check a command against the account rebuilt from its
//!   stream, append, and publish the event as `account.event.<kind>`.
//! - **The projection** (`account-projection`) applies published events to the read model
//!   (`accounts-view` store), in stream order whatever order they arrive in, and rebuilds it
//!   from the event store on request (replay).
//! - **Queries** (`account-queries`) read only the read model.
use serde::{Deserialize, Serialize};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{CloudEvent, Error};

/// One event of an account's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The account (the stream).
    pub account: String,
    /// Its place in the stream, from 1.
    pub version: u64,
    /// `opened`, `deposited` or `withdrawn`.
    pub kind: String,
    /// The amount moved (0 for `opened`).
    pub amount_cents: u64,
}

impl Recorded {
    /// The CloudEvent that publishes it: type `account.event.<kind>`, id `<account>/<version>`.
    pub fn event(&self) -> Result<CloudEvent, Error> {
        CloudEvent::new(format!("account.event.{}", self.kind), "/accounts")
            .with_id(format!("{}/{}", self.account, self.version))
            .with_subject(self.account.clone())
            .with_json(self)
    }
}

/// An account as its events make it: the aggregate, and the read model's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub account: String,
    /// The balance, in cents.
    pub balance_cents: u64,
    /// The last event applied.
    pub version: u64,
}

impl Account {
    /// Applies the next event of the stream.
    pub fn apply(&mut self, e: &Recorded) {
        self.account.clone_from(&e.account);
        self.version = e.version;
        match e.kind.as_str() {
            "deposited" => self.balance_cents += e.amount_cents,
            "withdrawn" => self.balance_cents = self.balance_cents.saturating_sub(e.amount_cents),
            _ => {}
        }
    }
}

/// The event store.
pub fn events() -> Result<Store, Error> {
    Store::open("events")
}

/// The read model.
pub fn view() -> Result<Store, Error> {
    Store::open("accounts-view")
}

fn event_key(account: &str, version: u64) -> String {
    format!("stream:{account}:{version:010}")
}

fn head_key(account: &str) -> String {
    format!("head:{account}")
}

/// How many events `account`'s stream holds (0: none, the account does not exist).
pub fn head(store: &Store, account: &str) -> Result<u64, Error> {
    Ok(store
        .get(&head_key(account))?
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0))
}

/// Events `from..=to` of `account`'s stream.
pub fn read(store: &Store, account: &str, from: u64, to: u64) -> Result<Vec<Recorded>, Error> {
    if from > to {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = (from..=to).map(|v| event_key(account, v)).collect();
    store
        .get_many(&keys)?
        .into_iter()
        .zip(from..)
        .map(|(bytes, v)| {
            let bytes = bytes.ok_or_else(|| {
                Error::retry(format!("event {v} of {account} is not written yet"))
            })?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::internal(format!("event {v} of {account} is unreadable: {e}")))
        })
        .collect()
}

/// The account its whole stream makes.
pub fn rebuild(store: &Store, account: &str) -> Result<Account, Error> {
    let mut state = Account::default();
    for e in read(store, account, 1, head(store, account)?)? {
        state.apply(&e);
    }
    Ok(state)
}

/// Every account with a stream.
pub fn accounts(store: &Store) -> Result<Vec<String>, Error> {
    let mut ids: Vec<String> = store
        .keys()?
        .into_iter()
        .filter_map(|k| k.strip_prefix("head:").map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Appends `kind` of `amount_cents` to `account`'s stream as version `expected + 1`. Each
/// version is claimed by one append at a time and written once, so of two appends that
/// read the same version one gets 409 and must decide again. A claim left by a host that
/// died mid-append lapses (see `Store::claim`), and an event written without its head
/// moving on is found and the head repaired, so a crash never blocks the stream.
pub fn append(
    store: &Store,
    account: &str,
    expected: u64,
    kind: &str,
    amount_cents: u64,
) -> Result<Recorded, Error> {
    let version = expected + 1;
    let changed = || {
        Error::new(
            409,
            format!(
                "account {account} has changed since version {expected}; read it again and retry"
            ),
        )
    };
    let Some(claim) = store.claim(&format!("append:{account}:{version}"), LEASE)? else {
        return Err(changed());
    };
    if store.exists(&event_key(account, version))? {
        if head(store, account)? < version {
            store.set(&head_key(account), version.to_string())?;
        }
        claim.release(store)?;
        return Err(changed());
    }
    let recorded = Recorded {
        account: account.to_string(),
        version,
        kind: kind.to_string(),
        amount_cents,
    };
    store.set_json(&event_key(account, version), &recorded)?;
    store.set(&head_key(account), version.to_string())?;
    claim.release(store)?;
    Ok(recorded)
}

/// How long an append's claim holds: longer than the command service's timeout.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);
