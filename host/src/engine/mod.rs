//! The one door to wasmtime: engine configuration, the pooling allocator and its probe, the
//! epoch ticker, precompilation and the on-disk compile cache, pre-instantiation, and the
//! stores instances run in. The rest of the host speaks [`Engine`], [`Function`] and
//! [`InvokeError`], never wasmtime types, because wasmtime's API moves between releases.
//!
//! Two wasmtime engines sit behind one [`Engine`]. WASI 0.2 components run on one built
//! without concurrency support: with it, every 0.2 request costs 9-13% more instructions
//! for bookkeeping it never uses (benches/README.md). WASI 0.3 components, which need it,
//! run on a second engine, created the first time such a component is loaded, so a host
//! that serves none pays nothing for it.
//!
//! - this file: the engines, loading a component and checking its exports, [`Function`],
//!   and the one place a request's ABI is chosen (`HttpAbi`, fixed at load);
//! - `invocation.rs`: the frame every 0.2 call runs in (admission, store, deadline,
//!   outcome), and `reuse.rs`: the idle instances of a 0.2 function that reuses them;
//! - one file per guest ABI, each HTTP one an `HttpExecutor`: `wasi_http.rs`
//!   (`wasi:http/incoming-handler@0.2`), `wasi_http_p3.rs` (`wasi:http/handler@0.3`,
//!   instances serving many requests at once), `http_handler.rs`
//!   (`wasmfn:function/http-handler`, the one-call path), `event_handler.rs`
//!   (`wasmfn:function/event-handler@0.1.0`) and `event_handler_p3.rs` (`@0.2.0`, async,
//!   instances handling many events at once); `concurrent.rs`: what every WASI 0.3
//!   instance shares, and how each request's context reaches the host calls it makes;
//! - `context.rs`: what an invocation reaches beyond its instance, through traits the
//!   layers above implement, and the hop limit; `emitter.rs`, `outgoing.rs`,
//!   `keyvalue.rs`: the imports any function may use (events, outbound HTTP, key-value);
//!   `spin.rs`, `spin_sqlite.rs`, `spin_postgres.rs`, `spin_redis.rs`: Spin's key-value,
//!   variables, SQLite, PostgreSQL and Redis interfaces, each version over one
//!   implementation;
//! - `state.rs`, `output.rs`: what a store holds; `cache.rs`, `epoch.rs`: compile cache,
//!   ticker; `wasi_version.rs`: which WASI a component is built for; `cut_off.rs`: a
//!   response body that says so when its guest failed before finishing it;
//!   `unserved.rs`: Spin's interfaces this host does not serve, linked to their errors.

mod cache;
mod concurrent;
mod context;
mod cut_off;
mod emitter;
mod epoch;
mod event_handler;
mod event_handler_p3;
mod http_handler;
mod invocation;
mod keyvalue;
mod outgoing;
mod output;
mod reuse;
mod spin;
mod spin_postgres;
mod spin_redis;
mod spin_sqlite;
mod state;
mod unserved;
mod wasi_http;
mod wasi_http_p3;
mod wasi_version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

use crate::admission::Gate;
use crate::manifest::FunctionSpec;
pub use cache::CacheDir;
pub use context::{
    CallContext, CallFunction, Emit, EmitError, HOP_LIMIT, NoSuchFunction, beyond_hop_limit,
};
use epoch::EpochTicker;
use event_handler::EventHandlerIndices;
pub use event_handler::EventOutcome;
use http_handler::HttpHandlerIndices;
pub use keyvalue::KeyValueGrant;
use outgoing::OutboundGrant;
pub use spin_sqlite::SqliteGrant;
use state::State;
pub use wasi_version::imports_emitter;

/// A boxed error from a response body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of a response the host sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
/// A guest's response, once its head is ready, or why there is none.
pub type Responded = Result<hyper::Response<ResponseBody>, InvokeError>;

/// A request body the host can hand to a guest: whatever hyper, a test or another
/// function sends.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}
impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

/// How many instances may be live at once across all functions when pooling; each needs a
/// memory slot, so this also bounds the address space the pool reserves. Every slot costs
/// start-up time (its stack's guard page alone is an mprotect: 1,000 slots were ~4 ms of a
/// cold start, benches/README.md), and a pod of a few cores cannot run more instances than
/// this at once to any benefit: past it, requests queue briefly and then get 503.
pub const DEFAULT_POOL_INSTANCES: u32 = 256;

/// Bytes of each pooled linear memory kept mapped and zeroed in place between requests.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// PostgreSQL connections one function may hold at once (of the 16 the host keeps per
/// address), so that one busy function cannot take every connection from the rest.
const POSTGRES_CONNECTIONS_PER_FUNCTION: u32 = 8;

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

impl std::str::FromStr for PoolingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("pooling is auto, on or off, not {other:?}")),
        }
    }
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
    /// Optimize compiled guest code. `wasmfn dev` turns it off: a component swapped in
    /// after an edit compiles several times faster, and runs slower, which a developer's
    /// loop does not notice.
    pub optimize: bool,
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
            optimize: true,
        }
    }
}

