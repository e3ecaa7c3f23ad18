//! `wasmfn check`: everything `serve` would refuse, found without serving, all at once
//! rather than the first: the manifest, each function's variables and component (its
//! exports against its routes and events), the capabilities its imports ask for against
//! what its entry grants, and the Knative render.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::capabilities::{Capabilities, CapabilityOptions};
use crate::engine::Function;
use crate::manifest::{FunctionSpec, Manifest};

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The manifest.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// Check with `[profiles.<NAME>]` applied.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// For a spin.toml: Spin's runtime configuration file, which says where its key-value
    /// stores live (`[key_value_store.<label>]` of type redis or spin).
    #[arg(long, env = "WASMFN_RUNTIME_CONFIG_FILE", value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Where compiled components are cached, shared with `serve` [default:
    /// ~/.cache/wasmfn].
    #[arg(long, env = "WASMFN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

pub(super) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load_with_runtime_config(
        &args.manifest,
        args.profile.as_deref(),
        args.runtime_config_file.as_deref(),
    )?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if manifest.functions.is_empty() {
        problems.push(format!(
            "{} declares no function, so a host would serve nothing; add a [[functions]] entry (`wasmfn new` writes one)",
            manifest.path.display()
        ));
    }
    let engine = super::one_shot_engine(&manifest, args.cache_dir.as_deref())?;
    let capabilities = match Capabilities::open(&manifest, &CapabilityOptions::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let variants = manifest.functions.iter().flat_map(|f| {
        f.variants()
            .into_iter()
            .enumerate()
            .map(move |(v, variant)| (variant, f.version_name(v).to_string()))
    });
    for (f, version) in variants {
        let f = &f;
        if !f.component.exists() {
            problems.push(super::missing_component(f));
            continue;
        }
        let grants = match capabilities.as_ref().map(|c| c.grants(f)).transpose() {
            Ok(grants) => grants.unwrap_or_default(),
            Err(e) => {
                problems.push(format!("function `{}`: {e}", f.name));
                continue;
            }
        };
        match engine.load(f, grants) {
            Ok(function) => {
                warnings.extend(
                    import_warnings(f, &function)
                        .into_iter()
                        .map(|w| format!("function `{}`: {w}", f.name)),
                );
                let version = if version.is_empty() {
                    String::new()
                } else {
                    format!(" (version {version})")
                };
                let wasi = match function.wasi() {
                    crate::engine::Wasi::P2 => "WASI 0.2",
                    crate::engine::Wasi::P3 => "WASI 0.3, instances serve many at once",
                };
                println!(
                    "ok  {}{version}  {}  ({wasi}: {})",
                    f.name,
                    what_it_serves(f),
                    function.abis().join(", ")
                );
            }
            Err(e) => problems.push(format!("function `{}`: {e}", f.name)),
        }
    }
    // The image is the operator's to choose at render time; any name checks the rest.
    if let Err(e) = crate::knative::render(&manifest, "wasmfn-check.invalid/image") {
        problems.push(format!("the Knative render: {e}"));
    }
    warnings.extend(crate::knative::warnings(&manifest));
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        bail!(
            "{}: {} problem{} that `wasmfn serve` would refuse",
            args.manifest.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    println!(
        "{}: {} function{} ready to serve{}",
        args.manifest.display(),
        manifest.functions.len(),
        if manifest.functions.len() == 1 {
            ""
        } else {
            "s"
        },
        match warnings.len() {
            0 => String::new(),
            1 => ", 1 warning".to_string(),
            n => format!(", {n} warnings"),
        }
    );
    Ok(())
}

fn what_it_serves(f: &FunctionSpec) -> String {
    let mut parts = Vec::new();
    if !f.routes.is_empty() {
        parts.push(
            f.routes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !f.events.is_empty() {
        parts.push(format!(
            "{} event subscription{}",
            f.events.len(),
            if f.events.len() == 1 { "" } else { "s" }
        ));
    }
    if !f.schedules.is_empty() {
        parts.push(format!("{} schedule(s)", f.schedules.len()));
    }
    if f.in_flow {
        parts.push("in a flow".to_string());
    }
    parts.join(", ")
}

/// What the component imports that its entry does not grant: the guest would link, and
/// then fail at its first use. (wasi:config is left out: a variable the entry does not
/// set reads as absent, which guests commonly treat as "use the default".)
fn import_warnings(f: &FunctionSpec, function: &Function) -> Vec<String> {
    // A component built against Spin's whole world imports every interface, used or not:
    // an import says nothing of what it uses.
    let whole_world = !function.unserved().is_empty();
    let imports =
        |prefix: &str| !whole_world && function.imports().iter().any(|i| i.starts_with(prefix));
    let mut warnings = Vec::new();
    if imports("wasi:http/outgoing-handler") && f.allowed_outbound_hosts.is_empty() {
        warnings.push(
            "its component imports outgoing HTTP but the entry allows no host, so every outbound request will be refused; add allowed_outbound_hosts = [\"https://api.example.com\"]".to_string(),
        );
    }
    if imports("wasi:keyvalue/") && f.key_value_stores.is_empty() {
        warnings.push(
            "its component imports wasi:keyvalue but the entry grants no store, so opening one will fail; add key_value_stores = [\"default\"]".to_string(),
        );
    }
    if (imports("spin:sqlite/") || imports("fermyon:spin/sqlite")) && f.sqlite_databases.is_empty()
    {
        warnings.push(
            "its component imports Spin's SQLite interface but the entry grants no database, so opening one will fail; add sqlite_databases = [\"default\"]".to_string(),
        );
    }
    if !function.unserved().is_empty() {
        warnings.push(format!(
            "its component imports interfaces this host does not serve: {}; it loads, and a call to one fails with that interface's error (Spin's SDKs import every interface of Spin's world, used or not)",
            function.unserved().join(", ")
        ));
    }
    if function.handles_events() && !f.takes_events() && f.routes.is_empty() {
        warnings.push(
            "its component handles events but the entry subscribes to none; add events = [{ type = \"...\" }]".to_string(),
        );
    }
    warnings
}
