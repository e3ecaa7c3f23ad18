//! Greets the caller: `GET /hello?name=Ada` → `Hello, Ada!`.
//!
//! The greeting comes from the function's `greeting` variable in `wasmfn.toml`, so the same
//! component says something else when the manifest says so.
use wasmfn_sdk::{Request, variables};

#[wasmfn_sdk::http]
fn handle(req: Request) -> String {
    let greeting = variables::get("greeting").unwrap_or_else(|| "Hello".to_string());
    let name = req
        .query_param("name")
        .unwrap_or_else(|| "world".to_string());
    format!("{greeting}, {name}!\n")
}