/// What a function's guest may reach beyond its request, resolved by the host at start
/// (crate::functions): its variables' values, the stores it may open, and the client its
/// outbound requests go through (where they may go is its manifest entry's).
#[derive(Clone, Default)]
pub struct Grants {
    /// The directory its guest sees read-only as `/` (its `files`, gathered at start).
    pub files: Option<Arc<tempfile::TempDir>>,
    /// Variable values, by name.
    pub variables: BTreeMap<String, String>,
    /// The stores it may open.
    pub key_value: KeyValueGrant,
    /// The SQLite databases it may open.
    pub sqlite: SqliteGrant,
    /// The outbound client, for a function with `allowed_outbound_hosts`.
    pub outbound: Option<crate::outbound::Client>,
    /// The host's Redis connections, which its `allowed_outbound_hosts` may reach.
    pub redis: crate::databases::redis::Connections,
    /// The host's PostgreSQL pools, which its `allowed_outbound_hosts` may reach.
    pub postgres: Option<crate::databases::postgres::Pools>,
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
    /// A `.wasm` with no compiled code in the cache, in a host without a compiler.
    #[error(
        "{path} has no compiled code in the compile cache ({cache}), and this wasmfn is built without a compiler (as the host image's is), so it does not compile: precompile it with `wasmfn compile --manifest MANIFEST --cache-dir DIR` run by a wasmfn with the `compiler` feature (the default build; deploy/build-image.sh does this), or name the `.cwasm` that `wasmfn compile IN.wasm -o OUT.cwasm` makes"
    )]
    NoCompiler {
        /// The component.
        path: PathBuf,
        /// The cache that was searched.
        cache: String,
    },
    /// A `.cwasm` file that is not a precompiled component.
    #[error("{path} is not a precompiled component ({what}); make it with `wasmfn compile`")]
    NotPrecompiledComponent {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The function asks for more memory than the instance pool's slots hold; the slots
    /// are sized at start from the largest memory in the manifest.
    #[error(
        "function `{function}` asks for {memory} bytes of memory, more than the {max} bytes this host's instance pool was sized for when it started; restart the host to raise it"
    )]
    MemoryOverPool {
        /// The function.
        function: String,
        /// What it asks for.
        memory: u64,
        /// The slot size.
        max: u64,
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
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The guest answered with a `wasi:http` error code instead of a response.
    #[error("function answered with the error code {code} instead of a response")]
    ErrorCode {
        /// The code, as wasi:http names it (`HttpRequestDenied`, ...).
        code: String,
        /// The HTTP status it stands for.
        status: u16,
    },
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

impl InvokeError {
    /// From a `wasi:http` error code: its `Debug` text for the log, and the status
    /// [`error_code_status!`] maps it to.
    pub(crate) fn error_code(code: &impl std::fmt::Debug, status: u16) -> Self {
        // `ErrorCode::DnsError(..)` reads as `DnsError(..)`: the variant's name first.
        let debug = format!("{code:?}");
        let head = debug.split(['(', ' ', '{']).next().unwrap_or_default();
        let code = match head.rsplit_once("::") {
            Some((path, _)) => debug[path.len() + 2..].to_string(),
            None => debug,
        };
        InvokeError::ErrorCode { code, status }
    }
}

/// `fn $name(&$ErrorCode) -> u16`: the status a `wasi:http` error code stands for, for the
/// `ErrorCode` of one WASI version (0.2 and 0.3 name their codes alike). A code about the
/// request maps to the 4xx it describes; one about a call the guest made upstream to 502,
/// or 504 for a timeout (what a proxy answers); anything else to 500. No catch-all arm: a
/// code a new wasmtime adds breaks the build instead of silently answering 500.
macro_rules! error_code_status {
    ($name:ident, $E:ident) => {
        fn $name(code: &$E) -> u16 {
            match code {
                $E::HttpRequestBodySize { .. } => 413,
                $E::HttpRequestHeaderSectionSize { .. } | $E::HttpRequestHeaderSize { .. } => 431,
                $E::HttpRequestUriTooLong => 414,
                $E::HttpRequestLengthRequired => 411,
                $E::HttpRequestMethodInvalid
                | $E::HttpRequestUriInvalid
                | $E::HttpRequestTrailerSectionSize { .. }
                | $E::HttpRequestTrailerSize { .. } => 400,
                $E::DnsTimeout
                | $E::ConnectionTimeout
                | $E::ConnectionReadTimeout
                | $E::ConnectionWriteTimeout
                | $E::HttpResponseTimeout => 504,
                $E::LoopDetected => 508,
                $E::DnsError { .. }
                | $E::DestinationNotFound
                | $E::DestinationUnavailable
                | $E::DestinationIpProhibited
                | $E::DestinationIpUnroutable
                | $E::ConnectionRefused
                | $E::ConnectionTerminated
                | $E::ConnectionLimitReached
                | $E::TlsProtocolError
                | $E::TlsCertificateError
                | $E::TlsAlertReceived { .. }
                | $E::HttpRequestDenied
                | $E::HttpResponseIncomplete
                | $E::HttpResponseHeaderSectionSize { .. }
                | $E::HttpResponseHeaderSize { .. }
                | $E::HttpResponseBodySize { .. }
                | $E::HttpResponseTrailerSectionSize { .. }
                | $E::HttpResponseTrailerSize { .. }
                | $E::HttpResponseTransferCoding { .. }
                | $E::HttpResponseContentCoding { .. }
                | $E::HttpUpgradeFailed
                | $E::HttpProtocolError => 502,
                $E::ConfigurationError | $E::InternalError { .. } => 500,
            }
        }
    };
}
pub(crate) use error_code_status;

/// The wasmtime engines and linkers shared by every function. Cheap to clone: the host
/// keeps one to load functions on their first request.
#[derive(Clone)]
pub struct Engine {
    /// WASI 0.2 components: no concurrency support, so none of its cost.
    p2: Arc<Core>,
    /// WASI 0.3 components, on an engine created the first time one is loaded (or why it
    /// could not be).
    p3: Arc<OnceLock<Result<Arc<Core>, String>>>,
    /// What it was made with: the cache, metrics and limits, and how to make the 0.3 engine.
    options: EngineOptions,
    // Shared with every Function: a loaded function must never outlive its deadlines.
    epoch: Arc<EpochTicker>,
    /// The pool's memory slot size: no function loaded later (a reload) may ask for more.
    pool_memory: Option<u64>,
    /// Set when the host drains: idle WASI 0.3 instances retire instead of waiting for more.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

/// One wasmtime engine, the linker of everything a guest may import, and its instance pool.
struct Core {
    wasi: Wasi,
    engine: wasmtime::Engine,
    /// Names its compiled code in the cache ([`fingerprint`]).
    fingerprint: u64,
    linker: Linker<State>,
    pooling: bool,
    // One slot per instance the pool holds, taken before instantiating: a full pool
    // queues briefly and then answers 503, instead of failing inside wasmtime.
    instances: Gate,
}

/// Which WASI a component is built for, and so which engine runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// WASI 0.2: a fresh instance per request unless the function opts in to reuse.
    P2,
    /// WASI 0.3: instances serve several requests at once.
    P3,
}

impl Core {
    fn new(options: &EngineOptions, wasi: Wasi) -> wasmtime::Result<Self> {
        let (engine, pooling) = match options.pooling {
            PoolingMode::Off => (wasmtime::Engine::new(&base_config(options, wasi))?, false),
            PoolingMode::On => (wasmtime::Engine::new(&pooling_config(options, wasi))?, true),
            // Creating a pooling engine reserves the pool's address space up front, so it
            // is its own probe: where `ulimit -v` or the kernel refuses, fall back.
            PoolingMode::Auto => match wasmtime::Engine::new(&pooling_config(options, wasi)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable, allocating instances on demand");
                    (wasmtime::Engine::new(&base_config(options, wasi))?, false)
                }
            },
        };
        let mut linker = Linker::new(&engine);
        // The full WASI surface is linked, because Rust's std imports wasi:cli and
        // wasi:filesystem even in a handler; the store's WasiCtx grants none of it (no
        // environment, no preopened directories, no sockets, no inherited stdio). A WASI
        // 0.3 component built by Rust imports 0.2 interfaces too (std's), so its engine
        // links both.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        if wasi == Wasi::P3 {
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
            // spin-sdk 7's interfaces are async functions: a WASI 0.3 engine's.
            spin::bindings::Spin3::add_to_linker::<State, spin::Spin>(&mut linker, |s| s)?;
            spin_sqlite::v3::bindings::Sqlite3::add_to_linker::<State, spin_sqlite::v3::Sqlite>(
                &mut linker,
                |s| s,
            )?;
            spin_redis::v3::bindings::Redis3::add_to_linker::<State, spin_redis::v3::Redis>(
                &mut linker,
                |s| s,
            )?;
            spin_postgres::v4_2::bindings::Postgres3::add_to_linker::<
                State,
                spin_postgres::v4_2::Postgres,
            >(&mut linker, |s| s)?;
            emitter::p3::bindings::AsyncEventFunction::add_to_linker::<State, emitter::p3::Emitter>(
                &mut linker,
                |s| s,
            )?;
        }
        wasmtime_wasi_config::add_to_linker(&mut linker, State::config)?;
        keyvalue::bindings::Keyvalue::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        keyvalue::draft2::bindings::Keyvalue2::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        spin::v2::bindings::Spin2::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        spin_sqlite::v2::bindings::Sqlite2::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        spin_redis::v2::bindings::Redis2::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        spin_postgres::v2::bindings::Postgres2::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        emitter::bindings::wasmfn::function::emitter::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        )?;
        Ok(Self {
            wasi,
            fingerprint: fingerprint(options, wasi),
            engine,
            linker,
            pooling,
            instances: Gate::new(options.pool_instances.max(1), "the instance pool"),
        })
    }
}

