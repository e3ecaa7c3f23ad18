//! Cold start as the Knative activator sees it: from exec of `wasmfn serve` to the first 200
//! response, over loopback. Two scenarios in the same run:
//!
//! - `precompiled`: the compile cache was filled beforehand (`wasmfn compile --manifest`),
//!   as an image build would; start-up memory-maps the components.
//! - `compile-at-start`: an empty cache each time, so every component is compiled at start.
//!
//! Usage: `cargo run --release -p wasmfn-benches --bin cold-start -- [--runs N]
//! [--wasmfn PATH] [--manifest PATH] [--path /hello]`. Build the host first with
//! `cargo build --release -p wasmfn`. Prints min / median / p90 per scenario and the ratio.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    wasmfn: PathBuf,
    manifest: PathBuf,
    runs: usize,
    path: String,
}

fn options() -> Options {
    let root = Path::new(wasmfn_guest_artifacts::GUESTS_DIR)
        .parent()
        .unwrap()
        .to_path_buf();
    let mut o = Options {
        wasmfn: root.join("target/release/wasmfn"),
        manifest: root.join("wasmfn.toml"),
        runs: 20,
        path: "/hello".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--wasmfn" => o.wasmfn = value().into(),
            "--manifest" => o.manifest = value().into(),
            "--runs" => o.runs = value().parse().expect("--runs N"),
            "--path" => o.path = value(),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        o.wasmfn.is_file(),
        "{} not found: run `cargo build --release -p wasmfn` first",
        o.wasmfn.display()
    );
    o
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET; Some(status) if the server answered.
fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Exec to first 200, in milliseconds.
fn one_start(o: &Options, cache: &Path) -> f64 {
    let port = free_port();
    let started = Instant::now();
    let mut child = Command::new(&o.wasmfn)
        .args(["serve", "--manifest"])
        .arg(&o.manifest)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cache-dir"])
        .arg(cache)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning wasmfn");
    let elapsed = loop {
        match get(port, &o.path) {
            Some(200) => break started.elapsed(),
            Some(other) => panic!("{} answered {other}", o.path),
            None => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no answer within 30 s"
                );
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("wasmfn exited early with {status}");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    elapsed.as_secs_f64() * 1e3
}

fn summary(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<18} runs {:>3}  min {:>7.2} ms  median {:>7.2} ms  p90 {:>7.2} ms",
        ms.len(),
        ms[0],
        at(0.5),
        at(0.9)
    );
    at(0.5)
}

fn main() {
    let o = options();
    let tmp = std::env::temp_dir().join(format!("wasmfn-cold-start-{}", std::process::id()));
    let warm = tmp.join("warm");
    let status = Command::new(&o.wasmfn)
        .args(["compile", "--manifest"])
        .arg(&o.manifest)
        .arg("--cache-dir")
        .arg(&warm)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "wasmfn compile --manifest failed");

    println!(
        "exec -> first 200 on GET {} ({})",
        o.path,
        o.manifest.display()
    );
    let precompiled: Vec<f64> = (0..o.runs).map(|_| one_start(&o, &warm)).collect();
    let cold: Vec<f64> = (0..o.runs)
        .map(|i| {
            let dir = tmp.join(format!("cold-{i}"));
            one_start(&o, &dir)
        })
        .collect();
    let p = summary("precompiled", precompiled);
    let c = summary("compile-at-start", cold);
    println!(
        "ratio compile-at-start / precompiled (median): {:.1}x",
        c / p
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
