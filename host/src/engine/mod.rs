//! The one door to wasmtime: engine configuration, the pooling allocator and its probe, the
//! epoch ticker, precompilation and the on-disk compile cache, pre-instantiation, and the
//! per-request store. The rest of the host speaks [`Engine`], [`Function`] and
//! [`InvokeError`], never wasmtime types, because wasmtime's API moves between releases.

mod cache;
mod epoch;
mod events;
mod output;
mod state;
mod whole;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tracing::Instrument;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::admission::{Gate, Slot};
use crate::manifest::FunctionSpec;
pub use cache::CacheDir;
use epoch::EpochTicker;
pub use events::{Emit, EmitContext, EventOutcome};
use events::{Emitting, bindings::EventsPre};
use state::State;

/// A boxed error from a response body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of a response the host sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// How many instances may be live at once across all functions when pooling; each needs a
/// memory slot, so this also bounds the address space the pool reserves. Every slot costs
/// start-up time (its stack's guard page alone is an mprotect: 1,000 slots were ~4 ms of a
/// cold start, benches/README.md), and a pod of a few cores cannot run more instances than
/// this at once to any benefit: past it, requests queue briefly and then get 503.
pub const DEFAULT_POOL_INSTANCES: u32 = 256;

/// Bytes of each pooled linear memory kept mapped and zeroed in place between requests.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// How to allocate instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Use the pooling allocator if the address space allows it, else on demand.
    #[default]
    Auto,
    /// Pooling, or fail at start.
    On,
    /// Allocate every instance on demand.
    Off,
}

/// Engine settings taken from the command line and environment.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instance allocation strategy.
    pub pooling: PoolingMode,
    /// Instances the pool holds (all functions together).
    pub pool_instances: u32,
    /// The largest memory any function may use; sizes the pool's memory slots.
    pub max_memory: u64,
    /// Where compiled `.wasm` components are cached; `None` keeps them in memory only.
    pub cache: Option<CacheDir>,
    /// Where instantiations, live instances and cache results are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long an invocation may wait for a slot (its function's concurrency, the
    /// instance pool) before it fails with [`InvokeError::Overloaded`].
    pub queue_timeout: Duration,
    /// Per-request deadlines (epoch checks compiled into guest code, the epoch callback
    /// and a timer per request). Always on in the host; off only so the benchmarks can
    /// measure what deadlines cost.
    #[doc(hidden)]
    pub deadlines: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: PoolingMode::Auto,
            pool_instances: DEFAULT_POOL_INSTANCES,
            max_memory: crate::manifest::DEFAULT_MEMORY,
            cache: None,
            metrics: Arc::default(),
            queue_timeout: crate::manifest::ServerLimits::default().queue_timeout,
            deadlines: true,
        }
    }
}

