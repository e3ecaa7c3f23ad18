//! The `wasmfn` command line. Serving (`serve`, and `dev`, which also builds and reloads on
//! change) is here; the developer's other commands each have a file: `new.rs` (templates),
//! `build.rs`, `dev.rs`, `invoke.rs` (`invoke` and `send`), `check.rs`.

mod build;
mod check;
mod dev;
mod invoke;
mod new;
mod replay;
mod rollout;
mod stage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::capabilities::CapabilityOptions;
use crate::engine::{CacheDir, Engine, EngineOptions, PoolingMode};
use crate::events::EventOptions;
use crate::live::LiveApp;
use crate::manifest::Manifest;
use crate::manifest::deploy::DEFAULT_PORT;
use crate::server::{App, HostOptions};

/// wasmfn: serve WebAssembly HTTP and event functions (WASI 0.2 and 0.3 components).
#[derive(Debug, Parser)]
#[command(name = "wasmfn", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as JSON (for Knative) or text (for a person); auto picks text at a
    /// terminal and JSON otherwise.
    #[arg(
        long,
        global = true,
        env = "WASMFN_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    log_format: crate::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every function of a manifest over HTTP/1.1 and h2c on one port; SIGHUP
    /// reloads the manifest without dropping a request.
    Serve(ServeArgs),
    /// Create a function from a template (http-rust, event-rust, http-python,
    /// event-python) and add it to the manifest.
    New(new::NewArgs),
    /// Run the `build` commands of the manifest's functions.
    Build(build::BuildArgs),
    /// Build, serve and watch: a changed source is rebuilt and swapped in, a changed
    /// manifest reloaded; a failure keeps the previous version serving.
    Dev(dev::DevArgs),
    /// Send one HTTP request to a function (in process from the manifest, or to --url) and
    /// print the response; exits non-zero on a 4xx or 5xx.
    Invoke(invoke::InvokeArgs),
    /// Send one CloudEvent (in process from the manifest, or to --url) and print the reply;
    /// exits non-zero on a 4xx or 5xx.
    Send(invoke::SendArgs),
    /// Check everything `serve` would refuse, and the Knative render, without serving.
    Check(check::CheckArgs),
    /// Move a function's traffic to one of its versions step by step, judging each step
    /// by the host's own metrics and rolling back past a threshold (needs `serve --admin`).
    Rollout(rollout::RolloutArgs),
    /// Replay the events an event store lists between two times to a Broker, each marked
    /// `replay: true` with its original time (on Knative: `deploy replay-job`).
    Replay(replay::ReplayArgs),
    /// Precompile components: one file (`IN.wasm -o OUT.cwasm`), or every function of a
    /// manifest into the compile cache (`--manifest wasmfn.toml`).
    Compile(CompileArgs),
    /// Knative deployment: `deploy render` prints the Services, Triggers, SinkBindings (and
    /// Broker) for a manifest.
    #[command(subcommand)]
    Deploy(DeployCommand),
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Print the Knative objects for the manifest as a YAML stream (for `kubectl apply -f -`).
    Render(RenderArgs),
    /// Copy the manifest, its components and its files into a directory laid out as the
    /// host image holds them (deploy/build-image.sh builds the image from it).
    Stage(stage::StageArgs),
    /// Print a Job that replays a function's event store to the Broker between two times,
    /// running `wasmfn replay` in the host image.
    ReplayJob(ReplayJobArgs),
}

