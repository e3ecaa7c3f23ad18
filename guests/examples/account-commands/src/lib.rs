//! Event sourcing with CQRS: the command side (see the `accounts` crate).
//!
//! - `POST /accounts` `{"account"}` → 201, stream version 1 (`opened`); 409 if it exists
//! - `POST /accounts/{id}/deposits` and `/withdrawals` `{"amount_cents", "expected_version"?}`
//!   → 201 with the recorded event; 409 when `expected_version` (or a concurrent command)
//!   is stale; 422 for an amount of 0 or a withdrawal over the balance
//! - `GET /accounts/{id}/events` → the stream, as the event store holds it
//! - `GET /accounts/events?start_time=..&end_time=..[&aggregate_id=..]` → the events
//!   recorded in that range (RFC 3339 UTC, inclusive), as the patterns seed's replayer
//!   reads an event store: a JSON array of `{type, timestamp, data, id, source, subject}`
//!   (`wasmfn replay` sends them to the Broker again)
//!
//! Each recorded event is published as `account.event.<kind>`; if publishing fails the
//! answer is 202: the event is stored, and the read model gets it at the next replay.
use accounts::{Recorded, append, between, events, head, read, rebuild, timestamp};
use serde::Deserialize;
use serde_json::json;
use wasmfn_sdk::{Error, Request, Response, Router};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    account: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Movement {
    amount_cents: u64,
    expected_version: Option<u64>,
}

fn publish(recorded: &Recorded) -> Response {
    let published = recorded.event().and_then(wasmfn_sdk::emit).is_ok();
    Response::json(
        if published { 201 } else { 202 },
        &json!({ "event": recorded, "published": published }),
    )
}

fn open(req: Request) -> Result<Response, Error> {
    let open: Open = req.json()?;
    let id = open.account.trim();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::new(422, "account: 1 to 64 letters, digits or `-`"));
    }
    let store = events()?;
    let recorded = append(&store, id, 0, "opened", 0).map_err(|e| {
        if e.status() == 409 {
            Error::new(409, format!("account {id} exists"))
        } else {
            e
        }
    })?;
    Ok(publish(&recorded))
}

fn movement(req: Request, kind: &str) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let m: Movement = req.json()?;
    if m.amount_cents == 0 {
        return Err(Error::new(422, "amount_cents: must be more than 0"));
    }
    let store = events()?;
    let account = rebuild(&store, &id)?;
    if account.version == 0 {
        return Err(Error::not_found(format!("no account {id}")));
    }
    if let Some(expected) = m.expected_version
        && expected != account.version
    {
        return Err(Error::new(
            409,
            format!(
                "account {id} is at version {}, not {expected}",
                account.version
            ),
        ));
    }
    if kind == "withdrawn" && m.amount_cents > account.balance_cents {
        return Err(Error::new(
            422,
            format!(
                "amount_cents: {} is more than the balance of {}",
                m.amount_cents, account.balance_cents
            ),
        ));
    }
    let recorded = append(&store, &id, account.version, kind, m.amount_cents)?;
    Ok(publish(&recorded))
}

fn listing(req: Request) -> Result<Response, Error> {
    let param = |name: &str| -> Result<String, Error> {
        let value = req
            .query_param(name)
            .ok_or_else(|| Error::bad_request(format!("{name} is required")))?;
        timestamp(&value).ok_or_else(|| {
            Error::bad_request(format!(
                "{name} {value:?} is not an RFC 3339 UTC time such as 2024-01-31T23:59:59Z"
            ))
        })
    };
    let (start, end) = (param("start_time")?, param("end_time")?);
    let account = req.query_param("aggregate_id");
    let listed = between(&events()?, &start, &end, account.as_deref())?;
    Ok(Response::json(200, &listed))
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/accounts/events", listing)
        .post("/accounts", open)
        .post("/accounts/:id/deposits", |req| movement(req, "deposited"))
        .post("/accounts/:id/withdrawals", |req| {
            movement(req, "withdrawn")
        })
        .get(
            "/accounts/:id/events",
            |req: Request| -> Result<Response, Error> {
                let id = req.param("id").unwrap_or_default().to_string();
                let store = events()?;
                let stream = read(&store, &id, 1, head(&store, &id)?)?;
                if stream.is_empty() {
                    return Err(Error::not_found(format!("no account {id}")));
                }
                Ok(Response::json(
                    200,
                    &json!({ "account": id, "events": stream }),
                ))
            },
        )
        .handle(req)
}
