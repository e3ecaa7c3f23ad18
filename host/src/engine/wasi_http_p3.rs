//! The `wasi:http/handler@0.3` ABI: a WASI 0.3 component's instances each serve several
//! requests at once and many in a row, as `wasmtime serve` and Spin run them, within the
//! function's `reuse` limits (`max_concurrent` at once, `max_requests` in all, retired after
//! `idle` without work). wasmtime-wasi-http's `ProxyHandler` runs the instances (one worker
//! task per instance, handing each the requests it has room for); this file supplies the
//! host's part of it:
//!
//! - admission: the function's concurrency is per request, and each instance holds one
//!   instance-pool slot for its life, taken before it is created (503 when none frees up);
//! - deadlines: a request that has no response head by its deadline is answered 504 and
//!   the instance takes no more requests; a guest that computes past the latest deadline of
//!   the requests it took is interrupted by the epoch callback, and one that never lets the
//!   event loop run again is expired from outside it;
//! - failure: a trap retires the instance and fails the requests it was running (500, the
//!   trap in the log under each request's id), and only those;
//! - memory: the function's limit applies to each instance;
//! - context: each request's events, calls to other functions, outbound calls and output
//!   are its own, though several run in one store (concurrent.rs);
//! - metrics and logs: instances live, instantiations, requests each retired instance
//!   served; what a guest prints goes to the log under the request that printed it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header;
use http_body_util::BodyExt;
use tracing::Instrument;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance as Worker, InstantiationError, Proxy, ProxyHandler,
    ShouldAccept, TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use super::concurrent::{EXPIRY_GRACE, InstanceShared, PoolFull, Scope, drained, new_store};
use super::context::CallContext;
use super::cut_off::{CutOff, GuestEnd};
use super::invocation::classify;
use super::state::State;
use super::{
    BoxError, FunctionInner, HttpCall, HttpExecutor, InvokeError, RequestBody, Responded,
    ResponseBody,
};
use crate::admission::Slot;
use crate::manifest::Reuse;
use crate::metrics::GaugeGuard;

/// A WASI 0.3 function's instances and the queue of requests waiting for room in one.
pub(super) struct P3Instances {
    handler: ProxyHandler<InstanceFactory>,
}

/// How a WASI 0.3 function's instances are made and how much each may take.
struct InstanceFactory {
    /// Weak: the function owns this, and a worker outlives neither.
    function: Weak<FunctionInner>,
    pre: ServicePre<State>,
    max_requests: usize,
    max_concurrent: usize,
    idle: Duration,
}

/// One request, as handed to whichever instance takes it.
struct Ticket {
    deadline: Instant,
    /// Where its emitted events and calls to other functions go, put in place whenever its
    /// task calls into the host (concurrent.rs).
    context: Option<CallContext>,
    request_id: Arc<str>,
    /// The instance that took it: where to learn why, if that instance fails.
    taken_by: OnceLock<Arc<InstanceShared>>,
}

/// The guest's start code ran past the function's timeout.
#[derive(Debug, thiserror::Error)]
#[error("instantiating the function took longer than its timeout")]
struct InstantiateTimeout;

impl P3Instances {
    pub(super) fn new(
        function: Weak<FunctionInner>,
        pre: ServicePre<State>,
        reuse: &Reuse,
    ) -> Self {
        Self {
            handler: ProxyHandler::new(InstanceFactory {
                function,
                pre,
                max_requests: reuse.max_requests_or_default() as usize,
                max_concurrent: reuse.max_concurrent_or_default() as usize,
                idle: reuse.idle_or_default(),
            }),
        }
    }