/// Why a component could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The component path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error(
        "{path} is not a valid WebAssembly component (a core module must be turned into a component first, e.g. by building for wasm32-wasip2): {reason}"
    )]
    Invalid {
        /// The component path.
        path: PathBuf,
        /// wasmtime's reason.
        reason: String,
    },
    /// A `.cwasm` this engine cannot use, and no `.wasm` beside it to recompile.
    #[error(
        "{path} was precompiled by a different wasmtime version or engine configuration and there is no {wasm} beside it to recompile from; run `wasmfn compile` again: {reason}"
    )]
    Incompatible {
        /// The `.cwasm` path.
        path: PathBuf,
        /// The `.wasm` that was looked for.
        wasm: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// A `.cwasm` file that is not a precompiled component.
    #[error("{path} is not a precompiled component ({what}); make it with `wasmfn compile`")]
    NotPrecompiledComponent {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The component does not fit the host's contract.
    #[error("{path} cannot be served: {reason}")]
    Contract {
        /// The component path.
        path: PathBuf,
        /// What is missing or unsatisfied.
        reason: String,
    },
    /// Compiling or writing the cache failed.
    #[error("compiling {path} failed: {reason}")]
    Compile {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How an invocation failed. The server maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The guest trapped (panic, unreachable, out of memory, ...).
    #[error("function trapped: {reason}")]
    Trap {
        /// The trap itself, e.g. "wasm `unreachable` instruction executed".
        reason: String,
        /// The guest's stack when it trapped, one frame per line.
        backtrace: String,
    },
    /// The guest ran past its deadline and was stopped.
    #[error("function ran past its {0:?} deadline")]
    Deadline(Duration),
    /// The guest returned without sending a response, or sent an error instead of one.
    #[error("function sent no response: {0}")]
    NoResponse(String),
    /// The request could not be handed to the guest.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The guest replied with an event that breaks the CloudEvents spec.
    #[error("function replied with an invalid event: {0}")]
    InvalidReply(String),
    /// No slot freed up in time: the function's concurrency or the instance pool is full.
    /// Retryable (503 with `Retry-After`).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// Something in the host failed; a bug, not the guest's fault.
    #[error("host error: {0}")]
    Host(String),
}

/// The wasmtime engine and linker shared by every function. Cheap to clone: the host
/// keeps one to load functions on their first request.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Arc<Linker<State>>,
    pooling: bool,
    cache: Option<CacheDir>,
    // Shared with every Function: a loaded function must never outlive its deadlines.
    epoch: Arc<EpochTicker>,
    metrics: Arc<crate::metrics::Metrics>,
    // One slot per instance the pool holds, taken before instantiating: a full pool
    // queues briefly and then answers 503, instead of failing inside wasmtime.
    instances: Gate,
    queue_timeout: Duration,
    deadlines: bool,
}

impl Engine {
    /// Builds the engine, probing for the pooling allocator when `options.pooling` is `Auto`.
    pub fn new(options: &EngineOptions) -> anyhow::Result<Self> {
        Self::build(options)
            .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))
    }

    fn build(options: &EngineOptions) -> wasmtime::Result<Self> {
        let (engine, pooling) = match options.pooling {
            PoolingMode::Off => (wasmtime::Engine::new(&base_config(options))?, false),
            PoolingMode::On => (wasmtime::Engine::new(&pooling_config(options))?, true),
            // Creating a pooling engine reserves the pool's address space up front, so it
            // is its own probe: where `ulimit -v` or the kernel refuses, fall back.
            PoolingMode::Auto => match wasmtime::Engine::new(&pooling_config(options)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable, allocating instances on demand");
                    (wasmtime::Engine::new(&base_config(options))?, false)
                }
            },
        };
        let mut linker = Linker::new(&engine);
        // The full WASI 0.2 surface is linked, because Rust's std imports wasi:cli and
        // wasi:filesystem even in a handler; the store's WasiCtx grants none of it (no
        // environment, no preopened directories, no sockets, no inherited stdio).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, State::config)?;
        events::bindings::wasmfn::function::emitter::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        )?;
        let epoch = Arc::new(EpochTicker::start(engine.clone()));
        options
            .metrics
            .set_pool_capacity(if pooling { options.pool_instances } else { 0 });
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            pooling,
            cache: options.cache.clone(),
            epoch,
            metrics: options.metrics.clone(),
            instances: Gate::new(options.pool_instances.max(1), "the instance pool"),
            queue_timeout: options.queue_timeout,
            deadlines: options.deadlines,
        })
    }

    /// Instance slots free right now; equal to the pool's size when nothing runs. A slot
    /// that never came back would show here (the containment tests check it).
    pub fn free_instance_slots(&self) -> u32 {
        self.instances.available()
    }

    /// The metrics this engine and its functions record into.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles a component to the `.cwasm` format [`Engine::load`] memory-maps.
    pub fn precompile(&self, path: &Path) -> Result<Vec<u8>, LoadError> {
        let wasm = read(path)?;
        self.engine
            .precompile_component(&wasm)
            .map_err(|e| invalid(path, &e))
    }

    /// Compiles a `.wasm` into the cache (if it is not there yet) and returns the cache file.
    pub fn precompile_into_cache(&self, path: &Path) -> Result<Option<PathBuf>, LoadError> {
        let wasm = read(path)?;
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let entry = cache.entry_for(&wasm, &self.engine);
        if entry.exists() && self.deserialize(&entry).is_ok() {
            cache.index(path, &self.engine, &entry);
            return Ok(Some(entry));
        }
        self.compile_and_cache(path, &wasm)?;
        Ok(Some(entry))
    }

    /// Loads a function's component and pre-instantiates it, so that requests only
    /// instantiate. Rejects a component that lacks the export its manifest entry needs
    /// (`wasi:http/incoming-handler` for routes, `wasmfn:function/event-handler` for events)
    /// or imports something the host does not provide.
    pub fn load(&self, spec: &FunctionSpec) -> Result<Function, LoadError> {
        let component = self.load_component(&spec.component)?;
        let contract = |reason: String| LoadError::Contract {
            path: spec.component.clone(),
            reason,
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            contract(format!(
                "it imports something wasmfn does not provide: {e:#}"
            ))
        })?;
        let http = ProxyPre::new(instance_pre.clone());
        let whole = whole::WholePre::new(instance_pre.clone()).ok();
        let events = EventsPre::new(instance_pre);
        let http = match http {
            Ok(pre) => Some(pre),
            Err(e) if !spec.routes.is_empty() => {
                return Err(contract(format!(
                    "the function has routes but the component does not export wasi:http/incoming-handler@0.2.x, the HTTP handler interface: {e:#}"
                )));
            }
            Err(_) => None,
        };
        let events = match events {
            Ok(pre) => Some(pre),
            Err(e) if !spec.events.is_empty() => {
                return Err(contract(format!(
                    "the function subscribes to events but the component does not export wasmfn:function/event-handler@0.1.0, the event handler interface: {e:#}"
                )));
            }
            Err(_) => None,
        };
        Ok(Function {
            inner: Arc::new(FunctionInner {
                name: spec.name.clone(),
                label: crate::metrics::intern(&spec.name),
                metrics: self.metrics.clone(),
                whole: whole.filter(|_| http.is_some()),
                http,
                events,
                timeout: spec.timeout,
                memory: spec.memory,
                max_body: spec.max_body,
                variables: Arc::new(spec.variables.iter().collect()),
                concurrency: spec
                    .concurrency
                    .map(|n| Gate::new(n, format!("function `{}`'s concurrency", spec.name))),
                instances: self.instances.clone(),
                queue_timeout: self.queue_timeout,
                deadlines: self.deadlines,
                _epoch: self.epoch.clone(),
            }),
        })
    }

    fn load_component(&self, path: &Path) -> Result<Component, LoadError> {
        if path.extension().is_some_and(|e| e == "cwasm") {
            return self.load_precompiled(path);
        }
        if let Some(cache) = &self.cache
            && let Some(entry) = cache.indexed_entry(path, &self.engine)
            && let Ok(c) = self.deserialize(&entry)
        {
            self.metrics.cache("hit");
            return Ok(c);
        }
        let wasm = read(path)?;
        let Some(cache) = &self.cache else {
            return Component::new(&self.engine, &wasm).map_err(|e| invalid(path, &e));
        };
        let entry = cache.entry_for(&wasm, &self.engine);
        if entry.exists() {
            match self.deserialize(&entry) {
                Ok(c) => {
                    self.metrics.cache("hit");
                    cache.index(path, &self.engine, &entry);
                    return Ok(c);
                }
                // A damaged entry is rebuilt, not fatal: the cache is only an accelerator.
                Err(e) => {
                    self.metrics.cache("rebuilt");
                    tracing::warn!(entry = %entry.display(), error = %e, "discarding unusable cache entry")
                }
            }
        } else {
            self.metrics.cache("miss");
        }
        self.compile_and_cache(path, &wasm)
    }

    fn compile_and_cache(&self, path: &Path, wasm: &[u8]) -> Result<Component, LoadError> {
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, wasm).map_err(|e| invalid(path, &e))?;
        tracing::info!(component = %path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        if let Some(cache) = &self.cache {
            let entry = cache.entry_for(wasm, &self.engine);
            let stored = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|bytes| cache.store(&entry, &bytes).map_err(|e| e.to_string()));
            // Failing to cache costs the next start a compile, nothing more.
            match stored {
                Ok(()) => cache.index(path, &self.engine, &entry),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), error = %e, "could not write the compile cache")
                }
            }
        }
        Ok(component)
    }

    fn load_precompiled(&self, path: &Path) -> Result<Component, LoadError> {
        // `detect_precompiled_file` fails or says None both for unreadable files and for
        // files that are not wasmtime's; tell the two apart for the error message.
        std::fs::metadata(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match wasmtime::Engine::detect_precompiled_file(path) {
            Err(_) | Ok(None) => {
                return Err(LoadError::NotPrecompiledComponent {
                    path: path.to_path_buf(),
                    what: "not a wasmtime precompiled artifact",
                });
            }
            Ok(Some(wasmtime::Precompiled::Module)) => {
                return Err(LoadError::NotPrecompiledComponent {
                    path: path.to_path_buf(),
                    what: "a precompiled core module",
                });
            }
            Ok(Some(wasmtime::Precompiled::Component)) => {}
        }
        match self.deserialize(path) {
            Ok(c) => Ok(c),
            Err(reason) => {
                let wasm = path.with_extension("wasm");
                if wasm.is_file() {
                    tracing::warn!(
                        cwasm = %path.display(), wasm = %wasm.display(), %reason,
                        "precompiled component is not usable by this engine; recompiling from the .wasm beside it"
                    );
                    return self.load_component(&wasm);
                }
                Err(LoadError::Incompatible {
                    path: path.to_path_buf(),
                    wasm: wasm
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    reason,
                })
            }
        }
    }

    fn deserialize(&self, path: &Path) -> Result<Component, String> {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Only files
        // the operator named in the manifest, or that this host wrote into its cache, get
        // here, and wasmtime still checks the header, version and engine configuration.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(|e| format!("{e:#}"))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, e: &wasmtime::Error) -> LoadError {
    LoadError::Invalid {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    }
}

fn base_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    // Epochs, not fuel: checking an epoch costs a load and compare at loop headers and
    // function entries, and one ticker thread serves every store (see epoch.rs).
    config.epoch_interruption(options.deadlines);
    config.wasm_component_model(true);
    // Copy-on-write memory images make instantiating a data-heavy component cost page
    // mappings, not copies (on by default; stated because the design depends on it).
    config.memory_init_cow(true);
    config
}

