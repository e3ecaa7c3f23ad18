//! Soak: the release host under sustained loopback load over a mix of healthy and failing
//! functions, then a report of every response by status, the errors, and the host's RSS
//! before and after. Bounded in time; loopback only.
//!
//! Usage: `cargo run --release -p wasmfn-benches --bin soak -- [--seconds 60]
//! [--connections 256] [--wasmfn PATH]`. Build the host first with `cargo build --release
//! -p wasmfn`. Exits non-zero if any request failed in a way the mix does not expect.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use wasmfn_benches::rss_kib;

/// What a request of the mix is and which statuses are right for it.
struct Kind {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: usize,
    /// Out of 100.
    weight: u32,
    expected: &'static [u16],
}

const MIX: &[Kind] = &[
    Kind {
        name: "hello",
        method: "GET",
        path: "/hello?name=soak",
        body: 0,
        weight: 60,
        expected: &[200],
    },
    Kind {
        name: "echo 4 KiB",
        method: "POST",
        path: "/echo/soak",
        body: 4096,
        weight: 15,
        expected: &[200],
    },
    Kind {
        name: "sleep 20 ms (concurrency 32)",
        method: "GET",
        path: "/probe/sleep?ms=20",
        body: 0,
        weight: 10,
        expected: &[200, 503],
    },
    Kind {
        name: "trap",
        method: "GET",
        path: "/trap",
        body: 0,
        weight: 8,
        expected: &[500],
    },
    Kind {
        name: "memory bomb",
        method: "GET",
        path: "/oom",
        body: 0,
        weight: 4,
        expected: &[500],
    },
    Kind {
        name: "infinite loop (50 ms)",
        method: "GET",
        path: "/spin",
        body: 0,
        weight: 2,
        expected: &[504],
    },
    Kind {
        name: "oversized body",
        method: "POST",
        path: "/echo/big",
        body: 128 * 1024,
        weight: 1,
        expected: &[413],
    },
];

fn manifest(dir: &Path) -> PathBuf {
    use wasmfn_guest_artifacts as g;
    let text = format!(
        r#"[[functions]]
name = "hello"
component = {hello:?}
routes = ["/hello"]
variables = {{ greeting = "Hello" }}

[[functions]]
name = "echo"
component = {echo:?}
routes = ["/echo/*"]
max_body = "64KiB"

[[functions]]
name = "probe"
component = {probe:?}
routes = ["/probe/*"]
concurrency = 32

[[functions]]
name = "trap"
component = {trap:?}
routes = ["/trap"]

[[functions]]
name = "oom"
component = {oom:?}
routes = ["/oom"]
memory = "16MiB"

[[functions]]
name = "spin"
component = {spin:?}
routes = ["/spin"]
timeout = "50ms"
"#,
        hello = g::HELLO,
        echo = g::ECHO,
        probe = g::TEST_PROBE,
        trap = g::TEST_TRAP,
        oom = g::TEST_OOM,
        spin = g::TEST_SPIN,
    );
    let path = dir.join("soak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Default)]
struct Tally {
    /// (kind index, status or error) -> count.
    outcomes: BTreeMap<(usize, String), u64>,
    latencies_us: Vec<u32>,
}

async fn client(addr: SocketAddr, seed: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                        Ok((s, conn)) => {
                            tokio::spawn(conn);
                            sender = Some(s);
                        }
                        Err(e) => {
                            *tally
                                .outcomes
                                .entry((usize::MAX, format!("handshake: {e}")))
                                .or_default() += 1;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    *tally
                        .outcomes
                        .entry((usize::MAX, format!("connect: {}", e.kind())))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut pick = (rng % 100) as u32;
        let index = MIX
            .iter()
            .position(|k| {
                if pick < k.weight {
                    true
                } else {
                    pick -= k.weight;
                    false
                }
            })
            .unwrap_or(0);
        let kind = &MIX[index];
        let request = http::Request::builder()
            .method(kind.method)
            .uri(kind.path)
            .header("host", "soak")
            .body(Full::new(Bytes::from(vec![b's'; kind.body])))
            .unwrap();
        let s = sender.as_mut().unwrap();
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        let started = Instant::now();
        let outcome = match s.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let close = response
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                match response.into_body().collect().await {
                    Ok(_) => {
                        if close {
                            sender = None;
                        }
                        status.to_string()
                    }
                    Err(e) => {
                        sender = None;
                        format!("body: {e}")
                    }
                }
            }
            Err(e) => {
                sender = None;
                format!("request: {e}")
            }
        };
        tally
            .latencies_us
            .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        *tally.outcomes.entry((index, outcome)).or_default() += 1;
    }
    tally
}

