//! A plain WASI 0.3 HTTP component, without our SDK: answers every request with a greeting,
//! its body written through a 0.3 stream. wasmfn refuses it at start with an error that
//! names what it wants (WASI 0.3) and what the host offers (WASI 0.2); see issue 17.
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(_request: Request) -> Result<Response, ErrorCode> {
        let (mut body, reader) = wit_stream::new();
        let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(reader), trailers_reader);
        drop(trailers);
        wit_bindgen::spawn_local(async move {
            let rest = body.write_all(b"Hello from WASI 0.3\n".to_vec()).await;
            debug_assert!(rest.is_empty());
        });
        Ok(response)
    }
}
