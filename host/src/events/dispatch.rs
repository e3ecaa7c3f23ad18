//! Delivering CloudEvents to the functions that subscribe to them, and sending on what they
//! emit. The [`Dispatcher`] owns the functions' subscriptions and where emitted events go:
//! it answers a request that carries events (decode, deliver each, reply in the mode the
//! events came in), and it is the [`Emit`] every invocation emits through: to the sink when
//! there is one, else to this host's own subscribers (a local Sequence, for development).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::schedule::Scheduler;
use super::sink::EventOptions;
use crate::cloudevent::{self, DecodeError, Mode};
use crate::engine::{
    CallContext, Emit, EmitError, EventOutcome, HOP_LIMIT, RequestBody, beyond_hop_limit,
};
use crate::failure::{Failure, full};
use crate::functions::Functions;
use crate::manifest::Manifest;
use crate::manifest::flows::{Branch, Flow, FlowKind};
use crate::manifest::schedule::Schedule;
use crate::manifest::subscription::Subscription;
use crate::metrics::Metrics;
use crate::telemetry::{self, TraceContext};

/// The largest CloudEvents request body read; larger ones get 413.
pub const MAX_EVENT_BODY: usize = 16 * 1024 * 1024;

/// Delivers events to the functions of a manifest and sends on what they emit.
pub struct Dispatcher {
    functions: Arc<Functions>,
    /// (function index, subscription), in manifest order.
    subscriptions: Vec<(usize, Subscription)>,
    /// Which functions take events (by subscription or schedule), by index.
    takes_events: Vec<bool>,
    /// Sequences and parallels this host runs itself.
    flows: Vec<Flow>,
    /// (function index, function name, schedule), for [`Dispatcher::start_schedules`].
    schedules: Vec<(usize, String, Schedule)>,
    /// The namespace scheduled events name in their source, as Knative's would.
    namespace: String,
    options: EventOptions,
    metrics: Arc<Metrics>,
}

/// Who an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// Every function with a subscription that matches it, each once: events this host
    /// delivers to itself, and events POSTed to the events path.
    Subscribers,
    /// This function only (by index), whatever its filters: a Knative Trigger, which has
    /// filtered already, delivering to the function it names.
    Only(usize),
}

/// An events request that was not accepted: why, and which event it concerns.
#[derive(Debug)]
pub struct Refused {
    /// Why; it knows its status.
    pub failure: Failure,
    /// The event concerned, once the request was decoded.
    pub event_id: Option<String>,
}

impl From<Failure> for Refused {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            event_id: None,
        }
    }
}

impl Dispatcher {
    /// A dispatcher for `manifest`'s subscriptions, emitting where `options` says.
    pub fn new(
        manifest: &Manifest,
        functions: Arc<Functions>,
        options: EventOptions,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let subscriptions = manifest
            .functions
            .iter()
            .enumerate()
            .flat_map(|(i, spec)| spec.events.iter().map(move |s| (i, s.clone())))
            .collect();
        Arc::new(Self {
            functions,
            subscriptions,
            takes_events: manifest
                .functions
                .iter()
                .map(|f| f.takes_events())
                .collect(),
            flows: manifest.flows.clone(),
            schedules: manifest
                .functions
                .iter()
                .enumerate()
                .flat_map(|(i, f)| {
                    f.schedules
                        .iter()
                        .map(move |s| (i, f.name.clone(), s.clone()))
                })
                .collect(),
            namespace: manifest
                .deploy
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            options,
            metrics,
        })
    }

    /// Whether any function or flow takes events from the events path.
    pub fn has_subscribers(&self) -> bool {
        !self.subscriptions.is_empty() || self.flows.iter().any(|f| !f.events.is_empty())
    }

    /// Fires the functions' schedules from this host until the returned handle is dropped.
    pub fn start_schedules(self: &Arc<Self>) -> Scheduler {
        Scheduler::start(self, &self.schedules, &self.namespace)
    }

    /// Delivers `event` to function `i` alone, as a Broker or PingSource would: a reply is
    /// sent on, a failure logged.
    pub async fn deliver_to(self: &Arc<Self>, i: usize, event: Event) -> Result<(), Failure> {
        let request_id = telemetry::new_request_id();
        let trace = TraceContext::from_event(&event);
        self.deliver(&event, Recipients::Only(i), &request_id, 0, trace, false)
            .await
            .map(drop)
    }

    /// Whether function `i` takes events.
    pub fn takes_events(&self, i: usize) -> bool {
        self.takes_events.get(i).copied().unwrap_or(false)
    }

