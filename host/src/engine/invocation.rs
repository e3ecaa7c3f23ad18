//! One invocation's frame, shared by the guest ABIs of WASI 0.2 components.
//! [`Invocation::begin`] takes the function's concurrency slot and an instance: an idle one
//! the function kept for reuse, or an instance-pool slot and a fresh store with the
//! function's memory limit (each within the queue timeout); it sets the request's deadline
//! and emit context. [`Invocation::run`] instantiates if the store is fresh, runs the ABI's
//! call under the deadline, in the `instantiate` and `handle` spans, says how it ended, moves
//! the guest's output to the log, and hands a healthy instance back for reuse. The ABI files
//! (`wasi_http.rs`, `http_handler.rs`, `event_handler.rs`) supply only the calls that differ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, Span};
use wasmtime::component::Instance;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use super::context::CallContext;
use super::state::State;
use super::{FunctionInner, InvokeError};
use crate::admission::Slot;
use crate::metrics::{GaugeGuard, Refusal};

/// An instance's store and the slots it holds, fresh or kept from an earlier request; all
/// returned when it is dropped.
pub(super) struct Held {
    pub(super) store: Store<State>,
    /// Set once instantiated.
    instance: Option<Instance>,
    /// Requests it has served.
    pub(super) served: u32,
    _instance_slot: Slot,
    _live: GaugeGuard,
}

/// A store, its instance once made, and the request it runs.
pub(super) struct Invocation {
    function: Arc<FunctionInner>,
    held: Held,
    request_id: String,
    instantiate_span: Span,
    handle_span: Span,
    _function_slot: Option<Slot>,
}

/// The typed exports one guest ABI calls, found in an instance (bindgen's `*Indices`).
pub(super) trait Exports {
    /// The exports, bound to one instance.
    type Instance;
    /// Finds them in `instance`.
    fn load(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
    ) -> wasmtime::Result<Self::Instance>;
}

/// `Exports` for bindgen's index types, which share the method but no trait.
macro_rules! exports {
    ($($indices:ty => $instance:ty),* $(,)?) => {$(
        impl Exports for $indices {
            type Instance = $instance;
            fn load(
                &self,
                store: &mut Store<State>,
                instance: &Instance,
            ) -> wasmtime::Result<$instance> {
                <$indices>::load(self, store, instance)
            }
        }
    )*};
}

exports!(
    wasmtime_wasi_http::p2::bindings::ProxyIndices => wasmtime_wasi_http::p2::bindings::Proxy,
    super::http_handler::HttpHandlerIndices => super::http_handler::bindings::HttpHandling,
    super::event_handler::EventHandlerIndices => super::event_handler::bindings::EventHandling,
);

impl Invocation {
    /// Takes a slot of the function's concurrency, then an idle instance of the function or
    /// a slot of the instance pool, within one queue timeout (the function's slot first, so
    /// a busy function waits without holding a pool slot another function could use). Call
    /// it where the request's span is current: the invocation's spans are its children.
    pub(super) async fn begin(
        function: &Arc<FunctionInner>,
        request_id: &str,
        emit: Option<CallContext>,
    ) -> Result<Self, InvokeError> {
        let f = function;
        let started = Instant::now();
        let function_slot = f.enter().await?;
        let deadline = f.deadlines.then(|| Instant::now() + f.timeout);
        let held = match f.reuse.as_ref().and_then(|r| r.take()) {
            Some(mut held) => {
                held.store.data_mut().begin_request(emit, deadline);
                set_deadline(&mut held.store, deadline);
                held
            }
            None => {
                let left = f.queue_timeout.saturating_sub(started.elapsed());
                let instance_slot = f.instances.enter(left).await.map_err(|full| {
                    f.metrics.refused(Refusal::Instances);
                    InvokeError::Overloaded(full.to_string())
                })?;
                let mut store = Store::new(f.instance_pre.engine(), State::new(f, emit, deadline));
                store.limiter(|s| &mut s.limits);
                set_deadline(&mut store, deadline);
                Held {
                    store,
                    instance: None,
                    served: 0,
                    _instance_slot: instance_slot,
                    _live: f.metrics.instance(),
                }
            }
        };
        Ok(Self {
            function: function.clone(),
            held,
            request_id: request_id.to_string(),
            instantiate_span: crate::telemetry::child_span("instantiate"),
            handle_span: crate::telemetry::child_span("handle"),
            _function_slot: function_slot,
        })
    }

    /// The store, for an ABI to hand the guest its arguments before [`Invocation::run`].
    pub(super) fn store_mut(&mut self) -> &mut Store<State> {
        &mut self.held.store
    }

    /// Instantiates the function if the store is fresh and runs `call` on the ABI's
    /// `exports`, both under the function's deadline (the tokio timeout covers time the
    /// guest waits on I/O, the epoch deadline time it computes) and each in its span. Then
    /// the guest's output goes to the log, and the instance is kept for the function's
    /// next request if it reuses instances and this one ended well; else it is dropped with
    /// its slots.
    pub(super) async fn run<E: Exports, T>(
        mut self,
        exports: &E,
        call: impl AsyncFnOnce(E::Instance, &mut Store<State>) -> wasmtime::Result<T>,
    ) -> Result<T, InvokeError> {
        let f = self.function.clone();
        let (instantiate_span, handle_span) = (&self.instantiate_span, &self.handle_span);
        let held = &mut self.held;
        let work = async {
            let instance = match held.instance {
                Some(instance) => instance,
                None => {
                    let started = Instant::now();
                    let instance = f
                        .instance_pre
                        .instantiate_async(&mut held.store)
                        .instrument(instantiate_span.clone())
                        .await?;
                    f.metrics
                        .instantiated(&f.instantiations, f.label, started.elapsed());
                    held.instance = Some(instance);
                    instance
                }
            };
            let typed = exports.load(&mut held.store, &instance)?;
            call(typed, &mut held.store)
                .instrument(handle_span.clone())
                .await
        };
        let result = match f.deadlines.then_some(f.timeout) {
            Some(t) => tokio::time::timeout(t, work).await,
            None => Ok(work.await),
        };
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(&e, f.timeout)),
            Err(_elapsed) => Err(InvokeError::Deadline(f.timeout)),
        };
        self.held.store.data().log_output(&f.name, &self.request_id);
        self.held.served += 1;
        // A trap or a deadline leaves the instance in no state to serve again.
        if let Some(reuse) = &f.reuse {
            if result.is_ok() {
                reuse.put(self.held);
            } else {
                f.metrics.instance_retired(f.label, self.held.served);
            }
        }
        result
    }
}

/// Arms `store`'s deadline for the request about to run in it.
fn set_deadline(store: &mut Store<State>, deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        return;
    };
    // At every tick a computing guest either passes its deadline (a trap, 504) or yields
    // to the scheduler: a guest spinning on the CPU holds a worker thread for at most one
    // tick at a time, so it cannot starve the other requests.
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
    store.set_epoch_deadline(1);
}

/// What a guest's failure means for the client: a trap, the deadline, or load.
pub(super) fn classify(e: &wasmtime::Error, timeout: Duration) -> InvokeError {
    // The instance gate keeps within the pool's component instances, but a component
    // made of many core modules can still run out of the pool's core instances or
    // memories; that is load, not a fault.
    if let Some(limit) = e.downcast_ref::<PoolConcurrencyLimitError>() {
        return InvokeError::Overloaded(format!("the instance pool is full: {limit}"));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Deadline(timeout),
        _ => InvokeError::Trap {
            reason: e.root_cause().to_string(),
            backtrace: e
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(|bt| bt.to_string())
                .unwrap_or_default(),
        },
    }
}
