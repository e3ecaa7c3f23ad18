//! wasmfn side by side with `wasmtime serve` and a native hyper server, in one run on one
//! machine, reported as ratios (the machines are shared and noisy, so only figures taken in
//! the same run are compared).
//!
//! `cargo run --release -p wasmfn-benches --bin compare` builds what it needs (the release
//! host, `native-hello`; wasmtime-cli 48 into `~/.cache/wasmfn-benches` if it is missing,
//! once, ~15 min), then runs four sections and writes their table into benches/README.md
//! between the `compare:begin` and `compare:end` markers:
//!
//! - **throughput**: wrk (1 thread) pinned to CPU 0, the server to CPU 1, keep-alive, the
//!   servers alternated round by round; requests/s, p50, p99. The image's host serves the
//!   SDK hello too, where it can be built.
//! - **cold start**: exec to the first 200, every scenario interleaved run by run; the
//!   `.wasm` rows compile at every start (wasmfn's cache wiped, wasmtime's turned off).
//!   Beside the release host, the host the image runs (built by deploy/build-host.sh:
//!   static musl, no compiler, fixed address), where the musl target can be built.
//! - **memory**: idle RSS (the image's host too); 10,000 functions configured, first-hit
//!   latency and RSS; the size of the image's host binary.
//! - **in process**: one request through `App::handle` (route, fresh instance, handler,
//!   body), p50/p99, and the throughput lost to per-request deadlines (on vs off).
//!
//! Options: `--rounds N` (3), `--seconds S` per wrk run (5), `--runs N` cold starts per
//! scenario (30), `--only throughput|cold|memory|inprocess` (repeatable), `--no-write`.
//! `--only sdk3` runs a fifth section on its own, which needs no wasmtime-cli: the WASI 0.3
//! SDK (`async fn` handlers) beside the WASI 0.2 SDK, hello and event-echo with instance
//! reuse, in process and under wrk; it writes its own table (`sdk3` markers).
//! `RUST_BACKTRACE` is removed from every child (and in-process figures are taken without
//! backtraces): with it set, every error value captures a backtrace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmfn::engine::{EngineOptions, PoolingMode};
use wasmfn::server::App;
use wasmfn::testing;
use wasmfn_benches::{
    Report, UnknownLength, free_port, get_status, quantile, repo_root, rss_kib, wrk_ms,
};

const WASMTIME_VERSION: &str = "48.0.8";
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The CPU the servers run on; the load generator gets the other one.
const SERVER_CPU: &str = "1";
const CLIENT_CPU: &str = "0";

struct Options {
    rounds: usize,
    seconds: u64,
    runs: usize,
    only: Vec<String>,
    write: bool,
}

impl Options {
    fn parse() -> Self {
        let mut o = Options {
            rounds: 3,
            seconds: 5,
            runs: 30,
            only: Vec::new(),
            write: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            match arg.as_str() {
                "--rounds" => o.rounds = value().parse().expect("--rounds N"),
                "--seconds" => o.seconds = value().parse().expect("--seconds S"),
                "--runs" => o.runs = value().parse().expect("--runs N"),
                "--only" => o.only.push(value()),
                "--no-write" => o.write = false,
                "compare" | "--bench" => {}
                other => {
                    panic!("unknown argument {other}; see the top of benches/src/bin/compare.rs")
                }
            }
        }
        o
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The programs under test.
struct Tools {
    wasmfn: PathBuf,
    native: PathBuf,
    wasmtime: PathBuf,
    /// The host the image runs (deploy/build-host.sh: static, no compiler, fixed address),
    /// or why it could not be built here.
    image_host: Result<PathBuf, String>,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("WASMFN_BENCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/wasmfn-benches")))
        .expect("set HOME or WASMFN_BENCH_CACHE")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .env_remove("RUST_BACKTRACE")
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

fn tools(o: &Options) -> Tools {
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "-p", "wasmfn", "-p", "wasmfn-benches"])
            .args(["--bin", "wasmfn", "--bin", "native-hello"]),
        "building the release host",
    );
    let cache = cache_dir();
    let needs_wasmtime = ["throughput", "cold", "memory"].iter().any(|s| o.wants(s));
    let wasmtime = match std::env::var_os("WASMTIME") {
        Some(path) => PathBuf::from(path),
        None if !needs_wasmtime => PathBuf::new(),
        None => {
            let install = cache.join(format!("wasmtime-{WASMTIME_VERSION}"));
            let bin = install.join("bin/wasmtime");
            if !bin.is_file() {
                eprintln!(
                    "installing wasmtime-cli {WASMTIME_VERSION} into {} (once; ~15 min on 2 cores)",
                    install.display()
                );
                run(
                    Command::new(&cargo)
                        .args(["install", "wasmtime-cli", "--locked", "--version"])
                        .arg(format!("={WASMTIME_VERSION}"))
                        .arg("--root")
                        .arg(&install),
                    "cargo install wasmtime-cli",
                );
            }
            bin
        }
    };
    let image_host = if ["throughput", "cold", "memory"].iter().any(|s| o.wants(s)) {
        image_host(&root)
    } else {
        Err("not measured in this run".into())
    };
    Tools {
        wasmfn: root.join("target/release/wasmfn"),
        native: root.join("target/release/native-hello"),
        wasmtime,
        image_host,
    }
}