    /// What an invocation `hops` deliveries from its request emits through.
    pub fn emit_context(
        self: &Arc<Self>,
        hops: u32,
        trace: Option<TraceContext>,
        request_id: &str,
    ) -> CallContext {
        CallContext {
            emitter: self.clone(),
            functions: self.functions.clone(),
            hops,
            trace,
            request_id: request_id.into(),
        }
    }

    /// Answers a request that carries CloudEvents in `mode`: decode, deliver each to `to`,
    /// reply in the mode the events came in.
    pub async fn handle_request<B: RequestBody>(
        self: &Arc<Self>,
        req: Request<B>,
        mode: Mode,
        to: Recipients,
        request_id: &str,
    ) -> Result<Response<crate::engine::ResponseBody>, Refused> {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_EVENT_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let failure = if e.is::<http_body_util::LengthLimitError>() {
                    Failure::BodyTooLarge {
                        function: None,
                        limit: MAX_EVENT_BODY as u64,
                    }
                } else {
                    Failure::BadRequest {
                        reason: format!("reading the request body failed: {e}"),
                    }
                };
                tracing::info!(%request_id, status = failure.status().as_u16(), error = %failure, "event request refused");
                return Err(failure.into());
            }
        };
        let events = cloudevent::decode(mode, &parts.headers, &body).map_err(|e| {
            let failure = match e {
                DecodeError::UnsupportedFormat(_) => Failure::UnsupportedEventFormat {
                    reason: e.to_string(),
                },
                DecodeError::Malformed(_) => Failure::MalformedEvent {
                    reason: e.to_string(),
                },
            };
            tracing::info!(%request_id, status = failure.status().as_u16(), error = %failure, "event refused");
            Refused::from(failure)
        })?;
        let header_trace = TraceContext::from_headers(&parts.headers);
        let refused = |failure: Failure, event: &Event| Refused {
            failure,
            event_id: Some(event.id().to_string()),
        };
        let mut replies = Vec::new();
        let mut rejected = None;
        for event in &events {
            let trace = TraceContext::from_event(event).or_else(|| header_trace.clone());
            match self.deliver(event, to, request_id, 0, trace, true).await {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => {}
                // A rejection is final, so the rest of a batch still gets delivered; the
                // batch is then answered as rejected, for the broker to dead-letter.
                Err(failure @ Failure::Rejected { .. }) if mode == Mode::Batch => {
                    rejected.get_or_insert((failure, event));
                }
                // Anything retryable fails the batch now: the broker redelivers all of it.
                Err(failure) => return Err(refused(failure, event)),
            }
        }
        if let Some((failure, event)) = rejected {
            // The 422 carries no replies, so the replies of the events that were accepted
            // travel on as emitted events instead of being dropped.
            for reply in replies {
                if let Err(e) = self.clone().emit(reply, 1).await {
                    let failure = Failure::ReplyNotEmitted {
                        function: "(batch)".to_string(),
                        reason: e.to_string(),
                    };
                    log_failure(&failure, event, request_id);
                    return Err(refused(failure, event));
                }
            }
            return Err(refused(failure, event));
        }
        tracing::debug!(
            %request_id, events = events.len(), replies = replies.len(),
            elapsed_us = started.elapsed().as_micros() as u64, "events delivered"
        );
        if replies.is_empty() {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::ACCEPTED;
            return Ok(response);
        }
        let (headers, body) = cloudevent::encode(mode, &replies);
        let mut response = Response::new(full(body));
        response.headers_mut().extend(headers);
        Ok(response)
    }

    /// Runs the recipients of `event` (each once, however many of its subscriptions
    /// match). With exactly one and `inline_reply`, its reply is returned for the
    /// response; otherwise replies are emitted onward.
    async fn deliver(
        self: &Arc<Self>,
        event: &Event,
        to: Recipients,
        request_id: &str,
        hops: u32,
        trace: Option<TraceContext>,
        inline_reply: bool,
    ) -> Result<Option<Event>, Failure> {
        let targets = self.targets(event, to);
        if targets.is_empty() {
            return Err(Failure::NoSubscriber {
                ty: event.ty().to_string(),
                event_source: event.source().to_string(),
            });
        }
        // An event that brought no trace starts one (see App::handle).
        let trace = trace.unwrap_or_else(TraceContext::start);
        let emit = self.emit_context(hops, Some(trace.clone()), request_id);
        let run = |target| self.run(target, event, request_id, &emit);
        let results = if let [only] = targets[..] {
            vec![run(only).await]
        } else {
            futures_util::future::join_all(targets.iter().map(|&t| run(t))).await
        };
        let inline = inline_reply && results.len() == 1;
        self.settle(results, event, request_id, hops, &trace, inline)
            .await
    }

    /// Who takes `event`: each subscribed function once, and each flow it starts.
    fn targets(&self, event: &Event, to: Recipients) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        match to {
            Recipients::Only(i) => targets.push(Target::Function(i)),
            Recipients::Subscribers => {
                for (i, subscription) in &self.subscriptions {
                    let target = Target::Function(*i);
                    if !targets.contains(&target) && subscription.matches(event) {
                        targets.push(target);
                    }
                }
                for (i, flow) in self.flows.iter().enumerate() {
                    if flow.events.iter().any(|s| s.matches(event)) {
                        targets.push(Target::Flow(i));
                    }
                }
            }
        }
        targets
    }

    /// Runs one target on `event`: what it answered, under the name it answers for.
    async fn run(
        self: &Arc<Self>,
        target: Target,
        event: &Event,
        request_id: &str,
        emit: &CallContext,
    ) -> (String, Result<EventOutcome, Failure>) {
        let i = match target {
            Target::Function(i) => i,
            Target::Flow(f) => {
                let flow = &self.flows[f];
                let result = self
                    .run_flow(flow, event, request_id, emit.hops, emit.trace.clone())
                    .await
                    .map(|reply| EventOutcome::Reply(reply.filter(|_| flow.reply).map(Box::new)));
                return (flow.name.clone(), result);
            }
        };
        let started = Instant::now();
        // A replayed event's time is when it first happened, not a delay in delivering it.
        let replayed = event
            .extension("replay")
            .is_some_and(|v| v.to_string() == "true");
        if let Some(time) = event.time().filter(|_| !replayed) {
            self.metrics
                .event_lag(self.functions.label(i), chrono::Utc::now() - *time);
        }
        let v = self.functions.choose_for_event(i);
        let (name, version) = (self.functions.name(i), self.functions.version_label(i, v));
        let span = telemetry::root_span("event", name, request_id, emit.trace.as_ref());
        let trace_id = telemetry::trace_id(emit.trace.as_ref());
        let emit = emit.clone();
        let result = self
            .functions
            .invoke(i, v, span, move |function| {
                function.handle_event(event, request_id, Some(emit))
            })
            .await;
        let outcome = outcome_label(&result);
        self.metrics
            .event(self.functions.label(i), version, event.ty(), outcome);
        tracing::info!(
            function = name, version, %request_id,
            trace_id,
            event_id = event.id(), event_type = event.ty(),
            result = outcome,
            elapsed_us = started.elapsed().as_micros() as u64, "event"
        );
        (name.to_string(), result)
    }

    /// What the recipients of `event` answered, as one answer: replies sent on (or the
    /// one returned, when `inline`), and the failure that decides, a retryable one first.
    async fn settle(
        self: &Arc<Self>,
        results: Vec<(String, Result<EventOutcome, Failure>)>,
        event: &Event,
        request_id: &str,
        hops: u32,
        trace: &TraceContext,
        inline: bool,
    ) -> Result<Option<Event>, Failure> {
        let (mut retryable, mut rejected, mut reply) = (None, None, None);
        for (function, result) in results {
            match result {
                Ok(EventOutcome::Reply(None)) => {}
                Ok(EventOutcome::Reply(Some(mut out))) => {
                    trace.apply_to(&mut out);
                    if inline {
                        reply = Some(*out);
                    } else if let Err(e) = self.clone().emit(*out, hops + 1).await {
                        retryable.get_or_insert(Failure::ReplyNotEmitted {
                            function,
                            reason: e.to_string(),
                        });
                    }
                }
                Ok(EventOutcome::Retry { message, after }) => {
                    retryable.get_or_insert(Failure::RetryRequested {
                        function,
                        message,
                        after,
                    });
                }
                Ok(EventOutcome::Reject(message)) => {
                    rejected.get_or_insert(Failure::Rejected { function, message });
                }
                Err(failure) => {
                    retryable.get_or_insert(failure);
                }
            }
        }
        // A retryable failure wins: the broker redelivers, and at-least-once delivery
        // lets the functions that succeeded see the event again.
        match retryable.or(rejected) {
            Some(failure) => {
                log_failure(&failure, event, request_id);
                Err(failure)
            }
            None => Ok(reply),
        }
    }

    /// Runs `flow` on `event` in this host, as Knative would: a sequence hands each step's
    /// reply to the next (a step with no reply ends it) and returns the last reply; a
    /// parallel gives the event to every branch at once, through its filter if it has one,
    /// and sends each branch's reply on (or drops them, without `reply`).
    fn run_flow<'a>(
        self: &'a Arc<Self>,
        flow: &'a Flow,
        event: &'a Event,
        request_id: &'a str,
        hops: u32,
        trace: Option<TraceContext>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Event>, Failure>> + Send + 'a>> {
        Box::pin(async move {
            let step = |input: Event, i: usize| {
                let trace = trace.clone();
                async move {
                    self.deliver(&input, Recipients::Only(i), request_id, hops, trace, true)
                        .await
                }
            };
            match &flow.kind {
                FlowKind::Sequence(steps) => {
                    let mut current = event.clone();
                    for &i in steps {
                        match step(current, i).await? {
                            Some(reply) => current = reply,
                            None => return Ok(None),
                        }
                    }
                    Ok(Some(current))
                }
                FlowKind::Parallel(branches) => {
                    let branch = |b: Branch| async move {
                        let input = match b.filter {
                            None => event.clone(),
                            Some(filter) => match step(event.clone(), filter).await? {
                                Some(passed) => passed,
                                None => return Ok(None),
                            },
                        };
                        step(input, b.subscriber).await
                    };
                    let results =
                        futures_util::future::join_all(branches.iter().map(|&b| branch(b))).await;
                    for result in results {
                        if let Some(reply) = result?
                            && flow.reply
                        {
                            self.clone().emit(reply, hops + 1).await.map_err(|e| {
                                Failure::ReplyNotEmitted {
                                    function: flow.name.clone(),
                                    reason: e.to_string(),
                                }
                            })?;
                        }
                    }
                    Ok(None)
                }
            }
        })
    }

    /// Delivers an emitted event to this host's subscribers; the emitter's path when no
    /// sink is configured. Replies travel on the same way, up to [`HOP_LIMIT`] deliveries.
    async fn dispatch_local(self: &Arc<Self>, event: Event, hops: u32) -> Result<(), EmitError> {
        if beyond_hop_limit(hops) {
            return Err(EmitError::NotDelivered(format!(
                "event {} of type {} is {hops} in-process deliveries from its request; stopping what looks like a loop (limit {HOP_LIMIT})",
                event.id(),
                event.ty()
            )));
        }
        let request_id = telemetry::new_request_id();
        let trace = TraceContext::from_event(&event);
        let to = Recipients::Subscribers;
        match self
            .deliver(&event, to, &request_id, hops, trace, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(Failure::NoSubscriber { .. }) => {
                tracing::info!(
                    %request_id, event_id = event.id(), event_type = event.ty(), event_source = event.source(),
                    "emitted event has no subscriber in this host and no sink is configured"
                );
                Ok(())
            }
            Err(failure) => Err(EmitError::NotDelivered(failure.to_string())),
        }
    }
}

