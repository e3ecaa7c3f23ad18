//! The order saga from the Knative patterns seed, as choreography: each step is its own
//! function, subscribed to the event that precedes it, and the compensation
//! (`inventory-compensator`) undoes a reservation when payment fails. State lives in the
//! `saga` key-value store: orders and their status, stock, and each step's outcome.
//!
//! ```text
//! POST /orders ─▶ order.created ─▶ inventory-service ─┬▶ inventory.reserved ─▶ payment-service ─┬▶ payment.completed ─▶ order-service ─▶ order.completed
//!   (pending)                                         │                                        └▶ payment.failed ─▶ inventory-compensator ─▶ inventory.released ─▶ order-service ─▶ order.failed (compensated)
//!                                                     └▶ inventory.failed ─▶ order-service ─▶ order.failed (failed: sold out)
//! ```
use serde::{Deserialize, Serialize};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{CloudEvent, Error};

/// The order every saga event carries as its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Also the subject of every event of this order's saga.
    pub order_id: String,
    /// What is ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// The total to charge, in cents.
    pub amount_cents: u64,
    /// `pending`, `completed`, `compensated` (payment declined, stock released) or
    /// `failed` (not enough stock); set by the order service.
    #[serde(default = "pending")]
    pub status: String,
    /// Why the order failed, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn pending() -> String {
    "pending".to_string()
}

/// The saga's store.
pub fn store() -> Result<Store, Error> {
    Store::open("saga")
}

/// The next event of `order`'s saga. Its id is derived from the order and the step, so a
/// redelivered step produces the same id and consumers can drop the duplicate.
pub fn next(ty: &str, source: &str, order: &Order) -> Result<CloudEvent, Error> {
    CloudEvent::new(ty, source)
        .with_id(format!("{}/{ty}", order.order_id))
        .with_subject(order.order_id.clone())
        .with_json(order)
}

/// The order an event carries; a rejection if it carries none, since retrying cannot help.
pub fn order_of(event: &CloudEvent) -> Result<Order, Error> {
    event.json()
}

/// Runs step `step` of `order`'s saga once. `act` does the step's work and says which
/// event follows (and the order it carries); a redelivered event gets the same reply
/// without the work being done again. A failing `act` must leave nothing done: the next
/// delivery runs it again.
pub fn once(
    store: &Store,
    step: &str,
    source: &str,
    order: &Order,
    act: impl FnOnce() -> Result<(String, Order), Error>,
) -> Result<CloudEvent, Error> {
    let key = format!("step:{}:{step}", order.order_id);
    if let Some((ty, order)) = store.get_json::<(String, Order)>(&key)? {
        return next(&ty, source, &order);
    }
    let Some(claim) = store.claim(&key, LEASE)? else {
        return Err(
            Error::retry(format!("{step} of {} is in progress", order.order_id)).retry_after(1),
        );
    };
    // Another delivery may have done the step between the look and the claim.
    if let Some((ty, order)) = store.get_json::<(String, Order)>(&key)? {
        claim.release(store)?;
        return next(&ty, source, &order);
    }
    match act() {
        Ok((ty, order)) => {
            store.set_json(&key, &(&ty, &order))?;
            claim.release(store)?;
            next(&ty, source, &order)
        }
        Err(e) => {
            claim.release(store)?;
            Err(e)
        }
    }
}

/// How long a step's claim holds: longer than any saga function's timeout, so a live step
/// is never overtaken, and short enough that a step whose host died mid-way is taken up
/// again by a redelivery a minute or two later.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Units of `item` there are, from the inventory service's `stock.<item>` variable.
pub fn stock(item: &str) -> u64 {
    wasmfn_sdk::variables::get(&format!("stock.{item}"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Units of `item` reserved and not released. Both counters only grow, so each change is
/// one atomic increment (wasi:keyvalue has no decrement).
pub fn reserved(store: &Store, item: &str) -> Result<u64, Error> {
    let taken = store.increment(&format!("stock:{item}:taken"), 0)?;
    let returned = store.increment(&format!("stock:{item}:returned"), 0)?;
    Ok(taken.saturating_sub(returned))
}

/// Takes `quantity` of `item` if that many are free; false (and nothing taken) if not.
pub fn take(store: &Store, item: &str, quantity: u32, stock: u64) -> Result<bool, Error> {
    let taken = store.increment(&format!("stock:{item}:taken"), quantity.into())?;
    let returned = store.increment(&format!("stock:{item}:returned"), 0)?;
    if taken.saturating_sub(returned) > stock {
        give_back(store, item, quantity)?;
        return Ok(false);
    }
    Ok(true)
}

/// Returns `quantity` of `item`.
pub fn give_back(store: &Store, item: &str, quantity: u32) -> Result<(), Error> {
    store.increment(&format!("stock:{item}:returned"), quantity.into())?;
    Ok(())
}
