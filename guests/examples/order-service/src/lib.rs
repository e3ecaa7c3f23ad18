//! Saga example: the order service. `POST /orders` stores an order as `pending`, emits
//! `order.created` and answers 202 (the saga goes on) with its `order_id`; a client may
//! choose the id, and sending the same order again then answers 200 with the order as it
//! is, without starting a second saga. `GET /orders/{order_id}` shows it.
//! The saga's outcome events come back here: `payment.completed` completes the order,
//! `inventory.failed` fails it (sold out), `inventory.released` marks it `compensated`
//! (payment declined, stock returned); each closes the saga with `order.completed` or
//! `order.failed`. Redelivered outcome events leave the order as it is. `GET /orders` counts
//! the orders each outcome closed: how many sagas ran to their end.
//!
//! Written for WASI 0.3 (`async fn` handlers): one instance takes many requests and
//! events, several at once, each with its own trace.
use saga::{Order, next, order_of, store};
use serde::Deserialize;
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{CloudEvent, Error, IntoResponse, Json, Request, Response, Router};

const SOURCE: &str = "/saga/order-service";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    order_id: Option<String>,
    item: String,
    quantity: u32,
    amount_cents: u64,
}

#[wasmfn_sdk::http]
async fn http(req: Request) -> Response {
    // Placing an order waits for its event to be accepted: the instance serves other
    // requests meanwhile.
    if req.method() == "POST" && req.path() == "/orders" {
        return create(req).await.into_response();
    }
    Router::new()
        .get("/orders", |_req: Request| closed().map(Json))
        .get("/orders/:id", |req: Request| {
            let id = req.param("id").unwrap_or_default().to_string();
            store().and_then(|s| load(&s, &id)).map(Json)
        })
        .handle(req)
}

fn key(id: &str) -> String {
    format!("order:{id}")
}

fn load(store: &Store, id: &str) -> Result<Order, Error> {
    store
        .get_json(&key(id))?
        .ok_or_else(|| Error::not_found(format!("no order has id {id}")))
}

async fn create(req: Request) -> Result<Response, Error> {
    let new: NewOrder = req.json()?;
    if new.quantity == 0 {
        return Err(Error::new(422, "quantity: must be at least 1"));
    }
    if new.item.trim().is_empty() {
        return Err(Error::new(422, "item: is required"));
    }
    let store = store()?;
    let (order_id, claim) = match new.order_id.filter(|id| !id.is_empty()) {
        Some(id) if id.len() > 64 || id.contains(char::is_whitespace) => {
            return Err(Error::new(
                422,
                "order_id: at most 64 characters, no spaces",
            ));
        }
        Some(id) => {
            // The client's retry of an order it already placed.
            if store.exists(&placed(&id))? {
                return Ok(Response::json(200, &load(&store, &id)?));
            }
            let Some(claim) = store.claim(&key(&id), LEASE)? else {
                return Err(
                    Error::retry(format!("order {id} is being placed; ask again")).retry_after(1),
                );
            };
            if store.exists(&placed(&id))? {
                claim.release(&store)?;
                return Ok(Response::json(200, &load(&store, &id)?));
            }
            (id, Some(claim))
        }
        None => (
            format!("ord-{:06}", store.increment("orders:next-id", 1)?),
            None,
        ),
    };
    // Written, then its saga started, then marked placed: a placement that died before the
    // mark is done again by the client's retry (the saga's steps run once per order however
    // often order.created arrives). The order it wrote is kept as it is: its saga may have
    // moved it on already.
    let written: Option<Order> = match claim {
        Some(_) => store.get_json(&key(&order_id))?,
        None => None,
    };
    let fresh = written.is_none();
    let order = match written {
        Some(order) => order,
        None => {
            let order = Order {
                order_id: order_id.clone(),
                item: new.item,
                quantity: new.quantity,
                amount_cents: new.amount_cents,
                status: "pending".to_string(),
                reason: None,
            };
            store.set_json(&key(&order_id), &order)?;
            order
        }
    };
    let started = wasmfn_sdk::p3::emit(next("order.created", SOURCE, &order)?).await;
    let result = match started {
        // An order whose saga never starts would stay pending for ever: without the event,
        // there is no order.
        Err(e) => {
            if fresh {
                store.delete(&key(&order_id))?;
            }
            Err(Error::retry(format!(
                "the order was not placed: {}",
                e.message()
            )))
        }
        Ok(()) => {
            store.set(&placed(&order_id), "1")?;
            Ok(Response::json(202, &order).with_header("location", format!("/orders/{order_id}")))
        }
    };
    if let Some(claim) = claim {
        claim.release(&store)?;
    }
    result
}

/// The outcomes an order is closed with.
const OUTCOMES: [&str; 3] = ["completed", "failed", "compensated"];

fn closed_count(status: &str) -> String {
    format!("orders:closed:{status}")
}

/// How many orders each outcome closed, and all of them.
fn closed() -> Result<serde_json::Value, Error> {
    let store = store()?;
    let mut counts = serde_json::Map::new();
    let mut total = 0;
    for status in OUTCOMES {
        // Reading a counter is adding nothing to it (wasi:keyvalue's atomics).
        let n = store.increment(&closed_count(status), 0)?;
        total += n;
        counts.insert(status.to_string(), n.into());
    }
    counts.insert("closed".to_string(), total.into());
    Ok(counts.into())
}

fn placed(id: &str) -> String {
    format!("order:{id}:placed")
}

/// Longer than this function's timeout: a placement that died mid-way is retried by the
/// client after at most two of these.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

#[wasmfn_sdk::event]
async fn on_event(event: CloudEvent) -> Result<CloudEvent, Error> {
    let reported = order_of(&event)?;
    let (status, reply) = match event.ty() {
        "payment.completed" => ("completed", "order.completed"),
        "inventory.failed" => ("failed", "order.failed"),
        "inventory.released" => ("compensated", "order.failed"),
        other => {
            return Err(Error::reject(format!(
                "order-service does not handle {other}"
            )));
        }
    };
    let store = store()?;
    let mut order = load(&store, &reported.order_id)
        .map_err(|_| Error::reject(format!("no order {} to close", reported.order_id)))?;
    // A closed order stays as it was closed; a redelivery gets the same reply.
    if order.status == "pending" {
        order.status = status.to_string();
        order.reason = reported
            .reason
            .or_else(|| (status != "completed").then(|| event.ty().to_string()));
        store.set_json(&key(&order.order_id), &order)?;
        // Counted once, when the order closes: a redelivery finds it closed already.
        store.increment(&closed_count(status), 1)?;
    }
    next(reply, SOURCE, &order)
}
