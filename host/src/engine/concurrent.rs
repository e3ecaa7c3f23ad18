//! What every WASI 0.3 instance shares, HTTP (wasi_http_p3.rs) or events
//! (event_handler_p3.rs): one instance runs several requests at once, each as its own
//! component-model task, so the store cannot hold "the" request the way a WASI 0.2 store
//! does. Instead each request's scope (its call context, deadline, emitted count and id)
//! is kept by the task that runs it, and a call hook, run by wasmtime whenever the guest
//! calls into the host, finds the root of the calling task's async call stack (the export
//! call the request started) and puts that request's scope in place before the host code
//! runs. Every import then reads the store as it does for WASI 0.2: `emit` sends with the
//! caller's trace and hop count, `*.wasmfn.internal` calls run within its hop limit,
//! outbound calls carry its `traceparent` and deadline, and what the guest prints is
//! logged under the request that printed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::GuestTaskId;
use wasmtime::{CallHook, Store, StoreContextMut, UpdateDeadline};

use super::context::CallContext;
use super::emitter::Emitting;
use super::epoch::TICK;
use super::output::Captured;
use super::state::{State, log_output};
use super::{FunctionInner, InvokeError};
use crate::admission::Slot;
use crate::metrics::Refusal;

/// What an instance's worker shares with the requests it takes.
pub(super) struct InstanceShared {
    /// Deadlines below are nanoseconds since this.
    pub(super) born: Instant,
    /// The latest deadline of the requests it took: a guest computing past it is stopped.
    deadline: AtomicU64,
    pub(super) served: AtomicU64,
    /// Set when the worker expired it from outside the event loop: a guest that would not
    /// yield, or requests past their deadlines.
    pub(super) expired: AtomicBool,
    /// Set when a request it took passed its deadline: it takes no more, or one sent just
    /// then would land in an instance about to be expired and fail with it.
    pub(super) missed_deadline: AtomicBool,
    /// What the guest printed since the last time it was logged.
    output: [Captured; 2],
    /// The request whose task made the latest host call: whatever the guest printed since
    /// was printed by it.
    printing: Mutex<Option<Arc<str>>>,
    function: Arc<str>,
    /// How the instance ended: Ok when retired for its limits or idleness.
    pub(super) retired: tokio::sync::SetOnce<Result<(), InvokeError>>,
}

impl InstanceShared {
    /// Keeps the instance running at least until `deadline`.
    pub(super) fn extend(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.born).as_nanos() as u64;
        self.deadline.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The latest deadline of the requests it took.
    pub(super) fn latest_deadline(&self) -> Instant {
        self.born + std::time::Duration::from_nanos(self.deadline.load(Ordering::Relaxed))
    }

    /// Logs what the guest printed since the last call, under the request that printed it.
    pub(super) fn log_output(&self) {
        let printing = self.printing.lock().unwrap();
        log_output(
            [&self.output[0], &self.output[1]],
            &self.function,
            printing.as_deref().unwrap_or_default(),
        );
    }

    /// Logs what the guest printed, if the request now printing is `request_id`. A request
    /// calls it when its response is ready: what another request printed waits for that
    /// one.
    pub(super) fn log_output_of(&self, request_id: &str) {
        let printing = self.printing.lock().unwrap();
        if printing.as_deref() == Some(request_id) {
            log_output(
                [&self.output[0], &self.output[1]],
                &self.function,
                request_id,
            );
        }
    }

    /// The task of `request_id` calls into the host: what was printed before was the
    /// previous request's.
    fn now_printing(&self, request_id: Option<&Arc<str>>) {
        let mut printing = self.printing.lock().unwrap();
        if printing.as_ref() != request_id {
            log_output(
                [&self.output[0], &self.output[1]],
                &self.function,
                printing.as_deref().unwrap_or_default(),
            );
            *printing = request_id.cloned();
        }
    }
}

/// One request's part of a store shared by several.
pub(super) struct Scope {
    pub(super) context: Option<CallContext>,
    pub(super) deadline: Instant,
    pub(super) request_id: Arc<str>,
    /// Events it emitted, kept while another request's scope is in place.
    emitted: usize,
}

impl Scope {
    pub(super) fn new(
        context: Option<CallContext>,
        deadline: Instant,
        request_id: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            context,
            deadline,
            request_id: request_id.into(),
            emitted: 0,
        }
    }
}

/// The scopes of the requests an instance runs, by the task running each.
#[derive(Default)]
pub(crate) struct Tasks {
    // Task ids are reused once a task is gone, and a request's scope is put in place
    // under its task before the task first runs: an old entry is replaced, never read,
    // and the map holds no more entries than the instance ever ran at once.
    by_task: HashMap<GuestTaskId, Scope>,
    current: Option<GuestTaskId>,
    shared: Option<Arc<InstanceShared>>,
}

