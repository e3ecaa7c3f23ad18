//! `wasmfn new <template> <name>`: writes a project that builds as it is, beside the
//! manifest, and adds its `[[functions]]` entry (with the `build` that `wasmfn build` and
//! `wasmfn dev` run) to the manifest, creating one if there is none. Nothing is written
//! when anything would be overwritten or the manifest would not load afterwards.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::manifest::Manifest;

#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// The template.
    template: Template,
    /// The function's name (lowercase letters, digits and `-`); also its directory,
    /// beside the manifest.
    name: String,
    /// The manifest to add the function to (created if missing).
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// The wasmfn SDK (a checkout's `sdk` directory) Rust projects depend on [default: the
    /// one this binary was built from].
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
    /// The WASI version a Rust function is built for: 0.3 (async handlers, instances
    /// serving many requests at once) or 0.2 (plain functions, an instance per request)
    /// [default: 0.3]. Python functions are WASI 0.2.
    #[arg(long, value_name = "VERSION")]
    wasi: Option<WasiVersion>,
}

/// A WASI version a template is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WasiVersion {
    #[value(name = "0.3")]
    P3,
    #[value(name = "0.2")]
    P2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Template {
    /// An HTTP function in Rust, on the wasmfn SDK.
    HttpRust,
    /// A CloudEvents function in Rust, on the wasmfn SDK.
    EventRust,
    /// An HTTP function in Python: a standard wasi:http component (componentize-py).
    HttpPython,
    /// A CloudEvents function in Python, on wasmfn's event-handler interface
    /// (componentize-py).
    EventPython,
}

impl Template {
    fn is_python(self) -> bool {
        matches!(self, Self::HttpPython | Self::EventPython)
    }

    fn is_event(self) -> bool {
        matches!(self, Self::EventRust | Self::EventPython)
    }
}

const RUST_CARGO_TOML: &str = include_str!("../../templates/rust-Cargo.toml");
const HTTP_RUST: &str = include_str!("../../templates/http-rust/lib.rs");
const EVENT_RUST: &str = include_str!("../../templates/event-rust/lib.rs");
const HTTP_RUST_P2: &str = include_str!("../../templates/http-rust-p2/lib.rs");
const EVENT_RUST_P2: &str = include_str!("../../templates/event-rust-p2/lib.rs");
const HTTP_PYTHON: &str = include_str!("../../templates/http-python/app.py");
const EVENT_PYTHON: &str = include_str!("../../templates/event-python/app.py");

/// The WIT a Python project is bound against (componentize-py reads it at build time):
/// the repository's `wit/`, as this binary was built, but for the world wasmfn-sdk's
/// database modules bind (`databases.wit` and its deps): componentize-py 0.25 cannot
/// resolve a directory holding them, and the templates do not use them.
const WIT: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("events.wit", include_str!("../../../wit/events.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
    (
        "deps/config/store.wit",
        include_str!("../../../wit/deps/config/store.wit"),
    ),
    (
        "deps/config/world.wit",
        include_str!("../../../wit/deps/config/world.wit"),
    ),
    (
        "deps/keyvalue/store.wit",
        include_str!("../../../wit/deps/keyvalue/store.wit"),
    ),
    (
        "deps/keyvalue/atomic.wit",
        include_str!("../../../wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "deps/keyvalue/batch.wit",
        include_str!("../../../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "deps/keyvalue/world.wit",
        include_str!("../../../wit/deps/keyvalue/world.wit"),
    ),
];

/// The world each Python template is built against.
const PYTHON_HTTP_WORLD: &str = "wasi:http/proxy@0.2.12";
const PYTHON_EVENT_WORLD: &str = "wasmfn:function/event-function";

pub(super) fn run(args: NewArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    if !valid_name(name) {
        bail!(
            "`{name}` cannot name a function: use lowercase letters, digits and `-`, starting with a letter (e.g. `hello` or `order-api`)"
        );
    }
    let base = args
        .manifest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = base.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; `wasmfn new` does not overwrite. Choose another name or remove it.",
            dir.display()
        );
    }
    let existing = match std::fs::read_to_string(&args.manifest) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", args.manifest.display()));
        }
    };
    let event_type = format!("com.example.{name}");
    let wasi = match (args.template.is_python(), args.wasi) {
        (true, Some(WasiVersion::P3)) => bail!(
            "the Python templates are WASI 0.2 ones; leave out --wasi, or use a Rust template for WASI 0.3"
        ),
        (_, Some(wasi)) => wasi,
        (true, None) => WasiVersion::P2,
        (false, None) => WasiVersion::P3,
    };
    let files = project_files(args.template, name, &event_type, args.sdk.as_deref(), wasi)?;
    let entry = manifest_entry(args.template, name, &event_type);
    let manifest_text = match &existing {
        None => format!(
            "# Functions served by `wasmfn serve` and `wasmfn dev`; see the wasmfn README.\n\n{entry}"
        ),
        Some(text) if text.ends_with('\n') || text.is_empty() => format!("{text}\n{entry}"),
        Some(text) => format!("{text}\n\n{entry}"),
    };
    // Refuse before writing anything: a clashing name or route is the person's to settle.
    Manifest::parse(&args.manifest, &manifest_text).map_err(|e| {
        anyhow::anyhow!(
            "adding `{name}` would make the manifest invalid, so nothing was written:\n{e}"
        )
    })?;

    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        super::write_file(&path, text.as_bytes())?;
    }
    super::write_file(&args.manifest, manifest_text.as_bytes())?;

    let manifest_flag = if args.manifest == Path::new("wasmfn.toml") {
        String::new()
    } else {
        format!(" --manifest {}", args.manifest.display())
    };
    println!(
        "Created {} ({}) and {} {}.",
        dir.display(),
        args.template
            .to_possible_value()
            .expect("no skipped variants")
            .get_name(),
        if existing.is_some() {
            "added it to"
        } else {
            "wrote"
        },
        args.manifest.display()
    );
    if args.template.is_python() && which("componentize-py").is_none() {
        println!(
            "It builds with componentize-py, which is not on PATH: pip install componentize-py"
        );
    }
    println!("\nNext: wasmfn dev{manifest_flag}");
    if args.template.is_event() {
        println!(
            "Then: wasmfn send{manifest_flag} --type {event_type} --data '{{\"hello\":\"world\"}}'"
        );
    } else {
        println!("Then: wasmfn invoke{manifest_flag} '/{name}?name=Ada'");
    }
    Ok(())
}