#[derive(Debug, Args)]
struct ReplayJobArgs {
    /// The manifest whose function keeps the events.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// The host image (the one `deploy render` was given).
    #[arg(long)]
    image: String,
    /// The function that lists the events (e.g. the accounts' `command-service`).
    #[arg(long)]
    function: String,
    /// Where it lists them, `<PATH>/events` [default: its first route, e.g. /accounts].
    #[arg(long)]
    path: Option<String>,
    /// The first instant replayed (RFC 3339).
    #[arg(long)]
    start: String,
    /// The last instant replayed (RFC 3339).
    #[arg(long)]
    end: String,
    /// Only this aggregate's events.
    #[arg(long)]
    aggregate: Option<String>,
    /// The Job's name.
    #[arg(long, default_value = "event-replay")]
    name: String,
    /// Apply `[profiles.<NAME>]` of the manifest.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// The manifest to render.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// The host image with the manifest and components baked in (deploy/build-image.sh).
    #[arg(long)]
    image: String,
    /// Put every object in this namespace (overrides `[deploy] namespace` and the
    /// profile's).
    #[arg(long)]
    namespace: Option<String>,
    /// Apply `[profiles.<NAME>]` of the manifest (an environment or a region).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// For a spin.toml: Spin's runtime configuration file, which says where its key-value
    /// stores live (`[key_value_store.<label>]` of type redis or spin).
    #[arg(long, env = "WASMFN_RUNTIME_CONFIG_FILE", value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Override a Service's traffic: `SERVICE=REVISION=PERCENT[:TAG],...`, `@latest` for the
    /// latest revision, e.g. `users-api=users-api-stable=90:stable,@latest=10:canary`.
    /// Repeat for several Services.
    #[arg(long, value_name = "SPEC")]
    traffic: Vec<String>,
    /// For a Service with `versions_as_revisions`: render the revision of this version
    /// (`SERVICE=VERSION`), with the traffic it had when it was the newest deployed; the
    /// versions listed before it are left out. Apply the oldest first.
    #[arg(long, value_name = "SERVICE=VERSION")]
    current_version: Vec<String>,
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// Where compiled .wasm components are cached [default: ~/.cache/wasmfn, or
    /// /tmp/wasmfn-cache where that is not writable].
    #[arg(long, env = "WASMFN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Instance allocator: auto probes for the pooling allocator and falls back.
    #[arg(long, env = "WASMFN_POOLING", default_value = "auto", value_parser = pooling_mode())]
    pooling: PoolingMode,
    /// Instances the pooling allocator holds, across all functions.
    #[arg(long, env = "WASMFN_POOL_INSTANCES", default_value_t = crate::engine::DEFAULT_POOL_INSTANCES)]
    pool_instances: u32,
}

/// The engine's own [`PoolingMode`], with its values listed in `--help`.
fn pooling_mode() -> impl clap::builder::TypedValueParser<Value = PoolingMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["auto", "on", "off"])
        .try_map(|s| s.parse::<PoolingMode>())
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The manifest listing the functions.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// Address to listen on [default: 0.0.0.0:$PORT, PORT defaulting to 8080].
    #[arg(long, short, env = "WASMFN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Serve only these functions of the manifest (comma-separated); a Knative Service
    /// rendered by `deploy render` sets this through WASMFN_FUNCTIONS.
    #[arg(
        long,
        env = "WASMFN_FUNCTIONS",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    functions: Vec<String>,
    /// Serve one version of a function with `versions`, all its traffic:
    /// `FUNCTION=VERSION,...`; a revision rendered with `versions_as_revisions` sets this
    /// through WASMFN_PIN_VERSIONS.
    #[arg(
        long,
        env = "WASMFN_PIN_VERSIONS",
        value_delimiter = ',',
        value_name = "FUNCTION=VERSION"
    )]
    pin_versions: Vec<String>,
    /// Where emitted events are POSTed (a Knative Broker); without one they go to this
    /// host's own subscribers.
    #[arg(long, env = "K_SINK", value_name = "URL")]
    sink: Option<String>,
    /// Extension attributes for every emitted event, as Knative's SinkBinding sets them:
    /// `{"extensions": {"name": "value"}}`.
    #[arg(long, env = "K_CE_OVERRIDES", value_name = "JSON", hide = true)]
    ce_overrides: Option<String>,
    /// For a spin.toml: Spin's runtime configuration file, which says where its key-value
    /// stores live (`[key_value_store.<label>]` of type redis or spin).
    #[arg(long, env = "WASMFN_RUNTIME_CONFIG_FILE", value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Where embedded key-value stores keep their files [default: .wasmfn/data beside the
    /// manifest].
    #[arg(long, env = "WASMFN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) that outbound HTTPS and guests' PostgreSQL connections
    /// trust beside the web PKI roots, for services behind a private CA.
    #[arg(long, env = "WASMFN_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Serve the admin endpoints (weights of versions, reload, metrics; used by `wasmfn
    /// rollout`) on this loopback address, e.g. 127.0.0.1:9901 [default: none].
    #[arg(long, env = "WASMFN_ADMIN_LISTEN", value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Fire the functions' schedules from this host: auto does unless it runs on Knative
    /// (K_SERVICE is set), where PingSources deliver them.
    #[arg(long, env = "WASMFN_SCHEDULES", value_enum, default_value = "auto")]
    schedules: SchedulesArg,
    /// Threads serving connections, each with a runtime of its own [default: the CPUs this
    /// process may use, as its affinity and cgroup quota allow].
    #[arg(long, env = "WASMFN_RUNTIMES", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    runtimes: Option<u16>,
    #[command(flatten)]
    engine: EngineArgs,
}