impl Engine {
    /// Builds the engine, probing for the pooling allocator when `options.pooling` is `Auto`.
    pub fn new(options: &EngineOptions) -> anyhow::Result<Self> {
        let p2 = Core::new(options, Wasi::P2)
            .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))?;
        let epoch = Arc::new(EpochTicker::start(p2.engine.clone()));
        options.metrics.set_pool_capacity(if p2.pooling {
            options.pool_instances
        } else {
            0
        });
        Ok(Self {
            pool_memory: p2.pooling.then_some(options.max_memory),
            p2: Arc::new(p2),
            p3: Arc::default(),
            options: options.clone(),
            epoch,
            draining: Arc::new(tokio::sync::watch::Sender::new(false)),
        })
    }

    /// Retires every WASI 0.3 instance once it has no more work, as the host stops: each
    /// finishes what it runs and ends cleanly instead of being dropped mid-loop. Functions
    /// loaded afterwards start drained.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Resolves once no WASI 0.3 instance is left (after [`Engine::drain`]).
    pub async fn drained(&self) {
        if let Some(Ok(core)) = self.p3.get() {
            core.instances.wait_idle().await;
        }
    }

    /// The engine for WASI 0.3 components, created on first use.
    fn p3(&self) -> Result<&Arc<Core>, String> {
        self.p3
            .get_or_init(|| {
                let core = Core::new(&self.options, Wasi::P3).map_err(|e| {
                    format!("cannot create the wasmtime engine for WASI 0.3 components: {e:#}")
                })?;
                self.epoch.add(core.engine.clone());
                if core.pooling {
                    self.options
                        .metrics
                        .add_pool_capacity(self.options.pool_instances);
                }
                tracing::debug!(pooling = core.pooling, "created the WASI 0.3 engine");
                Ok(Arc::new(core))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn core(&self, wasi: Wasi) -> Result<&Arc<Core>, String> {
        match wasi {
            Wasi::P2 => Ok(&self.p2),
            Wasi::P3 => self.p3(),
        }
    }

    /// Instance slots free right now; equal to the pool's size when nothing runs. A slot
    /// that never came back would show here (the containment tests check it).
    pub fn free_instance_slots(&self) -> u32 {
        let p3 = match self.p3.get() {
            Some(Ok(core)) => core.instances.available(),
            _ => 0,
        };
        self.p2.instances.available() + p3
    }

    /// The metrics this engine and its functions record into.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.options.metrics
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.p2.pooling
    }

    /// Compiles a component to the `.cwasm` format [`Engine::load`] memory-maps, for the
    /// engine its WASI version needs.
    #[cfg(feature = "compiler")]
    pub fn precompile(&self, path: &Path) -> Result<Vec<u8>, LoadError> {
        let wasm = read(path)?;
        let core = self.core_to_precompile(path, &wasm)?;
        core.engine
            .precompile_component(&wasm)
            .map_err(|e| invalid(path, &wasm, &e))
    }

    /// Compiles a `.wasm` into the cache (if it is not there yet) and returns the cache file.
    #[cfg(feature = "compiler")]
    pub fn precompile_into_cache(&self, path: &Path) -> Result<Option<PathBuf>, LoadError> {
        let wasm = read(path)?;
        let Some(cache) = &self.options.cache else {
            return Ok(None);
        };
        let core = self.core_to_precompile(path, &wasm)?;
        let entry = cache.entry_for(&wasm, core.fingerprint);
        if entry.exists() && deserialize(core, &entry).is_ok() {
            cache.index(path, self.p2.fingerprint, &entry);
            return Ok(Some(entry));
        }
        self.compile_and_cache(core, path, &wasm)?;
        Ok(Some(entry))
    }

    /// Loads a function's component and pre-instantiates it, so that requests only
    /// instantiate. Rejects a component that lacks the export its manifest entry needs
    /// (`wasi:http/incoming-handler` or `wasi:http/handler` for routes,
    /// `wasmfn:function/event-handler` for events) or imports something the host does not
    /// provide.
    pub fn load(&self, spec: &FunctionSpec, grants: Grants) -> Result<Function, LoadError> {
        if let Some(max) = self.pool_memory
            && spec.memory > max
        {
            return Err(LoadError::MemoryOverPool {
                function: spec.name.clone(),
                memory: spec.memory,
                max,
            });
        }
        let (component, core) = self.load_component(&spec.component)?;
        let imports = component
            .component_type()
            .imports(&core.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let contract = |reason: String| LoadError::Contract {
            path: spec.component.clone(),
            reason,
        };
        let refused = |e: wasmtime::Error| {
            let ty = component.component_type();
            let names = (ty
                .imports(&core.engine)
                .map(|(n, _)| ("imports", n.to_string())))
            .chain(
                ty.exports(&core.engine)
                    .map(|(n, _)| ("exports", n.to_string())),
            );
            contract(match wasi_version::of_names(names) {
                Some(mismatch) => mismatch.to_string(),
                None => format!("it imports something wasmfn does not provide: {e:#}"),
            })
        };
        let (instance_pre, unserved) = match core.linker.instantiate_pre(&component) {
            Ok(pre) => (pre, Vec::new()),
            // A component built against Spin's whole world imports interfaces it may never
            // call: those this host lacks are linked for it alone (unserved.rs).
            Err(e) => {
                let mut linker = core.linker.clone();
                match unserved::link(&mut linker, &component) {
                    Ok(linked) if !linked.is_empty() => {
                        let pre = linker.instantiate_pre(&component).map_err(refused)?;
                        tracing::warn!(
                            function = %spec.name,
                            interfaces = %linked.join(", "),
                            "the component imports interfaces of Spin's world that this host does not serve; a call to one fails"
                        );
                        (pre, linked)
                    }
                    _ => return Err(refused(e)),
                }
            }
        };
        let service = wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()).ok();
        // An export is required when the manifest entry needs it, optional otherwise.
        let wasi_http = match ProxyIndices::new(&instance_pre) {
            Ok(indices) => Some(indices),
            Err(e) if service.is_none() && !spec.routes.is_empty() => {
                return Err(contract(format!(
                    "the function has routes but the component does not export wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x, the HTTP handler interfaces: {e:#}"
                )));
            }
            Err(_) => None,
        };
        let one_call = HttpHandlerIndices::new(&instance_pre).ok();
        let reuse = spec.reuse.unwrap_or_default();
        let event_handler = match (
            EventHandlerIndices::new(&instance_pre),
            emitter::p3::bindings::AsyncEventFunctionIndices::new(&instance_pre),
        ) {
            (Ok(indices), _) => Some(EventAbi::WasiP2(indices)),
            (_, Ok(indices)) => Some(EventAbi::WasiP3(event_handler_p3::P3Events::new(
                indices, &reuse,
            ))),
            (Err(e), Err(_)) if spec.takes_events() => {
                return Err(contract(format!(
                    "the function takes events (`events` or `schedules`) but the component does not export wasmfn:function/event-handler (@0.1.0 for WASI 0.2, @0.2.0 for WASI 0.3), the event handler interface: {e:#}"
                )));
            }
            (Err(_), Err(_)) => None,
        };
        let sequential = match (core.wasi, spec.reuse) {
            (Wasi::P3, _) | (Wasi::P2, None) => None,
            (Wasi::P2, Some(_)) if reuse.max_concurrent.is_some_and(|n| n > 1) => {
                return Err(contract(format!(
                    "`reuse.max_concurrent` is {} but a WASI 0.2 instance serves one request at a time; leave it out or set it to 1 (a WASI 0.3 component serves several at once)",
                    reuse.max_concurrent.unwrap_or_default()
                )));
            }
            (Wasi::P2, Some(_)) => reuse::IdleInstances::sequential(
                &reuse,
                crate::metrics::intern(&spec.name),
                &self.options.metrics,
            ),
        };
        Ok(Function {
            inner: Arc::new_cyclic(|me| FunctionInner {
                name: spec.name.as_str().into(),
                label: crate::metrics::intern(&spec.name),
                metrics: self.options.metrics.clone(),
                instantiations: Default::default(),
                http: match (service, wasi_http) {
                    (Some(pre), _) => Some(HttpAbi::WasiP3(wasi_http_p3::P3Instances::new(
                        me.clone(),
                        pre,
                        &reuse,
                    ))),
                    // The one-call export only beside the standard one: a component
                    // exporting it alone would not run on any other host.
                    (None, Some(proxy)) => Some(HttpAbi::WasiP2 { proxy, one_call }),
                    (None, None) => None,
                },
                event_handler,
                wasi: core.wasi,
                instance_pre,
                imports,
                unserved: unserved.into(),
                timeout: spec.timeout,
                memory: spec.memory,
                max_body: spec.max_body,
                variables: Arc::new(grants.variables.iter().collect()),
                variable_values: Arc::new(grants.variables.clone()),
                environment: spec.environment.clone().into(),
                files: grants.files.clone(),
                key_value: Arc::new(grants.key_value),
                sqlite: Arc::new(grants.sqlite),
                outbound: grants.outbound.map(|client| {
                    let postgres = grants
                        .postgres
                        .unwrap_or_else(|| crate::databases::postgres::Pools::new(client.tls()));
                    Arc::new(OutboundGrant {
                        hosts: spec.allowed_outbound_hosts.clone(),
                        client,
                        redis: grants.redis,
                        postgres,
                        postgres_connections: Gate::new(
                            POSTGRES_CONNECTIONS_PER_FUNCTION,
                            format!("function `{}`'s PostgreSQL connections", spec.name),
                        ),
                        concurrency: Gate::new(
                            spec.outbound_concurrency,
                            format!("function `{}`'s outbound requests", spec.name),
                        ),
                    })
                }),
                concurrency: spec
                    .concurrency
                    .map(|n| Gate::new(n, format!("function `{}`'s concurrency", spec.name))),
                instances: core.instances.clone(),
                reuse: sequential,
                draining: self.draining.subscribe(),
                queue_timeout: self.options.queue_timeout,
                deadlines: self.options.deadlines,
                _epoch: self.epoch.clone(),
            }),
        })
    }

    /// The engine for compiling a component ahead of its load: one built for a WASI this
    /// host does not serve is refused here, as loading it would be (wasmtime would compile
    /// it, and fail only when it is linked).
    #[cfg(feature = "compiler")]
    fn core_to_precompile(&self, path: &Path, wasm: &[u8]) -> Result<&Arc<Core>, LoadError> {
        if let Some(mismatch) = wasi_version::of_bytes(wasm) {
            return Err(LoadError::Contract {
                path: path.to_path_buf(),
                reason: mismatch.to_string(),
            });
        }
        self.core_for(path, wasm)
    }

    /// The engine for `wasm`, by the WASI version its names say it is built for.
    fn core_for(&self, path: &Path, wasm: &[u8]) -> Result<&Arc<Core>, LoadError> {
        let wasi = if wasi_version::is_wasi_p3(wasm) {
            Wasi::P3
        } else {
            Wasi::P2
        };
        self.core(wasi).map_err(|reason| LoadError::Compile {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn load_component(&self, path: &Path) -> Result<(Component, Arc<Core>), LoadError> {
        if path.extension().is_some_and(|e| e == "cwasm") {
            return self.load_precompiled(path);
        }
        // The index is kept under the 0.2 engine's fingerprint for both kinds; the entry's
        // name says which engine compiled it.
        if let Some(cache) = &self.options.cache
            && let Some(entry) = cache.indexed_entry(path, self.p2.fingerprint)
            && let Ok(core) = self.core(if cache.made_by(&entry, self.p2.fingerprint) {
                Wasi::P2
            } else {
                Wasi::P3
            })
            && let Ok(c) = deserialize(core, &entry)
        {
            self.options.metrics.cache("hit");
            return Ok((c, core.clone()));
        }
        let wasm = read(path)?;
        let core = self.core_for(path, &wasm)?.clone();
        let Some(cache) = &self.options.cache else {
            let c = self.compile(&core, path, &wasm)?;
            return Ok((c, core));
        };
        let entry = cache.entry_for(&wasm, core.fingerprint);
        if entry.exists() {
            match deserialize(&core, &entry) {
                Ok(c) => {
                    self.options.metrics.cache("hit");
                    cache.index(path, self.p2.fingerprint, &entry);
                    return Ok((c, core));
                }
                // A damaged entry is rebuilt, not fatal: the cache is only an accelerator.
                Err(e) => {
                    self.options.metrics.cache("rebuilt");
                    tracing::warn!(entry = %entry.display(), error = %e, "discarding unusable cache entry")
                }
            }
        } else {
            self.options.metrics.cache("miss");
        }
        let c = self.compile_and_cache(&core, path, &wasm)?;
        Ok((c, core))
    }

    fn compile_and_cache(
        &self,
        core: &Core,
        path: &Path,
        wasm: &[u8],
    ) -> Result<Component, LoadError> {
        let started = std::time::Instant::now();
        let component = self.compile(core, path, wasm)?;
        tracing::info!(component = %path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        if let Some(cache) = &self.options.cache {
            let entry = cache.entry_for(wasm, core.fingerprint);
            let stored = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|bytes| cache.store(&entry, &bytes).map_err(|e| e.to_string()));
            // Failing to cache costs the next start a compile, nothing more.
            match stored {
                Ok(()) => cache.index(path, self.p2.fingerprint, &entry),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), error = %e, "could not write the compile cache")
                }
            }
        }
        Ok(component)
    }

    #[cfg(feature = "compiler")]
    fn compile(&self, core: &Core, path: &Path, wasm: &[u8]) -> Result<Component, LoadError> {
        Component::new(&core.engine, wasm).map_err(|e| invalid(path, wasm, &e))
    }

    /// A host built without a compiler runs only what was compiled ahead of time.
    #[cfg(not(feature = "compiler"))]
    fn compile(&self, _: &Core, path: &Path, _: &[u8]) -> Result<Component, LoadError> {
        Err(LoadError::NoCompiler {
            path: path.to_path_buf(),
            cache: self
                .options
                .cache
                .as_ref()
                .map(|c| c.path().display().to_string())
                .unwrap_or_else(|| "(none)".to_string()),
        })
    }

    fn load_precompiled(&self, path: &Path) -> Result<(Component, Arc<Core>), LoadError> {
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
        // Nothing in the file says which WASI it was built for: most are 0.2, so that
        // engine tries first, and the 0.3 one only when it refuses.
        let reason = match deserialize(&self.p2, path) {
            Ok(c) => return Ok((c, self.p2.clone())),
            Err(reason) => reason,
        };
        if let Ok(core) = self.p3()
            && let Ok(c) = deserialize(core, path)
        {
            return Ok((c, core.clone()));
        }
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

/// The wasmtime release this host is built with (a unit test checks it against Cargo.lock):
/// part of what names compiled code in the cache.
pub const WASMTIME_VERSION: &str = "48.0.10";

/// What names an engine's compiled code in the cache: everything of the engine's
/// configuration that changes the code, computed the same by a host with a compiler and
/// one without (which has no `precompile_compatibility_hash`), so a runtime-only host
/// finds what `wasmfn compile` wrote. wasmtime checks the rest when it loads the code: a
/// host with a compiler recompiles an entry it refuses, one without says so.
fn fingerprint(options: &EngineOptions, wasi: Wasi) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (
        WASMTIME_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
        wasi == Wasi::P3,
        // Whether instances are pooled, and their size, change no code: an image
        // compiled where the pool was available serves where it is not.
        options.optimize,
        options.deadlines,
        // No native unwind info (base_config): entries written with it are not reused.
        "no-unwind-info",
    )
        .hash(&mut hasher);
    hasher.finish()
}

fn deserialize(core: &Core, path: &Path) -> Result<Component, String> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Only files
    // the operator named in the manifest, or that this host wrote into its cache, get
    // here, and wasmtime still checks the header, version and engine configuration.
    unsafe { Component::deserialize_file(&core.engine, path) }.map_err(|e| format!("{e:#}"))
}

/// A component's bytes, with the WASI 0.3 release-candidate imports this host serves
/// renamed to the names it serves them under (wasi_version.rs).
fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(wasi_version::serve_release_candidate(&wasm).unwrap_or(wasm))
}

