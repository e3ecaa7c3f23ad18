//! Saga example: the order service. `POST /orders` records an order and emits
//! `order.created`; the saga's outcome events come back to it and it closes the order with
//! `order.completed` or `order.failed`.
use saga::{Order, next, order_of};
use serde::Deserialize;
use wasmfn_sdk::{CloudEvent, Error, Json, Request, Response, Router};

const SOURCE: &str = "/saga/order-service";

#[derive(Deserialize)]
struct NewOrder {
    order_id: Option<String>,
    item: String,
    quantity: u32,
    amount_cents: u64,
}

#[wasmfn_sdk::http]
fn http(req: Request) -> Response {
    Router::new().post("/orders", create).handle(req)
}

fn create(req: Request) -> Result<(u16, Json<Order>), Error> {
    let new: NewOrder = req.json()?;
    if new.quantity == 0 {
        return Err(Error::bad_request("quantity must be at least 1"));
    }
    // Without a client-chosen id, the request id (set by the host) names the order.
    let order_id = match new.order_id {
        Some(id) if !id.is_empty() => id,
        _ => format!("ord-{}", req.header("x-request-id").unwrap_or("unknown")),
    };
    let order = Order {
        order_id,
        item: new.item,
        quantity: new.quantity,
        amount_cents: new.amount_cents,
        reason: None,
    };
    wasmfn_sdk::emit(next("order.created", SOURCE, &order)?)?;
    Ok((202, Json(order)))
}

#[wasmfn_sdk::event]
fn on_event(event: CloudEvent) -> Result<CloudEvent, Error> {
    let mut order = order_of(&event)?;
    match event.ty() {
        "payment.completed" => next("order.completed", SOURCE, &order),
        "inventory.failed" | "inventory.released" => {
            if order.reason.is_none() {
                order.reason = Some(event.ty().to_string());
            }
            next("order.failed", SOURCE, &order)
        }
        other => Err(Error::reject(format!(
            "order-service does not handle {other}"
        ))),
    }
}
