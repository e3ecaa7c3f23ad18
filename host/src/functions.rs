//! A manifest's functions and which of them are loaded.
//!
//! Loading a function maps its compiled component and pre-instantiates it (~0.5-1 ms from
//! the compile cache). Up to `[server] loaded_functions` of them are loaded at start, so a
//! usual manifest is checked whole before the host listens; a larger one starts just as
//! fast, loads the rest on their first request, and unloads the least recently used to
//! stay within the bound. Routing and metrics labels need only the manifest, so they never
//! wait for a load. What each function may reach (its grants) is resolved for all of them
//! at start, so a missing secret stops the start rather than a first request.
//!
//! [`Functions`] also answers calls from one function to another of this host
//! (`http://<function>.wasmfn.internal/...`), in process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use tracing::Instrument;

use crate::capabilities::{Capabilities, GrantError};
use crate::engine::{
    CallContext, CallFunction, Engine, Function, Grants, InvokeError, LoadError, NoSuchFunction,
    ResponseBody,
};
use crate::failure::Failure;
use crate::manifest::{FunctionSpec, Manifest};
use crate::metrics::Series;
use crate::outbound::OutboundBody;
use crate::telemetry;
use crate::traffic::Split;

/// A function that could not be loaded, named with where the manifest declares it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: function `{function}`: {reason}")]
pub struct FunctionLoadError {
    /// The manifest location of the function's `component` key.
    pub at: crate::manifest::Location,
    /// The function's name.
    pub function: String,
    /// What went wrong.
    pub reason: Box<Unloadable>,
}

