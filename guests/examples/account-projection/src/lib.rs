//! Event sourcing with CQRS: the projection (see the `accounts` crate). It applies each
//! `account.event.*` to the read model in stream order: an event it has applied already is
//! acknowledged and ignored (redelivery), and one that arrives ahead of an earlier one makes
//! it read the missing events from the event store first (reordering).
//!
//! `POST /projections/accounts/replay` rebuilds the whole read model from the event store
//! and answers how many accounts and events it replayed.
use accounts::{Account, Recorded, accounts, events, head, read, view};
use serde_json::json;
use wasmfn_sdk::{CloudEvent, Error, Request, Response, Router};

#[wasmfn_sdk::event]
fn project(event: CloudEvent) -> Result<(), Error> {
    let recorded: Recorded = event.json()?;
    let view = view()?;
    let key = format!("account:{}", recorded.account);
    let mut account: Account = view.get_json(&key)?.unwrap_or_default();
    if recorded.version <= account.version {
        return Ok(());
    }
    let missing = read(
        &events()?,
        &recorded.account,
        account.version + 1,
        recorded.version - 1,
    )?;
    for e in missing.iter().chain(std::iter::once(&recorded)) {
        account.apply(e);
    }
    view.set_json(&key, &account)
}

fn replay() -> Result<Response, Error> {
    let (events, view) = (events()?, view()?);
    let stale: Vec<String> = view
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with("account:"))
        .collect();
    view.delete_many(&stale)?;
    let (mut replayed_accounts, mut replayed_events) = (0, 0);
    for id in accounts(&events)? {
        let mut account = Account::default();
        for e in read(&events, &id, 1, head(&events, &id)?)? {
            account.apply(&e);
            replayed_events += 1;
        }
        view.set_json(&format!("account:{id}"), &account)?;
        replayed_accounts += 1;
    }
    Ok(Response::json(
        200,
        &json!({ "accounts": replayed_accounts, "events": replayed_events }),
    ))
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .post("/projections/accounts/replay", |_: Request| replay())
        .handle(req)
}
