//! The manifest, `wasmfn.toml`: which functions exist, where their components are, which
//! routes they serve and under which limits.
//!
//! Parsing is two steps (as ripgrep's low/high args): serde reads the TOML into `Raw*`
//! types that keep source spans, then [`Manifest::parse`] validates them into resolved types
//! with defaults applied. Every error names the file, the line and what was expected.
//!
//! - this file: the functions, their routes, subscriptions and grants, the key-value
//!   stores, and the whole manifest;
//! - [`limits`]: durations, sizes and counts, and the host-wide `[server]` limits;
//! - [`variables`]: values taken from the environment or files, resolved at start;
//! - [`deploy`]: the `[deploy]` table and `[[services]]`, checked as Knative would check
//!   them ([`crate::knative`] only renders them);
//! - [`delivery`], [`schedule`], [`flows`], [`versions`]: a function's `delivery`,
//!   `schedules`, the `[[sequences]]` and `[[parallels]]`, and `versions`;
//! - [`routes`]: route patterns and the table that maps a path to its function;
//! - [`subscription`]: `events` entries, Knative Trigger filters, matched against events;
//! - [`hosts`]: `allowed_outbound_hosts` and the internal names functions call each other by.
//!
//! Configuration sits below everything that runs: this module imports nothing of the
//! engine, events, outbound or server, only the leaf [`crate::cloudevent`].

pub mod cluster;
pub mod databases;
pub mod delivery;
pub mod deploy;
pub mod files;
pub mod flows;
pub mod hosts;
pub mod limits;
pub mod routes;
mod runtime_config;
pub mod schedule;
mod spin;
pub mod subscription;
pub mod variables;
pub mod versions;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use deploy::DeploySpec;
use hosts::{AllowedHost, AllowedHosts, DEFAULT_OUTBOUND_CONCURRENCY};
pub use limits::{
    DEFAULT_LOADED_FUNCTIONS, DEFAULT_MAX_BODY, DEFAULT_MEMORY, DEFAULT_REUSE_IDLE,
    DEFAULT_REUSE_MAX_CONCURRENT, DEFAULT_REUSE_MAX_REQUESTS, DEFAULT_TIMEOUT, MAX_MEMORY,
    MAX_TIMEOUT, MIN_MEMORY, Reuse, ServerLimits,
};
use limits::{parse_count, parse_memory, parse_reuse, parse_size, parse_timeout, server_limits};
use routes::{RoutePattern, RouteTable};
use subscription::Subscription;
pub use variables::Variable;

/// Paths under this prefix belong to the host (health, metrics) and no function may claim them.
pub const RESERVED_PREFIX: &str = "/.well-known/wasmfn/";
/// Where a Knative Trigger delivers to one function: `<this><function name>`.
pub const DELIVERY_PREFIX: &str = "/.well-known/wasmfn/events/";
/// Where CloudEvents arrive when the manifest does not say: Knative delivers to `/`.
pub const DEFAULT_EVENTS_PATH: &str = "/";
/// The store a function gets when it names `default` and the manifest declares none.
pub const DEFAULT_STORE: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    functions: Vec<Spanned<RawFunction>>,
    events: Option<RawEvents>,
    deploy: Option<Spanned<deploy::RawDeploy>>,
    #[serde(default)]
    services: Vec<Spanned<deploy::RawService>>,
    server: Option<RawServer>,
    #[serde(default)]
    key_value: BTreeMap<String, Spanned<RawKeyValue>>,
    #[serde(default)]
    sqlite: BTreeMap<String, Spanned<databases::RawSqlite>>,
    #[serde(default)]
    sequences: Vec<Spanned<flows::RawSequence>>,
    #[serde(default)]
    parallels: Vec<Spanned<flows::RawParallel>>,
    #[serde(default)]
    profiles: BTreeMap<String, Spanned<deploy::RawProfile>>,
    /// Read from a spin.toml: errors say what to write in Spin's terms.
    #[serde(skip)]
    spin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyValue {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<toml::Value>>,
    path: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    max_connections: Option<Spanned<i64>>,
    max_in_flight: Option<Spanned<i64>>,
    loaded_functions: Option<Spanned<i64>>,
    queue_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: Spanned<String>,
    component: Option<Spanned<String>>,
    #[serde(default)]
    versions: Vec<Spanned<versions::RawVersion>>,
    sticky: Option<Spanned<versions::RawSticky>>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    events: Vec<Spanned<toml::Value>>,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    max_body: Option<Spanned<String>>,
    reuse: Option<Spanned<limits::RawReuse>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    environment: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    exclude_files: Vec<Spanned<String>>,
    #[serde(default)]
    key_value_stores: Vec<Spanned<String>>,
    #[serde(default)]
    sqlite_databases: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    outbound_concurrency: Option<Spanned<i64>>,
    delivery: Option<Spanned<delivery::RawDelivery>>,
    #[serde(default)]
    schedules: Vec<Spanned<schedule::RawSchedule>>,
    build: Option<Spanned<RawBuild>>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: Spanned<String>,
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<Spanned<String>>,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The functions, in manifest order.
    pub functions: Vec<FunctionSpec>,
    /// Every route of every function; duplicates were rejected while building it.
    pub routes: RouteTable,
    /// The path CloudEvents are delivered to.
    pub events_path: String,
    /// How `wasmfn deploy render` lays the functions out on Knative.
    pub deploy: DeploySpec,
    /// Host-wide limits on connections and requests (`[server]`).
    pub server: ServerLimits,
    /// The key-value stores, by label: those declared, and the implicit `default` when a
    /// function is granted it. Only those some function is granted are opened.
    pub key_value: Vec<KeyValueSpec>,
    /// The SQLite databases: those declared, and the implicit `default` when a function is
    /// granted it. Only those some function is granted are opened.
    pub sqlite: Vec<databases::SqliteSpec>,
    /// Sequences and parallels of functions.
    pub flows: Vec<flows::Flow>,
    /// The `[profiles.<name>]` applied, if any.
    pub profile: Option<String>,
    /// The Spin runtime configuration file it was read with, if any.
    pub runtime_config: Option<PathBuf>,
}

