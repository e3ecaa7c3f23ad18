//! The `wasmfn:function/event-handler@0.2.0` ABI (wit/p3): a WASI 0.3 event function whose
//! `handle` is an async function. Like its HTTP requests (wasi_http_p3.rs), its events run
//! several at once in one instance and many in a row, within the function's `reuse` limits
//! (`max_concurrent` at once, `max_requests` in all, retired after `idle` without work).
//!
//! Each instance is a worker task owning its store and running the guest's event loop,
//! into which the events it takes are started as tasks; each event's scope (context,
//! deadline, output) is its own (concurrent.rs). An event's outcome is what a 0.2 handler's
//! would be, so batches, replies, retries and dead-letter statuses do not change:
//!
//! - an event with no answer by its deadline is answered 504 and its instance takes no
//!   more; a guest computing past the latest deadline of its events is interrupted by the
//!   epoch callback, and one stuck past it is dropped from outside its event loop;
//! - a trap retires the instance and fails the events it was running (500, the trap in
//!   the log under each event's id), and only those;
//! - the function's concurrency is per event; each instance holds an instance-pool slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc, oneshot};
use wasmtime::AsContextMut;
use wasmtime::component::Accessor;

use super::concurrent::{EXPIRY_GRACE, InstanceShared, Scope, new_store};
use super::context::CallContext;
use super::emitter::bindings::wasmfn::function::types::{CloudEvent as GuestEvent, HandlerError};
use super::emitter::p3::bindings::{AsyncEventFunction, AsyncEventFunctionIndices};
use super::invocation::classify;
use super::state::State;
use super::{FunctionInner, InvokeError};
use crate::manifest::Reuse;

type HandlerResult = Result<Option<GuestEvent>, HandlerError>;

/// A WASI 0.3 event function's instances.
pub(super) struct P3Events {
    indices: AsyncEventFunctionIndices,
    max_requests: usize,
    max_concurrent: usize,
    idle: Duration,
    /// Instances that may take more events, newest last.
    workers: Mutex<Vec<Arc<Worker>>>,
}

/// One instance, as the events that may go to it see it.
struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Events sent to it and not yet answered.
    running: AtomicUsize,
    taken: AtomicUsize,
    /// It takes no more events (at its limits, past a deadline, retired): changed only
    /// under [`P3Events::workers`]'s lock, as events are dealt out under it.
    closed: AtomicBool,
    /// An event it took passed its deadline: once every event it runs is past its
    /// deadline, it is dropped.
    overdue: Notify,
    /// How it ended: Ok when retired for its limits or idleness.
    retired: tokio::sync::SetOnce<Result<(), InvokeError>>,
}

/// One event for a worker.
struct Job {
    event: GuestEvent,
    context: Option<CallContext>,
    deadline: Instant,
    request_id: Arc<str>,
    reply: oneshot::Sender<HandlerResult>,
}

impl P3Events {
    pub(super) fn new(indices: AsyncEventFunctionIndices, reuse: &Reuse) -> Self {
        Self {
            indices,
            max_requests: reuse.max_requests_or_default() as usize,
            max_concurrent: reuse.max_concurrent_or_default() as usize,
            idle: reuse.idle_or_default(),
            workers: Mutex::default(),
        }
    }

    /// Handles one event in an instance with room for it.
    pub(super) async fn handle(
        &self,
        f: &Arc<FunctionInner>,
        event: GuestEvent,
        request_id: &str,
        context: Option<CallContext>,
    ) -> Result<HandlerResult, InvokeError> {
        let _slot = f.enter().await?;
        let deadline = Instant::now() + f.timeout;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            event,
            context,
            deadline,
            request_id: request_id.into(),
            reply,
        };
        let worker = self.deal(f);
        if worker.jobs.send(job).is_err() {
            return Err(worker.failure().await);
        }
        match tokio::time::timeout_at((deadline + EXPIRY_GRACE).into(), answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_dropped)) => Err(worker.failure().await),
            Err(_elapsed) => {
                self.close(&worker);
                worker.overdue.notify_one();
                Err(InvokeError::Deadline(f.timeout))
            }
        }
    }

    /// The instance the next event goes to: the oldest with room, or a new one.
    fn deal(&self, f: &Arc<FunctionInner>) -> Arc<Worker> {
        let mut workers = self.workers.lock().unwrap();
        workers.retain(|w| !w.closed.load(Ordering::Relaxed));
        let worker = match workers
            .iter()
            .find(|w| w.running.load(Ordering::Relaxed) < self.max_concurrent)
        {
            Some(worker) => worker.clone(),
            None => {
                let (jobs, queue) = mpsc::unbounded_channel();
                let worker = Arc::new(Worker {
                    jobs,
                    running: AtomicUsize::new(0),
                    taken: AtomicUsize::new(0),
                    closed: AtomicBool::new(false),
                    overdue: Notify::new(),
                    retired: tokio::sync::SetOnce::new(),
                });
                tokio::spawn(run(f.clone(), worker.clone(), queue));
                workers.push(worker.clone());
                worker
            }
        };
        worker.running.fetch_add(1, Ordering::Relaxed);
        if worker.taken.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_requests {
            worker.closed.store(true, Ordering::Relaxed);
        }
        worker
    }

    fn close(&self, worker: &Worker) {
        let _workers = self.workers.lock().unwrap();
        worker.closed.store(true, Ordering::Relaxed);
    }

    /// Retires `worker` if it has no event to run: under the lock events are dealt under,
    /// so none is sent to it after.
    fn retire_if_idle(&self, worker: &Worker) -> bool {
        let _workers = self.workers.lock().unwrap();
        let idle = worker.running.load(Ordering::Relaxed) == 0;
        if idle {
            worker.closed.store(true, Ordering::Relaxed);
        }
        idle
    }
}