/// Builds the image's host as deploy/build-image.sh does (the same script), kept beside the
/// other tools so a later build of the compiling host cannot replace it mid-run.
fn image_host(root: &Path) -> Result<PathBuf, String> {
    eprintln!("building the image's host (deploy/build-host.sh runtime-only)");
    let out = Command::new(root.join("deploy/build-host.sh"))
        .arg("runtime-only")
        .env_remove("RUST_BACKTRACE")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("deploy/build-host.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "deploy/build-host.sh failed ({}): it needs the x86_64-unknown-linux-musl target and musl-tools",
            out.status
        ));
    }
    let built = root.join(String::from_utf8_lossy(&out.stdout).trim());
    let kept = cache_dir().join("image-host/wasmfn");
    std::fs::create_dir_all(kept.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::copy(&built, &kept).map_err(|e| format!("copying {}: {e}", built.display()))?;
    Ok(kept)
}

/// A row saying why the image host's figures are missing from this run.
fn image_host_missing(tools: &Tools, report: &mut Report) {
    if let Err(why) = &tools.image_host {
        report.row(
            "wasmfn, the image's host",
            format!("not measured: {why}"),
            "",
        );
    }
}

/// Builds `guests/examples/python-hello` with componentize-py (installed into a venv in the cache
/// dir): an 18 MB interpreter-based component. None, saying why, where PyPI is unreachable.
fn python_component(work: &Path) -> Option<PathBuf> {
    let venv = cache_dir().join("py");
    let tool = venv.join("bin/componentize-py");
    if !tool.is_file() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED the interpreter component: could not install componentize-py");
            return None;
        }
    }
    let root = repo_root();
    let out = work.join("python_hello.wasm");
    let built = Command::new(&tool)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "wasi:http/proxy@0.2.12", "componentize", "app", "-p"])
        .arg(root.join("guests/examples/python-hello"))
        .arg("-o")
        .arg(&out)
        .current_dir(work)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("SKIPPED the interpreter component: componentize-py failed");
        return None;
    }
    Some(out)
}

/// A server the harness starts: what to exec, and the path that answers 200.
#[derive(Clone)]
struct Server {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    path: String,
}

impl Server {
    fn native(tools: &Tools) -> Self {
        Server {
            name: NATIVE.into(),
            program: tools.native.clone(),
            args: vec!["--listen".into(), "127.0.0.1:{port}".into()],
            path: "/hello?name=bench".into(),
        }
    }

    fn wasmfn(tools: &Tools, name: &str, manifest: &Path, cache: &Path, path: &str) -> Self {
        Self::host(&tools.wasmfn, name, manifest, cache, path)
    }

    /// The image's host, if it was built, serving from the same compile cache as the
    /// release host (the compiled code does not depend on which build loads it).
    fn image(tools: &Tools, name: &str, manifest: &Path, cache: &Path, path: &str) -> Option<Self> {
        let program = tools.image_host.as_ref().ok()?;
        Some(Self::host(program, name, manifest, cache, path))
    }

    fn host(program: &Path, name: &str, manifest: &Path, cache: &Path, path: &str) -> Self {
        Server {
            name: name.into(),
            program: program.to_path_buf(),
            args: vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:{port}".into(),
                "--manifest".into(),
                manifest.display().to_string(),
                "--cache-dir".into(),
                cache.display().to_string(),
            ],
            path: path.into(),
        }
    }

    fn wasmtime(tools: &Tools, name: &str, component: &Path, path: &str) -> Self {
        Server {
            name: name.into(),
            program: tools.wasmtime.clone(),
            args: vec![
                "serve".into(),
                "-S".into(),
                "cli".into(),
                "-O".into(),
                "pooling-allocator=y".into(),
                "--allow-precompiled".into(),
                "--addr".into(),
                "127.0.0.1:{port}".into(),
                component.display().to_string(),
            ],
            path: path.into(),
        }
    }

    /// This `wasmtime serve` with its compile cache off.
    fn uncached(mut self) -> Self {
        let component = self.args.len() - 1;
        self.args.splice(
            component..component,
            ["-C".to_string(), "cache=n".to_string()],
        );
        self
    }

    /// Starts the server on a fresh port, pinned to `cpu` if given.
    fn spawn(&self, cpu: Option<&str>) -> (Child, u16) {
        let port = free_port();
        let args = self
            .args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()));
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        let child = cmd
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        (child, port)
    }

    /// Exec to the first 200, in milliseconds; the server is left running.
    fn start(&self, cpu: Option<&str>) -> (Running, f64) {
        let started = Instant::now();
        let (mut child, port) = self.spawn(cpu);
        // The events path answers POSTs; a host taking events is up once it is ready.
        let probe = match self.path.as_str() {
            "/" => "/.well-known/wasmfn/ready",
            path => path,
        };
        loop {
            match get_status(port, probe) {
                Some(200) => break,
                Some(other) => panic!("{}: GET {} answered {other}", self.name, self.path),
                None => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("{} exited before answering: {status}", self.name);
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{} did not answer within 60 s",
                        self.name
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        (Running { child, port }, ms)
    }
}

struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One wrk run's figures.
#[derive(Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(port: u16, path: &str, connections: u32, seconds: u64) -> Load {
    wrk_with(port, path, connections, seconds, None)
}