impl Tasks {
    /// The task, if this instance has only ever run requests under one task id. Only the
    /// host's export calls, each a request registered here before it first runs, make the
    /// roots of guest call stacks; so while there is one id, whatever calls the host runs
    /// under it, and the stack need not be walked on each of a request's ~20 host calls
    /// (~3.5 k instructions a request; callgrind, issue 29).
    fn only_task(&self) -> Option<GuestTaskId> {
        let mut ids = self.by_task.keys();
        match (ids.next(), ids.next()) {
            (Some(&task), None) => Some(task),
            _ => None,
        }
    }
}

impl State {
    /// Runs the request in `scope` as `task`, which is about to start.
    pub(super) fn start_task(&mut self, task: GuestTaskId, scope: Scope) {
        let tasks = self.tasks.get_or_insert_default();
        tasks.by_task.insert(task, scope);
        // The same task id may have run the previous request: put the new one in place.
        if tasks.current == Some(task) {
            tasks.current = None;
        }
    }

    /// Puts in place the scope of the request `task` runs (None outside any request).
    fn enter_task(&mut self, task: Option<GuestTaskId>) {
        let Some(tasks) = self.tasks.as_mut() else {
            return;
        };
        if tasks.current == task {
            return;
        }
        if let Some(left) = tasks.current.and_then(|t| tasks.by_task.get_mut(&t)) {
            left.emitted = self.emitting.as_ref().map_or(0, Emitting::emitted);
        }
        tasks.current = task;
        let scope = task.and_then(|t| tasks.by_task.get(&t));
        if let Some(shared) = &tasks.shared {
            shared.now_printing(scope.map(|s| &s.request_id));
        }
        self.hooks.deadline = scope.map(|s| s.deadline);
        self.hooks.context = scope.and_then(|s| s.context.clone());
        self.emitting = scope.and_then(|s| {
            let context = s.context.clone()?;
            Some(Emitting::resume(
                context,
                self.hooks.function.clone(),
                s.emitted,
            ))
        });
    }
}

/// A store for a WASI 0.3 instance of `f`, with its instance-pool slot (503 when none frees
/// up within the queue timeout), its memory limit, its deadline check and the call hook
/// that puts each request's scope in place.
pub(super) async fn new_store(
    f: &FunctionInner,
) -> Result<(Store<State>, Arc<InstanceShared>, Slot), PoolFull> {
    let slot = f.instances.enter(f.queue_timeout).await.map_err(|full| {
        f.metrics.refused(Refusal::Instances);
        PoolFull(full.to_string())
    })?;
    let mut state = State::new(f, None, None);
    let shared = Arc::new(InstanceShared {
        born: Instant::now(),
        deadline: AtomicU64::new(0),
        served: AtomicU64::new(0),
        expired: AtomicBool::new(false),
        missed_deadline: AtomicBool::new(false),
        output: state.output(),
        printing: Mutex::new(None),
        function: f.name.clone(),
        retired: tokio::sync::SetOnce::new(),
    });
    state.tasks = Some(Box::new(Tasks {
        shared: Some(shared.clone()),
        ..Tasks::default()
    }));
    let mut store = Store::new(f.instance_pre.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.call_hook(|mut store: StoreContextMut<'_, State>, hook| {
        if matches!(hook, CallHook::CallingHost) {
            // The last of the stack is the export call the request started. Outside any
            // task (the component's start code) there is none.
            let only = store.data().tasks.as_ref().and_then(|t| t.only_task());
            let root = only.or_else(|| store.async_call_stack().ok().and_then(Iterator::last));
            store.data_mut().enter_task(root);
        }
        Ok(())
    });
    if f.deadlines {
        // Instantiating runs the guest's start code: give it one timeout.
        shared.extend(Instant::now() + f.timeout);
        let shared = shared.clone();
        // A computing guest yields at every tick, and is stopped once past the latest
        // deadline of the requests it took.
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= shared.latest_deadline() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store.set_epoch_deadline(1);
    }
    Ok((store, shared, slot))
}

/// How long after the latest deadline of its requests an instance still stuck in them is
/// expired from outside its event loop: each has had its 504 by then if the loop could run.
pub(super) const EXPIRY_GRACE: std::time::Duration = TICK.saturating_mul(2);

/// Resolves once the host drains (every WASI 0.3 instance then retires when it has no work).
pub(super) async fn drained(mut draining: tokio::sync::watch::Receiver<bool>) {
    // An error means the engine is gone, which is draining too.
    let _ = draining.wait_for(|d| *d).await;
}

/// An instance-pool slot could not be had within the queue timeout.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct PoolFull(pub(super) String);

/// Boxed, so that a WASI 0.2 store, which has none, stays small.
pub(crate) type BoxedTasks = Box<Tasks>;
