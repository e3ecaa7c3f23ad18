//! A WASI 0.3 release-candidate HTTP component (see Cargo.toml): answers with a greeting, on
//! a host that still serves that candidate. wasmfn refuses it at start and says why.
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
        wit_bindgen::spawn(async move {
            body.write_all(b"Hello from a WASI 0.3 release candidate\n".to_vec())
                .await;
        });
        Ok(response)
    }
}
