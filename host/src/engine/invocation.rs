//! One invocation's frame, shared by every guest ABI. [`Invocation::begin`] takes the
//! function's concurrency slot and an instance-pool slot (each within the queue timeout),
//! makes a fresh store with the function's memory limit, deadline and emit context, and
//! counts the instance live; [`Invocation::run`] runs the ABI's own instantiate-and-call
//! under the deadline, in the `instantiate` and `handle` spans, says how it ended, and moves
//! the guest's output to the log. The ABI files (`wasi_http.rs`, `http_handler.rs`,
//! `event_handler.rs`) supply only the calls that differ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, Span};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use super::context::CallContext;
use super::state::State;
use super::{FunctionInner, InvokeError};
use crate::admission::Slot;
use crate::metrics::{GaugeGuard, Refusal};

/// A fresh store and the slots it holds; all returned when it is dropped.
pub(super) struct Invocation {
    function: Arc<FunctionInner>,
    store: Store<State>,
    request_id: String,
    instantiate_span: Span,
    handle_span: Span,
    _function_slot: Option<Slot>,
    _instance_slot: Slot,
    _live: GaugeGuard,
}

/// A component pre-instantiated for one guest ABI (its bindgen `*Pre` type).
pub(super) trait Instantiate {
    /// The instance, with the typed export the ABI calls.
    type Instance;
    /// A fresh instance in `store`.
    fn instantiate(
        &self,
        store: &mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;
}

/// `Instantiate` for bindgen's pre-instance types, which share the method but no trait.
macro_rules! instantiate {
    ($($pre:ty => $instance:ty),* $(,)?) => {$(
        impl Instantiate for $pre {
            type Instance = $instance;
            fn instantiate(
                &self,
                store: &mut Store<State>,
            ) -> impl Future<Output = wasmtime::Result<$instance>> + Send {
                self.instantiate_async(store)
            }
        }
    )*};
}

instantiate!(
    wasmtime_wasi_http::p2::bindings::ProxyPre<State> => wasmtime_wasi_http::p2::bindings::Proxy,
    super::http_handler::HttpHandlerPre<State> => super::http_handler::bindings::HttpHandling,
    super::event_handler::EventHandlerPre<State> => super::event_handler::bindings::EventHandling,
);

impl Invocation {
    /// Takes a slot of the function's concurrency, then one of the instance pool, within
    /// one queue timeout (the function's first, so a busy function waits without holding a
    /// pool slot another function could use), and makes the store. Call it where the
    /// request's span is current: the invocation's spans are its children.
    pub(super) async fn begin(
        function: &Arc<FunctionInner>,
        engine: &wasmtime::Engine,
        request_id: &str,
        emit: Option<CallContext>,
    ) -> Result<Self, InvokeError> {
        let f = function;
        let started = Instant::now();
        let function_slot = match &f.concurrency {
            Some(gate) => Some(gate.enter(f.queue_timeout).await.map_err(|full| {
                f.metrics.refused(Refusal::Concurrency);
                InvokeError::Overloaded(full.to_string())
            })?),
            None => None,
        };
        let left = f.queue_timeout.saturating_sub(started.elapsed());
        let instance_slot = f.instances.enter(left).await.map_err(|full| {
            f.metrics.refused(Refusal::Instances);
            InvokeError::Overloaded(full.to_string())
        })?;
        Ok(Self {
            function: function.clone(),
            store: new_store(f, engine, emit),
            request_id: request_id.to_string(),
            instantiate_span: crate::telemetry::child_span("instantiate"),
            handle_span: crate::telemetry::child_span("handle"),
            _function_slot: function_slot,
            _instance_slot: instance_slot,
            _live: f.metrics.instance(),
        })
    }

    /// The store, for an ABI to hand the guest its arguments before [`Invocation::run`].
    pub(super) fn store_mut(&mut self) -> &mut Store<State> {
        &mut self.store
    }

    /// Instantiates `pre` and runs `call` on the instance, both under the function's
    /// deadline (the tokio timeout covers time the guest waits on I/O, the epoch deadline
    /// time it computes) and each in its span. Then the guest's output goes to the log,
    /// and the store and slots are dropped.
    pub(super) async fn run<P: Instantiate, T>(
        mut self,
        pre: &P,
        call: impl AsyncFnOnce(P::Instance, &mut Store<State>) -> wasmtime::Result<T>,
    ) -> Result<T, InvokeError> {
        let f = self.function.clone();
        let work = async {
            let started = Instant::now();
            let instance = pre
                .instantiate(&mut self.store)
                .instrument(self.instantiate_span.clone())
                .await?;
            f.metrics.instantiated(f.label, started.elapsed());
            call(instance, &mut self.store)
                .instrument(self.handle_span.clone())
                .await
        };
        let result = match f.deadlines.then_some(f.timeout) {
            Some(t) => tokio::time::timeout(t, work).await,
            None => Ok(work.await),
        };
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(e, f.timeout)),
            Err(_elapsed) => Err(InvokeError::Deadline(f.timeout)),
        };
        self.store.data_mut().log_output(&f.name, &self.request_id);
        result
    }
}

fn new_store(
    f: &FunctionInner,
    engine: &wasmtime::Engine,
    context: Option<CallContext>,
) -> Store<State> {
    let deadline = f.deadlines.then(|| Instant::now() + f.timeout);
    let mut store = Store::new(engine, State::new(f, context, deadline));
    store.limiter(|s| &mut s.limits);
    let Some(deadline) = deadline else {
        return store;
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
    store
}

fn classify(e: wasmtime::Error, timeout: Duration) -> InvokeError {
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
