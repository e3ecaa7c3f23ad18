//! The function's variables: the `variables` table of its entry in `wasmfn.toml`.
//!
//! They are read through the standard `wasi:config/store` interface, so on `wasmtime serve`
//! the same guest reads them from `-S config-var=KEY=VALUE`.

use crate::wit::wasi::config::store;

/// The value of a variable, or `None` if the manifest does not set it.
pub fn get(name: &str) -> Option<String> {
    store::get(name).ok().flatten()
}

/// Every variable the function was given, as (name, value).
pub fn all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
