//! Event sourcing with CQRS, from the Knative patterns seed, for a bank account.
//!
//! - **The event store** (the seed's `events` table, on PostgreSQL, or SQLite locally): each
//!   account is a stream of [`Recorded`] events, `opened`, `deposited`, `withdrawn`,
//!   numbered from 1 with no gaps. An append names the version it extends: the table's key
//!   refuses a concurrent append that read the same version (409), so no command decides
//!   on a stale balance.
//! - **Commands** (`account-commands`) check a command against the account rebuilt from its
//!   stream, append, and publish the event as `account.event.<kind>`.
//! - **The projection** (`account-projection`) applies published events to the read model
//!   (`accounts-view` store), in stream order whatever order they arrive in, and rebuilds it
//!   from the event store on request (replay).
//! - **Queries** (`account-queries`) read only the read model.
use serde::{Deserialize, Serialize};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::sql::{Database, Value};
use wasmfn_sdk::{CloudEvent, Error};

/// The source of every published account event.
pub const SOURCE: &str = "/accounts";

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
        CloudEvent::new(format!("account.event.{}", self.kind), SOURCE)
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

/// The event store: the seed's `events` table, keyed by account and version, whose
/// primary key does the optimistic concurrency. On PostgreSQL at the variable
/// `database_url` where it is set (on Knative, from the `database-credentials` Secret),
/// else in the function's `default` SQLite database, so the root `wasmfn.toml` runs with
/// nothing installed. The same SQL serves both (`$1` is a parameter to either).
pub fn events() -> Result<Database, Error> {
    let db = Database::postgres_or_sqlite("database_url", "default")?;
    match db.execute(SCHEMA, &[]) {
        Ok(_) => Ok(db),
        // Two first requests creating the table at once: one of them did.
        Err(e) if e.is_constraint_violation() => Ok(db),
        Err(e) => Err(e.into()),
    }
}

// `recorded_at` is RFC 3339 UTC with microseconds, always the same width, so text order
// is time order in either database.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    aggregate_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, version)
)";

/// `time` in the form `recorded_at` is stored in; `None` if it is not RFC 3339 UTC.
pub fn timestamp(time: &str) -> Option<String> {
    let t = humantime::parse_rfc3339_weak(time.trim_end_matches('Z')).ok()?;
    time.ends_with('Z')
        .then(|| humantime::format_rfc3339_micros(t).to_string())
}

/// The read model.
pub fn view() -> Result<Store, Error> {
    Store::open("accounts-view")
}

/// A row of `events` as a [`Recorded`].
#[derive(Deserialize)]
struct Row {
    aggregate_id: String,
    version: i64,
    event_type: String,
    amount_cents: i64,
}

impl From<Row> for Recorded {
    fn from(r: Row) -> Self {
        Recorded {
            account: r.aggregate_id,
            version: r.version.try_into().unwrap_or_default(),
            kind: r.event_type,
            amount_cents: r.amount_cents.try_into().unwrap_or_default(),
        }
    }
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// How many events `account`'s stream holds (0: none, the account does not exist).
pub fn head(db: &Database, account: &str) -> Result<u64, Error> {
    let rows = db.query(
        "SELECT COALESCE(MAX(version), 0) AS head FROM events WHERE aggregate_id = $1",
        &[account.into()],
    )?;
    let head = rows
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64);
    Ok(head.unwrap_or(0).try_into().unwrap_or_default())
}

/// Events `from..=to` of `account`'s stream, in order: a replay.
pub fn read(db: &Database, account: &str, from: u64, to: u64) -> Result<Vec<Recorded>, Error> {
    if from > to {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = db.query_as(
        "SELECT aggregate_id, version, event_type, amount_cents FROM events WHERE aggregate_id = $1 AND version >= $2 AND version <= $3 ORDER BY version",
        &[account.into(), int(from), int(to)],
    )?;
    Ok(rows.into_iter().map(Recorded::from).collect())
}

/// The account its whole stream makes.
pub fn rebuild(db: &Database, account: &str) -> Result<Account, Error> {
    let mut state = Account::default();
    for e in read(db, account, 1, u64::MAX >> 1)? {
        state.apply(&e);
    }
    Ok(state)
}

/// Every account with a stream.
pub fn accounts(db: &Database) -> Result<Vec<String>, Error> {
    let rows = db.query(
        "SELECT DISTINCT aggregate_id FROM events ORDER BY aggregate_id",
        &[],
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| r.first()?.as_str().map(str::to_string))
        .collect())
}

/// An event of the store with when it was recorded, as the patterns seed's replayer reads
/// the store: `{type, timestamp, data}`, with its id, source and subject.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// `account.event.<kind>`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When it was recorded (RFC 3339 UTC).
    pub timestamp: String,
    /// The recorded event, as it was published.
    pub data: Recorded,
    /// As it was published: `<account>/<version>`.
    pub id: String,
    /// As it was published.
    pub source: &'static str,
    /// The account.
    pub subject: String,
}

/// The events recorded from `start` to `end` (both in [`timestamp`]'s form, inclusive),
/// of every account or of `account`, in the order they were recorded.
pub fn between(
    db: &Database,
    start: &str,
    end: &str,
    account: Option<&str>,
) -> Result<Vec<Listed>, Error> {
    #[derive(Deserialize)]
    struct Timed {
        aggregate_id: String,
        version: i64,
        event_type: String,
        amount_cents: i64,
        recorded_at: String,
    }
    let mut sql = "SELECT aggregate_id, version, event_type, amount_cents, recorded_at FROM events WHERE recorded_at >= $1 AND recorded_at <= $2".to_string();
    let mut params: Vec<Value> = vec![start.into(), end.into()];
    if let Some(a) = account {
        sql.push_str(" AND aggregate_id = $3");
        params.push(a.into());
    }
    sql.push_str(" ORDER BY recorded_at, aggregate_id, version");
    let rows: Vec<Timed> = db.query_as(&sql, &params)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let data = Recorded::from(Row {
                aggregate_id: r.aggregate_id,
                version: r.version,
                event_type: r.event_type,
                amount_cents: r.amount_cents,
            });
            Listed {
                ty: format!("account.event.{}", data.kind),
                timestamp: r.recorded_at,
                id: format!("{}/{}", data.account, data.version),
                source: SOURCE,
                subject: data.account.clone(),
                data,
            }
        })
        .collect())
}

/// Appends `kind` of `amount_cents` to `account`'s stream as version `expected + 1`. The
/// table's primary key takes each version once: of two appends that read the same version,
/// one is refused by the database and answered 409, and must decide again.
pub fn append(
    db: &Database,
    account: &str,
    expected: u64,
    kind: &str,
    amount_cents: u64,
) -> Result<Recorded, Error> {
    let version = expected + 1;
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let inserted = db.execute(
        "INSERT INTO events (aggregate_id, version, event_type, amount_cents, recorded_at) VALUES ($1, $2, $3, $4, $5)",
        &[account.into(), int(version), kind.into(), int(amount_cents), now.into()],
    );
    match inserted {
        Ok(_) => Ok(Recorded {
            account: account.to_string(),
            version,
            kind: kind.to_string(),
            amount_cents,
        }),
        Err(e) if e.is_constraint_violation() => Err(Error::new(
            409,
            format!(
                "account {account} has changed since version {expected}; read it again and retry"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