/// A key-value store (`[key_value.<label>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueSpec {
    /// Its label, which functions name in `key_value_stores` and guests in `open`.
    pub label: String,
    /// Its backend.
    pub kind: KeyValueKind,
}

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueKind {
    /// A SQLite file on local disk: `path`, or `<label>.sqlite` in the data directory.
    Embedded {
        /// The file, resolved against the manifest's directory.
        path: Option<PathBuf>,
    },
    /// A Redis server.
    Redis {
        /// `redis://...`, possibly from the environment.
        url: Variable,
        /// What every key starts with; `wasmfn:<label>:` by default.
        prefix: Option<String>,
    },
    /// This process's memory.
    Memory,
}

/// One `[[functions]]` entry, resolved.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Unique name, a DNS label (it may become a Knative Service name).
    pub name: String,
    /// The `.wasm` or `.cwasm` file, resolved against the manifest's directory (with
    /// `versions`, the first version's; see [`FunctionSpec::variants`]).
    pub component: PathBuf,
    /// Where `component` is written, for errors found when loading it.
    pub component_at: Location,
    /// Several components serving as this function, the traffic split between them.
    pub versions: Option<versions::Versions>,
    /// The HTTP paths this function serves.
    pub routes: Vec<RoutePattern>,
    /// The events delivered to it: each subscription that matches delivers the event once.
    pub events: Vec<Subscription>,
    /// Wall-clock and CPU deadline of one invocation.
    pub timeout: Duration,
    /// The most linear memory one instance may grow to, in bytes.
    pub memory: u64,
    /// Instances of this function that may run at once; `None` leaves only the host-wide
    /// limits.
    pub concurrency: Option<u32>,
    /// The largest request body it accepts, in bytes; larger ones are answered 413.
    pub max_body: u64,
    /// How its instances are reused, as written; `None`: a WASI 0.2 component gets a
    /// fresh instance per request, a WASI 0.3 one the defaults.
    pub reuse: Option<Reuse>,
    /// Values the guest reads through `wasi:config/store`, resolved at start.
    pub variables: BTreeMap<String, Variable>,
    /// The guest's environment (`wasi:cli/environment`): these variables and no others.
    pub environment: Vec<(String, String)>,
    /// Files of the host it may read (`files`, `exclude_files`).
    pub files: files::Files,
    /// The key-value stores it may open, by label.
    pub key_value_stores: Vec<String>,
    /// The SQLite databases it may open, by label.
    pub sqlite_databases: Vec<String>,
    /// Where its outbound HTTP requests may go; empty: nowhere.
    pub allowed_outbound_hosts: AllowedHosts,
    /// Outbound requests it may have in flight at once.
    pub outbound_concurrency: u32,
    /// How the Broker delivers to its Trigger (Knative only).
    pub delivery: Option<delivery::Delivery>,
    /// Periodic events delivered to it.
    pub schedules: Vec<schedule::Schedule>,
    /// Whether a sequence or parallel runs it.
    pub in_flow: bool,
    /// How `wasmfn build` and `wasmfn dev` build its component.
    pub build: Option<Build>,
    /// Declared in a `spin.toml`: its requests carry the headers Spin gives a component.
    pub spin: bool,
}

/// How a function's component is built (`build = { command, workdir, watch }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// A shell command.
    pub command: String,
    /// Where it runs, resolved against the manifest's directory (default: that directory).
    pub workdir: PathBuf,
    /// Glob patterns, relative to `workdir`, of the files whose change calls for a rebuild
    /// (`wasmfn dev`); every file under `workdir` but `target/` when empty.
    pub watch: Vec<String>,
}

impl FunctionSpec {
    /// What is loaded for this function: itself, or one spec per version (its component
    /// and variables in place of the function's, no versions of its own).
    pub fn variants(&self) -> Vec<FunctionSpec> {
        let Some(versions) = &self.versions else {
            return vec![self.clone()];
        };
        versions
            .list
            .iter()
            .map(|v| {
                let mut variables = self.variables.clone();
                variables.extend(v.variables.clone());
                FunctionSpec {
                    component: v.component.clone(),
                    component_at: v.component_at.clone(),
                    versions: None,
                    variables,
                    ..self.clone()
                }
            })
            .collect()
    }

    /// The name of version `v` (empty for a function without versions).
    pub fn version_name(&self, v: usize) -> &str {
        self.versions
            .as_ref()
            .map_or("", |vs| vs.list[v].name.as_str())
    }

    /// Whether events reach it (by subscription, schedule or flow): its component must
    /// export the event handler.
    pub fn takes_events(&self) -> bool {
        !self.events.is_empty() || !self.schedules.is_empty() || self.in_flow
    }
}

/// What the TOML reader says of `e`, in the manifest's words where its own are a Rust
/// type's ("as i128, expected i64" for a number too large).
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    if let Some(rest) = message.strip_prefix("invalid type: integer `")
        && let Some((number, tail)) = rest.split_once('`')
        && tail.contains("as i128")
    {
        return format!(
            "the number {number} is too large: a whole number here is at most {}",
            i64::MAX
        );
    }
    message.to_string()
}

/// A place in the manifest: file, line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The manifest file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// A manifest that cannot be used, and where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is wrong at `at`.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What was expected.
        message: String,
    },
    /// `WASMFN_FUNCTIONS` (or `--functions`) names a function the manifest lacks.
    #[error(
        "{}: WASMFN_FUNCTIONS names `{name}`, but the manifest has no such function",
        path.display()
    )]
    UnknownFunction {
        /// The manifest path.
        path: PathBuf,
        /// The name that was asked for.
        name: String,
    },
}

/// Which part of a manifest one host serves.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these functions (`--functions`); all when empty.
    pub functions: Vec<String>,
    /// `FUNCTION=VERSION`: that version alone (`--pin-versions`).
    pub pins: Vec<String>,
}

impl Selection {
    /// `manifest` narrowed to this selection.
    pub fn apply(&self, mut manifest: Manifest) -> Result<Manifest, ManifestError> {
        if !self.functions.is_empty() {
            manifest = manifest.select(&self.functions)?;
        }
        if !self.pins.is_empty() {
            manifest = manifest.pin_versions(&self.pins)?;
        }
        Ok(manifest)
    }
}

