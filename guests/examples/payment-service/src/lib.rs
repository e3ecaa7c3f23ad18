//! Saga example: the payment service. Charges an order whose stock is reserved: replies
//! `payment.completed`, or `payment.failed` when the amount is over the `limit_cents`
//! variable. A WASI 0.3 function (an `async fn` handler).
use saga::{next, order_of};
use wasmfn_sdk::{CloudEvent, Error, variables};

const SOURCE: &str = "/saga/payment-service";

#[wasmfn_sdk::event]
async fn charge(event: CloudEvent) -> Result<CloudEvent, Error> {
    let mut order = order_of(&event)?;
    let limit: u64 = variables::get("limit_cents")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    if order.amount_cents <= limit {
        next("payment.completed", SOURCE, &order)
    } else {
        order.reason = Some(format!(
            "payment of {} cents declined (limit {limit})",
            order.amount_cents
        ));
        next("payment.failed", SOURCE, &order)
    }
}
