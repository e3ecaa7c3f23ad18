//! `wasmfn dev`: build, serve and watch. A saved source file rebuilds the functions it
//! belongs to and swaps them in; a saved manifest reloads routes, limits and
//! subscriptions. Either way requests in flight finish on the version they started on
//! (crate::live), and a failed build or an invalid manifest keeps the previous version
//! serving, with the error printed for the person at the terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use globset::{Glob, GlobSetBuilder};
use notify::{RecursiveMode, Watcher};

use super::{ServeArgs, Started, build, run_server};
use crate::live::LiveApp;
use crate::manifest::{FunctionSpec, Manifest};

#[derive(Debug, Args)]
pub(super) struct DevArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

/// How long a burst of file events (an editor's save, a build's writes) is gathered
/// before acting on it once.
const SETTLE: Duration = Duration::from_millis(50);

pub(super) fn run(mut args: DevArgs) -> anyhow::Result<()> {
    // A developer's machine: this host only, unless told otherwise.
    if args.serve.listen.is_none() {
        let port = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(crate::manifest::deploy::DEFAULT_PORT);
        args.serve.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let manifest = args.serve.files().load()?;
    for f in manifest.functions.iter().filter(|f| f.build.is_some()) {
        if let Err(failed) = build::build(f) {
            // A component from an earlier build still serves; without one there is
            // nothing to serve until the source is fixed.
            if !f.component.exists() {
                anyhow::bail!("{failed}\n\nFix it and run `wasmfn dev` again.");
            }
            eprintln!(
                "{failed}\n\nServing `{}`'s previous build; fix the source and save to rebuild.",
                f.name
            );
        }
    }
    let started = Started::load(&args.serve, true)?;
    run_server(&args.serve, started, move |live, addr| {
        let runtime = tokio::runtime::Handle::current();
        let watching = start_watching(live, runtime)?;
        eprintln!(
            "wasmfn dev: serving {} function{} on http://{addr}; watching {}. Save a file to rebuild; Ctrl-C to stop.",
            manifest.functions.len(),
            if manifest.functions.len() == 1 {
                ""
            } else {
                "s"
            },
            watching
        );
        Ok(())
    })
}

/// What changed events mean for the running app.
struct Watch {
    live: Arc<LiveApp>,
    runtime: tokio::runtime::Handle,
    watcher: notify::RecommendedWatcher,
    /// What is watched, and whether recursively.
    watched: BTreeMap<PathBuf, bool>,
}

fn start_watching(live: Arc<LiveApp>, runtime: tokio::runtime::Handle) -> anyhow::Result<String> {
    // Each change with when it was seen, to tell what a build wrote from a later save.
    let (tx, rx) = mpsc::channel::<(Instant, PathBuf)>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let seen = Instant::now();
            for path in event.paths {
                let _ = tx.send((seen, path));
            }
        }
    })
    .context("cannot watch files")?;
    let mut watch = Watch {
        live,
        runtime,
        watcher,
        watched: BTreeMap::new(),
    };
    let manifest = watch.live.load_manifest()?;
    let watching = watch.update(&manifest)?;
    std::thread::Builder::new()
        .name("wasmfn-dev-watch".into())
        .spawn(move || {
            let mut carried = BTreeSet::new();
            loop {
                let mut changed = std::mem::take(&mut carried);
                if changed.is_empty() {
                    let Ok((_, first)) = rx.recv() else { return };
                    changed.insert(first);
                }
                let until = Instant::now() + SETTLE;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok((_, path)) => {
                            changed.insert(path);
                        }
                        Err(_) => break,
                    }
                }
                let built = watch.changed(&changed);
                // What the builds wrote while they ran is not a change to act on; a save
                // after they ended is (a person who saw the swap and saved again), and
                // dropping it would leave the old version serving until the next save.
                carried.extend(
                    rx.try_iter()
                        .filter(|(seen, _)| built.is_none_or(|ended| *seen > ended))
                        .map(|(_, path)| path),
                );
            }
        })?;
    Ok(watching)
}