/// Where a manifest is read from: the file, and for a Spin app the runtime configuration
/// file that says where its stores live.
#[derive(Debug, Clone)]
pub struct ManifestFiles {
    /// `wasmfn.toml` or `spin.toml`.
    pub path: PathBuf,
    /// Spin's `--runtime-config-file`.
    pub runtime_config: Option<PathBuf>,
}

impl ManifestFiles {
    /// Reads and validates them.
    pub fn load(&self) -> Result<Manifest, ManifestError> {
        Manifest::load_with_runtime_config(&self.path, None, self.runtime_config.as_deref())
    }
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates manifest text as if it had been read from `path`; relative component
    /// paths resolve against `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        Self::parse_profile(path, text, None)
    }

    /// [`Manifest::load`] with `[profiles.<profile>]` applied to its deploy layout.
    pub fn load_profile(path: &Path, profile: Option<&str>) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_profile(path, &text, profile)
    }

    /// [`Manifest::load_profile`] for a Spin app with Spin's runtime configuration file at
    /// `runtime_config` (where its key-value stores live), if one is given.
    pub fn load_with_runtime_config(
        path: &Path,
        profile: Option<&str>,
        runtime_config: Option<&Path>,
    ) -> Result<Self, ManifestError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let text = read(path)?;
        let config = match runtime_config {
            Some(rc) => Some((rc, read(rc)?)),
            None => None,
        };
        Self::parse_full(
            path,
            &text,
            profile,
            config.as_ref().map(|(p, t)| (*p, t.as_str())),
        )
    }

    /// [`Manifest::parse`] with `[profiles.<profile>]` applied to its deploy layout.
    pub fn parse_profile(
        path: &Path,
        text: &str,
        profile: Option<&str>,
    ) -> Result<Self, ManifestError> {
        Self::parse_full(path, text, profile, None)
    }

    /// [`Manifest::parse_profile`], with a Spin runtime configuration file's path and text.
    pub fn parse_full(
        path: &Path,
        text: &str,
        profile: Option<&str>,
        runtime_config: Option<(&Path, &str)>,
    ) -> Result<Self, ManifestError> {
        let ctx = Ctx::new(path, text);
        // A Spin app's manifest becomes the same raw form, with its variables beside it.
        let (mut raw, mut spin_variables) = if spin::is_spin(text) {
            let mut app = spin::read(&ctx, text)?;
            if let Some((rc_path, rc_text)) = runtime_config {
                let config = runtime_config::read(rc_path, rc_text)?;
                app.raw.key_value.extend(config.stores);
                app.raw.sqlite.extend(config.databases);
                app.with_providers(&config.providers);
            }
            spin::check_store_labels(&ctx, &app.raw)?;
            (app.raw, app.variables)
        } else if let Some((rc_path, _)) = runtime_config {
            return Err(ManifestError::Invalid {
                at: Ctx::new(rc_path, "").location(0),
                message: format!(
                    "a runtime configuration file goes with a spin.toml; {} declares its stores as [key_value.<label>]",
                    path.display()
                ),
            });
        } else {
            let raw: RawManifest = toml::from_str(text).map_err(|e| {
                let span = e.span().unwrap_or(0..0);
                ctx.error(span, toml_message(&e))
            })?;
            (raw, BTreeMap::new())
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(profile) = profile {
            deploy::apply_profile(
                &ctx,
                profile,
                &raw.profiles,
                &mut raw.deploy,
                &mut raw.services,
            )?;
        }
        let mut functions: Vec<FunctionSpec> = Vec::with_capacity(raw.functions.len());
        let mut names: std::collections::HashMap<String, usize> =
            std::collections::HashMap::with_capacity(raw.functions.len());
        let mut route_spans: Vec<(RoutePattern, usize, Range<usize>)> = Vec::new();
        for raw_fn in &raw.functions {
            let name = validate_name(&ctx, &raw_fn.get_ref().name)?;
            if let Some(&other) = names.get(&name) {
                return Err(ctx.error(
                    raw_fn.get_ref().name.span(),
                    format!(
                        "function name `{name}` is already used by the function at line {}",
                        functions[other].component_at.line
                    ),
                ));
            }
            names.insert(name.clone(), functions.len());
            let (mut function, spans) = function(&ctx, raw_fn, name, &base, &raw)?;
            if let Some(variables) = spin_variables.remove(&function.name) {
                function.variables = variables;
                function.spin = true;
            }
            route_spans.extend(
                spans
                    .into_iter()
                    .map(|(pattern, span)| (pattern, functions.len(), span)),
            );
            functions.push(function);
        }
        let routes = route_table(&ctx, &route_spans, &functions)?;
        let flows = flows::parse(&ctx, &raw.sequences, &raw.parallels, &functions)?;
        mark_flow_members(&ctx, &raw, &flows, &mut functions)?;
        Ok(Manifest {
            path: path.to_path_buf(),
            routes,
            events_path: events_path(&ctx, raw.events.as_ref())?,
            server: match &raw.server {
                None => ServerLimits::default(),
                Some(raw) => server_limits(&ctx, raw)?,
            },
            key_value: key_value_specs(&ctx, &raw.key_value, &base, &functions)?,
            sqlite: databases::specs(&ctx, &raw.sqlite, &base, &functions)?,
            deploy: deploy::resolve(&ctx, raw.deploy.as_ref(), &raw.services, &functions)?,
            functions,
            flows,
            profile: profile.map(str::to_string),
            runtime_config: runtime_config.map(|(p, _)| p.to_path_buf()),
        })
    }
}

