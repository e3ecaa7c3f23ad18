//! Test guest: sends a 200 head and the first bytes of a body it promised to be longer, then
//! panics. The client can only see a cut-off body, so the host must log the failure.
use wasip2::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers =
            Fields::from_list(&[("content-length".to_string(), b"1000".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(b"first bytes ").unwrap();
        panic!("test-late-trap fails after its response head");
    }
}
