//! {{name}}: an HTTP function on wasmfn (WASI 0.2). `wasmfn invoke /{{name}}?name=Ada` calls it.
use wasmfn_sdk::{Request, Response, Router};

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/{{name}}", |req: Request| {
            let name = req.query_param("name").unwrap_or_else(|| "world".to_string());
            format!("Hello, {name}!\n")
        })
        .handle(req)
}
