//! A function's `files`: files of the host its guest may read through `wasi:filesystem`,
//! as Spin's `files` gives them (its static file server relies on them). Each entry is a
//! path or glob relative to the manifest (`"static/**"`: the matching files, at the same
//! relative paths), or `{ source = "assets", destination = "/" }` (a file or directory, at
//! that absolute path); `exclude_files` globs (relative to the manifest, like the sources)
//! take files back out of either. Read-only, and checked
//! here only for form: the host gathers them when it loads the function.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{Ctx, ManifestError};

/// One entry of `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMount {
    /// The files under `base` whose path relative to it matches `pattern`, at that path.
    Glob {
        /// The manifest's directory.
        base: PathBuf,
        /// A glob (a plain relative path is one that matches itself).
        pattern: String,
    },
    /// A file or directory, at `destination` in the guest.
    Copy {
        /// The manifest's directory.
        base: PathBuf,
        /// Relative to `base`.
        source: PathBuf,
        /// Absolute, in the guest's file system.
        destination: String,
    },
}

/// A function's `files` and `exclude_files`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// What the guest sees.
    pub mounts: Vec<FileMount>,
    /// Globs, relative to the manifest's directory, of files to leave out.
    pub exclude: Vec<String>,
}

impl Files {
    /// Whether the guest sees no file at all.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }
}

pub(super) fn parse(
    ctx: &Ctx<'_>,
    files: &[Spanned<toml::Value>],
    exclude: &[Spanned<String>],
    base: &Path,
) -> Result<Files, ManifestError> {
    let bad = |span: Range<usize>, why: String| ctx.error(span, format!("`files`: {why}"));
    let mut mounts = Vec::with_capacity(files.len());
    for entry in files {
        let mount = match entry.get_ref() {
            toml::Value::String(pattern) => {
                relative(pattern).map_err(|why| bad(entry.span(), why))?;
                globset::Glob::new(pattern).map_err(|e| bad(entry.span(), e.to_string()))?;
                FileMount::Glob {
                    base: base.to_path_buf(),
                    pattern: pattern.clone(),
                }
            }
            toml::Value::Table(t) => {
                let (Some(toml::Value::String(source)), Some(toml::Value::String(destination))) =
                    (t.get("source"), t.get("destination"))
                else {
                    return Err(bad(
                        entry.span(),
                        "a table entry is { source = \"dir or file\", destination = \"/absolute/path\" }".to_string(),
                    ));
                };
                if t.len() != 2 {
                    return Err(bad(
                        entry.span(),
                        "a table entry has only `source` and `destination`".to_string(),
                    ));
                }
                relative(source).map_err(|why| bad(entry.span(), why))?;
                if !destination.starts_with('/') || destination.split('/').any(|s| s == "..") {
                    return Err(bad(
                        entry.span(),
                        format!(
                            "destination {destination:?} must be an absolute path without `..`"
                        ),
                    ));
                }
                FileMount::Copy {
                    base: base.to_path_buf(),
                    source: PathBuf::from(source),
                    destination: destination.clone(),
                }
            }
            other => {
                return Err(bad(
                    entry.span(),
                    format!(
                        "an entry is a path or glob, or a {{ source, destination }} table, got {}",
                        other.type_str()
                    ),
                ));
            }
        };
        mounts.push(mount);
    }
    for pattern in exclude {
        globset::Glob::new(pattern.get_ref())
            .map_err(|e| ctx.error(pattern.span(), format!("`exclude_files`: {e}")))?;
    }
    Ok(Files {
        mounts,
        exclude: exclude.iter().map(|p| p.get_ref().clone()).collect(),
    })
}

/// A path that stays inside the manifest's directory.
fn relative(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.split('/').any(|s| s == "..") {
        return Err(format!(
            "{path:?} must be relative to the manifest, without `..`"
        ));
    }
    Ok(())
}
