//! Saga example: the compensation step. When payment fails, releases the stock the
//! inventory service reserved and replies `inventory.released`.
use saga::{next, order_of};
use wasmfn_sdk::{CloudEvent, Error};

const SOURCE: &str = "/saga/inventory-compensator";

#[wasmfn_sdk::event]
fn release(event: CloudEvent) -> Result<CloudEvent, Error> {
    let order = order_of(&event)?;
    next("inventory.released", SOURCE, &order)
}