impl ServeArgs {
    /// The manifest, and the runtime configuration a Spin app's stores follow.
    fn files(&self) -> crate::manifest::ManifestFiles {
        crate::manifest::ManifestFiles {
            path: self.manifest.clone(),
            runtime_config: self.runtime_config_file.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchedulesArg {
    Auto,
    On,
    Off,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["input", "manifest"])))]
struct CompileArgs {
    /// The component to compile.
    #[arg(requires = "output")]
    input: Option<PathBuf>,
    /// Where to write the precompiled component.
    #[arg(short, long, value_name = "OUT.cwasm")]
    output: Option<PathBuf>,
    /// Compile every .wasm function of this manifest into the compile cache instead.
    #[arg(long, conflicts_with_all = ["input", "output"])]
    manifest: Option<PathBuf>,
    /// For a spin.toml: Spin's runtime configuration file, which declares its stores.
    #[arg(long, env = "WASMFN_RUNTIME_CONFIG_FILE", value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

impl Cli {
    /// How log lines are written.
    pub fn log_format(&self) -> crate::logging::LogFormat {
        self.log_format
    }

    /// Who reads the log lines: operators of a server, or a person whose stdout is the
    /// command's answer.
    pub fn log_audience(&self) -> crate::logging::Audience {
        use crate::logging::Audience;
        match self.command {
            Command::Serve(_) | Command::Dev(_) => Audience::Server,
            _ => Audience::Command,
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve(args),
            Command::New(args) => new::run(args),
            Command::Build(args) => build::run(args),
            Command::Dev(args) => dev::run(args),
            Command::Invoke(args) => invoke::invoke(args),
            Command::Send(args) => invoke::send(args),
            Command::Check(args) => check::run(args),
            Command::Rollout(args) => rollout::run(args),
            Command::Compile(args) => compile(args),
            Command::Deploy(DeployCommand::Render(args)) => render(args),
            Command::Deploy(DeployCommand::Stage(args)) => stage::run(args),
            Command::Deploy(DeployCommand::ReplayJob(args)) => replay_job(args),
            Command::Replay(args) => replay::run(args),
        }
    }
}

fn engine_options(
    args: &EngineArgs,
    max_memory: u64,
    queue_timeout: Duration,
) -> anyhow::Result<EngineOptions> {
    let cache = match &args.cache_dir {
        Some(dir) => Some(
            CacheDir::new(dir)
                .with_context(|| format!("cannot use cache directory {}", dir.display()))?,
        ),
        None => CacheDir::default_location(),
    };
    Ok(EngineOptions {
        pooling: args.pooling,
        pool_instances: args.pool_instances,
        max_memory,
        cache,
        queue_timeout,
        ..EngineOptions::default()
    })
}

/// An engine for a command that answers a request or two and exits (`invoke`, `send`,
/// `check`): no instance pool to reserve; compiled components come from, and go to, the
/// cache `serve` uses.
fn one_shot_engine(manifest: &Manifest, cache_dir: Option<&Path>) -> anyhow::Result<Engine> {
    let cache = match cache_dir {
        Some(dir) => Some(
            CacheDir::new(dir)
                .with_context(|| format!("cannot use cache directory {}", dir.display()))?,
        ),
        None => CacheDir::default_location(),
    };
    Engine::new(&EngineOptions {
        pooling: PoolingMode::Off,
        max_memory: max_memory(manifest),
        cache,
        ..EngineOptions::default()
    })
}

fn max_memory(manifest: &Manifest) -> u64 {
    manifest
        .functions
        .iter()
        .map(|f| f.memory)
        .max()
        .unwrap_or(crate::manifest::DEFAULT_MEMORY)
}

/// The error for a function whose component file is not there, ending with what to do.
fn missing_component(f: &crate::manifest::FunctionSpec) -> String {
    let todo = match &f.build {
        Some(_) => format!("run `wasmfn build {}` (or `wasmfn dev`)", f.name),
        None => "build it, or fix the path".to_string(),
    };
    format!(
        "{}: function `{}`'s component {} does not exist; {todo}",
        f.component_at,
        f.name,
        f.component.display()
    )
}

/// Fails, naming each, when components are missing: before loading anything, so a first
/// run says "build it" rather than "cannot read".
fn components_exist(manifest: &Manifest) -> anyhow::Result<()> {
    let missing: Vec<String> = manifest
        .functions
        .iter()
        .flat_map(|f| f.variants())
        .filter(|f| !f.component.exists())
        .map(|f| missing_component(&f))
        .collect();
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn listen_addr(explicit: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    if let Some(addr) = explicit {
        return Ok(addr);
    }
    let port = match std::env::var("PORT") {
        Ok(p) => p
            .parse::<u16>()
            .with_context(|| format!("PORT must be a port number, got {p:?}"))?,
        Err(_) => DEFAULT_PORT,
    };
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let mut manifest = Manifest::load_with_runtime_config(
        &args.manifest,
        args.profile.as_deref(),
        args.runtime_config_file.as_deref(),
    )?;
    if let Some(ns) = args.namespace {
        manifest.deploy.namespace = Some(ns);
    }
    for spec in &args.traffic {
        let Some((service, entries)) = spec.split_once('=') else {
            bail!("--traffic {spec:?} must look like SERVICE=REVISION=PERCENT[:TAG],...");
        };
        let Some(target) = manifest
            .deploy
            .services
            .iter_mut()
            .find(|s| s.name == service)
        else {
            bail!("--traffic names service `{service}`, which the manifest does not define");
        };
        target.traffic = crate::manifest::deploy::parse_traffic(service, entries)
            .map_err(|e| anyhow::anyhow!("--traffic {spec:?}: {e}"))?;
    }
    for spec in &args.current_version {
        let Some((service, version)) = spec.split_once('=') else {
            bail!("--current-version {spec:?} must look like SERVICE=VERSION");
        };
        let functions = &manifest.functions;
        let Some(target) = manifest
            .deploy
            .services
            .iter_mut()
            .find(|s| s.name == service)
        else {
            bail!(
                "--current-version names service `{service}`, which the manifest does not define"
            );
        };
        let Some(f) = target.versions_as_revisions.map(|i| &functions[i]) else {
            bail!("--current-version: service `{service}` does not have versions_as_revisions");
        };
        let names: Vec<&str> = f
            .versions
            .iter()
            .flat_map(|v| &v.list)
            .map(|v| v.name.as_str())
            .collect();
        if !names.contains(&version) {
            bail!(
                "--current-version: function `{}` has no version `{version}`; it has {}",
                f.name,
                names.join(", ")
            );
        }
        target.current_version = Some(version.to_string());
    }
    let yaml = crate::knative::render(&manifest, &args.image)?;
    for warning in crate::knative::warnings(&manifest) {
        eprintln!("warning: {warning}");
    }
    print!("{yaml}");
    Ok(())
}

fn replay_job(args: ReplayJobArgs) -> anyhow::Result<()> {
    let manifest =
        Manifest::load_with_runtime_config(&args.manifest, args.profile.as_deref(), None)?;
    for (what, t) in [("--start", &args.start), ("--end", &args.end)] {
        chrono::DateTime::parse_from_rfc3339(t).with_context(|| {
            format!("{what} {t:?} is not an RFC 3339 time such as 2024-01-31T23:59:59Z")
        })?;
    }
    let Some(function) = manifest.functions.iter().find(|f| f.name == args.function) else {
        bail!(
            "{}: the manifest has no function `{}`",
            args.manifest.display(),
            args.function
        );
    };
    let path = match args.path {
        Some(p) => p,
        None => match function.routes.first() {
            Some(route) => route.to_string().trim_end_matches("/*").to_string(),
            None => bail!(
                "function `{}` has no routes to list events at; pass --path",
                function.name
            ),
        },
    };
    let job = crate::knative::replay_job(
        &manifest,
        &args.image,
        &crate::knative::Replay {
            function: args.function,
            path,
            start: args.start,
            end: args.end,
            aggregate: args.aggregate,
            name: args.name,
        },
    )
    .map_err(anyhow::Error::msg)?;
    print!("{}", crate::knative::to_yaml_document(job));
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Started::load(&args, false)?;
    run_server(&args, started, |_, _| Ok(()))
}

/// A manifest loaded, its engine made and its app loaded: what `serve` and `dev` start
/// from.
struct Started {
    at: Instant,
    manifest: Manifest,
    engine: Engine,
    app: Arc<App>,
    selected: crate::manifest::Selection,
}

impl Started {
    /// Loads for `serve`; `for_dev` trades optimized guest code for compiling fast.
    fn load(args: &ServeArgs, for_dev: bool) -> anyhow::Result<Self> {
        let at = Instant::now();
        let trimmed = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let selected = crate::manifest::Selection {
            functions: trimmed(&args.functions),
            pins: trimmed(&args.pin_versions),
        };
        let manifest = selected.apply(args.files().load()?)?;
        components_exist(&manifest)?;
        if manifest.functions.is_empty() {
            tracing::warn!(
                manifest = %manifest.path.display(),
                "the manifest declares no function: every request but the host's own paths will be 404; add a [[functions]] entry (`wasmfn new` writes one)"
            );
        }
        let engine = Engine::new(&EngineOptions {
            optimize: !for_dev,
            ..engine_options(
                &args.engine,
                max_memory(&manifest),
                manifest.server.queue_timeout,
            )?
        })?;
        let events = EventOptions::new(args.sink.as_deref(), args.ce_overrides.as_deref())?;
        let options = HostOptions {
            events,
            capabilities: CapabilityOptions {
                data_dir: args.data_dir.clone(),
                ca_file: args.ca_file.clone(),
            },
        };
        let app = App::load_with(&manifest, &engine, options)?;
        tracing::info!(
            functions = manifest.functions.len(),
            pooling = engine.is_pooling(),
            sink = args
                .sink
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("(in-process)"),
            elapsed_ms = at.elapsed().as_secs_f64() * 1e3,
            "functions ready"
        );
        Ok(Self {
            at,
            manifest,
            engine,
            app,
            selected,
        })
    }
}

/// Binds, serves the live app until SIGTERM or SIGINT (reloading on SIGHUP), and drains.
/// `with_live` runs once the app is live, with the address bound, inside the runtime (the
/// developer loop starts its watcher there).
fn run_server(
    args: &ServeArgs,
    started: Started,
    with_live: impl FnOnce(Arc<LiveApp>, SocketAddr) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let addr = listen_addr(args.listen)?;
    // One current-thread runtime per core, each serving the connections it accepts
    // (listener.rs); this thread's also runs signals, reloads, schedules and the admin
    // endpoints.
    let runtimes = match args.runtimes {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let Started {
        at,
        manifest,
        engine,
        app,
        selected,
    } = started;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let admin = match args.admin {
            Some(addr) => Some(crate::admin::bind(addr).await?),
            None => None,
        };
        // Register the handlers before announcing the address: a SIGTERM that arrives
        // between "listening" and the first poll would otherwise kill the process.
        let shutdown = shutdown_signal()?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Knative names the revision through the environment; say which one this is.
        let k = |name: &str| std::env::var(name).unwrap_or_default();
        tracing::info!(
            addr = %local,
            startup_ms = at.elapsed().as_secs_f64() * 1e3,
            k_service = %k("K_SERVICE"),
            k_configuration = %k("K_CONFIGURATION"),
            k_revision = %k("K_REVISION"),
            "listening"
        );
        let on_knative = std::env::var_os("K_SERVICE").is_some_and(|v| !v.is_empty());
        let fire_schedules = match args.schedules {
            SchedulesArg::On => true,
            SchedulesArg::Auto => !on_knative,
            SchedulesArg::Off => false,
        };
        app.metrics().ready();
        // In-flight requests get as long as the slowest function may take, plus a margin
        // for the response to reach the client.
        let drain = app.longest_timeout() + Duration::from_secs(1);
        drop(manifest);
        let live = LiveApp::new(app, args.files(), selected, fire_schedules);
        if let Some(admin) = admin {
            tracing::info!(addr = %admin.local_addr()?, "admin listening");
            tokio::spawn(crate::admin::serve(admin, live.clone()));
        }
        let reloading = live.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the manifest");
                // It logs how it went; a failure leaves the running functions serving.
                let _ = reload(&reloading).await;
            }
        });
        with_live(live.clone(), local)?;
        crate::listener::serve(listener, runtimes, live, shutdown, drain).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(engine);
    Ok(())
}

