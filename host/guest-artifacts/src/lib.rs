//! Paths of the guest components, built from `guests/` by this crate's build script.
//!
//! Used by the host's tests and the benches; it is never shipped.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