/// Function names become Knative Service and Trigger names: DNS-1035 labels.
fn valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The files of the project, relative to its directory.
fn project_files(
    template: Template,
    name: &str,
    event_type: &str,
    sdk: Option<&Path>,
    wasi: WasiVersion,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{type}}", event_type)
    };
    if template.is_python() {
        let app = match template {
            Template::HttpPython => HTTP_PYTHON,
            _ => EVENT_PYTHON,
        };
        let mut files = vec![
            (PathBuf::from("app.py"), fill(app)),
            (
                PathBuf::from(".gitignore"),
                "app.wasm\n__pycache__/\n".to_string(),
            ),
        ];
        files.extend(
            WIT.iter()
                .map(|(path, text)| (Path::new("wit").join(path), text.to_string())),
        );
        return Ok(files);
    }
    let sdk = match sdk {
        Some(dir) => dir.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
    };
    let sdk = sdk.canonicalize().map_err(|_| {
        anyhow::anyhow!(
            "cannot find the wasmfn SDK at {}; pass --sdk with the `sdk` directory of a wasmfn checkout",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} is not the wasmfn SDK (it has no Cargo.toml); pass --sdk with the `sdk` directory of a wasmfn checkout",
            sdk.display()
        );
    }
    let lib = match (template, wasi) {
        (Template::HttpRust, WasiVersion::P3) => HTTP_RUST,
        (Template::HttpRust, WasiVersion::P2) => HTTP_RUST_P2,
        (_, WasiVersion::P3) => EVENT_RUST,
        (_, WasiVersion::P2) => EVENT_RUST_P2,
    };
    Ok(vec![
        (
            PathBuf::from("Cargo.toml"),
            RUST_CARGO_TOML
                .replace("{{crate}}", name)
                .replace("{{sdk}}", &toml_escape(&sdk.display().to_string())),
        ),
        (PathBuf::from("src/lib.rs"), fill(lib)),
        (PathBuf::from(".gitignore"), "target/\n".to_string()),
    ])
}

/// The `[[functions]]` entry, paths relative to the manifest.
fn manifest_entry(template: Template, name: &str, event_type: &str) -> String {
    let (component, build) = if template.is_python() {
        let world = match template {
            Template::HttpPython => PYTHON_HTTP_WORLD,
            _ => PYTHON_EVENT_WORLD,
        };
        (
            format!("{name}/app.wasm"),
            format!(
                "build = {{ command = \"componentize-py -d wit -w {world} componentize app -o app.wasm\", workdir = \"{name}\", watch = [\"*.py\"] }}"
            ),
        )
    } else {
        (
            format!(
                "{name}/target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
            format!(
                "build = {{ command = \"cargo build --release --target wasm32-wasip2\", workdir = \"{name}\", watch = [\"src/**/*.rs\", \"Cargo.toml\"] }}"
            ),
        )
    };
    let trigger = if template.is_event() {
        format!("events = [{{ type = \"{event_type}\" }}]")
    } else {
        format!("routes = [\"/{name}\", \"/{name}/*\"]")
    };
    format!("[[functions]]\nname = \"{name}\"\ncomponent = \"{component}\"\n{trigger}\n{build}\n")
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The program `name` resolves to on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python projects get the whole `wit/`: a file added there and not here would leave
    /// them unable to build.
    #[test]
    fn the_embedded_wit_is_all_of_wit() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "wit") {
                    on_disk.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        // Only wasmfn-sdk's database modules bind these (see `WIT`).
        const SDK_ONLY_WIT: [&str; 6] = [
            "databases.wit",
            // WASI 0.3's version of the contract: the Python templates are WASI 0.2 ones.
            "p3/function.wit",
            "p3/deps/spin-key-value/key-value.wit",
            "deps/spin-sqlite/sqlite.wit",
            "deps/spin-postgres/postgres.wit",
            "deps/fermyon-spin/redis.wit",
        ];
        on_disk.retain(|p| !SDK_ONLY_WIT.contains(&p.as_str()));
        let mut embedded: Vec<String> = WIT.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn every_entry_is_a_valid_manifest() {
        for template in Template::value_variants() {
            let entry = manifest_entry(*template, "order-api", "com.example.order-api");
            let m = Manifest::parse(Path::new("/p/wasmfn.toml"), &entry)
                .unwrap_or_else(|e| panic!("{template:?}: {e}"));
            let f = &m.functions[0];
            assert_eq!(f.build.as_ref().unwrap().workdir, Path::new("/p/order-api"));
            assert_eq!(f.takes_events(), template.is_event());
            assert_eq!(f.routes.is_empty(), template.is_event());
        }
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(valid_name("hello"));
        assert!(valid_name("order-api2"));
        for bad in ["", "Hello", "2fast", "a_b", "trailing-", "a.b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