/// Reloads `live` off the async workers (loading compiles what changed), and logs how it
/// went; a failure leaves the running functions serving.
async fn reload(live: &Arc<LiveApp>) -> Result<(), String> {
    let live = live.clone();
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || live.reload()).await {
        Ok(Ok(manifest)) => {
            tracing::info!(
                functions = manifest.functions.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "reloaded: new requests get the new functions, requests in flight finish on the old"
            );
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reload failed; the running functions keep serving");
            Err(e.to_string())
        }
        Err(join) => {
            tracing::error!(error = %join, "reload failed; the running functions keep serving");
            Err(join.to_string())
        }
    }
}

/// Registers SIGTERM and SIGINT handlers now and returns a future that resolves when
/// either arrives.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

#[cfg(not(feature = "compiler"))]
fn compile(_: CompileArgs) -> anyhow::Result<()> {
    bail!(
        "this wasmfn is built without a compiler (as the host image's is): it runs code compiled ahead of time; compile with a wasmfn built with the `compiler` feature (the default build)"
    )
}

#[cfg(feature = "compiler")]
fn compile(args: CompileArgs) -> anyhow::Result<()> {
    if let Some(manifest_path) = &args.manifest {
        let manifest = Manifest::load_with_runtime_config(
            manifest_path,
            None,
            args.runtime_config_file.as_deref(),
        )?;
        let options = engine_options(
            &args.engine,
            max_memory(&manifest),
            manifest.server.queue_timeout,
        )?;
        let Some(cache) = options.cache.clone() else {
            bail!("no writable cache directory; pass --cache-dir");
        };
        let engine = Engine::new(&options)?;
        for f in manifest.functions.iter().flat_map(|f| f.variants()) {
            if f.component.extension().is_some_and(|e| e == "cwasm") {
                println!(
                    "{}: {} is already precompiled",
                    f.name,
                    f.component.display()
                );
                continue;
            }
            let entry = engine
                .precompile_into_cache(&f.component)
                .with_context(|| format!("{}: function `{}`", f.component_at, f.name))?;
            if let Some(entry) = entry {
                println!(
                    "{}: {} -> {}",
                    f.name,
                    f.component.display(),
                    entry.display()
                );
            }
        }
        println!("cache: {}", cache.path().display());
        return Ok(());
    }
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        bail!(
            "usage: wasmfn compile IN.wasm -o OUT.cwasm, or wasmfn compile --manifest wasmfn.toml"
        );
    };
    let engine = Engine::new(&EngineOptions {
        cache: None,
        ..engine_options(
            &args.engine,
            crate::manifest::DEFAULT_MEMORY,
            Duration::ZERO,
        )?
    })?;
    let bytes = engine.precompile(input)?;
    write_file(output, &bytes)?;
    println!(
        "{} -> {} ({} bytes)",
        input.display(),
        output.display(),
        bytes.len()
    );
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
