//! The developer loop: from a saved edit of the `http-rust` template to the new answer over
//! HTTP, with `wasmfn dev` watching, against the loop without it (run `cargo build`, restart
//! `wasmfn serve`, wait for the answer), in the same run; `cargo build` alone is shown
//! too, as the part neither loop can avoid. `dev` compiles guests unoptimized (fast to
//! compile), `serve` optimized, as each does for users. Two copies of the project, one per loop, each
//! built once before measuring; edits alternate between them. Writes the table into
//! benches/README.md.
//!
//! `cargo run --release -p wasmfn-benches --bin dev-loop`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmfn_benches::{Report, free_port, quantile, repo_root};

const ROUNDS: usize = 10;

fn main() {
    // SAFETY: single-threaded at this point; children inherit the environment.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "wasmfn"]));
    let wasmfn = root.join("target/release/wasmfn");
    let work = std::env::temp_dir().join(format!("wasmfn-dev-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    // One compile cache per loop: the two projects build the same bytes each round, and
    // a shared cache would spare the loop without dev its compile.
    let cache = work.join("cache-dev");
    let serve_cache = work.join("cache-serve");

    // Two projects made the way a user makes them, built once (their cold build is not
    // what this measures).
    let project = |name: &str| -> PathBuf {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new(&wasmfn)
            .current_dir(&dir)
            .args(["new", "http-rust", "hello"]));
        println!("building {name} (cold) ...");
        run(Command::new(&wasmfn).current_dir(&dir).arg("build"));
        dir
    };
    let with_dev = project("with-dev");
    let without = project("without-dev");

    let dev_port = free_port();
    let mut dev = spawn(
        Command::new(&wasmfn)
            .current_dir(&with_dev)
            .args(["dev", "--listen", &format!("127.0.0.1:{dev_port}")])
            .arg("--cache-dir")
            .arg(&cache),
    );
    wait_for_answer(dev_port, "Hello, bench!\n", Duration::from_secs(120));
    let serve_port = free_port();
    let serve = |cache: &Path| {
        spawn(
            Command::new(&wasmfn)
                .current_dir(&without)
                .args(["serve", "--listen", &format!("127.0.0.1:{serve_port}")])
                .arg("--cache-dir")
                .arg(cache),
        )
    };
    let mut server = serve(&serve_cache);
    wait_for_answer(serve_port, "Hello, bench!\n", Duration::from_secs(60));

    let (mut dev_ms, mut manual_ms, mut cargo_ms) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let greeting = format!("Round{round}");
        let expected = format!("{greeting}, bench!\n");

        let saved = edit(&with_dev, &greeting);
        wait_for_answer(dev_port, &expected, Duration::from_secs(60));
        dev_ms.push(saved.elapsed().as_secs_f64() * 1e3);

        let saved = edit(&without, &greeting);
        let build = Instant::now();
        run(Command::new(&cargo)
            .current_dir(without.join("hello"))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]));
        cargo_ms.push(build.elapsed().as_secs_f64() * 1e3);
        stop(&mut server);
        server = serve(&serve_cache);
        wait_for_answer(serve_port, &expected, Duration::from_secs(60));
        manual_ms.push(saved.elapsed().as_secs_f64() * 1e3);
        println!(
            "round {round}: dev {:.0} ms, cargo build + restart {:.0} ms (cargo build {:.0} ms)",
            dev_ms[round], manual_ms[round], cargo_ms[round]
        );
    }
    stop(&mut dev);
    stop(&mut server);
    let _ = std::fs::remove_dir_all(&work);

    let summary = |samples: &mut Vec<f64>| {
        let p50 = quantile(samples, 0.5);
        let (min, max) = (samples[0], samples[samples.len() - 1]);
        (p50, format!("p50 {p50:.0} ms (min {min:.0}, max {max:.0})"))
    };
    let (manual_p50, manual) = summary(&mut manual_ms);
    let (dev_p50, dev_figure) = summary(&mut dev_ms);
    let (cargo_p50, cargo_figure) = summary(&mut cargo_ms);
    let mut report = Report::default();
    report.section(&format!(
        "Saved edit of the http-rust template to the new answer over HTTP, {ROUNDS} edits each, alternated"
    ));
    report.row(
        "without dev: cargo build, restart wasmfn serve, first answer",
        manual,
        "1 (baseline)",
    );
    report.row(
        "wasmfn dev: watch, cargo build, swap, answer",
        dev_figure,
        format!("{:.2}x the loop without dev", dev_p50 / manual_p50),
    );
    report.row(
        "cargo build alone (inside both)",
        cargo_figure,
        format!("{:.0}% of the dev loop", cargo_p50 / dev_p50 * 100.0),
    );
    report.write_readme(
        "dev-loop",
        "",
        "cargo run --release -p wasmfn-benches --bin dev-loop",
        "time",
    );
}

/// Replaces the greeting in the project's source, as an editor's save does; returns when.
fn edit(project: &Path, greeting: &str) -> Instant {
    let lib = project.join("hello/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let start = source.find("format!(\"").expect("the template's format!") + "format!(\"".len();
    let end = start
        + source[start..]
            .find(", {name}")
            .expect("the template's greeting");
    let edited = format!("{}{greeting}{}", &source[..start], &source[end..]);
    let saved = Instant::now();
    std::fs::write(&lib, edited).unwrap();
    saved
}

fn run(command: &mut Command) {
    let status = command.status().expect("spawning");
    assert!(status.success(), "{command:?} failed");
}

fn spawn(command: &mut Command) -> Child {
    command
        .env("WASMFN_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning wasmfn")
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `GET /hello?name=bench` every 2 ms until the body is `expected`.
fn wait_for_answer(port: u16, expected: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if get_body(port, "/hello?name=bench").as_deref() == Some(expected) {
            return;
        }
        assert!(Instant::now() < deadline, "never answered {expected:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn get_body(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
