//! Admission: bounded slots with a bounded wait. Every limit that turns load into a 503
//! (requests in flight, a function's concurrency, the instance pool) is a [`Gate`], so
//! they all queue the same way and fail the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a client is told to wait before retrying a request refused for load.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A limit of `capacity` concurrent holders.
#[derive(Debug, Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    capacity: u32,
    what: Arc<str>,
}

/// A slot; the gate gets it back when this is dropped, however the holder ends.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A gate stayed full for the whole wait.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} is at its limit of {capacity} and no slot freed up within {waited:?}")]
pub struct Full {
    /// Which limit, e.g. "the instance pool".
    pub what: Arc<str>,
    /// Its size.
    pub capacity: u32,
    /// How long the request waited.
    pub waited: Duration,
}

impl Gate {
    /// A gate for `capacity` holders; `what` names it in errors ("function `x`'s
    /// concurrency").
    pub fn new(capacity: u32, what: impl Into<Arc<str>>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            what: what.into(),
        }
    }

    /// Takes a slot, waiting at most `wait` for one to free up.
    pub async fn enter(&self, wait: Duration) -> Result<Slot, Full> {
        // The common case takes no timer.
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            // The semaphore is never closed; treat it as full if it ever is.
            Ok(Err(_)) | Err(_) => Err(Full {
                what: self.what.clone(),
                capacity: self.capacity,
                waited: wait,
            }),
        }
    }

    /// Takes a slot if one is free now.
    pub fn try_enter(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Slots free right now; equals [`Gate::capacity`] when nothing holds one.
    pub fn available(&self) -> u32 {
        self.slots.available_permits() as u32
    }

    /// The gate's size.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Waits until every slot is free, i.e. every holder has finished.
    pub async fn wait_idle(&self) {
        if let Ok(all) = self.slots.acquire_many(self.capacity).await {
            drop(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_refuses_after_the_wait_and_a_dropped_slot_frees_it() {
        let gate = Gate::new(2, "the test gate");
        let a = gate.enter(Duration::ZERO).await.unwrap();
        let _b = gate.enter(Duration::ZERO).await.unwrap();
        assert_eq!(gate.available(), 0);
        let full = gate.enter(Duration::from_millis(5)).await.unwrap_err();
        assert_eq!(full.capacity, 2);
        assert!(
            full.to_string()
                .contains("the test gate is at its limit of 2")
        );

        // A waiter gets the slot the moment one is returned.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(Duration::from_secs(60)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.unwrap());
        assert_eq!(gate.available(), 1);
    }
}
