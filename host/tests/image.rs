//! The host image, built by deploy/build-image.sh and run as Knative runs it: `PORT` and
//! `K_*` set, a read-only root filesystem, a non-root user. Needs a Docker Engine and a
//! static (musl) release build, so it has its own command:
//!
//!     cargo test -p wasmfn --test image -- --ignored --nocapture
//!
//! Without a Docker Engine it says so and passes without running, except under CI
//! (`.ci/run` runs this command too, after the README's).

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmfn_guest_artifacts as guests;

mod common;

const TAG: &str = "wasmfn:image-test";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

async fn get_status(addr: &str, path: &str) -> Option<u16> {
    get(addr, path).await.map(|(status, _)| status)
}

/// The status and body of `GET path`, over HTTP/1.0: the body is what follows the head,
/// never chunked.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

fn no_docker(test: &str) -> bool {
    let missing = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true);
    if missing {
        common::skip(test, "no Docker Engine answers `docker info`");
    }
    missing
}

/// Builds the image of `manifest` (relative to the repository) as `tag`.
fn build_image(manifest: &str, tag: &str) {
    let repo = std::path::Path::new(guests::GUESTS_DIR).join("..");
    let build = Command::new(repo.join("deploy/build-image.sh"))
        .args(["--manifest", manifest, "--tag", tag])
        .current_dir(&repo)
        .env_remove("RUST_BACKTRACE")
        .status()
        .unwrap();
    assert!(build.success(), "deploy/build-image.sh failed");
    let size = stdout(&docker(&["image", "inspect", "-f", "{{.Size}}", tag]));
    // The host the image runs is the last one the script builds (without the compiler).
    let host = repo.join("target/x86_64-unknown-linux-musl/image/wasmfn");
    eprintln!(
        "image {tag}: {:.1} MB, its host binary {:.1} MB",
        size.parse::<f64>().unwrap() / 1e6,
        std::fs::metadata(host).unwrap().len() as f64 / 1e6
    );
}

/// Runs `tag` as Knative runs it: PORT and K_* from the environment, read-only root, a
/// non-root user, no capabilities; the embedded stores' emptyDir that `deploy render`
/// mounts for a Service of one pod, and `/tmp` (where `files` are gathered), here tmpfs.
/// Returns the container and the address its port is published on.
fn run_as_knative(tag: &str) -> (Container, String) {
    let run = docker(&[
        "run",
        "-d",
        "--read-only",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--tmpfs",
        "/var/lib/wasmfn:uid=65532,gid=65532",
        "--tmpfs",
        "/tmp:uid=65532,gid=65532",
        "-e",
        "WASMFN_DATA_DIR=/var/lib/wasmfn",
        "-e",
        "PORT=8080",
        "-e",
        "K_SERVICE=wasmfn",
        "-e",
        "K_CONFIGURATION=wasmfn",
        "-e",
        "K_REVISION=wasmfn-00001",
        "-p",
        "127.0.0.1::8080",
        tag,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let container = Container(stdout(&run));
    let port = stdout(&docker(&["port", &container.0, "8080/tcp"]));
    let addr = port.lines().next().unwrap().to_string();
    (container, addr)
}

/// Waits for the first 200 on `path`.
async fn until_ok(container: &Container, addr: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_status(addr, path).await == Some(200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 within 20 s: {}",
            stdout(&docker(&["logs", &container.0]))
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker Engine and a musl build: cargo test -p wasmfn --test image -- --ignored"]
async fn image_runs_as_knative_runs_it_and_drains_on_docker_stop() {
    if no_docker("image_runs_as_knative_runs_it_and_drains_on_docker_stop") {
        return;
    }
    build_image("wasmfn.toml", TAG);
    let started = Instant::now();
    let (container, addr) = run_as_knative(TAG);
    until_ok(&container, &addr, "/hello").await;
    eprintln!(
        "docker run -> first 200 on /hello: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        get_status(&addr, "/.well-known/wasmfn/ready").await,
        Some(200)
    );
    let logs = docker(&["logs", &container.0]);
    let logs = format!("{}{}", stdout(&logs), String::from_utf8_lossy(&logs.stderr));
    assert!(
        logs.contains("k_revision=wasmfn-00001")
            || logs.contains("\"k_revision\":\"wasmfn-00001\""),
        "{logs}"
    );
    assert!(
        !logs.contains("compiled"),
        "the image must load precompiled code, not compile: {logs}"
    );

    // A request mid-upload when `docker stop` sends SIGTERM still completes.
    let body = vec![b'x'; 64 * 1024];
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..1000]).await.unwrap();
    let stop = {
        let id = container.0.clone();
        std::thread::spawn(move || docker(&["stop", "-t", "30", &id]))
    };
    // Docker delivers SIGTERM at once; wait for the host to say it got it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stdout(&docker(&["logs", &container.0])).contains("SIGTERM received") {
        assert!(Instant::now() < deadline, "no SIGTERM seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(&body[1000..]).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
    assert!(stop.join().unwrap().status.success());
    let code = stdout(&docker(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}}",
        &container.0,
    ]));
    assert_eq!(code, "0", "the host exits 0 after draining");

    // The image's host has no compiler: a component with no compiled code (here, an
    // empty cache) is refused at start, saying how to precompile it, never compiled.
    let out = docker(&[
        "run",
        "--rm",
        "--read-only",
        "--user",
        "65532:65532",
        "--tmpfs",
        "/tmp:uid=65532,gid=65532",
        "--tmpfs",
        "/var/lib/wasmfn:uid=65532,gid=65532",
        "-e",
        "WASMFN_DATA_DIR=/var/lib/wasmfn",
        "-e",
        "WASMFN_CACHE_DIR=/tmp/empty-cache",
        TAG,
    ]);
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("has no compiled code in the compile cache")
            && said.contains("wasmfn compile --manifest"),
        "{said}"
    );
    assert!(!said.contains("compiled\""), "{said}");
}

/// A Spin app's image, from its own spin.toml (spin-sdk 7, its `files`, a component built
/// into `../../target/...`): staged, precompiled and served as Knative runs it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker Engine and a musl build: cargo test -p wasmfn --test image -- --ignored"]
async fn a_spin_apps_image_serves_it_from_its_spin_toml() {
    if no_docker("a_spin_apps_image_serves_it_from_its_spin_toml") {
        return;
    }
    let tag = "wasmfn:spin-image-test";
    build_image("guests/examples/spin-hello/spin.toml", tag);
    let (container, addr) = run_as_knative(tag);
    until_ok(&container, &addr, "/hello").await;
    for (path, expected) in [
        ("/hello", "Hello from a Spin app\n"),
        ("/files/hello.txt", "Hello from a file\n"),
        ("/hello/count", "visit 1\n"),
    ] {
        let (status, body) = get(&addr, path).await.unwrap();
        assert_eq!((status, body.as_str()), (200, expected), "{path}");
    }
    let logs = docker(&["logs", &container.0]);
    let logs = format!("{}{}", stdout(&logs), String::from_utf8_lossy(&logs.stderr));
    assert!(
        !logs.contains("compiled"),
        "the image must load precompiled code, not compile: {logs}"
    );
}
