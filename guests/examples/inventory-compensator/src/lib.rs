//! Saga example: the compensation step. When payment fails, returns the stock the
//! inventory service reserved and replies `inventory.released`; a redelivered
//! `payment.failed` returns nothing twice. A WASI 0.3 function (an `async fn` handler).
use saga::{give_back, once, order_of, store};
use wasmfn_sdk::{CloudEvent, Error};

const SOURCE: &str = "/saga/inventory-compensator";

#[wasmfn_sdk::event]
async fn release(event: CloudEvent) -> Result<CloudEvent, Error> {
    let order = order_of(&event)?;
    let store = store()?;
    once(&store, "release", SOURCE, &order, || {
        give_back(&store, &order.item, order.quantity)?;
        Ok(("inventory.released".to_string(), order.clone()))
    })
}
