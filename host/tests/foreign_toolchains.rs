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