/// [`wrk`], its requests made by a Lua `script` (e.g. a POST of an event).
fn wrk_with(port: u16, path: &str, connections: u32, seconds: u64, script: Option<&Path>) -> Load {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", CLIENT_CPU, "wrk", "-t1", "--latency"]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx responses on {path}:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
            .to_string()
    };
    Load {
        rps: field("Requests/sec:").parse().unwrap(),
        p50_ms: wrk_ms(&field("50%")),
        p99_ms: wrk_ms(&field("99%")),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

fn range(v: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 {
        fmt(lo)
    } else {
        format!("{} ({}-{})", fmt(median(v.to_vec())), fmt(lo), fmt(hi))
    }
}

/// Writes a manifest and fills a compile cache for it (`wasmfn compile --manifest`), as an
/// image build would.
fn manifest(tools: &Tools, dir: &Path, name: &str, text: &str, precompile: bool) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    if precompile {
        run(
            Command::new(&tools.wasmfn)
                .args(["compile", "--manifest"])
                .arg(&path)
                .arg("--cache-dir")
                .arg(dir.join(format!("{name}.cache")))
                .stdout(Stdio::null()),
            "wasmfn compile --manifest",
        );
    }
    path
}

fn function(name: &str, component: &str, route: &str) -> String {
    format!("[[functions]]\nname = {name:?}\ncomponent = {component:?}\nroutes = [{route:?}]\n")
}

fn hello(name: &str, route: &str) -> String {
    function(name, wasmfn_guest_artifacts::HELLO, route) + "variables = { greeting = \"Hello\" }\n"
}

/// Ten functions of ten different WASI 0.2 example components, as a small app would
/// configure them (HTTP routes and event subscriptions, nothing that needs a store).
fn ten_functions() -> String {
    use wasmfn_guest_artifacts as g;
    let event = |name: &str, component: &str, ty: &str| {
        format!(
            "[[functions]]\nname = {name:?}\ncomponent = {component:?}\nevents = [{{ type = {ty:?} }}]\n"
        )
    };
    [
        hello("hello", "/hello"),
        function("echo", g::ECHO, "/echo/*"),
        function("raw", g::RAW_WASI_HTTP, "/raw/*"),
        function("trap", g::TEST_TRAP, "/trap"),
        function("spin", g::TEST_SPIN, "/spin"),
        function("flaky", g::TEST_FLAKY, "/flaky"),
        function("state", g::TEST_INSTANCE_STATE, "/state"),
        event("event-echo", g::EVENT_ECHO, "dev.wasmfn.ping"),
        event("event-display", g::EVENT_DISPLAY, "order.completed"),
        event("payment", g::PAYMENT_SERVICE, "inventory.reserved"),
    ]
    .concat()
}

fn wasmtime_compile(tools: &Tools, wasm: &Path, out: &Path) {
    run(
        Command::new(&tools.wasmtime)
            .arg("compile")
            .arg(wasm)
            .arg("-o")
            .arg(out),
        "wasmtime compile",
    );
}

/// The native server's row, the baseline of every ratio.
const NATIVE: &str = "native hyper hello";
/// The row of `wasmtime serve` without instance reuse, which a wasmfn row is set against.
const WASMTIME_FRESH: &str =
    "wasmtime serve, WASI 0.3 hello, no reuse (--max-instance-reuse-count 1)";
/// The cold-start row every other is also set against.
const WASMTIME_CWASM: &str = "wasmtime serve, 1 function, .cwasm";

/// The index of the server named `name` among `servers`: rows are found by name, so adding
/// or moving one cannot set a figure against the wrong baseline.
fn row<T>(servers: &[(Server, T)], name: &str) -> usize {
    servers
        .iter()
        .position(|(s, _)| s.name == name)
        .unwrap_or_else(|| panic!("no row named {name:?}"))
}

