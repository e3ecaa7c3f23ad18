//! What one instance's `Store` holds, and the views WASI and wasi-http need of it. A store
//! lives for one request, or for several when its function reuses instances; what belongs
//! to one request (its context, deadline and output) is set by [`State::begin_request`], or,
//! in a WASI 0.3 instance running several at once, put in place per host call
//! (concurrent.rs).

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
    pub(super) hooks: Outgoing,
    pub(crate) limits: StoreLimits,
    variables: Arc<WasiConfigVariables>,
    variable_values: Arc<std::collections::BTreeMap<String, String>>,
    pub(super) kv: Arc<KeyValueGrant>,
    pub(super) sqlite: Arc<super::SqliteGrant>,
    stdout: super::output::Captured,
    stderr: super::output::Captured,
    /// Set when the invocation may emit events.
    pub(crate) emitting: Option<Emitting>,
    /// In a WASI 0.3 instance, the requests it runs, by task (concurrent.rs).
    pub(super) tasks: Option<super::concurrent::BoxedTasks>,
}

impl State {
    /// The state of an instance of `f`, its first request in `context`, due by `deadline`.
    pub(super) fn new(
        f: &FunctionInner,
        context: Option<CallContext>,
        deadline: Option<Instant>,
    ) -> Self {
        let stdout = super::output::Captured::new(OUTPUT_CAPTURE_BYTES);
        let stderr = super::output::Captured::new(OUTPUT_CAPTURE_BYTES);
        // Nothing ambient: no arguments, preopened directories or sockets, and of the
        // environment only what its manifest entry declares (never the host's). The guest's
        // inputs are its request, its variables and environment, the stores and hosts it is
        // granted, and the clock.
        let mut wasi = WasiCtx::builder();
        wasi.envs(&f.environment)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(files) = &f.files
            && let Err(e) = wasi.preopened_dir(files.path(), "/", wasmtime_wasi::FsPerms::ReadOnly)
        {
            // Gathered at start and kept for the function's life: this is the host's fault.
            tracing::error!(function = %f.name, error = %e, "the function's files cannot be opened");
        }
        let wasi = wasi.build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: Outgoing {
                grant: f.outbound.clone(),
                function: f.name.clone(),
                context: context.clone(),
                deadline,
                call_timeout: f.timeout,
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(f.memory).unwrap_or(usize::MAX))
                .build(),
            variables: f.variables.clone(),
            variable_values: f.variable_values.clone(),
            kv: f.key_value.clone(),
            sqlite: f.sqlite.clone(),
            stdout,
            stderr,
            emitting: context.map(|ctx| Emitting::new(ctx, f.name.clone())),
            tasks: None,
        }
    }

    /// Readies a reused instance for its next request: the request's context (and so where
    /// its events go) and deadline replace the last one's.
    pub(super) fn begin_request(
        &mut self,
        context: Option<CallContext>,
        deadline: Option<Instant>,
    ) {
        self.hooks.deadline = deadline;
        self.hooks.context = context.clone();
        self.emitting = context.map(|ctx| Emitting::new(ctx, self.hooks.function.clone()));
    }

    /// When a host call made now must be done: the deadline of the request making it, or,
    /// outside any request (a WASI 0.3 guest's start code), the function's timeout from now.
    pub(crate) fn call_deadline(&self) -> Instant {
        self.hooks
            .deadline
            .unwrap_or_else(|| Instant::now() + self.hooks.call_timeout)
    }

    /// Every variable of the function, by name.
    pub(crate) fn variables_all(&self) -> Vec<(String, String)> {
        self.variable_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The value of the function's variable `name`, for interfaces other than wasi:config.
    pub(crate) fn variable(&self, name: &str) -> Option<&str> {
        self.variable_values.get(name).map(String::as_str)
    }

    pub(crate) fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.variables)
    }

    /// Where the guest's stdout and stderr are kept, for [`log_output`] after the store is
    /// out of reach (an instance serving several requests at once).
    pub(super) fn output(&self) -> [super::output::Captured; 2] {
        [self.stdout.clone(), self.stderr.clone()]
    }

    /// Moves what the guest printed into the host's log, attributed to function and request.
    /// Runs after the guest finished, off the path of the response head.
    pub(crate) fn log_output(&self, function: &str, request_id: &str) {
        log_output([&self.stdout, &self.stderr], function, request_id);
    }
}

/// Moves what was captured of a guest's `[stdout, stderr]` into the host's log.
pub(super) fn log_output(output: [&super::output::Captured; 2], function: &str, request_id: &str) {
    for (stream, pipe) in ["stdout", "stderr"].into_iter().zip(output) {
        let (bytes, dropped) = pipe.take();
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