/// wasmtime refused the bytes: say so, unless they are a component for a WASI version this
/// host does not serve, which wasmtime cannot parse and which deserves to be named.
#[cfg(feature = "compiler")]
fn invalid(path: &Path, wasm: &[u8], e: &wasmtime::Error) -> LoadError {
    match wasi_version::of_bytes(wasm) {
        Some(mismatch) => LoadError::Contract {
            path: path.to_path_buf(),
            reason: mismatch.to_string(),
        },
        // Not WebAssembly at all (an HTML error page, a text file, a truncated download):
        // wasmtime's message prints both magic numbers as multi-line byte lists.
        None if !wasm.starts_with(b"\0asm") => LoadError::Contract {
            path: path.to_path_buf(),
            reason: format!(
                "it is not WebAssembly: a .wasm file starts with the bytes \\0asm, and this one with \"{}\"",
                wasm[..wasm.len().min(8)].escape_ascii()
            ),
        },
        // Keep the reason on one line, as every other error is.
        None => LoadError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        },
    }
}

fn base_config(options: &EngineOptions, wasi: Wasi) -> Config {
    let mut config = Config::new();
    // Epochs, not fuel: checking an epoch costs a load and compare at loop headers and
    // function entries, and one ticker thread serves every store (see epoch.rs).
    config.epoch_interruption(options.deadlines);
    #[cfg(feature = "compiler")]
    if !options.optimize {
        config.cranelift_opt_level(wasmtime::OptLevel::None);
    }
    config.wasm_component_model(true);
    // Concurrency support sets up per-store state and sends every call through the
    // concurrent call path; a WASI 0.2 request never uses either (benches/README.md).
    config.concurrency_support(wasi == Wasi::P3);
    config.wasm_component_model_async(wasi == Wasi::P3);
    // Copy-on-write memory images make instantiating a data-heavy component cost page
    // mappings, not copies (on by default; stated because the design depends on it).
    config.memory_init_cow(true);
    // `.eh_frame` for guest code serves only a native unwinder walking through Wasm
    // frames, and none does here: wasmtime walks guest stacks by frame pointer for trap
    // backtraces, and catches a host function's panic before it reaches Wasm frames. On
    // the image's musl host, libunwind registers it one guest function at a time and
    // removes each entry with a scan of all of them, quadratic in the functions loaded
    // (benches/README.md, "No native unwind info").
    config.native_unwind_info(false);
    config
}