impl Emit for Dispatcher {
    fn emit(
        self: Arc<Self>,
        mut event: Event,
        hops: u32,
    ) -> Pin<Box<dyn Future<Output = Result<(), EmitError>> + Send>> {
        Box::pin(async move {
            for (name, value) in &self.options.overrides {
                event.set_extension(name, value.clone());
            }
            let result = match &self.options.sink {
                Some(sink) => sink
                    .send(&event)
                    .await
                    .map_err(|e| EmitError::NotDelivered(e.to_string())),
                None => self.dispatch_local(event, hops).await,
            };
            self.metrics.emitted(result.is_ok());
            result
        })
    }
}

/// One recipient of an event in this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A function, by index.
    Function(usize),
    /// A flow, by index.
    Flow(usize),
}

/// How a delivery ended, as the `result` of its log line and metric.
fn outcome_label(result: &Result<EventOutcome, Failure>) -> &'static str {
    match result {
        Ok(EventOutcome::Reply(Some(_))) => "reply",
        Ok(EventOutcome::Reply(None)) => "accepted",
        Ok(EventOutcome::Retry { .. }) => "retry",
        Ok(EventOutcome::Reject(_)) => "reject",
        Err(_) => "error",
    }
}

/// One line for an event that was not accepted: an error when a guest or the host failed,
/// a warning when a handler said retry or reject.
fn log_failure(failure: &Failure, event: &Event, request_id: &str) {
    let (event_id, event_type) = (event.id(), event.ty());
    match failure.backtrace() {
        Some(backtrace) => {
            tracing::error!(%request_id, event_id, event_type, error = %failure, backtrace = ?backtrace, "event failed")
        }
        None if failure.is_fault() => {
            tracing::error!(%request_id, event_id, event_type, error = %failure, "event failed")
        }
        None => {
            tracing::warn!(%request_id, event_id, event_type, error = %failure, "event not accepted")
        }
    }
}
