//! The developer loop and live reload, as a person and a load generator see them: the
//! spawned `wasmfn` (`dev`, `serve` + SIGHUP) swapping functions under a steady stream of
//! requests with none failing; `new` → `dev` → edit → `invoke`/`send` typed into a real
//! terminal (tmux); the Python templates built by componentize-py and answering.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use wasmfn_guest_artifacts as guests;

mod common;
use common::{Server, client, componentize_py, send};

/// Requests sent back to back by a few connections until stopped; what failed is kept.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    /// POSTs `ping` to `url` from `connections` keep-alive clients. A request fails when it
    /// errs, is not 200, or answers none of `valid` bodies.
    fn start(
        url: String,
        connections: usize,
        valid: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let valid = Arc::new(valid);
        let tasks = (0..connections)
            .map(|_| {
                let (url, stop, sent, valid) =
                    (url.clone(), stop.clone(), sent.clone(), valid.clone());
                tokio::spawn(async move {
                    let client = client(false);
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let request = http::Request::post(&url)
                            .body(Full::new(Bytes::from_static(b"ping")))
                            .unwrap();
                        sent.fetch_add(1, Ordering::Relaxed);
                        match client.request(request).await {
                            Err(e) => failures.push(format!("request error: {e}")),
                            Ok(response) => {
                                let status = response.status();
                                let body = http_body_util::BodyExt::collect(response.into_body())
                                    .await
                                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
                                match body {
                                    Ok(body) if status == 200 && valid(&body) => {}
                                    Ok(body) => failures.push(format!("{status}: {body:?}")),
                                    Err(e) => failures.push(format!("{status}, body cut: {e}")),
                                }
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        Self { stop, sent, tasks }
    }

    /// Stops and returns how many requests were sent and the failures.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.unwrap());
        }
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// POSTs `ping` until the answer is `expected` (a reload takes a moment to land).
async fn wait_for_answer(url: &str, expected: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let request = http::Request::post(url)
            .body(Full::new(Bytes::from_static(b"ping")))
            .unwrap();
        last = send(&client(false), request).await.text();
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the answer never became {expected:?} (last: {last:?}); log:\n{}",
        log()
    );
}

fn hello_manifest(greeting: &str) -> String {
    format!(
        "[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/hello\"]\nvariables = {{ greeting = {greeting:?} }}\n",
        guests::HELLO
    )
}

fn hangup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGHUP swaps the manifest in ten times under load (a changed variable each time) and
/// no request fails; an invalid manifest in between is logged and the running functions
/// keep answering.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_ten_times_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmfn.toml");
    std::fs::write(&path, hello_manifest("G0")).unwrap();
    let server = Server::start(&path);
    let url = server.url("/hello");
    let load = Load::start(url.clone(), 4, |body| {
        body.starts_with('G') && body.ends_with(", world!\n")
    });

    for i in 1..=10 {
        if i == 5 {
            std::fs::write(&path, "[[functions]]\nname = \"hello\"\ncomponent = 7\n").unwrap();
            hangup(&server);
            let log = server.wait_for_log("reload failed");
            assert!(log.contains("reload failed"), "{log}");
            wait_for_answer(&url, "G4, world!\n", || server.log()).await;
        }
        std::fs::write(&path, hello_manifest(&format!("G{i}"))).unwrap();
        hangup(&server);
        wait_for_answer(&url, &format!("G{i}, world!\n"), || server.log()).await;
    }
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 100, "the load loop sent only {sent} requests");
    let log = server.log();
    assert!(
        log.contains("wasmfn.toml:3"),
        "the invalid manifest's line is logged:\n{log}"
    );
    // The line is written just after the swap the answers already show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches("reloaded").count() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    assert_eq!(log.matches("reloaded").count(), 10, "{log}");
}

/// `wasmfn dev` across ten swaps under load: five rebuilds (the source names which real
/// component the build command puts in place) and five manifest edits (a variable), with
/// no request failing; a failing build keeps the previous version answering.
#[tokio::test(flavor = "multi_thread")]
async fn dev_swaps_ten_times_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("fn");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::copy(guests::HELLO, project.join("hello.wasm")).unwrap();
    std::fs::copy(guests::ECHO, project.join("echo.wasm")).unwrap();
    std::fs::write(project.join("src/which"), "hello").unwrap();
    let manifest = |greeting: &str| {
        format!(
            "[[functions]]\nname = \"fn\"\ncomponent = \"fn/out.wasm\"\nroutes = [\"/fn\"]\nvariables = {{ greeting = {greeting:?} }}\n\
             build = {{ command = \"test -f \\\"$(cat src/which).wasm\\\" && cp \\\"$(cat src/which).wasm\\\" out.wasm\", workdir = \"fn\", watch = [\"src/*\"] }}\n"
        )
    };
    let path = dir.path().join("wasmfn.toml");
    std::fs::write(&path, manifest("G0")).unwrap();
    let server = Server::spawn_command("dev", &path, &["--listen", "127.0.0.1:0"], &[]);
    let url = server.url("/fn");
    // hello greets (whatever the greeting), echo sends the body back.
    let load = Load::start(url.clone(), 4, |body| {
        body == "ping" || (body.starts_with('G') && body.ends_with(", world!\n"))
    });
    wait_for_answer(&url, "G0, world!\n", || server.log()).await;

    let mut component = "hello";
    let mut greeting = "G0".to_string();
    for i in 1..=10 {
        if i % 2 == 1 {
            component = if component == "hello" {
                "echo"
            } else {
                "hello"
            };
            std::fs::write(project.join("src/which"), component).unwrap();
        } else {
            greeting = format!("G{i}");
            std::fs::write(&path, manifest(&greeting)).unwrap();
        }
        let expected = match component {
            "hello" => format!("{greeting}, world!\n"),
            _ => "ping".to_string(),
        };
        wait_for_answer(&url, &expected, || server.log()).await;
        if i == 6 {
            // A build that fails: the previous version keeps answering.
            std::fs::write(project.join("src/which"), "missing").unwrap();
            let log = server.wait_for_log("The previous version keeps serving");
            assert!(log.contains("building `fn` failed"), "{log}");
            wait_for_answer(&url, &expected, || server.log()).await;
            std::fs::write(project.join("src/which"), component).unwrap();
        }
    }
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 100, "the load loop sent only {sent} requests");
}