/// One `[[functions]]` entry, named `name` (checked already), and where each of its routes
/// is written.
fn function(
    ctx: &Ctx<'_>,
    raw_fn: &Spanned<RawFunction>,
    name: String,
    base: &Path,
    raw: &RawManifest,
) -> Result<(FunctionSpec, Vec<RouteAt>), ManifestError> {
    let f = raw_fn.get_ref();
    let (component, component_at, versions) = component(ctx, raw_fn, &name, base)?;
    let route_spans = routes(ctx, &f.routes)?;
    let events = subscriptions(ctx, &f.events)?;
    let schedules = schedule::parse(ctx, &name, &f.schedules)?;
    let delivery = match &f.delivery {
        None => None,
        Some(_) if events.is_empty() && schedules.is_empty() => {
            return Err(ctx.error(
                raw_fn.span(),
                format!("`delivery` sets how the Broker delivers to a function's Trigger, and `{name}` subscribes to no events"),
            ));
        }
        Some(d) => Some(delivery::parse(ctx, d, "delivery")?),
    };
    let spec = FunctionSpec {
        component,
        component_at,
        versions,
        routes: route_spans.iter().map(|(p, _)| p.clone()).collect(),
        events,
        timeout: match &f.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_timeout(ctx, t)?,
        },
        memory: match &f.memory {
            None => DEFAULT_MEMORY,
            Some(m) => parse_memory(ctx, m)?,
        },
        concurrency: f
            .concurrency
            .as_ref()
            .map(|c| parse_count(ctx, "concurrency", c))
            .transpose()?,
        max_body: match &f.max_body {
            None => DEFAULT_MAX_BODY,
            Some(b) => parse_size(ctx, "max_body", b, 0, MAX_MEMORY)?,
        },
        reuse: f
            .reuse
            .as_ref()
            .map(|r| parse_reuse(ctx, r.get_ref()))
            .transpose()?,
        variables: variables(ctx, raw_fn, base)?,
        environment: environment(ctx, &f.environment)?,
        files: files::parse(ctx, &f.files, &f.exclude_files, base)?,
        key_value_stores: key_value_grants(ctx, &f.key_value_stores, &raw.key_value)?,
        sqlite_databases: databases::grants(ctx, &f.sqlite_databases, &raw.sqlite, raw.spin)?,
        allowed_outbound_hosts: allowed_hosts(ctx, &f.allowed_outbound_hosts)?,
        outbound_concurrency: f
            .outbound_concurrency
            .as_ref()
            .map(|c| parse_count(ctx, "outbound_concurrency", c))
            .transpose()?
            .unwrap_or(DEFAULT_OUTBOUND_CONCURRENCY),
        delivery,
        schedules,
        in_flow: false,
        spin: false,
        build: f.build.as_ref().map(|b| build(ctx, b, base)).transpose()?,
        name,
    };
    Ok((spec, route_spans))
}

/// A function's component (its first version's, with `versions`), where the manifest says
/// it, and its versions.
fn component(
    ctx: &Ctx<'_>,
    raw_fn: &Spanned<RawFunction>,
    name: &str,
    base: &Path,
) -> Result<(PathBuf, Location, Option<versions::Versions>), ManifestError> {
    let f = raw_fn.get_ref();
    let component_path = |c: &Spanned<String>| {
        let text = c.get_ref();
        if !(text.ends_with(".wasm") || text.ends_with(".cwasm")) {
            return Err(ctx.error(
                c.span(),
                format!("`component` must be a path to a .wasm or .cwasm file, got {text:?}"),
            ));
        }
        Ok(base.join(text))
    };
    match (&f.component, f.versions.is_empty()) {
        (Some(c), true) => {
            if let Some(sticky) = &f.sticky {
                return Err(ctx.error(
                    sticky.span(),
                    format!("`sticky` splits traffic between versions, and `{name}` has no `versions`"),
                ));
            }
            Ok((component_path(c)?, ctx.location(c.span().start), None))
        }
        (None, false) => {
            let versions = versions::parse(
                ctx,
                base,
                raw_fn.span(),
                &f.versions,
                f.sticky.as_ref(),
                component_path,
            )?;
            let first = &versions.list[0];
            Ok((
                first.component.clone(),
                first.component_at.clone(),
                Some(versions),
            ))
        }
        (Some(c), false) => Err(ctx.error(
            c.span(),
            format!("function `{name}` has both `component` and `versions`; give each version its component and drop `component`"),
        )),
        (None, true) => Err(ctx.error(
            f.name.span(),
            format!("function `{name}` needs a `component` (or `versions`, each with its component)"),
        )),
    }
}

/// A route and where the manifest writes it (for a duplicate's error).
type RouteAt = (RoutePattern, Range<usize>);

/// A function's routes.
fn routes(ctx: &Ctx<'_>, raw: &[Spanned<String>]) -> Result<Vec<RouteAt>, ManifestError> {
    raw.iter()
        .map(|route| {
            let pattern = RoutePattern::parse(route.get_ref())
                .map_err(|e| ctx.error(route.span(), e.to_string()))?;
            if pattern.overlaps_prefix(RESERVED_PREFIX) {
                return Err(ctx.error(
                    route.span(),
                    format!("route {:?} is under {RESERVED_PREFIX}, which the host reserves for health and metrics", route.get_ref()),
                ));
            }
            Ok((pattern, route.span()))
        })
        .collect()
}

/// A function's (or a flow's) `events`.
fn subscriptions(
    ctx: &Ctx<'_>,
    raw: &[Spanned<toml::Value>],
) -> Result<Vec<Subscription>, ManifestError> {
    raw.iter()
        .enumerate()
        .map(|(i, sub)| {
            Subscription::from_toml(sub.get_ref().clone()).map_err(|e| {
                let sep = if e.starts_with("filters") { "." } else { "" };
                ctx.error(sub.span(), format!("events[{i}]{sep}{e}"))
            })
        })
        .collect()
}

/// The function `f` names, by its index.
fn function_index(
    ctx: &Ctx<'_>,
    f: &Spanned<String>,
    functions: &[FunctionSpec],
) -> Result<usize, ManifestError> {
    functions
        .iter()
        .position(|x| x.name == *f.get_ref())
        .ok_or_else(|| ctx.error(f.span(), format!("no function is named `{}`", f.get_ref())))
}

fn variables(
    ctx: &Ctx<'_>,
    raw_fn: &Spanned<RawFunction>,
    base: &Path,
) -> Result<BTreeMap<String, Variable>, ManifestError> {
    let mut variables = BTreeMap::new();
    for (key, value) in &raw_fn.get_ref().variables {
        if key.is_empty() {
            return Err(ctx.error(
                raw_fn.span(),
                "variable names must not be empty".to_string(),
            ));
        }
        let variable = Variable::from_toml(value.get_ref(), base, &format!("variables.{key}"))
            .map_err(|e| ctx.error(value.span(), e))?;
        variables.insert(key.clone(), variable);
    }
    Ok(variables)
}

