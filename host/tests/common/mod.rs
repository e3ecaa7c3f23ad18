//! Helpers shared by the integration tests: a real `wasmfn` process on port 0 and a real
//! HTTP client for it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// componentize-py (`COMPONENTIZE_PY`, else on PATH), if it runs; `.ci/run` installs it.
pub fn componentize_py() -> Option<PathBuf> {
    let candidate = std::env::var_os("COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| "componentize-py".into());
    Command::new(&candidate)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| candidate)
}

/// One compile cache for the whole test run, so each component compiles once.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmfn-test-cache")
}

/// Writes `text` as `wasmfn.toml` in a fresh directory.
pub fn manifest(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmfn.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A `[[functions]]` entry for a guest component.
pub fn function(name: &str, component: &str, routes: &[&str], extra: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[functions]]\nname = {name:?}\ncomponent = {component:?}\nroutes = [{}]\n{extra}\n",
        routes.join(", ")
    )
}

/// A running `wasmfn serve`, killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `wasmfn serve` on 127.0.0.1:0 and waits for it to report its address.
    pub fn start(manifest: &Path) -> Self {
        Self::start_with(manifest, &[])
    }

    pub fn start_with(manifest: &Path, args: &[&str]) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(manifest, &all, &[])
    }

    /// Starts `wasmfn serve` with exactly `args` (no `--listen`) and extra environment.
    pub fn spawn(manifest: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_command("serve", manifest, args, env)
    }

    /// Starts `wasmfn <command>` (`serve` or `dev`) the same way.
    pub fn spawn_command(
        command: &str,
        manifest: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
            .arg(command)
            .arg("--manifest")
            .arg(manifest)
            // Text lines unless a test asks for JSON: most assertions read key=value.
            .env("WASMFN_LOG_FORMAT", "text")
            .envs(env.iter().copied())
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("WASMFN_LISTEN")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning wasmfn");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let addr = if line.starts_with('{') {
                        // A JSON line: {"message":"listening","addr":"127.0.0.1:1234",...}
                        serde_json::from_str::<serde_json::Value>(&line)
                            .ok()
                            .filter(|v| v["message"] == "listening")
                            .and_then(|v| v["addr"].as_str().map(str::to_string))
                    } else if line.contains("listening") {
                        line.split("addr=")
                            .nth(1)
                            .and_then(|a| a.split_whitespace().next())
                            .map(str::to_string)
                    } else {
                        None
                    };
                    if let Some(addr) = addr
                        && let Ok(addr) = addr.parse::<SocketAddr>()
                    {
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        // `dev` builds before it listens; a process that exits will not.
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut addr = None;
        while addr.is_none() && Instant::now() < deadline {
            addr = rx.recv_timeout(Duration::from_millis(100)).ok();
            if addr.is_none() && child.try_wait().ok().flatten().is_some() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
        }
        match addr {
            Some(addr) => Server { addr, child, log },
            None => {
                let _ = child.kill();
                panic!(
                    "wasmfn did not report a listening address; log:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (log lines may trail the response).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `n` requests are in flight in the process (its
    /// `wasmfn_requests_in_flight` gauge): each has reached its function, unanswered.
    pub async fn until_requests(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = get(&self.url("/.well-known/wasmfn/metrics")).await.text();
            let now = gauge(&metrics, "wasmfn_requests_in_flight");
            if now >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {n} requests in flight (now {now})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub fn wait(self) -> Option<i32> {
        self.wait_with_log().0
    }

    /// Waits for the process to exit by itself; its exit code and everything it logged.
    pub fn wait_with_log(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads may still hold the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "wasmfn did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl From<http::Response<Bytes>> for Reply {
    fn from(response: http::Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {}", self.text()))
            .to_string()
    }

    /// Asserts the status, and that the error says `needle`.
    pub fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self.error().contains(needle), "{}", self.text());
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/1.1 client, or an h2c (prior knowledge) one.
pub fn client(h2c: bool) -> Client<HttpConnector, Full<Bytes>> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2c);
    builder.build_http()
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Reply {
    let response = client.request(request).await.expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("reading the body").to_bytes();
    http::Response::from_parts(parts, body).into()
}

pub async fn get(url: &str) -> Reply {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(false), request).await
}

pub async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
    let request = http::Request::post(url)
        .body(Full::new(body.into()))
        .unwrap();
    send(&client(false), request).await
}

/// A real HTTP/1.1 server on 127.0.0.1 (a free port) answering every request with
/// `respond`, its body read whole: an upstream, a broker, a receiver. Runs until the
/// test's runtime ends.
pub async fn serve_http<F, Fut>(respond: F) -> SocketAddr
where
    F: Fn(http::Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let respond = respond.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(
                                respond(http::Request::from_parts(parts, body)).await,
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A response with `status` and a text body.
pub fn text_response(status: u16, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(body.into()))
        .unwrap()
}

/// Waits until `app` has at least `n` instances live (its `wasmfn_instances_in_flight`
/// gauge): the signal that requests sent before have reached their guests, in place of a
/// sleep that guesses how long that takes. Bounded: never getting there fails the test.
pub async fn until_instances(app: &wasmfn::server::App, n: i64) {
    until(
        || app.metrics().encode(),
        "wasmfn_instances_in_flight",
        |v| v >= n,
    )
    .await;
}

/// Waits until `app` has no instance live: those that served earlier requests are retired.
pub async fn until_no_instances(app: &wasmfn::server::App) {
    until(
        || app.metrics().encode(),
        "wasmfn_instances_in_flight",
        |live| live == 0,
    )
    .await;
}

/// Waits until `n` requests are admitted and unanswered (`wasmfn_requests_in_flight`): they
/// have reached their function, which has not answered.
pub async fn until_requests(app: &wasmfn::server::App, n: i64) {
    until(
        || app.metrics().encode(),
        "wasmfn_requests_in_flight",
        |v| v >= n,
    )
    .await;
}

/// The value of the unlabelled gauge `name` in a metrics exposition (0 when absent).
pub fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Polls `metrics` until gauge `name` satisfies `done`: a signal to wait on instead of a
/// sleep. The 30 s bound only turns a hang into a failure.
async fn until(metrics: impl Fn() -> String, name: &str, done: impl Fn(i64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = gauge(&metrics(), name);
        if done(now) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never got where it was awaited (now {now})"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Says that `test` cannot run on this machine, and why. Outside CI the test then returns
/// and passes, saying so on stderr; under CI (`CI=true`, as `.ci/run` runs) a skip is a
/// failure, so a run that lacks a tool cannot pass without testing what it claims.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run here ({reason}), and CI must run every test");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// A real `redis-server` on a free port, with no persistence, stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or says why not and returns `None` (no `redis-server` on PATH: install
    /// the Debian package `redis-server`; `.ci/run` does).
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            skip(
                "a test with a real Redis",
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`STOP` to pause it, `CONT` to resume) to the server.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
        }
    }

    /// Stops it (the port stays reserved for [`RedisServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA made here and a certificate for `localhost` it signed, with its key: the CA's PEM,
/// the certificate, the key.
pub fn localhost_certificate() -> (String, rcgen::Certificate, rcgen::KeyPair) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.as_ref().pem(), cert, key)
}

/// A real PostgreSQL (Debian's `postgresql` package) in a throwaway cluster on a free
/// port, trusting local connections, stopped (and its files removed) when dropped. The
/// server refuses to run as root, so as root the cluster belongs to the `postgres` user
/// the package creates, and the server runs as it.
pub struct PostgresServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    tls: bool,
}

