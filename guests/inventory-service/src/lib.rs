//! Saga example: the inventory service. Reserves stock for `order.created`: replies
//! `inventory.reserved`, or `inventory.failed` when the item's stock (the `stock.<item>`
//! variable) is too low.
use saga::{next, order_of};
use wasmfn_sdk::{CloudEvent, Error, variables};

const SOURCE: &str = "/saga/inventory-service";

#[wasmfn_sdk::event]
fn reserve(event: CloudEvent) -> Result<CloudEvent, Error> {
    let mut order = order_of(&event)?;
    let stock: u32 = variables::get(&format!("stock.{}", order.item))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if order.quantity <= stock {
        next("inventory.reserved", SOURCE, &order)
    } else {
        order.reason = Some(format!(
            "only {stock} of {} in stock, {} ordered",
            order.item, order.quantity
        ));
        next("inventory.failed", SOURCE, &order)
    }
}