/// A function's `environment`: names a process environment can hold (not empty, no `=`),
/// values without NUL.
fn environment(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
) -> Result<Vec<(String, String)>, ManifestError> {
    raw.iter()
        .map(|(name, value)| {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(ctx.error(
                    value.span(),
                    format!(
                        "environment variable name {name:?} must be non-empty, without `=` or NUL"
                    ),
                ));
            }
            if value.get_ref().contains('\0') {
                return Err(ctx.error(
                    value.span(),
                    format!("environment variable {name}'s value must not contain NUL"),
                ));
            }
            Ok((name.clone(), value.get_ref().clone()))
        })
        .collect()
}

/// The stores a function names, each declared (or the implicit `default`), once each.
fn key_value_grants(
    ctx: &Ctx<'_>,
    raw: &[Spanned<String>],
    stores: &BTreeMap<String, Spanned<RawKeyValue>>,
) -> Result<Vec<String>, ManifestError> {
    let mut granted = Vec::new();
    for label in raw {
        let l = label.get_ref();
        if l != DEFAULT_STORE && !stores.contains_key(l) {
            return Err(ctx.error(
                label.span(),
                format!("no key-value store is labelled `{l}`; declare it as [key_value.{l}] or use \"{DEFAULT_STORE}\""),
            ));
        }
        if !granted.contains(l) {
            granted.push(l.clone());
        }
    }
    Ok(granted)
}

fn allowed_hosts(ctx: &Ctx<'_>, raw: &[Spanned<String>]) -> Result<AllowedHosts, ManifestError> {
    raw.iter()
        .map(|h| {
            AllowedHost::parse(h.get_ref())
                .map_err(|e| ctx.error(h.span(), format!("`allowed_outbound_hosts`: {e}")))
        })
        .collect::<Result<_, _>>()
        .map(AllowedHosts)
}

fn build(ctx: &Ctx<'_>, raw: &Spanned<RawBuild>, base: &Path) -> Result<Build, ManifestError> {
    let b = raw.get_ref();
    if b.command.get_ref().trim().is_empty() {
        return Err(ctx.error(
            b.command.span(),
            "`build.command` must not be empty".to_string(),
        ));
    }
    for pattern in &b.watch {
        globset::Glob::new(pattern.get_ref())
            .map_err(|e| ctx.error(pattern.span(), format!("`build.watch`: {e}")))?;
    }
    Ok(Build {
        command: b.command.get_ref().clone(),
        workdir: base.join(b.workdir.as_deref().unwrap_or(".")),
        watch: b.watch.iter().map(|w| w.get_ref().clone()).collect(),
    })
}

/// Every function's routes in one table; a route claimed twice names both claimants.
fn route_table(
    ctx: &Ctx<'_>,
    route_spans: &[(RoutePattern, usize, Range<usize>)],
    functions: &[FunctionSpec],
) -> Result<RouteTable, ManifestError> {
    RouteTable::build(route_spans.iter().map(|(p, i, _)| (p.clone(), *i))).map_err(|dup| {
        let (_, _, span) = &route_spans[dup.second_entry];
        let first = &functions[dup.first_function];
        ctx.error(
            span.clone(),
            format!(
                "route {} is already claimed by function `{}`; each route must belong to exactly one function",
                dup.pattern, first.name
            ),
        )
    })
}

fn events_path(ctx: &Ctx<'_>, raw: Option<&RawEvents>) -> Result<String, ManifestError> {
    let Some(p) = raw.and_then(|e| e.path.as_ref()) else {
        return Ok(DEFAULT_EVENTS_PATH.to_string());
    };
    let v = p.get_ref();
    if !v.starts_with('/') || v.contains(['*', '?', '#']) || v.starts_with(RESERVED_PREFIX) {
        return Err(ctx.error(
            p.span(),
            format!("`events.path` must be a plain absolute path such as \"/\" or \"/events\", outside {RESERVED_PREFIX}; got {v:?}"),
        ));
    }
    Ok(v.clone())
}

/// Marks the functions flows run (they take events), refusing a flow named like a
/// function: their Triggers would collide.
fn mark_flow_members(
    ctx: &Ctx<'_>,
    raw: &RawManifest,
    flows: &[flows::Flow],
    functions: &mut [FunctionSpec],
) -> Result<(), ManifestError> {
    for (n, flow) in flows.iter().enumerate() {
        if functions.iter().any(|f| f.name == flow.name) {
            let at = raw
                .sequences
                .iter()
                .map(|s| s.span())
                .chain(raw.parallels.iter().map(|p| p.span()))
                .nth(n)
                .unwrap_or(0..0);
            return Err(ctx.error(
                at,
                format!(
                    "flow `{}` has a function's name; Triggers are named after both",
                    flow.name
                ),
            ));
        }
        for i in flow.functions() {
            functions[i].in_flow = true;
        }
    }
    Ok(())
}

