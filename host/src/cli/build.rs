//! `wasmfn build [NAMES]`: runs the `build` commands of the manifest's functions, one after
//! another, saying what it builds; a failure prints the compiler's own output.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::manifest::{FunctionSpec, Manifest};

#[derive(Debug, Args)]
pub(super) struct BuildArgs {
    /// The manifest.
    #[arg(long, short, env = "WASMFN_MANIFEST", default_value = "wasmfn.toml")]
    manifest: PathBuf,
    /// Build only these functions (all with a `build` command when none are named).
    names: Vec<String>,
}

/// A build that failed: the command's own output, to show as it is.
pub(super) struct BuildFailed {
    pub(super) function: String,
    pub(super) command: String,
    pub(super) output: String,
}

impl std::fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "building `{}` failed (`{}`):\n{}",
            self.function,
            self.command,
            self.output.trim_end()
        )
    }
}

pub(super) fn run(args: BuildArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    for name in &args.names {
        match manifest.functions.iter().find(|f| &f.name == name) {
            None => bail!("{}: there is no function `{name}`", args.manifest.display()),
            Some(f) if f.build.is_none() => bail!(
                "{}: function `{name}` has no `build` command; add build = {{ command = \"...\" }} to its entry",
                args.manifest.display()
            ),
            Some(_) => {}
        }
    }
    let targets: Vec<&FunctionSpec> = manifest
        .functions
        .iter()
        .filter(|f| f.build.is_some())
        .filter(|f| args.names.is_empty() || args.names.contains(&f.name))
        .collect();
    if targets.is_empty() {
        eprintln!(
            "nothing to build: no function of {} has a `build` command",
            args.manifest.display()
        );
        return Ok(());
    }
    let started = Instant::now();
    for f in &targets {
        if let Err(failed) = build(f) {
            bail!(
                "{failed}\n\nFix it and run `wasmfn build {}` again.",
                f.name
            );
        }
    }
    eprintln!(
        "built {} function{} in {:.1}s",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `f`'s build command in its directory, saying so on stderr; its output is shown
/// only when it fails (at a terminal, the compiler's progress would drown what matters).
pub(super) fn build(f: &FunctionSpec) -> Result<Duration, BuildFailed> {
    let build = f
        .build
        .as_ref()
        .expect("only functions with a build command");
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    if tty {
        eprint!("  building {} … ", f.name);
    } else {
        eprintln!("  building {} ({})", f.name, build.command);
    }
    let output = Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&build.workdir)
        .output();
    let failed = |output: String| BuildFailed {
        function: f.name.clone(),
        command: build.command.clone(),
        output,
    };
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            if tty {
                eprintln!("failed");
            }
            return Err(failed(format!(
                "cannot run it in {}: {e}",
                build.workdir.display()
            )));
        }
    };
    if !output.status.success() {
        if tty {
            eprintln!("failed");
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(failed(text));
    }
    let elapsed = started.elapsed();
    if tty {
        eprintln!("done in {:.1}s", elapsed.as_secs_f64());
    } else {
        eprintln!("  built {} in {:.1}s", f.name, elapsed.as_secs_f64());
    }
    Ok(elapsed)
}