impl Worker {
    /// Why it failed the events it was running.
    async fn failure(&self) -> InvokeError {
        match tokio::time::timeout(Duration::from_secs(1), self.retired.wait()).await {
            Ok(Err(why)) => why.clone(),
            _ => InvokeError::Trap {
                reason: "the instance handling the event failed".to_string(),
                backtrace: String::new(),
            },
        }
    }
}

/// A worker's life: instantiate, take events until retired, record how it ended.
async fn run(f: Arc<FunctionInner>, me: Arc<Worker>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let Some(events) = f.event_handler_p3() else {
        return;
    };
    let served = AtomicU64::new(0);
    let outcome = serve(&f, events, &me, &mut queue, &served).await;
    if let Err(error) = &outcome {
        let served = served.load(Ordering::Relaxed);
        tracing::warn!(function = %f.name, served, %error, "instance retired after a failure; the events it was running failed with it");
    }
    events.close(&me);
    let _ = me.retired.set(outcome);
    // Events sent as it failed get its failure; their senders are waiting.
    queue.close();
    while queue.try_recv().is_ok() {}
}

async fn serve(
    f: &Arc<FunctionInner>,
    events: &P3Events,
    me: &Arc<Worker>,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    served: &AtomicU64,
) -> Result<(), InvokeError> {
    let (mut store, shared, _slot) = new_store(f)
        .await
        .map_err(|full| InvokeError::Overloaded(full.0))?;
    let _live = f.metrics.instance();
    let started = Instant::now();
    let instance = tokio::time::timeout(f.timeout, f.instance_pre.instantiate_async(&mut store))
        .await
        .map_err(|_| {
            InvokeError::Host("instantiating the function took longer than its timeout".into())
        })?
        .map_err(|e| InvokeError::Host(format!("instantiating the function failed: {e:#}")))?;
    let guest = events
        .indices
        .load(&mut store, &instance)
        .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
    f.metrics
        .instantiated(&f.instantiations, f.label, started.elapsed());

    let run = store.run_concurrent(async |accessor: &Accessor<State>| {
        take_events(accessor, &guest, f, me, queue, &shared, served).await
    });
    // The event loop cannot drop an instance stuck in a guest that never yields: once an
    // event is past its deadline, wait until every event it runs is, and drop it.
    let stuck = async {
        loop {
            me.overdue.notified().await;
            tokio::time::sleep_until((shared.latest_deadline() + EXPIRY_GRACE).into()).await;
            if Instant::now() >= shared.latest_deadline() + EXPIRY_GRACE
                && me.running.load(Ordering::Relaxed) > 0
            {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        outcome = run => outcome.and_then(|inner| inner).map_err(|e| classify(&e, f.timeout)),
        () = stuck => Err(InvokeError::Deadline(f.timeout)),
    };
    f.metrics.instance_retired(
        f.label,
        u32::try_from(served.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
    );
    shared.log_output();
    outcome
}

/// The event loop's side: starts each event it is sent as a task, until the instance is
/// retired (its limits reached and its events answered, idle for `idle`, or the host
/// draining) or a task traps.
async fn take_events(
    accessor: &Accessor<State>,
    guest: &AsyncEventFunction,
    f: &FunctionInner,
    me: &Worker,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    shared: &Arc<InstanceShared>,
    served: &AtomicU64,
) -> wasmtime::Result<()> {
    let Some(events) = f.event_handler_p3() else {
        return Ok(());
    };
    let handle = guest.wasmfn_function_event_handler().func_handle();
    let mut running = FuturesUnordered::new();
    let idle = tokio::time::sleep(events.idle);
    tokio::pin!(idle);
    let drain = super::concurrent::drained(f.draining.clone());
    tokio::pin!(drain);
    let mut draining = false;
    loop {
        tokio::select! {
            // Answers first: a trap must fail the instance before it takes more.
            Some(done) = running.next(), if !running.is_empty() => {
                done?;
                me.running.fetch_sub(1, Ordering::Relaxed);
                if running.is_empty() {
                    if (draining || me.closed.load(Ordering::Relaxed)) && events.retire_if_idle(me) {
                        return Ok(());
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + events.idle);
                }
            }
            Some(job) = queue.recv() => {
                served.fetch_add(1, Ordering::Relaxed);
                shared.extend(job.deadline);
                let Job { event, context, deadline, request_id, reply } = job;
                let call = accessor.with(|mut store| -> wasmtime::Result<_> {
                    let call = handle.start_call_concurrent(store.as_context_mut(), (event,))?;
                    let scope = Scope::new(context, deadline, &*request_id);
                    store.get().start_task(call.task(), scope);
                    Ok(call)
                })?;
                let shared = shared.clone();
                running.push(async move {
                    let finished: wasmtime::Result<_> =
                        handle.finish_call_concurrent(accessor, call).await;
                    let (result,) = finished?;
                    shared.log_output_of(&request_id);
                    let _ = reply.send(result);
                    wasmtime::Result::<()>::Ok(())
                });
            }
            () = &mut drain, if !draining => {
                draining = true;
                if running.is_empty() && events.retire_if_idle(me) {
                    return Ok(());
                }
            }
            () = &mut idle, if running.is_empty() => {
                if events.retire_if_idle(me) {
                    return Ok(());
                }
                idle.as_mut().reset(tokio::time::Instant::now() + events.idle);
            }
        }
    }
}