/// What a throughput row is set against.
#[derive(Clone, Copy)]
enum Versus {
    /// The baseline itself.
    Native,
    /// Native hyper's requests/s and p99.
    NativeRps,
    /// The `wasmtime serve` row of this name (same component), and native's p99.
    Wasmtime(&'static str),
}

/// The report: rows of the table, in order.
fn throughput(o: &Options, tools: &Tools, work: &Path, report: &mut Report) {
    let raw = Path::new(wasmfn_guest_artifacts::RAW_WASI_HTTP);
    let raw_cwasm = work.join("raw_wasi_http.cwasm");
    wasmtime_compile(tools, raw, &raw_cwasm);
    let p3 = Path::new(wasmfn_guest_artifacts::WASI_P3_HTTP);
    let p3_cwasm = work.join("wasi_p3_http.cwasm");
    wasmtime_compile(tools, p3, &p3_cwasm);
    let m_hello = manifest(tools, work, "hello", &hello("hello", "/hello"), true);
    let m_hello_reuse = manifest(
        tools,
        work,
        "hello-reuse",
        &(hello("hello", "/hello") + "reuse = { max_requests = 128 }\n"),
        true,
    );
    let m_raw = manifest(
        tools,
        work,
        "raw",
        &function("raw", wasmfn_guest_artifacts::RAW_WASI_HTTP, "/raw/*"),
        true,
    );
    let p3_entry = function("p3", wasmfn_guest_artifacts::WASI_P3_HTTP, "/p3/*");
    let m_p3 = manifest(tools, work, "p3", &p3_entry, true);
    let m_p3_fresh = manifest(
        tools,
        work,
        "p3-fresh",
        &(p3_entry.clone() + "reuse = { max_requests = 1 }\n"),
        true,
    );
    let mut wasmtime_fresh = Server::wasmtime(tools, WASMTIME_FRESH, &p3_cwasm, "/p3/hello");
    wasmtime_fresh.args.splice(
        1..1,
        ["--max-instance-reuse-count".to_string(), "1".to_string()],
    );
    let mut servers = vec![
        (Server::native(tools), Versus::Native),
        (
            Server::wasmfn(
                tools,
                "wasmfn, SDK hello",
                &m_hello,
                &work.join("hello.cache"),
                "/hello?name=bench",
            ),
            Versus::NativeRps,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, SDK hello, instance reuse",
                &m_hello_reuse,
                &work.join("hello-reuse.cache"),
                "/hello?name=bench",
            ),
            Versus::NativeRps,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, standard wasi:http echo",
                &m_raw,
                &work.join("raw.cache"),
                "/raw/bench",
            ),
            Versus::Wasmtime("wasmtime serve, standard wasi:http echo"),
        ),
        (
            Server::wasmtime(
                tools,
                "wasmtime serve, standard wasi:http echo",
                &raw_cwasm,
                "/raw/bench",
            ),
            Versus::NativeRps,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, WASI 0.3 hello (instance reuse)",
                &m_p3,
                &work.join("p3.cache"),
                "/p3/hello",
            ),
            Versus::Wasmtime("wasmtime serve, WASI 0.3 hello (instance reuse)"),
        ),
        (
            Server::wasmtime(
                tools,
                "wasmtime serve, WASI 0.3 hello (instance reuse)",
                &p3_cwasm,
                "/p3/hello",
            ),
            Versus::NativeRps,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, WASI 0.3 hello, no reuse (max_requests = 1)",
                &m_p3_fresh,
                &work.join("p3-fresh.cache"),
                "/p3/hello",
            ),
            Versus::Wasmtime(WASMTIME_FRESH),
        ),
        (wasmtime_fresh, Versus::NativeRps),
    ];
    // What a Knative user's requests run on: the static musl host of the image, with its
    // own allocator and libc, beside the release host every other row runs.
    servers.extend(
        Server::image(
            tools,
            "wasmfn image host, SDK hello",
            &m_hello,
            &work.join("hello.cache"),
            "/hello?name=bench",
        )
        .map(|s| (s, Versus::NativeRps)),
    );
    let connections = [32u32, 64, 1];
    // results[server][connections] = one Load per round
    let mut results = vec![vec![Vec::<Load>::new(); connections.len()]; servers.len()];
    for round in 0..o.rounds {
        for k in 0..servers.len() {
            // Rotate the order each round, so no server always runs first or last.
            let i = (k + round) % servers.len();
            let server = &servers[i].0;
            let (running, _) = server.start(Some(SERVER_CPU));
            wrk(running.port, &server.path, 32, 1); // warm-up
            for (c, &n) in connections.iter().enumerate() {
                let load = wrk(running.port, &server.path, n, o.seconds);
                eprintln!(
                    "round {round} {:<42} c={n:<3} {:>9.0} rps  p50 {:>7.3} ms  p99 {:>7.3} ms",
                    server.name, load.rps, load.p50_ms, load.p99_ms
                );
                results[i][c].push(load);
            }
        }
    }
    report.section(&format!(
        "Throughput: wrk -t1 on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU}, keep-alive, {} rounds x {} s, servers alternated",
        o.rounds, o.seconds
    ));
    image_host_missing(tools, report);
    let med =
        |i: usize, c: usize, f: fn(&Load) -> f64| median(results[i][c].iter().map(f).collect());
    for (c, &n) in connections.iter().enumerate() {
        let native = row(&servers, NATIVE);
        let native_rps = med(native, c, |l| l.rps);
        let native_p99 = med(native, c, |l| l.p99_ms);
        for (i, (server, versus)) in servers.iter().enumerate() {
            let rps: Vec<f64> = results[i][c].iter().map(|l| l.rps).collect();
            let p50: Vec<f64> = results[i][c].iter().map(|l| l.p50_ms).collect();
            let p99: Vec<f64> = results[i][c].iter().map(|l| l.p99_ms).collect();
            let (rps_m, p99_m) = (median(rps.clone()), median(p99.clone()));
            let ratio = match *versus {
                Versus::Native => "1 (native)".to_string(),
                Versus::NativeRps => format!(
                    "{:.2}x native rps, p99 {:.2}x native",
                    rps_m / native_rps,
                    p99_m / native_p99
                ),
                Versus::Wasmtime(name) => {
                    let w = row(&servers, name);
                    format!(
                        "{:.2}x wasmtime serve rps, p99 {:.2}x wasmtime serve's; {:.2}x native rps",
                        rps_m / med(w, c, |l| l.rps),
                        p99_m / med(w, c, |l| l.p99_ms),
                        rps_m / native_rps
                    )
                }
            };
            report.row(
                format!("{}, {n} conn", server.name),
                format!(
                    "{} rps; p50 {} ms; p99 {} ms",
                    range(&rps, |v| format!("{v:.0}")),
                    range(&p50, |v| format!("{v:.3}")),
                    range(&p99, |v| format!("{v:.3}"))
                ),
                ratio,
            );
        }
    }
}

