//! The `wasi:http/incoming-handler@0.2` ABI, the standard one every `wasi:http` host runs:
//! the request and the response outparam are resources in the store, and the guest runs in
//! its own task so it can stream the body on after the response head has gone out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

use super::cut_off::{CutOff, GuestEnd};
use super::invocation::Invocation;
use super::state::State;
use super::{BoxError, HttpCall, HttpExecutor, InvokeError, RequestBody, Responded};
use wasmtime::Store;

impl HttpExecutor for ProxyIndices {
    /// In a fresh instance (or an idle one, if the function reuses instances), dropped
    /// when the guest traps or passes its deadline; the guest runs in its own task, so the
    /// body streams on after the head.
    async fn execute<B: RequestBody>(&self, call: HttpCall<'_, B>) -> Responded {
        let exports = self.clone();
        let HttpCall {
            function: f,
            request,
            request_id,
            emit,
        } = call;
        let mut invocation = Invocation::begin(f, request_id, emit).await?;

        let request = request
            .map(|body| body.map_err(|e| ErrorCode::InternalError(Some(e.into().to_string()))));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // Set when the guest hands over its response head. After that the client can only
        // see a failure as a cut-off body, so the guest's task must log it itself.
        let head_sent = Arc::new(AtomicBool::new(false));
        let (req, out) = {
            let mut http = invocation.store_mut().data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let flag = head_sent.clone();
            let out = http
                .new_response_outparam_from_callback(move |response| {
                    flag.store(response.is_ok(), Ordering::Release);
                    // The receiver is gone only if the request was abandoned; nothing to do.
                    let _ = sender.send(response);
                })
                .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
            (req, out)
        };

        let (name, id) = (f.name.clone(), request_id.to_string());
        let (ended, failed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let handle = async |proxy: Proxy, store: &mut Store<State>| {
                let handler = proxy.wasi_http_incoming_handler();
                handler.call_handle(store, req, out).await
            };
            let result = invocation.run(&exports, handle).await;
            // Before the head, `handle` turns the error into a status and the server logs
            // it; after the head, this is the only place that still knows.
            if let Err(error) = &result
                && head_sent.load(Ordering::Acquire)
            {
                tracing::error!(
                    function = %name, request_id = %id, %error,
                    "function failed after sending its response head; the body was cut off"
                );
            }
            let _ = ended.send(result.is_err());
            result
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response.map(|body| {
                CutOff::new(body.map_err(BoxError::from), TaskEnd(failed)).boxed_unsync()
            })),
            Ok(Err(code)) => Err(InvokeError::error_code(&code, status(&code))),
            // The outparam was dropped unset: the task's result says why.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(InvokeError::NoResponse(
                    "the handler returned without calling response-outparam.set".to_string(),
                )),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(InvokeError::Host(format!("invocation task failed: {join}"))),
            },
        }
    }
}

/// Whether the guest's invocation failed, sent by its task when `handle` returns, for
/// [`CutOff`]: a guest that finished its body returns at once, and the task has logged a
/// failure under the request's id.
struct TaskEnd(tokio::sync::oneshot::Receiver<bool>);

impl GuestEnd for TaskEnd {
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        // A task that ended without a word (it panicked) failed too.
        let failed = std::task::ready!(Pin::new(&mut self.0).poll(cx)).unwrap_or(true);
        Poll::Ready(failed.then(|| "see the log under this request's id".to_string()))
    }

    fn finished(&self) -> bool {
        // Polled to the end and not failed, or the body would have ended in the error.
        self.0.is_terminated()
    }
}

super::error_code_status!(status, ErrorCode);