    /// Runs one request in an instance with room for it and returns the response once its
    /// head is ready; the body streams on. The function's concurrency slot is held until
    /// the body is done.
    async fn handle<B: RequestBody>(
        &self,
        f: &Arc<FunctionInner>,
        request: hyper::Request<B>,
        request_id: &str,
        context: Option<CallContext>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError> {
        let slot = f.enter().await?;
        let ticket = Arc::new(Ticket {
            deadline: Instant::now() + f.timeout,
            context,
            request_id: request_id.into(),
            taken_by: OnceLock::new(),
        });
        // The handler's own expiry covers requests an instance took; this one also covers
        // the wait for an instance with room.
        let result = tokio::time::timeout(
            f.timeout + EXPIRY_GRACE,
            self.handler.handle(ticket.clone(), wasi_request(request)),
        )
        .instrument(crate::telemetry::child_span("handle"))
        .await;
        if let Some(shared) = ticket.taken_by.get() {
            shared.log_output_of(request_id);
        }
        match result {
            Err(_elapsed) => Err(InvokeError::Deadline(f.timeout)),
            Ok(Ok(response)) => Ok(response.map(|body| {
                let end = InstanceEnd {
                    ticket,
                    function: f.name.clone(),
                    request_id: request_id.into(),
                    _slot: slot,
                };
                CutOff::new(body.map_err(BoxError::from), end).boxed_unsync()
            })),
            Ok(Err(e)) => Err(failure(e, &ticket, f.timeout).await),
        }
    }
}

/// How the instance writing a response ended, for [`CutOff`]: its worker records that
/// before it drops the store, and so before the body can end, so the body's end never
/// waits. The function's concurrency slot goes back when the body is done (or dropped).
struct InstanceEnd {
    ticket: Arc<Ticket>,
    function: Arc<str>,
    request_id: Box<str>,
    _slot: Option<Slot>,
}

impl InstanceEnd {
    fn failed(&self) -> Option<&InvokeError> {
        self.ticket.taken_by.get()?.retired.get()?.as_ref().err()
    }
}

impl GuestEnd for InstanceEnd {
    fn poll_failure(&mut self, _: &mut Context<'_>) -> Poll<Option<String>> {
        Poll::Ready(self.failed().map(|why| {
            tracing::warn!(function = %self.function, request_id = %self.request_id, error = %why, "response cut off: the instance writing it failed");
            why.to_string()
        }))
    }

    fn finished(&self) -> bool {
        self.failed().is_none()
    }
}

impl Drop for InstanceEnd {
    fn drop(&mut self) {
        // What it printed while writing the body.
        if let Some(shared) = self.ticket.taken_by.get() {
            shared.log_output_of(&self.request_id);
        }
    }
}

impl HttpExecutor for P3Instances {
    async fn execute<B: RequestBody>(&self, call: HttpCall<'_, B>) -> Responded {
        self.handle(call.function, call.request, call.request_id, call.emit)
            .await
    }
}

/// The request as wasi:http 0.3 hands it to the guest: an absolute URI (the guest reads the
/// scheme and authority), and a body whose read errors are wasi:http errors.
fn wasi_request<B: RequestBody>(request: hyper::Request<B>) -> http::Request<WasiBody> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.authority().is_none()
        && let Some(authority) = parts
            .headers
            .get(header::HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    {
        // From parts: the path is not parsed again (formatting and parsing the whole URI
        // cost ~2 k instructions a request).
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    let body = body
        .map_err(|e| {
            let e: BoxError = e.into();
            if e.is::<http_body_util::LengthLimitError>() {
                wasmtime_wasi_http::Error::HttpRequestBodySize(None)
            } else {
                wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
            }
        })
        .boxed_unsync();
    http::Request::from_parts(parts, body)
}

/// What a failed request tells its client.
async fn failure(e: wasmtime::Error, ticket: &Ticket, timeout: Duration) -> InvokeError {
    if e.is::<ExpirationError>() {
        return InvokeError::Deadline(timeout);
    }
    if let Some(code) = e.downcast_ref::<ErrorCode>() {
        return InvokeError::error_code(code, status(code));
    }
    if let Some(failed) = e.downcast_ref::<InstantiationError<Arc<Ticket>>>() {
        if let Some(full) = failed.error.downcast_ref::<PoolFull>() {
            return InvokeError::Overloaded(full.0.clone());
        }
        return InvokeError::Host(format!(
            "instantiating the function failed: {}",
            failed.error
        ));
    }
    if e.is::<TrapOrPanicError>() {
        // The instance running it failed; its worker records why as it retires it.
        if let Some(shared) = ticket.taken_by.get()
            && let Ok(Err(why)) =
                tokio::time::timeout(Duration::from_secs(1), shared.retired.wait()).await
        {
            return why.clone();
        }
        return InvokeError::Trap {
            reason: "the instance serving the request failed".to_string(),
            backtrace: String::new(),
        };
    }
    classify(&e, timeout)
}

impl HandlerState for InstanceFactory {
    type StoreData = State;
    type WorkerExpiration = InstanceExpiry;
    type WorkerState = LiveInstance;

    async fn instantiate(&self) -> wasmtime::Result<Worker<State, InstanceExpiry, LiveInstance>> {
        let f = self
            .function
            .upgrade()
            .ok_or_else(|| wasmtime::format_err!("the function was unloaded"))?;
        let (mut store, shared, slot) = new_store(&f).await.map_err(wasmtime::Error::new)?;
        let started = Instant::now();
        let service = tokio::time::timeout(f.timeout, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|_| wasmtime::Error::new(InstantiateTimeout))??;
        f.metrics
            .instantiated(&f.instantiations, f.label, started.elapsed());
        Ok(Worker {
            store,
            proxy: Proxy::P3(service),
            view: <State as WasiHttpView>::http,
            expiration: InstanceExpiry {
                timeout: f.timeout,
                idle: self.idle,
                sleep: Box::pin(tokio::time::sleep(self.idle)),
                shared: shared.clone(),
                drain: Some(Box::pin(drained(f.draining.clone()))),
            },
            state: LiveInstance {
                max_requests: self.max_requests,
                max_concurrent: self.max_concurrent,
                timeout: f.timeout,
                name: f.name.clone(),
                label: f.label,
                metrics: f.metrics.clone(),
                shared,
                draining: f.draining.clone(),
                _slot: slot,
                _live: f.metrics.instance(),
            },
        })
    }
}

/// One instance's limits and what it holds while it lives.
struct LiveInstance {
    max_requests: usize,
    max_concurrent: usize,
    timeout: Duration,
    name: Arc<str>,
    label: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    shared: Arc<InstanceShared>,
    draining: tokio::sync::watch::Receiver<bool>,
    _slot: Slot,
    _live: GaugeGuard,
}

impl WorkerState for LiveInstance {
    type StoreData = State;
    type RequestData = Arc<Ticket>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests || self.shared.missed_deadline.load(Ordering::Relaxed) {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, State>,
        ticket: Arc<Ticket>,
        task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
        self.shared.extend(ticket.deadline);
        let scope = Scope::new(
            ticket.context.clone(),
            ticket.deadline,
            ticket.request_id.clone(),
        );
        store.data_mut().start_task(task, scope);
        let _ = ticket.taken_by.set(self.shared.clone());
        // The handler answers the request 504 when this resolves first.
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::time::sleep_until(ticket.deadline.into()).await;
            shared.missed_deadline.store(true, Ordering::Relaxed);
        })
    }

