//! Saga example: the inventory service. Reserves stock for `order.created` (the `stock.<item>`
//! variable is what there is): replies `inventory.reserved`, or `inventory.failed` when not
//! enough is free. `GET /inventory/{item}` shows the stock, what is reserved and what is
//! free. A WASI 0.3 function (`async fn` handlers).
use saga::{Order, once, order_of, reserved, stock, store, take};
use serde_json::json;
use wasmfn_sdk::{CloudEvent, Error, Json, Request, Response, Router};

const SOURCE: &str = "/saga/inventory-service";

#[wasmfn_sdk::event]
async fn reserve(event: CloudEvent) -> Result<CloudEvent, Error> {
    let order = order_of(&event)?;
    if event.ty() != "order.created" {
        return Err(Error::reject(format!(
            "inventory-service does not handle {}",
            event.ty()
        )));
    }
    let store = store()?;
    once(&store, "reserve", SOURCE, &order, || {
        let stock = stock(&order.item);
        if take(&store, &order.item, order.quantity, stock)? {
            return Ok(("inventory.reserved".to_string(), order.clone()));
        }
        let free = stock.saturating_sub(reserved(&store, &order.item)?);
        let reason = format!(
            "sold out: {free} of {} free, {} ordered",
            order.item, order.quantity
        );
        Ok((
            "inventory.failed".to_string(),
            Order {
                reason: Some(reason),
                ..order.clone()
            },
        ))
    })
}

#[wasmfn_sdk::http]
async fn http(req: Request) -> Response {
    Router::new()
        .get(
            "/inventory/:item",
            |req: Request| -> Result<Json<serde_json::Value>, Error> {
                let item = req.param("item").unwrap_or_default().to_string();
                let stock = stock(&item);
                let reserved = reserved(&store()?, &item)?;
                Ok(Json(json!({
                    "item": item, "stock": stock, "reserved": reserved,
                    "available": stock.saturating_sub(reserved),
                })))
            },
        )
        .handle(req)
}