fn cold_start(o: &Options, tools: &Tools, work: &Path, report: &mut Report) {
    let raw = Path::new(wasmfn_guest_artifacts::RAW_WASI_HTTP);
    let raw_cwasm = work.join("cold_raw.cwasm");
    wasmtime_compile(tools, raw, &raw_cwasm);
    let one = function("raw", wasmfn_guest_artifacts::RAW_WASI_HTTP, "/raw/*");
    let m_one = manifest(tools, work, "cold-one", &one, true);
    let m_ten = manifest(tools, work, "cold-ten", &ten_functions(), true);
    let p3 = Path::new(wasmfn_guest_artifacts::WASI_P3_HTTP);
    let p3_cwasm = work.join("cold_p3.cwasm");
    wasmtime_compile(tools, p3, &p3_cwasm);
    let m_p3 = manifest(
        tools,
        work,
        "cold-p3",
        &function("p3", wasmfn_guest_artifacts::WASI_P3_HTTP, "/p3/*"),
        true,
    );
    let empty = work.join("empty-cache");

    let mut scenarios: Vec<(Server, Option<PathBuf>)> = vec![
        (Server::native(tools), None),
        (
            Server::wasmfn(
                tools,
                "wasmfn, 1 function, .cwasm",
                &m_one,
                &work.join("cold-one.cache"),
                "/raw/x",
            ),
            None,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, 10 functions, .cwasm",
                &m_ten,
                &work.join("cold-ten.cache"),
                "/hello",
            ),
            None,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, 1 function, .wasm (compiled at start)",
                &m_one,
                &empty,
                "/raw/x",
            ),
            Some(empty.clone()),
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, 10 functions, .wasm (compiled at start)",
                &m_ten,
                &empty,
                "/hello",
            ),
            Some(empty.clone()),
        ),
        (
            Server::wasmtime(tools, WASMTIME_CWASM, &raw_cwasm, "/raw/x"),
            None,
        ),
        // Like for like with wasmfn's `.wasm` rows, whose cache is wiped before each run:
        // wasmtime's own compile cache is off, so it compiles at every start too.
        (
            Server::wasmtime(
                tools,
                "wasmtime serve, 1 function, .wasm (compiled at start)",
                raw,
                "/raw/x",
            )
            .uncached(),
            None,
        ),
        (
            Server::wasmfn(
                tools,
                "wasmfn, WASI 0.3 hello, .cwasm",
                &m_p3,
                &work.join("cold-p3.cache"),
                "/p3/hello",
            ),
            None,
        ),
        (
            Server::wasmtime(
                tools,
                "wasmtime serve, WASI 0.3 hello, .cwasm",
                &p3_cwasm,
                "/p3/hello",
            ),
            None,
        ),
    ];
    scenarios.extend(
        [
            Server::image(
                tools,
                "wasmfn image host, 1 function, .cwasm",
                &m_one,
                &work.join("cold-one.cache"),
                "/raw/x",
            ),
            Server::image(
                tools,
                "wasmfn image host, 10 functions, .cwasm",
                &m_ten,
                &work.join("cold-ten.cache"),
                "/hello",
            ),
        ]
        .into_iter()
        .flatten()
        .map(|s| (s, None)),
    );
    if let Some(python) = &python_component(work) {
        let py_cwasm = work.join("python_hello.cwasm");
        wasmtime_compile(tools, python, &py_cwasm);
        let size = std::fs::metadata(python).map(|m| m.len()).unwrap_or(0);
        let py = function("py", &python.display().to_string(), "/py/*");
        let m_py = manifest(tools, work, "cold-py", &py, true);
        scenarios.push((
            Server::wasmfn(
                tools,
                &format!(
                    "wasmfn, Python component ({:.0} MB), .cwasm",
                    size as f64 / 1e6
                ),
                &m_py,
                &work.join("cold-py.cache"),
                "/py/x",
            ),
            None,
        ));
        scenarios.push((
            Server::wasmtime(
                tools,
                &format!(
                    "wasmtime serve, Python component ({:.0} MB), .cwasm",
                    size as f64 / 1e6
                ),
                &py_cwasm,
                "/py/x",
            ),
            None,
        ));
    }
    let mut samples = vec![Vec::new(); scenarios.len()];
    for _ in 0..o.runs {
        for (i, (server, wipe)) in scenarios.iter().enumerate() {
            if let Some(dir) = wipe {
                let _ = std::fs::remove_dir_all(dir);
            }
            let (running, ms) = server.start(None);
            drop(running);
            samples[i].push(ms);
        }
    }
    report.section(&format!(
        "Cold start: exec to the first 200, {} runs per scenario, interleaved",
        o.runs
    ));
    image_host_missing(tools, report);
    let native = median(samples[row(&scenarios, NATIVE)].clone());
    let wasmtime_cwasm = median(samples[row(&scenarios, WASMTIME_CWASM)].clone());
    for (i, (server, _)) in scenarios.iter().enumerate() {
        let mut s = samples[i].clone();
        let p50 = quantile(&mut s, 0.5);
        let p90 = quantile(&mut s, 0.9);
        report.row(
            server.name.clone(),
            format!("p50 {p50:.2} ms; p90 {p90:.2} ms; min {:.2} ms", s[0]),
            format!(
                "{:.1}x native; {:.2}x wasmtime serve .cwasm",
                p50 / native,
                p50 / wasmtime_cwasm
            ),
        );
    }
}

