//! Event sourcing with CQRS: the query side (see the `accounts` crate). It reads the read
//! model only, so it scales apart from the commands and never touches the event store.
//!
//! - `GET /balances/{id}` → `{"account", "balance_cents", "version"}`, or 404
//! - `GET /balances` → every account
use accounts::{Account, view};
use serde_json::json;
use wasmfn_sdk::{Error, Json, Request, Response, Router};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/balances", |_: Request| -> Result<Response, Error> {
            let view = view()?;
            let mut keys: Vec<String> = view
                .keys()?
                .into_iter()
                .filter(|k| k.starts_with("account:"))
                .collect();
            keys.sort();
            let list: Vec<Account> = view
                .get_many(&keys)?
                .into_iter()
                .flatten()
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect();
            Ok(Response::json(200, &json!({ "accounts": list })))
        })
        .get(
            "/balances/:id",
            |req: Request| -> Result<Json<Account>, Error> {
                let id = req.param("id").unwrap_or_default().to_string();
                view()?
                    .get_json(&format!("account:{id}"))?
                    .map(Json)
                    .ok_or_else(|| Error::not_found(format!("no account {id} in the read model")))
            },
        )
        .handle(req)
}