fn main() {
    let mut wasmfn = wasmfn_benches::repo_root().join("target/release/wasmfn");
    let (mut seconds, mut connections) = (60u64, 256usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--connections" => connections = value().parse().expect("--connections N"),
            "--wasmfn" => wasmfn = value().into(),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        wasmfn.is_file(),
        "{} not found: run `cargo build --release -p wasmfn` first",
        wasmfn.display()
    );
    let dir = std::env::temp_dir().join(format!("wasmfn-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = manifest(&dir);

    let mut child = Command::new(&wasmfn)
        .args(["serve", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("WASMFN_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,wasmfn=info")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning wasmfn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    // Reads every log line for the whole run, so the host never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut lines = 0u64;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines += 1;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
                && let Some(addr) = v["addr"].as_str()
            {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
        lines
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("wasmfn did not start");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Warm up: every function once, so "before" is a host that has served each of them.
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let warm = tokio::spawn(client(addr, 7, stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        warm.await.unwrap();
    });
    let rss_before = rss_kib(pid);
    println!(
        "soak: {connections} connections for {seconds} s against {addr}; host RSS before {:.1} MiB",
        rss_before as f64 / 1024.0
    );

    // The load comes in three equal rounds with the RSS read after each: memory that grows
    // once and then holds (pool slots kept resident, allocator caches) looks different
    // from memory that grows every round (a leak).
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut rss_rounds = Vec::new();
    for round in 0..3u64 {
        let part = runtime.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let tasks: Vec<_> = (0..connections)
                .map(|i| tokio::spawn(client(addr, round * 100_000 + i as u64 + 1, stop.clone())))
                .collect();
            tokio::time::sleep(Duration::from_secs(seconds) / 3).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Tally::default();
            for t in tasks {
                let t = t.await.unwrap();
                for (k, n) in t.outcomes {
                    *all.outcomes.entry(k).or_default() += n;
                }
                all.latencies_us.extend(t.latencies_us);
            }
            all
        });
        for (k, n) in part.outcomes {
            *tally.outcomes.entry(k).or_default() += n;
        }
        tally.latencies_us.extend(part.latencies_us);
        rss_rounds.push(rss_kib(pid));
    }
    let elapsed = started.elapsed();
    let rss_after = *rss_rounds.last().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let rss_settled = rss_kib(pid);

    let total: u64 = tally.outcomes.values().sum();
    let mut unexpected = 0;
    println!("\n| request | outcome | count | expected |\n|---|---|---:|---|");
    for ((index, outcome), n) in &tally.outcomes {
        let (name, ok) = match MIX.get(*index) {
            Some(kind) => (
                kind.name,
                outcome
                    .parse::<u16>()
                    .is_ok_and(|s| kind.expected.contains(&s)),
            ),
            None => ("(connection)", false),
        };
        if !ok {
            unexpected += n;
        }
        println!(
            "| {name} | {outcome} | {n} | {} |",
            if ok { "yes" } else { "NO" }
        );
    }
    let mut lat = tally.latencies_us;
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "\n{total} requests in {:.1} s ({:.0}/s); latency p50 {} µs, p99 {} µs, max {} µs",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(0)
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "host RSS: before {:.1} MiB; after each third {}; 5 s later {:.1} MiB (drift {:+.1} MiB, of which {:+.1} MiB in the last two thirds)",
        mib(rss_before),
        rss_rounds
            .iter()
            .map(|r| format!("{:.1} MiB", mib(*r)))
            .collect::<Vec<_>>()
            .join(", "),
        mib(rss_settled),
        mib(rss_settled) - mib(rss_before),
        mib(rss_after) - mib(rss_rounds[0]),
    );
    println!("unexpected outcomes: {unexpected}");

    // The host must still be whole: a plain request, then a clean SIGTERM.
    let alive = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let t = tokio::spawn(client(addr, 99, stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        t.await
            .unwrap()
            .outcomes
            .keys()
            .any(|(i, o)| *i == 0 && o == "200")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().unwrap();
    println!("host answered after the soak: {alive}; exit on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&dir);
    if unexpected > 0 || !alive || !status.success() {
        std::process::exit(1);
    }
}