    fn drop(&self, store: Store<State>, result: wasmtime::Result<()>) {
        let served = self.shared.served.load(Ordering::Relaxed);
        self.metrics
            .instance_retired(self.label, u32::try_from(served).unwrap_or(u32::MAX));
        let outcome = result.map_err(|e| {
            if self.shared.expired.load(Ordering::Relaxed) {
                InvokeError::Deadline(self.timeout)
            } else {
                classify(&e, self.timeout)
            }
        });
        match &outcome {
            // Dropped with the host's runtime after the drain's time ran out: nothing failed.
            Err(_) if *self.draining.borrow() => {
                tracing::info!(function = %self.name, served, "instance stopped with the host");
            }
            Err(error) => {
                tracing::warn!(function = %self.name, served, %error, "instance retired after a failure; the requests it was running failed with it");
            }
            Ok(()) => {}
        }
        self.shared.log_output();
        let _ = self.shared.retired.set(outcome);
        drop(store);
    }
}

/// When an instance is retired from outside its event loop: idle for `idle`, or a
/// request or the work after its response running past the function's timeout.
struct InstanceExpiry {
    timeout: Duration,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    shared: Arc<InstanceShared>,
    /// Resolves when the host drains; None once it has.
    drain: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl WorkerExpiration for InstanceExpiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        if let Some(drain) = &mut this.drain
            && drain.as_mut().poll(cx).is_ready()
        {
            this.drain = None;
        }
        // Draining, an idle instance retires now: the handler ends it cleanly.
        if this.drain.is_none() && status == WorkerStatus::Idle {
            return Poll::Ready(());
        }
        let until = match status {
            WorkerStatus::Idle => start + this.idle,
            // `start` is the newest request's: past this, every request it runs is past its
            // deadline, and each has had its 504 if the event loop could run.
            WorkerStatus::Requests => start + this.timeout + EXPIRY_GRACE,
            WorkerStatus::PostReturn => start + this.timeout,
        };
        let until = tokio::time::Instant::from_std(until);
        if this.sleep.deadline() != until {
            this.sleep.as_mut().reset(until);
        }
        let expired = this.sleep.as_mut().poll(cx);
        if expired.is_ready() && status != WorkerStatus::Idle {
            this.shared.expired.store(true, Ordering::Relaxed);
        }
        expired
    }
}

super::error_code_status!(status, ErrorCode);