impl PostgresServer {
    /// Starts one, or says why not and returns `None` (install the Debian package
    /// `postgresql`; `.ci/run` does).
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max();
        let Some(bin) = bin else {
            skip(
                "a test with a real PostgreSQL",
                "PostgreSQL is not installed (apt-get install postgresql)",
            );
            return None;
        };
        let id = |args: &[&str]| -> Option<u32> {
            let out = Command::new("id").args(args).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let user = if id(&["-u"]) == Some(0) {
            Some((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?))
        } else {
            None
        };
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            dir,
            bin,
            user,
            child: None,
            tls: false,
        };
        let initdb = server
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.dir.path().join("data"))
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        server.restart();
        Some(server)
    }

    /// [`PostgresServer::start`], also accepting TLS with this certificate chain and key
    /// (PEM); plain connections are still accepted.
    pub fn start_tls(cert: &str, key: &str) -> Option<Self> {
        let mut server = Self::start()?;
        let data = server.dir.path().join("data");
        for (name, text) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = server.user {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        server.tls = true;
        server.restart();
        Some(server)
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.env("LC_ALL", "C").current_dir(self.dir.path());
        command
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (a fast shutdown: its connections are cut); its data stays for
    /// [`PostgresServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it (again), with its data, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args(["-c", "fsync=off", "-c", "max_connections=100", "-k"])
            .arg(self.dir.path())
            .args(if self.tls {
                &["-c", "ssl=on"][..]
            } else {
                &[][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
