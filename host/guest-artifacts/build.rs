//! Builds the `guests/` workspace for wasm32-wasip2 and writes `guests.rs` into OUT_DIR: one
//! constant per guest with the absolute path of its component, and a `foreach_guest!` macro
//! so that tests can insist every guest is tested.
//!
//! The guests build into `guests/target`, the same place `cd guests && cargo build
//! --release` puts them and the root `wasmfn.toml` points at, so the examples and the tests
//! share one build instead of compiling every guest twice.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../..")
        .canonicalize()
        .unwrap();
    let guests = root.join("guests");
    for dir in ["guests", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // `guests/target` changes on every build; only sources matter.
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );

    let names = guest_names(&guests);
    build(&guests);

    let out_dir = guests.join("target/wasm32-wasip2/release");
    let mut code = String::new();
    let mut entries = String::new();
    for name in &names {
        let file = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            file.is_file(),
            "guest {name} was built but {} is missing",
            file.display()
        );
        let ident = name.replace('-', "_").to_uppercase();
        code += &format!(
            "/// The `{name}` component.\npub const {ident}: &str = {:?};\n",
            file.display().to_string()
        );
        entries += &format!(
            "        $mac!({}, {:?});\n",
            name.replace('-', "_"),
            file.display().to_string()
        );
    }
    code += &format!(
        "/// Calls `$mac!(ident, path)` for every guest in guests/.\n#[macro_export]\nmacro_rules! foreach_guest {{\n    ($mac:ident) => {{\n{entries}    }};\n}}\n"
    );
    code += &format!(
        "/// The `guests/` directory.\npub const GUESTS_DIR: &str = {:?};\n",
        guests.display().to_string()
    );
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs"),
        code,
    )
    .unwrap();
}

/// Every guest component: each directory of guests/examples and guests/fixtures whose
/// Cargo.toml builds a cdylib (shared libraries such as `saga` are not components).
fn guest_names(guests: &Path) -> Vec<String> {
    let mut names: Vec<String> = ["examples", "fixtures"]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(guests.join(dir)).unwrap())
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("Cargo.toml"))
                .is_ok_and(|toml| toml.contains("\"cdylib\""))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn build(guests: &Path) {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir()
    {
        panic!(
            "\n\nThe guests need the wasm32-wasip2 target, which this toolchain lacks.\n\
             Install it with:\n\n    rustup target add wasm32-wasip2\n\n"
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guests)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", guests.join("target"));
    // Settings meant for the host build must not leak into the guests' build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    // Keep the target dir we just set.
    cmd.env("CARGO_TARGET_DIR", guests.join("target"));
    let status = cmd.status().expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building the guests failed (cd guests && cargo build --release)"
    );
}
