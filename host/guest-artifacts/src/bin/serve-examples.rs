//! `cargo examples`: by the time this runs, the build script has built every guest, so all
//! that is left is to serve the root `wasmfn.toml` with the real `wasmfn` binary, built for
//! release as a deployment runs it. Extra arguments go to `wasmfn serve` (e.g. `cargo
//! examples --listen 127.0.0.1:9000`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(wasmfn_guest_artifacts::GUESTS_DIR)
        .parent()
        .expect("guests/ has a parent");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "wasmfn",
            "--bin",
            "wasmfn",
            "--",
            "serve",
            "--manifest",
        ])
        .arg(root.join("wasmfn.toml"))
        .args(std::env::args_os().skip(1));
    if std::env::var_os("WASMFN_LISTEN").is_none()
        && !std::env::args().any(|a| a.starts_with("--listen") || a == "-l")
    {
        // Examples are for this machine only; Knative deployments use 0.0.0.0:$PORT.
        let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    }
    // exec, so Ctrl-C and SIGTERM reach the server directly.
    let err = cmd.exec();
    eprintln!("error: could not run cargo: {err}");
    std::process::exit(1);
}