fn memory(tools: &Tools, work: &Path, report: &mut Report) {
    report.section("Memory: RSS once the first 200 is answered (after 1 s idle)");
    let m_ten = manifest(tools, work, "mem-ten", &ten_functions(), true);
    let raw_cwasm = work.join("mem_raw.cwasm");
    wasmtime_compile(
        tools,
        Path::new(wasmfn_guest_artifacts::RAW_WASI_HTTP),
        &raw_cwasm,
    );
    let mut idle = vec![
        Server::native(tools),
        Server::wasmfn(
            tools,
            "wasmfn, 10 functions",
            &m_ten,
            &work.join("mem-ten.cache"),
            "/hello",
        ),
        Server::wasmtime(tools, "wasmtime serve, 1 function", &raw_cwasm, "/raw/x"),
    ];
    idle.extend(Server::image(
        tools,
        "wasmfn image host, 10 functions",
        &m_ten,
        &work.join("mem-ten.cache"),
        "/hello",
    ));
    image_host_missing(tools, report);
    for server in &idle {
        let (running, _) = server.start(None);
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_kib(running.child.id()) as f64 / 1024.0;
        let goal = if server.name.contains("10 functions") {
            "goal <= 16 MiB"
        } else {
            ""
        };
        report.row(
            format!("idle RSS, {}", server.name),
            format!("{rss:.1} MiB"),
            goal,
        );
    }

    // Ten thousand functions configured: each its own manifest entry and route, all built
    // from the hello component (so one compile fills the cache for all of them).
    let n = 10_000;
    let label = "10,000 functions";
    let text: String = (0..n)
        .map(|i| hello(&format!("f{i}"), &format!("/f/{i}")))
        .collect();
    let m_many = manifest(tools, work, "many", &text, true);
    let server = Server::wasmfn(tools, label, &m_many, &work.join("many.cache"), "/f/0");
    let (running, start_ms) = server.start(None);
    std::thread::sleep(Duration::from_secs(1));
    let pid = running.child.id();
    let rss_start = rss_kib(pid) as f64 / 1024.0;
    // First hits on functions nothing has called yet, spread over the manifest.
    let mut first = Vec::new();
    for i in (1..n).step_by(n / 27) {
        let t = Instant::now();
        assert_eq!(get_status(running.port, &format!("/f/{i}")), Some(200));
        first.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut again = Vec::new();
    for i in (1..n).step_by(n / 27) {
        let t = Instant::now();
        assert_eq!(get_status(running.port, &format!("/f/{i}")), Some(200));
        again.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for i in 0..n {
        assert_eq!(get_status(running.port, &format!("/f/{i}")), Some(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_all = rss_kib(pid) as f64 / 1024.0;
    report.row(
        format!("{label}: exec to the first 200"),
        format!("{start_ms:.1} ms"),
        "goal <= 300 ms",
    );
    report.row(
        format!("{label}: RSS after start"),
        format!("{rss_start:.1} MiB"),
        "",
    );
    report.row(
        format!(
            "{label}: first hit of a function not yet called ({} functions, new connection)",
            first.len()
        ),
        format!(
            "p50 {:.2} ms; max {:.2} ms",
            median(first.clone()),
            first.iter().copied().fold(0.0, f64::max)
        ),
        format!("second hit p50 {:.2} ms; goal p50 <= 2 ms", median(again)),
    );
    report.row(
        format!("{label}: RSS after every function was called once"),
        format!("{rss_all:.1} MiB"),
        "goal <= 1 GiB",
    );
    // The release build carries line tables for profiling, so only the image's is a size
    // a user ships.
    if let Ok(image) = &tools.image_host {
        let mb = std::fs::metadata(image).map_or(0.0, |m| m.len() as f64 / 1e6);
        report.row(
            "the host binary: the image's (static, no compiler, stripped)",
            format!("{mb:.1} MB"),
            "goal <= 20 MB",
        );
    }
}

fn app(component: &str, route: &str, extra: &str, deadlines: bool) -> Arc<App> {
    let mut text = function("f", component, route) + extra;
    if component == wasmfn_guest_artifacts::HELLO {
        text += "variables = { greeting = \"Hello\" }\n";
    }
    let engine = testing::engine(EngineOptions {
        pooling: PoolingMode::On,
        deadlines,
        ..EngineOptions::default()
    });
    testing::app(&text, &engine)
}

async fn one(app: &App, path: &'static str) {
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

async fn one_streamed(app: &App, path: &'static str) {
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(UnknownLength)
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

fn in_process(o: &Options, report: &mut Report) {
    // Like a host pinned to one core: one thread runs everything.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    report.section("In process: one request through App::handle (route, fresh instance unless reused, handler, body), current-thread runtime");
    let reuse = "reuse = { max_requests = 128 }\n";
    let cases = [
        (
            "SDK hello (one-call path)",
            wasmfn_guest_artifacts::HELLO,
            "/hello",
            "",
            "/hello?name=bench",
            true,
            "goal <= 10 us",
        ),
        (
            "SDK hello (one-call path), instance reuse",
            wasmfn_guest_artifacts::HELLO,
            "/hello",
            reuse,
            "/hello?name=bench",
            true,
            "",
        ),
        (
            "SDK hello through wasi:http (a body of unknown length)",
            wasmfn_guest_artifacts::HELLO,
            "/hello",
            "",
            "/hello?name=bench",
            false,
            "",
        ),
        (
            "standard wasi:http echo",
            wasmfn_guest_artifacts::RAW_WASI_HTTP,
            "/raw/*",
            "",
            "/raw/bench",
            true,
            "goal <= 25 us",
        ),
        (
            "WASI 0.3 hello (instance reuse)",
            wasmfn_guest_artifacts::WASI_P3_HTTP,
            "/p3/*",
            "",
            "/p3/hello",
            true,
            "",
        ),
    ];
    for (name, component, route, extra, path, sized, goal) in cases {
        let app = app(component, route, extra, true);
        let mut lat = Vec::with_capacity(20_000);
        rt.block_on(async {
            for i in 0..22_000 {
                let t = Instant::now();
                if sized {
                    one(&app, path).await;
                } else {
                    one_streamed(&app, path).await;
                }
                // The first 2,000 warm up the pool's slots and the allocator.
                if i >= 2_000 {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        });
        let p50 = quantile(&mut lat, 0.5);
        let p99 = quantile(&mut lat, 0.99);
        report.row(
            format!("{name}, 20,000 requests one after another"),
            format!("p50 {p50:.1} us; p99 {p99:.1} us"),
            goal,
        );
    }

    // Deadlines on vs off: 32 concurrent request loops for a few seconds each, alternated.
    let on = app(wasmfn_guest_artifacts::HELLO, "/hello", "", true);
    let off = app(wasmfn_guest_artifacts::HELLO, "/hello", "", false);
    let mut rps = [Vec::new(), Vec::new()];
    let seconds = o.seconds.clamp(1, 5);
    for _ in 0..o.rounds.max(2) {
        for (k, app) in [&on, &off].into_iter().enumerate() {
            let done = rt.block_on(async {
                let until = Instant::now() + Duration::from_secs(seconds);
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let app = app.clone();
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while Instant::now() < until {
                                one(&app, "/hello?name=bench").await;
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let mut total = 0;
                for t in tasks {
                    total += t.await.unwrap();
                }
                total
            });
            rps[k].push(done as f64 / seconds as f64);
        }
    }
    let (on_rps, off_rps) = (median(rps[0].clone()), median(rps[1].clone()));
    report.row(
        "SDK hello, 32 concurrent loops: deadlines on (epoch checks + timer) / off",
        format!(
            "{} / {} requests/s",
            range(&rps[0], |v| format!("{v:.0}")),
            range(&rps[1], |v| format!("{v:.0}"))
        ),
        format!(
            "{:.1}% lost to deadlines (goal <= 5%)",
            (1.0 - on_rps / off_rps) * 100.0
        ),
    );
}

/// The binary-mode event both event-echo guests answer.
const EVENT_LUA: &str = r#"wrk.method = "POST"
wrk.body = '{"n":1}'
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "1"
wrk.headers["ce-source"] = "/bench"
wrk.headers["ce-type"] = "bench.ping"
wrk.headers["content-type"] = "application/json"
"#;

/// The WASI 0.3 SDK (`async fn` handlers) beside the WASI 0.2 SDK, both reusing instances:
/// hello and event-echo, in process and under wrk, each 0.3 row as a ratio of its 0.2 row.
fn sdk3(o: &Options, tools: &Tools, work: &Path, report: &mut Report) {
    let reuse = "reuse = { max_requests = 100000, idle = \"1h\" }\n";
    let events = |name: &str, component: &str| {
        format!(
            "[[functions]]\nname = {name:?}\ncomponent = {component:?}\nevents = [{{ type = \"bench.ping\" }}]\n{reuse}"
        )
    };
    let hello_p2 = hello("hello", "/hello") + reuse;
    let hello_p3 = function("hello", wasmfn_guest_artifacts::HELLO_P3, "/hello")
        + "variables = { greeting = \"Hello\" }\n"
        + reuse;
    let plain_p3 = function("hello", wasmfn_guest_artifacts::WASI_P3_HTTP, "/hello") + reuse;
    let echo_p2 = events("echo", wasmfn_guest_artifacts::EVENT_ECHO);
    let echo_p3 = events("echo", wasmfn_guest_artifacts::EVENT_ECHO_P3);
    // (name, manifest, the 0.2 row it is set against, an event?)
    let cases: [(&str, &str, Option<&str>, bool); 5] = [
        ("SDK hello, WASI 0.2 (fn)", &hello_p2, None, false),
        (
            "SDK hello, WASI 0.3 (async fn)",
            &hello_p3,
            Some("SDK hello, WASI 0.2 (fn)"),
            false,
        ),
        (
            "plain WASI 0.3 hello (wasip3 crate, no SDK)",
            &plain_p3,
            Some("SDK hello, WASI 0.2 (fn)"),
            false,
        ),
        ("event-echo, WASI 0.2 (fn)", &echo_p2, None, true),
        (
            "event-echo, WASI 0.3 (async fn)",
            &echo_p3,
            Some("event-echo, WASI 0.2 (fn)"),
            true,
        ),
    ];

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    report.section("WASI 0.3 SDK beside the WASI 0.2 SDK, in process: one request or event after another through App::handle, instance reuse, current-thread runtime");
    let mut p50s = Vec::new();
    for (name, text, versus, event) in cases {
        let engine = testing::engine(EngineOptions {
            pooling: PoolingMode::On,
            ..EngineOptions::default()
        });
        let app = testing::app(text, &engine);
        let mut lat = Vec::with_capacity(20_000);
        rt.block_on(async {
            for i in 0..22_000 {
                let t = Instant::now();
                if event {
                    one_event(&app).await;
                } else {
                    one(&app, "/hello?name=bench").await;
                }
                if i >= 2_000 {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        });
        let p50 = quantile(&mut lat, 0.5);
        let p99 = quantile(&mut lat, 0.99);
        p50s.push((name, p50));
        let ratio = versus.map_or(String::new(), |v| {
            let base = p50s.iter().find(|(n, _)| *n == v).unwrap().1;
            format!("p50 {:.2}x the WASI 0.2 row's", p50 / base)
        });
        report.row(
            format!("{name}, 20,000 one after another"),
            format!("p50 {p50:.1} us; p99 {p99:.1} us"),
            ratio,
        );
    }

    let script = work.join("event.lua");
    std::fs::write(&script, EVENT_LUA).unwrap();
    let servers: Vec<(Server, Option<&str>, bool)> = cases
        .iter()
        .map(|(name, text, versus, event)| {
            let slug: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let manifest = manifest(tools, work, &slug, text, true);
            let path = if *event { "/" } else { "/hello?name=bench" };
            let server = Server::wasmfn(
                tools,
                name,
                &manifest,
                &work.join(format!("{slug}.cache")),
                path,
            );
            (server, *versus, *event)
        })
        .collect();
    let connections = [32u32, 1];
    let mut results = vec![vec![Vec::<Load>::new(); connections.len()]; servers.len()];
    for round in 0..o.rounds {
        for k in 0..servers.len() {
            let i = (k + round) % servers.len();
            let (server, _, event) = &servers[i];
            let script = event.then_some(script.as_path());
            let (running, _) = server.start(Some(SERVER_CPU));
            wrk_with(running.port, &server.path, 32, 1, script);
            for (c, &n) in connections.iter().enumerate() {
                let load = wrk_with(running.port, &server.path, n, o.seconds, script);
                eprintln!(
                    "round {round} {:<36} c={n:<3} {:>9.0} rps  p99 {:>7.3} ms",
                    server.name, load.rps, load.p99_ms
                );
                results[i][c].push(load);
            }
        }
    }
    report.section(&format!(
        "WASI 0.3 SDK beside the WASI 0.2 SDK under wrk -t1 on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU}, keep-alive, instance reuse, {} rounds x {} s",
        o.rounds, o.seconds
    ));
    let med =
        |i: usize, c: usize, f: fn(&Load) -> f64| median(results[i][c].iter().map(f).collect());
    for (c, &n) in connections.iter().enumerate() {
        for (i, (server, versus, _)) in servers.iter().enumerate() {
            let rps: Vec<f64> = results[i][c].iter().map(|l| l.rps).collect();
            let p99: Vec<f64> = results[i][c].iter().map(|l| l.p99_ms).collect();
            let ratio = versus.map_or(String::new(), |v| {
                let base = servers.iter().position(|(s, _, _)| s.name == v).unwrap();
                format!(
                    "{:.2}x the WASI 0.2 row's rps, p99 {:.2}x",
                    med(i, c, |l| l.rps) / med(base, c, |l| l.rps),
                    med(i, c, |l| l.p99_ms) / med(base, c, |l| l.p99_ms)
                )
            });
            report.row(
                format!("{}, {n} conn", server.name),
                format!(
                    "{} rps; p99 {} ms",
                    range(&rps, |v| format!("{v:.0}")),
                    range(&p99, |v| format!("{v:.3}"))
                ),
                ratio,
            );
        }
    }
}

async fn one_event(app: &App) {
    let request = http::Request::post("/")
        .header("host", "localhost")
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/bench")
        .header("ce-type", "bench.ping")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

fn write_readme(o: &Options, report: &Report) {
    let only: String = o.only.iter().map(|s| format!(" --only {s}")).collect();
    // The SDK comparison has a table of its own.
    let table = if o.only == ["sdk3"] {
        "sdk3"
    } else {
        "compare"
    };
    report.write_readme(
        table,
        &format!("wasmtime {WASMTIME_VERSION}; "),
        &format!("cargo run --release -p wasmfn-benches --bin compare{only}"),
        "figure (median, range over rounds)",
    );
}

fn main() {
    // SAFETY: nothing else runs yet. The in-process figures are taken in this process, and
    // with RUST_BACKTRACE set every error value wasmtime creates would capture a backtrace.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let o = Options::parse();
    let work = std::env::temp_dir().join(format!("wasmfn-compare-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let tools = tools(&o);
    let mut report = Report::default();
    if o.wants("inprocess") {
        in_process(&o, &mut report);
    }
    if o.only.iter().any(|s| s == "sdk3") {
        sdk3(&o, &tools, &work, &mut report);
    }
    if o.wants("throughput") {
        throughput(&o, &tools, &work, &mut report);
    }
    if o.wants("cold") {
        cold_start(&o, &tools, &work, &mut report);
    }
    if o.wants("memory") {
        memory(&tools, &work, &mut report);
    }
    if o.write {
        write_readme(&o, &report);
    }
    let _ = std::fs::remove_dir_all(&work);
}