impl Watch {
    /// Watches the manifest's directory and every function's build directory; returns
    /// them, for the person.
    fn update(&mut self, manifest: &Manifest) -> anyhow::Result<String> {
        let dir = manifest
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // Build directories are watched one level down, and below that only in
        // directories that are not build output: a recursive watch of `target/` would
        // hold thousands of inotify watches and churn through every build.
        let mut wanted = BTreeMap::from([(dir, false)]);
        for f in &manifest.functions {
            let Some(b) = &f.build else { continue };
            wanted.entry(b.workdir.clone()).or_insert(false);
            for entry in std::fs::read_dir(&b.workdir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() && !is_output(entry.file_name().as_os_str()) {
                    wanted.insert(path, true);
                }
            }
        }
        for (path, &recursive) in &wanted {
            let was = self.watched.get(path).copied();
            if was == Some(recursive) || was == Some(true) {
                continue;
            }
            if was.is_some() {
                let _ = self.watcher.unwatch(path);
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            self.watcher
                .watch(path, mode)
                .with_context(|| format!("cannot watch {}", path.display()))?;
            self.watched.insert(path.clone(), recursive);
        }
        Ok(manifest
            .functions
            .iter()
            .filter_map(|f| f.build.as_ref())
            .map(|b| b.workdir.display().to_string())
            .chain(std::iter::once(manifest.path.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Rebuilds and swaps in what `paths` call for; returns when the builds ended, if any
    /// ran (what changed before then may be their own output).
    fn changed(&mut self, paths: &BTreeSet<PathBuf>) -> Option<Instant> {
        let manifest_path = self.live.manifest_path().to_path_buf();
        let manifest_changed = paths.iter().any(|p| same_file(p, &manifest_path));
        let manifest = match self.live.load_manifest() {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "\nwasmfn dev: {e}\nThe previous version keeps serving; fix the manifest and save it."
                );
                return None;
            }
        };
        if let Err(e) = self.update(&manifest) {
            eprintln!("wasmfn dev: {e:#}");
        }
        // A function just added to the manifest (`wasmfn new` while dev runs) has nothing
        // built yet.
        let to_build: Vec<&FunctionSpec> = manifest
            .functions
            .iter()
            .filter(|f| {
                paths.iter().any(|p| touches(f, p))
                    || (manifest_changed && f.build.is_some() && !f.component.exists())
            })
            .collect();
        if !manifest_changed && to_build.is_empty() {
            return None;
        }
        let started = Instant::now();
        for f in &to_build {
            eprintln!("\nwasmfn dev: a source of `{}` changed", f.name);
            if let Err(failed) = build::build(f) {
                eprintln!("{failed}\n\nThe previous version keeps serving; fix it and save again.");
                return Some(Instant::now());
            }
        }
        let built = (!to_build.is_empty()).then(Instant::now);
        if manifest_changed {
            eprintln!("\nwasmfn dev: {} changed", manifest_path.display());
        }
        match self.runtime.block_on(super::reload(&self.live)) {
            Ok(()) => eprintln!(
                "wasmfn dev: swapped in after {:.1}s; new requests get the new version",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("wasmfn dev: {e}\nThe previous version keeps serving."),
        }
        built
    }
}

/// Whether a change to `path` calls for rebuilding `f`: it is under the build directory
/// and matches `watch`, or (without `watch`) is anything there but build output.
fn touches(f: &FunctionSpec, path: &Path) -> bool {
    let Some(build) = &f.build else {
        return false;
    };
    let workdir = build
        .workdir
        .canonicalize()
        .unwrap_or_else(|_| build.workdir.clone());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(relative) = path.strip_prefix(&workdir) else {
        return false;
    };
    if build.watch.is_empty() {
        let output = relative.components().any(|c| is_output(c.as_os_str()));
        let component = path
            == f.component
                .canonicalize()
                .unwrap_or_else(|_| f.component.clone());
        return !output
            && !component
            && path.extension().is_none_or(|e| e != "wasm" && e != "cwasm");
    }
    let mut set = GlobSetBuilder::new();
    for pattern in &build.watch {
        if let Ok(glob) = Glob::new(pattern) {
            set.add(glob);
        }
    }
    set.build().is_ok_and(|set| set.is_match(relative))
}

/// Directories that builds and tools write to, never sources.
fn is_output(name: &std::ffi::OsStr) -> bool {
    ["target", ".git", "__pycache__", "node_modules", ".wasmfn"]
        .iter()
        .any(|o| name == *o)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
