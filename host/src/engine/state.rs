//! What one invocation's `Store` holds, and the views WASI and wasi-http need of it.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::FunctionInner;
use super::context::CallContext;
use super::emitter::Emitting;
use super::keyvalue::KeyValueGrant;
use super::outgoing::Outgoing;

/// How much of a guest's stdout and stderr is kept per request; the rest is dropped (and
/// counted), so a chatty guest cannot grow the host's memory.
const OUTPUT_CAPTURE_BYTES: usize = 16 * 1024;

pub(crate) struct State {
    pub(super) table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outgoing,
    pub(crate) limits: StoreLimits,
    variables: Arc<WasiConfigVariables>,
    pub(super) kv: Arc<KeyValueGrant>,
    stdout: super::output::Captured,
    stderr: super::output::Captured,
    /// Set when the invocation may emit events.
    pub(crate) emitting: Option<Emitting>,
}

impl State {
    /// The state of one invocation of `f`, in `context`, due by `deadline`.
    pub(super) fn new(
        f: &FunctionInner,
        context: Option<CallContext>,
        deadline: Option<Instant>,
    ) -> Self {
        let stdout = super::output::Captured::new(OUTPUT_CAPTURE_BYTES);
        let stderr = super::output::Captured::new(OUTPUT_CAPTURE_BYTES);
        // Nothing ambient: no environment, arguments, preopened directories or sockets.
        // The guest's inputs are its request, its variables, the stores and hosts it is
        // granted, and the clock.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: Outgoing {
                grant: f.outbound.clone(),
                function: f.name.clone(),
                context: context.clone(),
                deadline,
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(f.memory).unwrap_or(usize::MAX))
                .build(),
            variables: f.variables.clone(),
            kv: f.key_value.clone(),
            stdout,
            stderr,
            emitting: context.map(|ctx| Emitting::new(ctx, &f.name)),
        }
    }

    pub(crate) fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.variables)
    }

    /// Moves what the guest printed into the host's log, attributed to function and request.
    /// Runs after the guest finished, off the path of the response head.
    pub(crate) fn log_output(&self, function: &str, request_id: &str) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, dropped) = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let truncated = dropped > 0;
            let output = text.trim_end();
            // JSON escapes the text itself; in text mode Debug keeps it on one line.
            if crate::logging::is_json() {
                tracing::info!(target: "wasmfn::guest", function, request_id, stream, truncated, dropped_bytes = dropped, output = %output, "guest output");
            } else {
                tracing::info!(target: "wasmfn::guest", function, request_id, stream, truncated, dropped_bytes = dropped, output = ?output, "guest output");
            }
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
