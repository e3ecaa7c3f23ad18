//! The `wasi:http/incoming-handler@0.2` ABI, the standard one every `wasi:http` host runs:
//! the request and the response outparam are resources in the store, and the guest runs in
//! its own task so it can stream the body on after the response head has gone out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use super::context::CallContext;
use super::invocation::Invocation;
use super::state::State;
use super::{BoxError, Function, InvokeError, ResponseBody, http_handler};
use wasmtime::Store;

impl Function {
    /// Runs one request and returns the guest's response once its head is ready; the body
    /// streams on while the guest writes it. A WASI 0.2 function runs it in a fresh
    /// instance (or an idle one, if it reuses instances), dropped when the guest traps or
    /// passes its deadline. With `emit`, the guest's `emitter.emit` calls go there; without,
    /// they fail with a reason.
    ///
    /// A function that also exports `wasmfn:function/http-handler` gets a request with a
    /// small body of known length through that one call instead (http_handler.rs). A WASI
    /// 0.3 function gets it in one of its instances serving several (wasi_http_p3.rs).
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
        request_id: &str,
        emit: Option<CallContext>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let f = &self.inner;
        if let Some(service) = &f.wasi_http_p3 {
            return service.handle(f, request, request_id).await;
        }
        let Some(exports) = f.wasi_http.clone() else {
            return Err(InvokeError::Host(format!(
                "function `{}` has no HTTP handler",
                f.name
            )));
        };
        if let Some(one_call) = &f.http_handler
            && http_handler::fits(&request)
        {
            // Boxed here, before any await: a body type carrying the caller's closures in
            // this future trips rustc's check that the future is Send.
            let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
            return self
                .call_http_handler(one_call, request, request_id, emit)
                .await;
        }
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
            result
        });

        match receiver.await {
            Ok(Ok(response)) => {
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Ok(Err(code)) => Err(InvokeError::error_code(format!("{code:?}"))),
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
