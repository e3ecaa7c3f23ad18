//! `wasi:http/outgoing-handler`: the hooks wasmtime-wasi-http calls when a guest sends a
//! request. A request goes out only to the function's `allowed_outbound_hosts` (anything
//! else is `HttpRequestDenied`, and a log line names the refused authority), bounded by
//! what is left of the invocation's deadline and by the function's `outbound_concurrency`,
//! with the caller's trace context. A request to `<function>.wasmfn.internal` goes to that
//! function of this host in process, one hop further in the chain.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::context::{CallContext, beyond_hop_limit};
use crate::admission::{Gate, Slot};
use crate::manifest::hosts::{AllowedHosts, internal_target};
use crate::outbound::Client;
use crate::telemetry::TraceContext;

/// Where one function's outbound requests may go, through what, and how many at once.
pub(crate) struct OutboundGrant {
    pub(crate) hosts: AllowedHosts,
    pub(crate) client: Client,
    pub(crate) concurrency: Gate,
    /// The host's Redis connections, for `redis://` entries of `hosts`.
    pub(crate) redis: crate::databases::redis::Connections,
    /// The host's PostgreSQL pools, for `postgres://` entries of `hosts`.
    pub(crate) postgres: crate::databases::postgres::Pools,
    /// The PostgreSQL connections it may hold at once.
    pub(crate) postgres_connections: Gate,
}

/// The hooks of one invocation's store.
pub(crate) struct Outgoing {
    pub(crate) grant: Option<Arc<OutboundGrant>>,
    pub(crate) function: Arc<str>,
    pub(crate) context: Option<CallContext>,
    pub(crate) deadline: Option<Instant>,
    /// How long a call may take where no request's deadline applies (a WASI 0.3 guest's
    /// start code): the function's timeout from when it is made.
    pub(crate) call_timeout: std::time::Duration,
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let (grant, function, context, deadline) = (
            self.grant.clone(),
            self.function.clone(),
            self.context.clone(),
            Some(
                self.deadline
                    .unwrap_or_else(|| Instant::now() + self.call_timeout),
            ),
        );
        Box::new(async move {
            let response = send(grant, &function, context, deadline, request).await?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

async fn send(
    grant: Option<Arc<OutboundGrant>>,
    function: &str,
    context: Option<CallContext>,
    deadline: Option<Instant>,
    mut request: http::Request<WasiBody>,
) -> Result<http::Response<WasiBody>, Error> {
    let request_id = context
        .as_ref()
        .map_or_else(Arc::default, |c| c.request_id.clone());
    let Some(grant) = grant.filter(|g| g.hosts.allows(request.uri())) else {
        tracing::warn!(
            function, %request_id,
            authority = request.uri().authority().map_or("", |a| a.as_str()),
            scheme = request.uri().scheme_str().unwrap_or(""),
            "outbound request denied: not in allowed_outbound_hosts"
        );
        return Err(Error::HttpRequestDenied);
    };
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        return Err(Error::ConnectionTimeout);
    }
    let far = std::time::Duration::from_secs(3600);
    let slot = grant
        .concurrency
        .enter(left.unwrap_or(far))
        .await
        .map_err(|_| Error::ConnectionLimitReached)?;
    if let Some(trace) = context.as_ref().and_then(|c| c.trace.as_ref())
        && !request.headers().contains_key(TraceContext::NAME)
        && let Some(value) = trace.header_value()
    {
        request.headers_mut().insert(TraceContext::NAME, value);
    }
    let request = request.map(|body| body.map_err(boxed).boxed_unsync());
    let within = |left: Option<std::time::Duration>| left.unwrap_or(far);

    if let Some(target) = internal_target(request.uri()) {
        let Some(context) = context else {
            return Err(Error::DestinationNotFound);
        };
        if beyond_hop_limit(context.hops + 1) {
            tracing::warn!(function, %request_id, target, hops = context.hops, "call to another function refused: it looks like a loop");
            return Err(Error::LoopDetected);
        }
        let callee = CallContext {
            hops: context.hops + 1,
            ..context.clone()
        };
        let call = context.functions.clone().call(target, request, callee);
        let response = tokio::time::timeout(within(left), call)
            .await
            .map_err(|_| Error::HttpResponseTimeout)?
            .map_err(|_| Error::DestinationNotFound)?;
        return Ok(response.map(|body| holding(body.map_err(internal_error), slot)));
    }

    let response = tokio::time::timeout(within(left), grant.client.send(request))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(|e| classify(&e))?;
    Ok(response.map(|body| holding(body.map_err(Error::from), slot)))
}

fn boxed(error: Error) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(error)
}

fn internal_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::InternalError(Some(e.to_string()))
}

/// The `wasi:http` error code for a client error, as the guest sees it.
fn classify(e: &hyper_util::client::legacy::Error) -> Error {
    let text = crate::logging::error_chain(e);
    if e.is_connect() {
        let lower = text.to_ascii_lowercase();
        if lower.contains("refused") {
            Error::ConnectionRefused
        } else if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("invalid peer")
        {
            Error::TlsCertificateError
        } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
            Error::DnsError {
                rcode: None,
                info_code: None,
            }
        } else if lower.contains("timed out") || lower.contains("timeout") {
            Error::ConnectionTimeout
        } else {
            Error::InternalError(Some(text))
        }
    } else {
        Error::InternalError(Some(text))
    }
}

/// A response body that holds the function's outbound slot until it is read or dropped.
fn holding<B>(body: B, slot: Slot) -> WasiBody
where
    B: Body<Data = Bytes, Error = Error> + Send + Unpin + 'static,
{
    Holding { body, _slot: slot }.boxed_unsync()
}

struct Holding<B> {
    body: B,
    _slot: Slot,
}

impl<B: Body + Unpin> Body for Holding<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