fn pooling_config(options: &EngineOptions) -> Config {
    let n = options.pool_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n);
    // A Rust component is one core module plus a few adapter/shim instances and tables;
    // other toolchains (componentize-py) link several modules. Core instances and tables
    // cost little, memory slots are what reserves address space.
    pool.total_core_instances(n.saturating_mul(8));
    pool.total_tables(n.saturating_mul(8));
    pool.total_memories(n);
    pool.total_stacks(n);
    pool.max_core_instances_per_component(64);
    pool.max_tables_per_component(64);
    pool.max_memories_per_component(4);
    pool.max_tables_per_module(4);
    pool.max_core_instance_size(4 << 20);
    pool.max_component_instance_size(4 << 20);
    pool.table_elements(100_000);
    pool.max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX));
    // Returning a slot to the pool normally madvise()s its pages away, which costs a
    // syscall, a TLB shootdown on every core and a page fault per page on the next
    // request. Resetting them in place is cheaper for the small heaps that handlers
    // touch. Where the kernel has PAGEMAP_SCAN (Linux 6.7+), only the pages the guest
    // wrote are reset; without it, the first KEEP_RESIDENT_BYTES are zeroed whole, which
    // for a 1 MiB window was a fifth of a request (benches/README.md).
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
    pool.table_keep_resident(KEEP_RESIDENT_BYTES / 8);
    pool.async_stack_keep_resident(KEEP_RESIDENT_BYTES / 8);
    let mut config = base_config(options);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// A loaded, pre-instantiated function. Cheap to clone.
