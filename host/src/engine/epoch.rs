//! One thread advances the engines' epochs on a fixed tick; at each tick a running store
//! checks its deadline and yields (see `invocation::new_store`). One ticker for the whole
//! process, because a ticker per request costs far more than the guest (wasmtime issue
//! #11814 measured 100x lower throughput). It ticks every engine it was given: the WASI 0.2
//! engine from the start, the WASI 0.3 one once a component needs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Deadline resolution, and the longest a computing guest runs before it yields its
/// thread: a guest is stopped within one tick after its timeout.
pub(crate) const TICK: Duration = Duration::from_millis(10);

pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    engines: Arc<Mutex<Vec<wasmtime::Engine>>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engines = Arc::new(Mutex::new(vec![engine]));
        let (flag, ticked) = (stop.clone(), engines.clone());
        let thread = std::thread::Builder::new()
            .name("wasmfn-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    for engine in ticked.lock().unwrap().iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            engines,
            thread: Some(thread),
        }
    }

    /// Ticks `engine` too from now on.
    pub(crate) fn add(&self, engine: wasmtime::Engine) {
        self.engines.lock().unwrap().push(engine);
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