/// Why a function cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Unloadable {
    /// Its component.
    #[error(transparent)]
    Component(#[from] LoadError),
    /// One of its variables, or its files.
    #[error(transparent)]
    Grant(#[from] GrantError),
}

/// Every function of a manifest, by its index there, and each of its versions.
pub struct Functions {
    specs: Vec<FunctionSpec>,
    labels: Vec<&'static str>,
    by_name: HashMap<String, usize>,
    /// The traffic split of each function with versions.
    splits: Vec<Option<Split>>,
    /// What is loaded: one per version (one for a function without versions), in manifest
    /// order.
    slots: Vec<Loadable>,
    /// Function `i`'s versions are `slots[first_slot[i]..]`.
    first_slot: Vec<usize>,
    engine: Engine,
    loaded: moka::sync::Cache<usize, Function>,
}

/// One loadable component: a function, or one version of it.
struct Loadable {
    function: usize,
    /// The function's spec with this version's component and variables.
    spec: FunctionSpec,
    grants: Grants,
    /// The version's name as a metrics label; empty without versions.
    version: &'static str,
    /// Its metrics, made at its first request (boxed: most of 10,000 functions may never
    /// get one).
    series: OnceLock<Box<Series>>,
}

impl Functions {
    /// Resolves every function's grants, loads the first `[server] loaded_functions`
    /// components (a function's versions count one each) and checks that the others can
    /// be read; fails on the first that cannot serve.
    pub fn load(
        manifest: &Manifest,
        engine: &Engine,
        capabilities: &Capabilities,
    ) -> Result<Arc<Self>, FunctionLoadError> {
        let capacity = manifest.server.loaded_functions as usize;
        let mut slots = Vec::new();
        let mut first_slot = Vec::with_capacity(manifest.functions.len());
        for (i, f) in manifest.functions.iter().enumerate() {
            first_slot.push(slots.len());
            for (v, spec) in f.variants().into_iter().enumerate() {
                let grants = capabilities.grants(&spec).map_err(|e| FunctionLoadError {
                    at: spec.component_at.clone(),
                    function: f.name.clone(),
                    reason: Box::new(e.into()),
                })?;
                slots.push(Loadable {
                    function: i,
                    grants,
                    version: crate::metrics::intern(f.version_name(v)),
                    spec,
                    series: OnceLock::new(),
                });
            }
        }
        let functions = Arc::new(Self {
            specs: manifest.functions.clone(),
            labels: manifest
                .functions
                .iter()
                .map(|f| crate::metrics::intern(&f.name))
                .collect(),
            by_name: manifest
                .functions
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect(),
            splits: manifest
                .functions
                .iter()
                .map(|f| f.versions.as_ref().map(Split::new))
                .collect(),
            slots,
            first_slot,
            engine: engine.clone(),
            // LRU rather than moka's default TinyLFU: TinyLFU may refuse to keep a function
            // that has just been loaded, and then every request to it would load it again.
            loaded: moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        });
        // Mapping components is independent work: spread it over the cores, which on a
        // cold start are otherwise idle. The first failure in manifest order is reported.
        let preload = capacity.min(functions.slots.len());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(preload.max(1));
        let load_every = |t: usize| {
            (t..preload)
                .step_by(threads)
                .map(|slot| (slot, functions.load_one(slot)))
                .collect::<Vec<_>>()
        };
        // One function (or one core) is loaded here: a thread would only add its start-up.
        let mut loaded: Vec<(usize, Result<Function, FunctionLoadError>)> = if threads == 1 {
            load_every(0)
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|t| scope.spawn(move || load_every(t)))
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        loaded.sort_by_key(|(slot, _)| *slot);
        for (slot, function) in loaded {
            functions.loaded.insert(slot, function?);
        }
        for (slot, s) in functions.slots.iter().enumerate().skip(preload) {
            // A wrong path fails the start, not the function's first request.
            std::fs::metadata(&s.spec.component).map_err(|source| {
                functions.error(
                    slot,
                    LoadError::Read {
                        path: s.spec.component.clone(),
                        source,
                    }
                    .into(),
                )
            })?;
        }
        Ok(functions)
    }

    fn error(&self, slot: usize, reason: Unloadable) -> FunctionLoadError {
        let spec = &self.slots[slot].spec;
        FunctionLoadError {
            at: spec.component_at.clone(),
            function: spec.name.clone(),
            reason: Box::new(reason),
        }
    }

    fn load_one(&self, slot: usize) -> Result<Function, FunctionLoadError> {
        let Loadable {
            spec,
            grants,
            version,
            ..
        } = &self.slots[slot];
        let started = Instant::now();
        let function = self
            .engine
            .load(spec, grants.clone())
            .map_err(|e| self.error(slot, e.into()))?;
        tracing::info!(
            function = %spec.name,
            version,
            component = %spec.component.display(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "function loaded"
        );
        Ok(function)
    }

    /// The one way a function runs, for a request, an event or a call from another
    /// function: version `v` of function `i` (chosen with [`Functions::choose`] or
    /// [`Functions::choose_for_event`]) is loaded if it was not, `run` runs it, and a
    /// failure of either is the [`Failure`] the caller answers with. The run is traced
    /// under `span`.
    #[inline(always)]
    pub async fn invoke<T, F, Fut>(
        self: &Arc<Self>,
        i: usize,
        v: usize,
        span: tracing::Span,
        run: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Function) -> Fut,
        Fut: Future<Output = Result<T, InvokeError>>,
    {
        let function = self.get(i, v).await.map_err(|e| Failure::Unloadable {
            function: self.name(i).to_string(),
            reason: e.to_string(),
        })?;
        run(function)
            .instrument(span)
            .await
            .map_err(|e| Failure::invoke(self.name(i), e))
    }

    /// Function `i`'s spec as the manifest gives it.
    pub fn spec(&self, i: usize) -> &FunctionSpec {
        &self.specs[i]
    }

    /// Version `v` of function `i` (`v` is 0 without versions), loaded if it was not.
    /// Concurrent first requests wait for one load.
    pub async fn get(
        self: &Arc<Self>,
        i: usize,
        v: usize,
    ) -> Result<Function, Arc<FunctionLoadError>> {
        let slot = self.first_slot[i] + v;
        debug_assert_eq!(self.slots[slot].function, i);
        if let Some(function) = self.loaded.get(&slot) {
            return Ok(function);
        }
        let this = self.clone();
        // Mapping and pre-instantiating blocks for a millisecond or so: not on a worker
        // that is serving other requests.
        match tokio::task::spawn_blocking(move || {
            this.loaded.try_get_with(slot, || this.load_one(slot))
        })
        .await
        {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// Which version of function `i` answers a request with `headers` (0 without
    /// versions).
    pub fn choose(&self, i: usize, headers: &http::HeaderMap) -> usize {
        self.splits[i].as_ref().map_or(0, |s| s.choose(headers))
    }

    /// Which version of function `i` takes an event.
    pub fn choose_for_event(&self, i: usize) -> usize {
        self.splits[i].as_ref().map_or(0, Split::choose_for_event)
    }

    /// Version `v` of function `i` as a metrics label; empty without versions.
    pub fn version_label(&self, i: usize, v: usize) -> &'static str {
        self.slots[self.first_slot[i] + v].version
    }

    /// Where version `v` of function `i` records its requests.
    pub fn series(&self, i: usize, v: usize) -> &Series {
        let slot = &self.slots[self.first_slot[i] + v];
        slot.series
            .get_or_init(|| Box::new(self.engine.metrics().series(self.labels[i], slot.version)))
    }

    /// The traffic split of the function named `name`, if it has versions.
    pub fn split(&self, name: &str) -> Option<&Split> {
        self.splits[self.index_of(name)?].as_ref()
    }

    /// Every function with versions and its split, in manifest order.
    pub fn splits(&self) -> impl Iterator<Item = (&str, &Split)> {
        self.specs
            .iter()
            .zip(&self.splits)
            .filter_map(|(f, s)| Some((f.name.as_str(), s.as_ref()?)))
    }

    /// The index of the function named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// How many functions the manifest has.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the manifest has none.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Whether version `v` of function `i` is loaded right now.
    pub fn is_loaded(&self, i: usize, v: usize) -> bool {
        self.loaded.contains_key(&(self.first_slot[i] + v))
    }

    /// How many components are loaded right now.
    pub fn loaded(&self) -> u64 {
        self.loaded.run_pending_tasks();
        self.loaded.entry_count()
    }

    /// Function `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.specs[i].name
    }

    /// Function `i`'s name as a metrics label.
    pub fn label(&self, i: usize) -> &'static str {
        self.labels[i]
    }

    /// The longest deadline of any function.
    pub fn longest_timeout(&self) -> Duration {
        self.specs
            .iter()
            .map(|f| f.timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

impl CallFunction for Functions {
    fn call(
        self: Arc<Self>,
        name: String,
        request: http::Request<OutboundBody>,
        context: CallContext,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, NoSuchFunction>> + Send>>
    {
        Box::pin(async move {
            let Some(i) = self.index_of(&name) else {
                return Err(NoSuchFunction(name));
            };
            let started = Instant::now();
            let request_id = context.request_id.clone();
            let v = self.choose(i, request.headers());
            let path = request.uri().path().to_string();
            let id = &request_id;
            let span = telemetry::root_span("request", &name, id, context.trace.as_ref());
            let result = self
                .invoke(i, v, span, move |function| {
                    function.handle(request, id, Some(context))
                })
                .await;
            // As the HTTP front answers a client, except that the request id is the
            // caller's and there is no route: the name chose the function.
            let response = match result {
                Ok(response) => response,
                Err(failure) => {
                    tracing::warn!(function = name, %request_id, error = %failure, "call from another function failed");
                    failure.into_response(&request_id, None, None)
                }
            };
            let status = response.status().as_u16();
            tracing::info!(function = name, %request_id, path, status, elapsed_us = started.elapsed().as_micros() as u64, "request from another function");
            Ok(response)
        })
    }
}