#[derive(Clone)]
pub struct Function {
    inner: Arc<FunctionInner>,
}

struct FunctionInner {
    name: String,
    label: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    http: Option<ProxyPre<State>>,
    /// The one-call HTTP export, beside `http` (see whole.rs).
    whole: Option<whole::WholePre<State>>,
    events: Option<EventsPre<State>>,
    timeout: Duration,
    memory: u64,
    max_body: u64,
    variables: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    concurrency: Option<Gate>,
    instances: Gate,
    queue_timeout: Duration,
    deadlines: bool,
    _epoch: Arc<EpochTicker>,
}

/// The slots one invocation holds; returned when it is dropped, with the store.
struct Admitted {
    _function: Option<Slot>,
    _instance: Slot,
}

impl Function {
    /// The function's name from the manifest.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The function's name as a metrics label.
    pub fn label(&self) -> &'static str {
        self.inner.label
    }

    /// The function's deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The largest request body the function accepts, in bytes.
    pub fn max_body(&self) -> u64 {
        self.inner.max_body
    }

    /// Takes a slot of the function's concurrency, then one of the instance pool, within
    /// one queue timeout; the function's first, so a busy function waits without holding
    /// a pool slot another function could use.
    async fn admit(&self) -> Result<Admitted, InvokeError> {
        let f = &self.inner;
        let started = Instant::now();
        let function = match &f.concurrency {
            Some(gate) => Some(gate.enter(f.queue_timeout).await.map_err(|full| {
                f.metrics.refused("concurrency");
                InvokeError::Overloaded(full.to_string())
            })?),
            None => None,
        };
        let left = f.queue_timeout.saturating_sub(started.elapsed());
        let instance = f.instances.enter(left).await.map_err(|full| {
            f.metrics.refused("instances");
            InvokeError::Overloaded(full.to_string())
        })?;
        Ok(Admitted {
            _function: function,
            _instance: instance,
        })
    }

    /// Runs one request in a fresh instance and returns the guest's response once its head
    /// is ready; the body streams on while the guest writes it. The instance and its store
    /// are dropped when the guest returns, traps or passes its deadline. With `emit`, the
    /// guest's `emitter.emit` calls go there; without, they fail with a reason.
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
        request_id: &str,
        emit: Option<EmitContext>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let f = &self.inner;
        let Some(pre) = f.http.clone() else {
            return Err(InvokeError::Host(format!(
                "function `{}` has no HTTP handler",
                f.name
            )));
        };
        if let Some(whole) = &f.whole
            && hyper::body::Body::size_hint(request.body())
                .exact()
                .is_some_and(|n| n <= whole::MAX_WHOLE_BODY)
        {
            // Boxed here, before any await: a body type carrying the caller's closures in
            // this future trips rustc's check that the future is Send.
            let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
            return self.handle_whole(whole, request, request_id, emit).await;
        }
        let admitted = self.admit().await?;
        let mut store = self.new_store(pre.engine(), emit);

        let request = request
            .map(|body| body.map_err(|e| ErrorCode::InternalError(Some(e.into().to_string()))));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // Set when the guest hands over its response head. After that the client can only
        // see a failure as a cut-off body, so the guest's task must log it itself.
        let head_sent = Arc::new(AtomicBool::new(false));
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let flag = head_sent.clone();
            let out = http
                .new_response_outparam_from_callback(move |response| {
                    flag.store(response.is_ok(), Ordering::Release);
                    // The receiver is gone only if the request was abandoned; nothing to do.
                    let _ = sender.send(response);
                })
                .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
            (req, out)
        };

        let (timeout, deadline) = (f.timeout, f.deadline());
        let (name, id) = (f.name.clone(), request_id.to_string());
        let (metrics, label) = (f.metrics.clone(), f.label);
        // The guest runs in its own task so it can keep streaming the body after the
        // response head has gone out. The tokio timeout covers time the guest spends
        // waiting on I/O; the epoch deadline covers time it spends computing.
        // Created here, where the request's span is current, so both are its children.
        let (instantiate_span, handle_span) = (
            crate::telemetry::child_span("instantiate"),
            crate::telemetry::child_span("handle"),
        );
        let task = tokio::spawn(async move {
            let _admitted = admitted;
            let _live = metrics.instance();
            let run = async {
                let proxy = instantiated(
                    pre.instantiate_async(&mut store),
                    instantiate_span,
                    &metrics,
                    label,
                )
                .await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .instrument(handle_span)
                    .await
            };
            let result = settle(within(deadline, run).await, timeout);
            store.data_mut().log_output(&name, &id);
            // Before the head, `handle` turns the error into a status and the server logs
            // it; after the head, this is the only place that still knows.
            if let Err(error) = &result
                && head_sent.load(Ordering::Acquire)
            {
                tracing::error!(
                    function = %name, request_id = %id, %error,
                    "function failed after sending its response head; the body was cut off"
                );
            }
            result
        });

        match receiver.await {
            Ok(Ok(response)) => {
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Ok(Err(code)) => Err(InvokeError::NoResponse(format!(
                "the function answered with an error instead of a response: {code:?}"
            ))),
            // The outparam was dropped unset: the task's result says why.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(InvokeError::NoResponse(
                    "the handler returned without calling response-outparam.set".to_string(),
                )),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(InvokeError::Host(format!("invocation task failed: {join}"))),
            },
        }
    }
}

