//! A standard `wasi:http` component written with the `wasip2` crate and no wasmfn code at
//! all: proof that wasmfn hosts what `wasmtime serve` hosts, unchanged.
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = format!("raw wasi:http component saw {path}\n");
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .unwrap();
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        {
            let stream = outgoing.write().unwrap();
            stream.blocking_write_and_flush(body.as_bytes()).unwrap();
        }
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}