fn pooling_config(options: &EngineOptions, wasi: Wasi) -> Config {
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
    let mut config = base_config(options, wasi);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// A loaded, pre-instantiated function. Cheap to clone.
#[derive(Clone)]
pub struct Function {
    inner: Arc<FunctionInner>,
}

/// One guest ABI's way into a guest for an HTTP request (Spin's executor pattern): each
/// ABI file implements it, and [`Function::handle`] chooses one per request.
trait HttpExecutor {
    /// Runs the call's request in its function and returns the guest's response once its
    /// head is ready; the body streams on while the guest writes it.
    // An `async fn`, not a function returning one: a wrapper would copy the guest's call
    // future once more on every request (callgrind: ~0.6k instructions on hello).
    async fn execute<B: RequestBody>(&self, call: HttpCall<'_, B>) -> Responded;
}

/// One request for an [`HttpExecutor`].
struct HttpCall<'a, B> {
    function: &'a Arc<FunctionInner>,
    request: hyper::Request<B>,
    request_id: &'a str,
    /// Where the guest's emitted events and calls to other functions go, if anywhere.
    emit: Option<CallContext>,
}

/// How a function takes events, chosen once, when it is loaded.
enum EventAbi {
    /// `wasmfn:function/event-handler@0.1.0`, one event per instance at a time
    /// (event_handler.rs).
    WasiP2(EventHandlerIndices),
    /// `wasmfn:function/event-handler@0.2.0`, instances handling several at once
    /// (event_handler_p3.rs).
    WasiP3(event_handler_p3::P3Events),
}

/// How a function takes HTTP requests, chosen once, when it is loaded.
enum HttpAbi {
    /// `wasi:http/incoming-handler@0.2` (wasi_http.rs), and the one-call
    /// `wasmfn:function/http-handler` beside it if the component exports that too
    /// (http_handler.rs).
    WasiP2 {
        proxy: ProxyIndices,
        one_call: Option<HttpHandlerIndices>,
    },
    /// `wasi:http/handler@0.3` and the instances serving it (wasi_http_p3.rs).
    WasiP3(wasi_http_p3::P3Instances),
}

impl Function {
    /// Runs one request and returns the guest's response once its head is ready; the body
    /// streams on while the guest writes it. A WASI 0.2 function runs it in a fresh
    /// instance (or an idle one, if it reuses instances); a request with a small body of
    /// known length goes through the one-call export when the component has one. A WASI
    /// 0.3 function gets it in one of its instances serving several. With `emit`, the
    /// guest's `emitter.emit` calls go there; without, they fail with a reason.
    pub async fn handle<B: RequestBody>(
        self,
        request: hyper::Request<B>,
        request_id: &str,
        emit: Option<CallContext>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError> {
        let f = &self.inner;
        let call = HttpCall {
            function: f,
            request,
            request_id,
            emit,
        };
        match &f.http {
            Some(HttpAbi::WasiP2 {
                one_call: Some(one_call),
                ..
            }) if http_handler::fits(&call.request) => one_call.execute(call).await,
            Some(HttpAbi::WasiP2 { proxy, .. }) => proxy.execute(call).await,
            Some(HttpAbi::WasiP3(service)) => service.execute(call).await,
            None => Err(InvokeError::Host(format!(
                "function `{}` has no HTTP handler",
                f.name
            ))),
        }
    }
}

struct FunctionInner {
    name: Arc<str>,
    label: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    instantiations: crate::metrics::Instantiations,
    /// Which WASI the component is built for: the engine it runs on.
    wasi: Wasi,
    /// The component, linked and ready to instantiate; the exports below are found in
    /// each instance by their indices.
    instance_pre: InstancePre<State>,
    /// How it takes HTTP requests, if it does.
    http: Option<HttpAbi>,
    /// How it takes events, if it does.
    event_handler: Option<EventAbi>,
    /// The interfaces the component imports, for `wasmfn check`.
    imports: Box<[String]>,
    /// Interfaces it imports that are linked to calls that fail (unserved.rs).
    unserved: Box<[String]>,
    timeout: Duration,
    memory: u64,
    max_body: u64,
    variables: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    /// The same values by name, for Spin's variables interface.
    variable_values: Arc<BTreeMap<String, String>>,
    /// The guest's whole environment, as its manifest entry declares it.
    environment: Arc<[(String, String)]>,
    /// Its `files`, read-only at `/`.
    files: Option<Arc<tempfile::TempDir>>,
    key_value: Arc<KeyValueGrant>,
    sqlite: Arc<SqliteGrant>,
    outbound: Option<Arc<OutboundGrant>>,
    concurrency: Option<Gate>,
    /// The instance pool of the engine it runs on.
    instances: Gate,
    /// For a WASI 0.2 function that reuses instances: its idle ones and the limits.
    reuse: Option<reuse::IdleInstances>,
    /// Becomes true when the host drains (see [`Engine::drain`]).
    draining: tokio::sync::watch::Receiver<bool>,
    queue_timeout: Duration,
    /// Per-request deadlines; off only in benchmarks (see [`EngineOptions::deadlines`]).
    deadlines: bool,
    _epoch: Arc<EpochTicker>,
}

impl FunctionInner {
    /// Its WASI 0.3 event handler's instances, if it has one.
    fn event_handler_p3(&self) -> Option<&event_handler_p3::P3Events> {
        match &self.event_handler {
            Some(EventAbi::WasiP3(events)) => Some(events),
            _ => None,
        }
    }

    /// A slot of the function's `concurrency`, if it sets one, waiting at most the queue
    /// timeout (503 after that). Every request and event holds one while it runs.
    async fn enter(&self) -> Result<Option<crate::admission::Slot>, InvokeError> {
        let Some(gate) = &self.concurrency else {
            return Ok(None);
        };
        gate.enter(self.queue_timeout)
            .await
            .map(Some)
            .map_err(|full| {
                self.metrics.refused(crate::metrics::Refusal::Concurrency);
                InvokeError::Overloaded(full.to_string())
            })
    }
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

    /// Whether the component exports an HTTP handler.
    pub fn handles_http(&self) -> bool {
        self.inner.http.is_some()
    }

    /// The WASI version the component is built for.
    pub fn wasi(&self) -> Wasi {
        self.inner.wasi
    }

    /// The guest ABIs it is served through, as `wasmfn check` names them: which HTTP and
    /// event exports, and so how its instances run requests.
    pub fn abis(&self) -> Vec<&'static str> {
        let mut abis = Vec::new();
        match &self.inner.http {
            Some(HttpAbi::WasiP2 { one_call, .. }) => {
                abis.push("wasi:http/incoming-handler@0.2");
                if one_call.is_some() {
                    abis.push("wasmfn:function/http-handler@0.1.0");
                }
            }
            Some(HttpAbi::WasiP3(_)) => abis.push("wasi:http/handler@0.3"),
            None => {}
        }
        match &self.inner.event_handler {
            Some(EventAbi::WasiP2(_)) => abis.push("wasmfn:function/event-handler@0.1.0"),
            Some(EventAbi::WasiP3(_)) => abis.push("wasmfn:function/event-handler@0.2.0"),
            None => {}
        }
        abis
    }

    /// Whether the component exports an event handler.
    pub fn handles_events(&self) -> bool {
        self.inner.event_handler.is_some()
    }

    /// The interfaces the component imports, as `package/interface@version` names.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The interfaces of Spin's world it imports that this host does not serve: linked so
    /// that it loads, each call failing with the interface's own error.
    pub fn unserved(&self) -> &[String] {
        &self.inner.unserved
    }
}

#[cfg(test)]
mod version_tests {
    /// The cache names compiled code by [`super::WASMTIME_VERSION`]: it must be the
    /// wasmtime this build links, as Cargo.lock pins it.
    #[test]
    fn the_wasmtime_version_is_the_locked_one() {
        let lock = include_str!("../../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"'));
        assert_eq!(locked, Some(super::WASMTIME_VERSION));
    }
}