impl Function {
    /// Whether the component exports an HTTP handler.
    pub fn handles_http(&self) -> bool {
        self.inner.http.is_some()
    }

    /// Whether the component exports an event handler.
    pub fn handles_events(&self) -> bool {
        self.inner.events.is_some()
    }

    fn new_store(&self, engine: &wasmtime::Engine, emit: Option<EmitContext>) -> Store<State> {
        let f = &self.inner;
        let mut state = State::new(f.memory, f.variables.clone());
        state.emitting = emit.map(|ctx| Emitting::new(ctx, &f.name));
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        // At every tick a computing guest either passes its deadline (a trap, 504) or
        // yields to the scheduler: a guest spinning on the CPU holds a worker thread for
        // at most one tick at a time, so it cannot starve the other requests.
        if !f.deadlines {
            return store;
        }
        let deadline = Instant::now() + f.timeout;
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Delivers one event to the function's event handler in a fresh instance, which is
    /// dropped when the handler returns, traps or passes its deadline.
    pub async fn handle_event(
        &self,
        event: &cloudevents::Event,
        request_id: &str,
        emit: Option<EmitContext>,
    ) -> Result<EventOutcome, InvokeError> {
        let f = &self.inner;
        let Some(pre) = f.events.clone() else {
            return Err(InvokeError::Host(format!(
                "function `{}` has no event handler",
                f.name
            )));
        };
        let _admitted = self.admit().await?;
        let mut store = self.new_store(pre.engine(), emit);
        let guest_event = events::to_guest(event);
        let _live = f.metrics.instance();
        let (instantiate_span, handle_span) = (
            crate::telemetry::child_span("instantiate"),
            crate::telemetry::child_span("handle"),
        );
        let run = async {
            let instance = instantiated(
                pre.instantiate_async(&mut store),
                instantiate_span,
                &f.metrics,
                f.label,
            )
            .await?;
            instance
                .wasmfn_function_event_handler()
                .call_handle(&mut store, &guest_event)
                .instrument(handle_span)
                .await
        };
        let result = settle(within(f.deadline(), run).await, f.timeout);
        store.data_mut().log_output(&f.name, request_id);
        events::outcome(result?, &f.name).map_err(InvokeError::InvalidReply)
    }

    /// [`Function::handle`] for a request with a small body of known length, through the
    /// one-call export: read the body, call once, send the whole response.
    async fn handle_whole(
        &self,
        pre: &whole::WholePre<State>,
        request: hyper::Request<UnsyncBoxBody<Bytes, BoxError>>,
        request_id: &str,
        emit: Option<EmitContext>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError> {
        let f = &self.inner;
        let _admitted = self.admit().await?;
        let mut store = self.new_store(pre.engine(), emit);
        let _live = f.metrics.instance();
        let (instantiate_span, handle_span) = (
            crate::telemetry::child_span("instantiate"),
            crate::telemetry::child_span("handle"),
        );
        // Reading the body counts against the deadline, as it does when the guest reads it.
        let run = async {
            let request = match whole::read_request(request).await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let instance = instantiated(
                pre.instantiate_async(&mut store),
                instantiate_span,
                &f.metrics,
                f.label,
            )
            .await?;
            instance
                .wasmfn_function_http_handler()
                .call_handle(&mut store, &request)
                .instrument(handle_span)
                .await
                .map(Ok)
        };
        let result = settle(within(f.deadline(), run).await, f.timeout);
        store.data_mut().log_output(&f.name, request_id);
        whole::into_response(result??)
    }
}

impl FunctionInner {
    /// The per-request deadline, unless deadlines are off (benchmarks only).
    fn deadline(&self) -> Option<Duration> {
        self.deadlines.then_some(self.timeout)
    }
}

/// Awaits an instantiation inside its span and records how long it took.
async fn instantiated<I>(
    instantiate: impl Future<Output = wasmtime::Result<I>>,
    span: tracing::Span,
    metrics: &crate::metrics::Metrics,
    label: &'static str,
) -> wasmtime::Result<I> {
    let started = Instant::now();
    let instance = instantiate.instrument(span).await?;
    metrics.instantiated(label, started.elapsed());
    Ok(instance)
}

/// How a guest call under a deadline ended, as the host reports it.
fn settle<T>(
    result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<T, InvokeError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(e, timeout)),
        Err(_elapsed) => Err(InvokeError::Deadline(timeout)),
    }
}

/// `fut`, stopped after `timeout` if there is one.
async fn within<F: Future>(
    timeout: Option<Duration>,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await,
        None => Ok(fut.await),
    }
}

fn classify(e: wasmtime::Error, timeout: Duration) -> InvokeError {
    // The instance gate keeps within the pool's component instances, but a component
    // made of many core modules can still run out of the pool's core instances or
    // memories; that is load, not a fault.
    if let Some(limit) = e.downcast_ref::<PoolConcurrencyLimitError>() {
        return InvokeError::Overloaded(format!("the instance pool is full: {limit}"));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Deadline(timeout),
        _ => InvokeError::Trap {
            reason: e.root_cause().to_string(),
            backtrace: e
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(|bt| bt.to_string())
                .unwrap_or_default(),
        },
    }
}