/// The stores some function is granted, checked; the implicit `default` is embedded.
fn key_value_specs(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawKeyValue>>,
    base: &Path,
    functions: &[FunctionSpec],
) -> Result<Vec<KeyValueSpec>, ManifestError> {
    let mut specs = Vec::new();
    for (label, store) in raw {
        let s = store.get_ref();
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ctx.error(
                store.span(),
                format!("store label {label:?} must be lower-case letters, digits, '-' or '_'"),
            ));
        }
        let only = |key: &str, value: Option<Range<usize>>, kind: &str| match value {
            Some(span) => Err(ctx.error(
                span,
                format!("`{key}` belongs to a {kind} store, and [key_value.{label}] is not one"),
            )),
            None => Ok(()),
        };
        let kind = match s.kind.get_ref().as_str() {
            "embedded" => {
                only("url", s.url.as_ref().map(|u| u.span()), "redis")?;
                only("prefix", s.prefix.as_ref().map(|p| p.span()), "redis")?;
                KeyValueKind::Embedded {
                    path: s.path.as_ref().map(|p| base.join(p.get_ref())),
                }
            }
            "redis" => {
                only("path", s.path.as_ref().map(|p| p.span()), "embedded")?;
                let Some(url) = &s.url else {
                    return Err(ctx.error(
                        store.span(),
                        format!("[key_value.{label}] is a redis store and needs `url = \"redis://...\"` (or `url = {{ env = \"REDIS_URL\" }}`)"),
                    ));
                };
                let variable =
                    Variable::from_toml(url.get_ref(), base, &format!("key_value.{label}.url"))
                        .map_err(|e| ctx.error(url.span(), e))?;
                if let Variable::Literal(u) = &variable
                    && !(u.starts_with("redis://") || u.starts_with("rediss://"))
                {
                    return Err(ctx.error(
                        url.span(),
                        format!("`key_value.{label}.url` must start with redis:// or rediss://"),
                    ));
                }
                KeyValueKind::Redis {
                    url: variable,
                    prefix: s.prefix.as_ref().map(|p| p.get_ref().clone()),
                }
            }
            "memory" => {
                only("url", s.url.as_ref().map(|u| u.span()), "redis")?;
                only("path", s.path.as_ref().map(|p| p.span()), "embedded")?;
                only("prefix", s.prefix.as_ref().map(|p| p.span()), "redis")?;
                KeyValueKind::Memory
            }
            other => {
                return Err(ctx.error(
                    s.kind.span(),
                    format!(
                        "store type must be \"embedded\", \"redis\" or \"memory\", got {other:?}"
                    ),
                ));
            }
        };
        specs.push(KeyValueSpec {
            label: label.clone(),
            kind,
        });
    }
    let granted = |label: &str| {
        functions
            .iter()
            .any(|f| f.key_value_stores.iter().any(|l| l == label))
    };
    if granted(DEFAULT_STORE) && !raw.contains_key(DEFAULT_STORE) {
        specs.push(KeyValueSpec {
            label: DEFAULT_STORE.to_string(),
            kind: KeyValueKind::Embedded { path: None },
        });
    }
    Ok(specs)
}

impl Manifest {
    /// Keeps only the named functions (a Knative Service's share of the manifest, from
    /// `WASMFN_FUNCTIONS`); an unknown name is an error, so a typo cannot silently serve
    /// nothing.
    pub fn select(mut self, names: &[String]) -> Result<Self, ManifestError> {
        for name in names {
            if !self.functions.iter().any(|f| &f.name == name) {
                return Err(ManifestError::UnknownFunction {
                    path: self.path.clone(),
                    name: name.clone(),
                });
            }
        }
        // Deploy layout refers to functions by index: renumber it alongside.
        let mut new_index = Vec::with_capacity(self.functions.len());
        let mut next = 0;
        for f in &self.functions {
            let kept = names.contains(&f.name);
            new_index.push(kept.then_some(next));
            next += usize::from(kept);
        }
        for service in &mut self.deploy.services {
            service.functions = service
                .functions
                .iter()
                .filter_map(|&i| new_index[i])
                .collect();
        }
        // A flow this host can run whole keeps its steps, renumbered; one that spans
        // functions served elsewhere is Knative's to run.
        self.flows.retain_mut(|flow| {
            let renumber = |i: &mut usize| new_index[*i].map(|n| *i = n).is_some();
            match &mut flow.kind {
                flows::FlowKind::Sequence(steps) => steps.iter_mut().all(renumber),
                flows::FlowKind::Parallel(branches) => branches
                    .iter_mut()
                    .all(|b| renumber(&mut b.subscriber) && b.filter.as_mut().is_none_or(renumber)),
            }
        });
        self.functions.retain(|f| names.contains(&f.name));
        let routes = self
            .functions
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.routes.iter().map(move |r| (r.clone(), i)));
        self.routes = RouteTable::build(routes)
            .expect("the routes of some of a valid manifest's functions are unique");
        Ok(self)
    }

    /// Serves one version of each function named in `pins` (`FUNCTION=VERSION`, a name or
    /// tag) with all of its traffic: a Knative revision of a Service with
    /// `versions_as_revisions` is one version, and Knative splits the traffic between them.
    pub fn pin_versions(mut self, pins: &[String]) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            at: Location {
                path: self.path.clone(),
                line: 1,
                column: 1,
            },
            message,
        };
        for pin in pins {
            let Some((function, version)) = pin.split_once('=') else {
                return Err(invalid(format!(
                    "WASMFN_PIN_VERSIONS entry {pin:?} must look like FUNCTION=VERSION"
                )));
            };
            let Some(f) = self.functions.iter_mut().find(|f| f.name == function) else {
                return Err(invalid(format!(
                    "WASMFN_PIN_VERSIONS pins function `{function}`, which the manifest does not have"
                )));
            };
            let Some(versions) = f.versions.as_mut() else {
                return Err(invalid(format!(
                    "WASMFN_PIN_VERSIONS pins function `{function}`, which has no `versions`"
                )));
            };
            let Some(mut kept) = versions
                .list
                .iter()
                .find(|v| v.name == version || v.tag.as_deref() == Some(version))
                .cloned()
            else {
                let known: Vec<&str> = versions.list.iter().map(|v| v.name.as_str()).collect();
                return Err(invalid(format!(
                    "WASMFN_PIN_VERSIONS pins `{function}` to version `{version}`; it has {}",
                    known.join(", ")
                )));
            };
            kept.weight = 100;
            f.component.clone_from(&kept.component);
            f.component_at = kept.component_at.clone();
            versions.list = vec![kept];
            versions.sticky = None;
        }
        Ok(self)
    }
}

pub(crate) struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where each line after the first starts, found once: every function's location is
    /// kept, and counting newlines from the top for each made ten thousand functions take
    /// seconds to parse.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl<'a> Ctx<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            line_starts: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let starts = self.line_starts.get_or_init(|| {
            self.text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1)
                .collect()
        });
        // Lines starting at or before the offset, after the first.
        let line = starts.partition_point(|&start| start <= offset);
        let column = offset - if line == 0 { 0 } else { starts[line - 1] } + 1;
        Location {
            path: self.path.to_path_buf(),
            line: line + 1,
            column,
        }
    }

    pub(crate) fn error(&self, span: Range<usize>, message: String) -> ManifestError {
        ManifestError::Invalid {
            at: self.location(span.start),
            message,
        }
    }
}

