//! Components built by someone else's toolchain run unchanged, from `.wasm` and from a
//! `.cwasm` made by `wasmfn compile`. (The plain-Rust `wasip2` crate component is covered
//! in in_process/requests.rs as `raw_wasi_http`.)
//!
//! componentize-py comes from PyPI; `.ci/run` installs it and sets `COMPONENTIZE_PY`.
//! Where it is missing the test says so and passes without running, except under CI.

use std::path::Path;
use std::process::Command;

mod common;
use common::{Server, componentize_py, function, get, manifest};

#[tokio::test(flavor = "multi_thread")]
async fn componentize_py_component_runs_from_wasm_and_from_cwasm() {
    let Some(tool) = componentize_py() else {
        common::skip(
            "componentize_py_component_runs_from_wasm_and_from_cwasm",
            "componentize-py not found (pip install componentize-py, or set COMPONENTIZE_PY)",
        );
        return;
    };
    let repo = Path::new(wasmfn_guest_artifacts::GUESTS_DIR)
        .parent()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("python_hello.wasm");
    let status = Command::new(&tool)
        .arg("-d")
        .arg(repo.join("wit"))
        .args(["-w", "wasi:http/proxy@0.2.12", "componentize", "app", "-p"])
        .arg(repo.join("guests/examples/python-hello"))
        .arg("-o")
        .arg(&wasm)
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "componentize-py failed");

    let cwasm = out.path().join("python_hello.cwasm");
    let compiled = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .arg("compile")
        .arg(&wasm)
        .arg("-o")
        .arg(&cwasm)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let (_dir, path) = manifest(
        &[
            function("py", wasm.to_str().unwrap(), &["/py/*"], ""),
            function("py-precompiled", cwasm.to_str().unwrap(), &["/pyc/*"], ""),
        ]
        .concat(),
    );
    let server = Server::start(&path);
    for (route, expected) in [
        ("/py/a?b=1", "Hello from Python at /py/a?b=1\n"),
        ("/pyc/z", "Hello from Python at /pyc/z\n"),
    ] {
        let r = get(&server.url(route)).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, expected),
            "{}",
            server.log()
        );
    }
}

/// A Spin app in Python, built the way Spin's Python SDK documents (spin-sdk 5 from PyPI,
/// componentize-py, `-w spin:up/http-trigger@4.1.0`): its component imports every
/// interface of Spin's world, including WASI 0.3's release-candidate names, and is served
/// from its own spin.toml, unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_spin_app_builds_and_runs_from_its_spin_toml() {
    let Some(tool) = componentize_py() else {
        common::skip(
            "a_python_spin_app_builds_and_runs_from_its_spin_toml",
            "componentize-py not found (pip install componentize-py==0.25.1 spin-sdk==5.0.0, or set COMPONENTIZE_PY)",
        );
        return;
    };
    let example = Path::new(wasmfn_guest_artifacts::GUESTS_DIR).join("examples/spin-python");
    let app = tempfile::tempdir().unwrap();
    for file in ["app.py", "spin.toml"] {
        std::fs::copy(example.join(file), app.path().join(file)).unwrap();
    }
    let spin_toml = app.path().join("spin.toml");

    // `wasmfn build` runs the spin.toml's build command, which finds componentize-py (and
    // spin-sdk beside it) on PATH, as `spin build` would.
    let bin_dir = tool.parent().filter(|d| !d.as_os_str().is_empty());
    let path = match (bin_dir, std::env::var_os("PATH")) {
        (Some(dir), Some(path)) => std::env::join_paths(
            std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap(),
        (_, path) => path.unwrap_or_default(),
    };
    let built = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["build", "--manifest"])
        .arg(&spin_toml)
        .env("PATH", &path)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(
        built.status.success() && app.path().join("app.wasm").exists(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    // `check` loads it and names what of Spin's world this host does not serve.
    let checked = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["check", "--manifest"])
        .arg(&spin_toml)
        .env("WASMFN_CACHE_DIR", common::cache_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stderr).into_owned()
        + &String::from_utf8_lossy(&checked.stdout);
    assert!(report.contains("ok  spin-python  /py/*"), "{report}");
    assert!(
        report.contains("imports interfaces this host does not serve")
            && report.contains("spin:mysql/mysql@3.0.0")
            && !report.contains("spin:key-value/key-value@3.0.0,")
            && !report.contains("spin:postgres/")
            && !report.contains("spin:sqlite/")
            && !report.contains("spin:redis/"),
        "{report}"
    );

    // Key-value and variables through Spin's interfaces; the variable from its default,
    // then from SPIN_VARIABLE_; the data kept across a restart.
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    let server = Server::spawn(&spin_toml, &args, &[]);
    for n in 1..=2 {
        let r = get(&server.url("/py/visit")).await;
        assert_eq!(
            (r.status, r.text()),
            (200, format!("Hello, visitor {n}\n")),
            "{}",
            server.log()
        );
    }
    // The guest sees its `environment` and nothing of the host's.
    let r = get(&server.url("/py/env")).await;
    assert_eq!(r.text(), "demo APP_MODE\n", "{}", server.log());
    // Spin's header naming the client: here, the test's own connection.
    let r = get(&server.url("/py/client")).await;
    assert!(r.text().starts_with("127.0.0.1:"), "{}", r.text());
    // Redis at an address its allowed_outbound_hosts does not name: the open answers
    // with the interface's own error, and the app answers the request.
    let r = get(&server.url("/py/redis")).await;
    assert_eq!(r.status, 503, "{}", server.log());
    assert!(
        r.text()
            .contains("redis://127.0.0.1:6379 is not in this component's allowed_outbound_hosts"),
        "{}",
        r.text()
    );
    server.sigterm();
    assert_eq!(server.wait(), Some(0));

    let server = Server::spawn(&spin_toml, &args, &[("SPIN_VARIABLE_GREETING", "Howdy")]);
    let r = get(&server.url("/py/visit")).await;
    assert_eq!(r.text(), "Howdy, visitor 3\n", "{}", server.log());
}