/// A tmux session: a real terminal a person types into.
struct Tmux {
    session: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A session of two windows, `cwd` their directory and the test's `wasmfn` first on
    /// their PATH, as an installed one would be.
    fn start(cwd: &Path, path: &str) -> Self {
        let session = format!("wasmfn-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "200",
                "-y",
                "50",
                "-c",
            ])
            .arg(cwd)
            // Through env(1): tmux 3.3 keeps its server's PATH over `-e`, and a profile
            // would put the system's back.
            .args([
                "env",
                &format!("PATH={path}"),
                "RUST_BACKTRACE=",
                "bash",
                "--noprofile",
                "--norc",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        let status = Command::new("tmux")
            .args(["new-window", "-d", "-t", &format!("{session}:1"), "-c"])
            .arg(cwd)
            // Through env(1): tmux 3.3 keeps its server's PATH over `-e`, and a profile
            // would put the system's back.
            .args([
                "env",
                &format!("PATH={path}"),
                "RUST_BACKTRACE=",
                "bash",
                "--noprofile",
                "--norc",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-window failed");
        Self { session }
    }

    fn target(&self, window: u32) -> String {
        format!("{}:{window}", self.session)
    }

    fn type_line(&self, window: u32, line: &str) {
        for keys in [&["-l", line][..], &["Enter"][..]] {
            let status = Command::new("tmux")
                .args(["send-keys", "-t", &self.target(window)])
                .args(keys)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// The window's text, scrollback included.
    fn screen(&self, window: u32) -> String {
        let out = Command::new("tmux")
            .args([
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-2000",
                "-t",
                &self.target(window),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the window shows `needle` `count` times; returns the screen.
    fn wait_for(&self, window: u32, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen(window);
            if screen.matches(needle).count() >= count {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "window {window} never showed {needle:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// What a new user does, in a terminal: `wasmfn new` an HTTP and an event function,
/// `wasmfn dev`, `invoke` and `send`, edit the source and see the new answer. Prints the
/// time from the saved edit to the new answer (for benches/README.md; not asserted).
#[test]
fn a_new_user_creates_runs_edits_and_calls_functions_in_a_terminal() {
    if !Tmux::available() {
        common::skip(
            "a_new_user_creates_runs_edits_and_calls_functions_in_a_terminal",
            "tmux not found (apt-get install tmux)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_wasmfn")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let term = Tmux::start(dir.path(), path.to_str().unwrap());

    term.type_line(0, "wasmfn new http-rust hello");
    term.wait_for(
        0,
        "Then: wasmfn invoke '/hello?name=Ada'",
        1,
        Duration::from_secs(30),
    );
    term.type_line(0, "wasmfn new event-rust greeter");
    term.wait_for(
        0,
        "Then: wasmfn send --type com.example.greeter",
        1,
        Duration::from_secs(30),
    );
    // The templates are WASI 0.3 unless asked for 0.2.
    term.type_line(0, "clear; wasmfn new http-rust --wasi 0.2 classic");
    term.wait_for(
        0,
        "Then: wasmfn invoke '/classic?name=Ada'",
        1,
        Duration::from_secs(30),
    );
    let source = |project: &str| {
        std::fs::read_to_string(dir.path().join(project).join("src/lib.rs")).unwrap()
    };
    assert!(source("hello").contains("async fn handle"));
    assert!(source("greeter").contains("async fn handle"));
    assert!(source("classic").contains("\nfn handle"));

    let cache = common::cache_dir();
    term.type_line(
        0,
        &format!(
            "wasmfn dev --listen 127.0.0.1:0 --cache-dir {}",
            cache.display()
        ),
    );
    // Both projects build from cold here (each has its own target directory).
    let screen = term.wait_for(0, "Save a file to rebuild", 1, Duration::from_secs(600));
    let addr = screen
        .split("on http://")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address on the screen:\n{screen}"))
        .to_string();
    let url = format!("http://{addr}");

    term.type_line(1, &format!("wasmfn invoke --url {url} '/hello?name=Ada'"));
    term.wait_for(1, "Hello, Ada!", 1, Duration::from_secs(30));
    term.type_line(
        1,
        &format!("clear; wasmfn invoke --url {url} '/classic?name=Bo'"),
    );
    term.wait_for(1, "Hello, Bo!", 1, Duration::from_secs(30));
    term.type_line(
        1,
        &format!(
            "clear; wasmfn invoke '/hello?name=Grace' --cache-dir {}",
            cache.display()
        ),
    );
    term.wait_for(1, "Hello, Grace!", 1, Duration::from_secs(60));

    // An editor's save.
    let lib = dir.path().join("hello/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    assert!(
        source.contains("Hello, {name}!"),
        "the template changed:\n{source}"
    );
    let saved = Instant::now();
    std::fs::write(&lib, source.replace("Hello, {name}!", "Howdy, {name}!")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let reply = common::get(&format!("{url}/hello?name=Ada")).await;
            if reply.text() == "Howdy, Ada!\n" {
                return saved.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "the edit never answered; dev showed:\n{}",
                term.screen(0)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    eprintln!(
        "MEASURED saved edit -> new answer (hello template, wasmfn dev): {} ms",
        answered.as_millis()
    );
    term.wait_for(0, "swapped in after", 1, Duration::from_secs(10));

    term.type_line(
        1,
        &format!("clear; wasmfn invoke --url {url} '/hello?name=Ada'"),
    );
    term.wait_for(1, "Howdy, Ada!", 1, Duration::from_secs(30));
    term.type_line(
        1,
        &format!("clear; wasmfn send --url {url} --type com.example.greeter --data '{{\"hello\":\"world\"}}'"),
    );
    let screen = term.wait_for(
        1,
        "\"type\": \"com.example.greeter.done\"",
        1,
        Duration::from_secs(30),
    );
    assert!(screen.contains("\"hello\": \"world\""), "{screen}");
    // Exit codes are what scripts see.
    term.type_line(
        1,
        &format!("clear; wasmfn invoke --url {url} /nowhere; echo \"exit=$?\""),
    );
    // The typed line shows `exit=$?`: wait for the shell's answer, not for the echo of it.
    let screen = term.wait_for(1, "exit=1", 1, Duration::from_secs(30));
    assert!(screen.contains("404"), "{screen}");

    // Ctrl-C stops dev the way SIGINT stops serve: cleanly.
    Command::new("tmux")
        .args(["send-keys", "-t", &term.target(0), "C-c"])
        .status()
        .unwrap();
    term.type_line(0, "echo \"dev exit=$?\"");
    let screen = term.wait_for(0, "dev exit=0", 1, Duration::from_secs(30));
    // Its WASI 0.3 instances finished and ended: none is reported failed.
    assert!(!screen.contains("worker panicked"), "{screen}");
    assert!(!screen.contains("retired after a failure"), "{screen}");
}

/// The Python templates build as written (componentize-py, from the manifest's `build`)
/// and answer: an HTTP function through `invoke`, an event function through `send`.
#[test]
fn python_templates_build_and_answer() {
    let Some(tool) = componentize_py() else {
        common::skip(
            "python_templates_build_and_answer",
            "componentize-py not found (pip install componentize-py, or set COMPONENTIZE_PY)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = vec![];
    if let Some(parent) = tool.parent().filter(|p| !p.as_os_str().is_empty()) {
        paths.push(std::fs::canonicalize(parent).unwrap());
    }
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(paths).unwrap();
    let cache = common::cache_dir();
    let wasmfn = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
            .args(args)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("WASMFN_CACHE_DIR", &cache)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    for (template, name) in [("http-python", "py-hello"), ("event-python", "py-events")] {
        let (ok, out, err) = wasmfn(&["new", template, name]);
        assert!(ok, "wasmfn new {template}: {out}{err}");
    }
    let (ok, out, err) = wasmfn(&["build"]);
    assert!(ok, "wasmfn build: {out}{err}");

    let (ok, out, err) = wasmfn(&["invoke", "/py-hello?name=Ada"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "Hello, Ada!\n");

    let (ok, out, err) = wasmfn(&[
        "send",
        "--type",
        "com.example.py-events",
        "--subject",
        "s1",
        "--data",
        r#"{"n":1}"#,
    ]);
    assert!(ok, "{out}{err}");
    let reply: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(reply["type"], "com.example.py-events.done", "{reply}");
    assert_eq!(reply["source"], "/py-events", "{reply}");
    assert_eq!(reply["subject"], "s1", "{reply}");
    assert_eq!(reply["data"], serde_json::json!({"n": 1}), "{reply}");
}