fn validate_name(ctx: &Ctx<'_>, name: &Spanned<String>) -> Result<String, ManifestError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok {
        Ok(n.clone())
    } else {
        Err(ctx.error(
            name.span(),
            format!("function name {n:?} must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/app/wasmfn.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_pinned_function_serves_one_version_with_all_its_traffic() {
        let m = parse(
            "[[functions]]\nname = \"notify\"\nversions = [\n\
             { name = \"v3\", component = \"v3.wasm\", weight = 60 },\n\
             { name = \"v2\", component = \"v2.wasm\", weight = 40, tag = \"old\" },\n]\n",
        )
        .unwrap();
        let pin = |p: &str| {
            Selection {
                functions: Vec::new(),
                pins: vec![p.to_string()],
            }
            .apply(m.clone())
            .map_err(|e| e.to_string())
        };
        for asked in ["notify=v2", "notify=old"] {
            let pinned = pin(asked).unwrap();
            let f = &pinned.functions[0];
            let versions = &f.versions.as_ref().unwrap().list;
            assert_eq!(versions.len(), 1, "{asked}");
            assert_eq!((versions[0].name.as_str(), versions[0].weight), ("v2", 100));
            assert_eq!(f.component, Path::new("/app/v2.wasm"));
        }
        for (asked, says) in [
            ("notify=v9", "has v3, v2"),
            ("other=v2", "does not have"),
            ("v2", "FUNCTION=VERSION"),
        ] {
            let e = pin(asked).unwrap_err();
            assert!(e.contains(says), "{asked}: {e}");
        }
    }

    #[test]
    fn resolves_a_full_entry_with_defaults_and_relative_paths() {
        let m = parse(
            r#"
[[functions]]
name = "hello"
component = "build/hello.wasm"
routes = ["/hello", "/greet/*"]
timeout = "250ms"
memory = "32MiB"
variables = { greeting = "Hi" }

[[functions]]
name = "echo"
component = "/abs/echo.cwasm"
"#,
        )
        .unwrap();
        let hello = &m.functions[0];
        assert_eq!(hello.component, Path::new("/app/build/hello.wasm"));
        assert_eq!(hello.timeout, Duration::from_millis(250));
        assert_eq!(hello.memory, 32 * 1024 * 1024);
        assert_eq!(hello.variables["greeting"], Variable::Literal("Hi".into()));
        assert_eq!(hello.component_at.line, 4);
        let echo = &m.functions[1];
        assert_eq!(echo.component, Path::new("/abs/echo.cwasm"));
        assert_eq!(echo.timeout, DEFAULT_TIMEOUT);
        assert_eq!(echo.memory, DEFAULT_MEMORY);
        assert!(echo.routes.is_empty());
    }

    #[test]
    fn unknown_key_names_file_line_and_the_keys_expected() {
        let err = parse("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\ntimout = \"5s\"\n")
            .unwrap_err();
        assert!(
            err.starts_with("/app/wasmfn.toml:4:1: unknown field `timout`, expected one of"),
            "{err}"
        );
        assert!(err.contains("`timeout`"), "{err}");
    }

    #[test]
    fn a_functions_environment_is_read_and_checked() {
        let m = parse("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nenvironment = { B = \"2\", A = \"\" }\n")
            .unwrap();
        let env = &m.functions[0].environment;
        assert_eq!(
            env,
            &[("A".into(), String::new()), ("B".into(), "2".into())]
        );
        let err = parse("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nenvironment = { \"A=B\" = \"x\" }\n")
            .unwrap_err();
        assert!(err.starts_with("/app/wasmfn.toml:4:"), "{err}");
        assert!(err.contains("without `=`"), "{err}");
        let err =
            parse("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nenvironment = { A = 1 }\n")
                .unwrap_err();
        assert!(err.starts_with("/app/wasmfn.toml:4:"), "{err}");
    }

    #[test]
    fn missing_component_is_reported_on_the_function() {
        let err = parse("[[functions]]\nname = \"a\"\n").unwrap_err();
        assert!(
            err.starts_with("/app/wasmfn.toml:2:8: function `a` needs a `component`"),
            "{err}"
        );
    }

    #[test]
    fn versions_take_the_place_of_component_and_merge_variables() {
        let m = parse(
            "[[functions]]\nname = \"api\"\nroutes = [\"/api\"]\nvariables = { a = \"1\", b = \"2\" }\n\
             versions = [\n  { name = \"blue\", component = \"v1.wasm\", weight = 90 },\n  \
             { name = \"green\", component = \"v2.wasm\", weight = 10, tag = \"canary\", variables = { b = \"3\" } },\n]\n\
             sticky = { cookie = \"uid\" }\n",
        )
        .unwrap();
        let f = &m.functions[0];
        let variants = f.variants();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1].component, Path::new("/app/v2.wasm"));
        assert_eq!(variants[1].component_at.line, 7);
        assert_eq!(variants[0].variables["b"], Variable::Literal("2".into()));
        assert_eq!(variants[1].variables["b"], Variable::Literal("3".into()));
        assert_eq!(variants[1].variables["a"], Variable::Literal("1".into()));
        assert_eq!(f.version_name(1), "green");
    }

    #[test]
    fn bad_versions_name_the_line_and_what_was_expected() {
        let cases = [
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 60 }, { name = \"b\", component = \"b.wasm\", weight = 30 }",
                "",
                "6:3: the weights of `versions` sum to 90",
            ),
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 50 }, { name = \"a\", component = \"b.wasm\", weight = 50 }",
                "",
                "version `a` clashes",
            ),
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 50, tag = \"c\" }, { name = \"b\", component = \"b.wasm\", weight = 50, tag = \"c\" }",
                "",
                "tag `c` clashes",
            ),
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 100 }",
                "sticky = {}",
                "`sticky` takes exactly one of `header`",
            ),
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 100 }",
                "sticky = { header = \"x\", cookie = \"y\" }",
                "`sticky` takes exactly one",
            ),
            (
                "{ name = \"A\", component = \"a.wasm\", weight = 100 }",
                "",
                "version name \"A\"",
            ),
            (
                "{ name = \"a\", component = \"a.wasm\", weight = 101 }",
                "",
                "from 0 to 100",
            ),
        ];
        for (versions, extra, expected) in cases {
            let text = format!(
                "[[functions]]\nname = \"f\"\nroutes = [\"/f\"]\n{extra}\nversions = [\n  {versions},\n]\n"
            );
            let err = parse(&text).unwrap_err();
            assert!(
                err.starts_with("/app/wasmfn.toml:") && err.contains(expected),
                "{versions} {extra}: {err}"
            );
        }
        let err = parse(
            "[[functions]]\nname = \"f\"\ncomponent = \"a.wasm\"\nsticky = { header = \"x\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("has no `versions`"), "{err}");
        let err = parse("[[functions]]\nname = \"f\"\ncomponent = \"a.wasm\"\nversions = [{ name = \"a\", component = \"a.wasm\", weight = 100 }]\n").unwrap_err();
        assert!(err.contains("both `component` and `versions`"), "{err}");
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let cases = [
            ("timeout = \"soon\"", "`timeout` must be a duration"),
            ("timeout = \"0s\"", "more than 0"),
            ("timeout = \"11m\"", "at most 600s"),
            ("memory = \"lots\"", "`memory` must be a size"),
            ("memory = \"8GiB\"", "between 1 MiB and 4 GiB"),
            (
                "concurrency = 0",
                "`concurrency` must be a whole number from 1",
            ),
            ("concurrency = \"4\"", "invalid type"),
            ("max_body = \"huge\"", "`max_body` must be a size"),
            ("routes = [\"hello\"]", "must start with '/'"),
            ("routes = [\"/a/*/b\"]", "'*' may only end a route"),
            ("routes = [\"/.well-known/wasmfn/ready\"]", "reserves"),
            ("routes = [\"/.well-known/wasmfn/*\"]", "reserves"),
            ("variables = { n = 1 }", "`variables.n` must be a string"),
            ("routes = \"/x\"", "expected a sequence"),
            (
                "reuse = { max_requests = 0 }",
                "`reuse.max_requests` must be a whole number from 1",
            ),
            (
                "reuse = { max_concurrent = -1 }",
                "`reuse.max_concurrent` must be a whole number from 1",
            ),
            (
                "reuse = { idle = \"2h\" }",
                "`reuse.idle` must be more than 0 and at most 1h",
            ),
            (
                "reuse = { idle = \"soon\" }",
                "`reuse.idle` must be a duration",
            ),
            (
                "reuse = { max_instances = 3 }",
                "unknown field `max_instances`",
            ),
        ];
        for (line, expected) in cases {
            let text = format!("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\n{line}\n");
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with("/app/wasmfn.toml:4:"), "{line}: {err}");
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn bad_names_and_components_are_rejected() {
        let err =
            parse("[[functions]]\nname = \"Hello_World\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(
            err.starts_with("/app/wasmfn.toml:2:8:") && err.contains("lower-case"),
            "{err}"
        );
        let err = parse("[[functions]]\nname = \"a\"\ncomponent = \"a.js\"\n").unwrap_err();
        assert!(
            err.starts_with("/app/wasmfn.toml:3:") && err.contains(".wasm or .cwasm"),
            "{err}"
        );
        let err = parse("[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[functions]]\nname = \"a\"\ncomponent = \"b.wasm\"\n")
            .unwrap_err();
        assert!(
            err.starts_with("/app/wasmfn.toml:5:") && err.contains("already used"),
            "{err}"
        );
    }

    #[test]
    fn two_functions_claiming_one_route_is_an_error_at_the_second() {
        let err = parse(
            "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/x\", \"/api/*\"]\n\n\
             [[functions]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroutes = [\"/y\", \"/api/*\"]\n",
        )
        .unwrap_err();
        assert!(err.starts_with("/app/wasmfn.toml:9:17:"), "{err}");
        assert!(
            err.contains("/api/* is already claimed by function `a`"),
            "{err}"
        );
    }

    #[test]
    fn locations_count_lines_and_columns_from_one() {
        let ctx = Ctx::new(Path::new("/m.toml"), "ab\ncd\n\nef");
        let at = |offset| {
            let l = ctx.location(offset);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(2), (1, 3), "the newline ends its line");
        assert_eq!(at(3), (2, 1));
        assert_eq!(at(6), (3, 1));
        assert_eq!(at(8), (4, 2));
        assert_eq!(at(99), (4, 3), "past the end is the end");
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let err = parse("[[functions]]\nname = \"a\"\ncomponent = \n").unwrap_err();
        assert!(err.starts_with("/app/wasmfn.toml:3:"), "{err}");
    }

    #[test]
    fn limits_resolve_with_defaults_and_bad_server_keys_name_the_line() {
        let m = parse(
            "[server]\nmax_in_flight = 64\nloaded_functions = 3\nqueue_timeout = \"250ms\"\n\n\
             [[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nconcurrency = 4\nmax_body = \"1KiB\"\nreuse = { max_requests = 8, idle = \"5s\" }\n\n\
             [[functions]]\nname = \"b\"\ncomponent = \"b.wasm\"\n",
        )
        .unwrap();
        assert_eq!(m.server.max_in_flight, 64);
        assert_eq!(m.server.loaded_functions, 3);
        assert_eq!(m.server.queue_timeout, Duration::from_millis(250));
        assert_eq!(
            m.server.max_connections,
            ServerLimits::default().max_connections
        );
        assert_eq!(m.functions[0].concurrency, Some(4));
        assert_eq!(m.functions[0].max_body, 1024);
        let reuse = m.functions[0].reuse.unwrap();
        assert_eq!(
            (reuse.max_requests, reuse.max_concurrent, reuse.idle),
            (Some(8), None, Some(Duration::from_secs(5)))
        );
        assert_eq!(
            reuse.max_concurrent_or_default(),
            DEFAULT_REUSE_MAX_CONCURRENT
        );
        assert_eq!(m.functions[1].concurrency, None);
        assert_eq!(m.functions[1].max_body, DEFAULT_MAX_BODY);
        assert_eq!(m.functions[1].reuse, None);

        for (line, expected) in [
            (
                "header_timeout = \"never\"",
                "`server.header_timeout` must be a duration",
            ),
            ("idle_timeout = \"0s\"", "more than 0"),
            (
                "max_connections = -1",
                "`server.max_connections` must be a whole number",
            ),
            ("max_inflight = 3", "unknown field `max_inflight`"),
        ] {
            let err = parse(&format!("[server]\n{line}\n")).unwrap_err();
            assert!(err.starts_with("/app/wasmfn.toml:2:"), "{line}: {err}");
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn empty_manifest_has_no_functions() {
        assert!(parse("").unwrap().functions.is_empty());
    }
}
