//! The order saga from the Knative patterns seed, as choreography: each step is its own
//! function, subscribed to the event that precedes it, and the compensation
//! (`inventory-compensator`) undoes a reservation when payment fails.
//!
//! ```text
//! POST /orders ─▶ order.created ─▶ inventory-service ─┬▶ inventory.reserved ─▶ payment-service ─┬▶ payment.completed ─▶ order-service ─▶ order.completed
//!                                                     │                                        └▶ payment.failed ─▶ inventory-compensator ─▶ inventory.released ─▶ order-service ─▶ order.failed
//!                                                     └▶ inventory.failed ─▶ order-service ─▶ order.failed
//! ```
use serde::{Deserialize, Serialize};
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
    /// Why the order failed, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
