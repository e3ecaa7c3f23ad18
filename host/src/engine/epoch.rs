//! One thread advances the engine's epoch on a fixed tick; a store's deadline is a number
//! of ticks. One ticker for the whole process, because a ticker per request costs far more
//! than the guest (wasmtime issue #11814 measured 100x lower throughput).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Deadline resolution: a guest is stopped within one tick after its timeout.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// The ticks a store may run for `timeout`: rounded up, plus one because the first tick
/// may come at any moment after the store starts.
pub(crate) fn ticks_for(timeout: Duration) -> u64 {
    let tick = TICK.as_nanos();
    (timeout.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmfn-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_allows_for_the_first_partial_tick() {
        assert_eq!(ticks_for(Duration::from_millis(10)), 2);
        assert_eq!(ticks_for(Duration::from_millis(11)), 3);
        assert_eq!(ticks_for(Duration::from_secs(1)), 101);
    }
}
