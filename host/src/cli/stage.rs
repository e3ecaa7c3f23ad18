//! `wasmfn deploy stage`: lays out what the host image needs to serve a manifest, as the
//! image holds it: the manifest at `/app/wasmfn.toml` (a `spin.toml` too: it is told apart
//! by its content), Spin's runtime configuration at `/app/runtime-config.toml`, and every
//! component and `files` source at the path the manifest names, read from `/app`. The
//! manifest is never rewritten: a path that climbs out of its directory
//! (`../../target/app.wasm`) lands where the image resolves it (`/target/app.wasm`).
//! `deploy/build-image.sh` stages with it, so what goes into the image is decided by the
//! same manifest reader that serves it.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::knative::{IMAGE_MANIFEST, IMAGE_RUNTIME_CONFIG};
use crate::manifest::Manifest;

#[derive(Debug, Args)]
pub(super) struct StageArgs {
    /// The manifest to stage (`wasmfn.toml` or `spin.toml`).
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// For a spin.toml: Spin's runtime configuration file, staged beside it.
    #[arg(long, env = "WASMFN_RUNTIME_CONFIG_FILE", value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// The directory to stage into: it becomes the image's root.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub(super) fn run(args: StageArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load_with_runtime_config(
        &args.manifest,
        None,
        args.runtime_config_file.as_deref(),
    )?;
    let dir = args.manifest.parent().unwrap_or(Path::new(""));
    let mut staged = Stage {
        out: &args.out,
        count: 0,
    };
    staged.copy(&args.manifest, Path::new(IMAGE_MANIFEST))?;
    if let Some(config) = &args.runtime_config_file {
        staged.copy(config, Path::new(IMAGE_RUNTIME_CONFIG))?;
    }
    let image_dir = Path::new(IMAGE_MANIFEST).parent().unwrap_or(Path::new("/"));
    for f in manifest.functions.iter().flat_map(|f| f.variants()) {
        let at = in_image(image_dir, dir, &f.component);
        staged
            .copy(&f.component, &at)
            .with_context(|| format!("{}: function `{}`", f.component_at, f.name))?;
        let files = crate::capabilities::file_list(&f.files)
            .map_err(|e| anyhow::anyhow!("function `{}`'s files: {e}", f.name))?;
        for (from, _) in files {
            staged.copy(&from, &in_image(image_dir, dir, &from))?;
        }
    }
    eprintln!("staged {} files into {}", staged.count, args.out.display());
    Ok(())
}

struct Stage<'a> {
    out: &'a Path,
    count: usize,
}

impl Stage<'_> {
    /// Copies `from` to `at` (an absolute path in the image) under the staging directory.
    fn copy(&mut self, from: &Path, at: &Path) -> anyhow::Result<()> {
        let to = self.out.join(at.strip_prefix("/").unwrap_or(at));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        self.count += 1;
        Ok(())
    }
}

/// Where the image holds `path`, a path the manifest in `dir` names (joined to `dir`), with
/// the manifest at `image_dir`: the same path from there, `..` resolved as the kernel
/// resolves it (`/..` is `/`).
fn in_image(image_dir: &Path, dir: &Path, path: &Path) -> PathBuf {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let mut out = PathBuf::from("/");
    for part in image_dir.join(relative).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_lands_where_the_image_resolves_it_from_the_manifest() {
        let app = Path::new("/app");
        let dir = Path::new("guests/examples/spin-hello");
        for (path, image) in [
            (
                "guests/examples/spin-hello/static/a.txt",
                "/app/static/a.txt",
            ),
            (
                "guests/examples/spin-hello/../../target/wasm32-wasip2/release/spin_hello.wasm",
                "/target/wasm32-wasip2/release/spin_hello.wasm",
            ),
            ("guests/examples/spin-hello/./x/../y.wasm", "/app/y.wasm"),
            ("/abs/c.wasm", "/abs/c.wasm"),
        ] {
            assert_eq!(
                in_image(app, dir, Path::new(path)),
                Path::new(image),
                "{path}"
            );
        }
        // A manifest named without a directory.
        assert_eq!(
            in_image(app, Path::new(""), Path::new("target/a.wasm")),
            Path::new("/app/target/a.wasm")
        );
    }
}
