//! What the host offers guests beyond their request, opened once at start: the key-value
//! stores and SQLite databases some function is granted, the outbound HTTP client when
//! some function may call out, and the host's Redis connections.
//! [`Capabilities::grants`] resolves one function's share (its variables' values too),
//! which the engine keeps with the loaded function.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::databases::{postgres, redis, sqlite};
use crate::engine::{Grants, KeyValueGrant, SqliteGrant};
use crate::keyvalue::{OpenError, Stores};
use crate::manifest::files::{FileMount, Files};
use crate::manifest::variables::VariableError;
use crate::manifest::{FunctionSpec, Manifest};
use crate::outbound::{CaFileError, Client};

/// Where capabilities keep and find what they need, from the command line.
#[derive(Debug, Clone, Default)]
pub struct CapabilityOptions {
    /// Where embedded stores keep their files; `.wasmfn/data` beside the manifest if unset.
    pub data_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) outbound HTTPS trusts beside the web PKI roots.
    pub ca_file: Option<PathBuf>,
}

/// A capability that could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// A key-value store.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// A SQLite database.
    #[error(transparent)]
    Database(#[from] sqlite::OpenError),
    /// The extra CA file.
    #[error(transparent)]
    CaFile(#[from] CaFileError),
}

/// A function's variable that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("variable `{name}`: {error}")]
pub struct UnresolvedVariable {
    /// The variable.
    pub name: String,
    /// Why.
    pub error: VariableError,
}

/// Why a function's grants could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// One of its variables.
    #[error(transparent)]
    Variable(#[from] UnresolvedVariable),
    /// Its `files`.
    #[error("`files`: {0}")]
    Files(String),
}

/// The stores and the client, shared by every function.
pub struct Capabilities {
    stores: Stores,
    declared: Arc<[String]>,
    databases: sqlite::Databases,
    declared_databases: Arc<[String]>,
    client: Option<Client>,
    redis: redis::Connections,
    postgres: Option<postgres::Pools>,
}

impl Capabilities {
    /// Opens what `manifest`'s functions are granted.
    pub fn open(manifest: &Manifest, options: &CapabilityOptions) -> Result<Self, CapabilityError> {
        Self::none().reopen(manifest, options)
    }

    /// [`Capabilities::open`] for a reload: the stores whose declaration did not change,
    /// and the outbound client, are kept.
    pub fn reopen(
        &self,
        manifest: &Manifest,
        options: &CapabilityOptions,
    ) -> Result<Self, CapabilityError> {
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| crate::keyvalue::default_data_dir(&manifest.path));
        let stores = self.stores.reopen(manifest, &data_dir)?;
        let databases = self.databases.reopen(manifest, &data_dir)?;
        let wanted = manifest
            .functions
            .iter()
            .any(|f| !f.allowed_outbound_hosts.is_empty());
        let client = match &self.client {
            Some(client) if wanted => Some(client.clone()),
            _ if wanted => Some(Client::new(options.ca_file.as_deref())?),
            _ => None,
        };
        // The pools outlive a reload, as the client does: they go with it.
        let postgres = match (&self.postgres, &client) {
            (Some(pools), Some(_)) => Some(pools.clone()),
            (None, Some(client)) => Some(postgres::Pools::new(client.tls())),
            _ => None,
        };
        Ok(Self {
            stores,
            declared: manifest.key_value.iter().map(|s| s.label.clone()).collect(),
            databases,
            declared_databases: manifest.sqlite.iter().map(|s| s.label.clone()).collect(),
            client,
            redis: self.redis.clone(),
            postgres,
        })
    }

    /// Every open key-value store's label and whether it answered its last operation.
    pub fn store_health(&self) -> Vec<(String, bool)> {
        self.stores.health()
    }

    /// Nothing: no stores, no outbound client.
    pub fn none() -> Self {
        Self {
            stores: Stores::default(),
            declared: Arc::new([]),
            databases: sqlite::Databases::default(),
            declared_databases: Arc::new([]),
            client: None,
            redis: redis::Connections::default(),
            postgres: None,
        }
    }

    /// What `spec`'s guest may reach, its variables resolved now.
    pub fn grants(&self, spec: &FunctionSpec) -> Result<Grants, GrantError> {
        let variables = spec
            .variables
            .iter()
            .map(|(name, variable)| {
                variable
                    .resolve()
                    .map(|value| (name.clone(), value))
                    .map_err(|error| UnresolvedVariable {
                        name: name.clone(),
                        error,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Grants {
            files: stage_files(&spec.files).map_err(GrantError::Files)?,
            variables,
            key_value: KeyValueGrant {
                stores: spec
                    .key_value_stores
                    .iter()
                    .filter_map(|label| self.stores.get(label).cloned())
                    .collect(),
                declared: self.declared.clone(),
            },
            sqlite: SqliteGrant {
                databases: spec
                    .sqlite_databases
                    .iter()
                    .filter_map(|label| self.databases.get(label).cloned())
                    .collect(),
                declared: self.declared_databases.clone(),
            },
            outbound: self
                .client
                .clone()
                .filter(|_| !spec.allowed_outbound_hosts.is_empty()),
            redis: self.redis.clone(),
            postgres: self.postgres.clone(),
        })
    }
}

/// Gathers a function's `files` into a directory of their own, which its guest sees
/// read-only as `/`: hard links where the file system allows (a start does not copy a large
/// site), copies where not. None when it has no files.
fn stage_files(files: &Files) -> Result<Option<Arc<tempfile::TempDir>>, String> {
    if files.is_empty() {
        return Ok(None);
    }
    let list = file_list(files)?;
    let staged = tempfile::Builder::new()
        .prefix("wasmfn-files-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory for them: {e}"))?;
    for (from, to) in list {
        let target = staged.path().join(to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::hard_link(&from, &target)
            .or_else(|_| std::fs::copy(&from, &target).map(drop))
            .map_err(|e| format!("{}: {e}", from.display()))?;
    }
    Ok(Some(Arc::new(staged)))
}

/// Every file a function's `files` gives its guest: where it is on the host, and where the
/// guest sees it (relative to its `/`). `deploy stage` copies the same files into the image.
pub fn file_list(files: &Files) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let glob_set = |patterns: &mut dyn Iterator<Item = &String>| {
        let mut set = globset::GlobSetBuilder::new();
        for p in patterns {
            set.add(globset::Glob::new(p).map_err(|e| e.to_string())?);
        }
        set.build().map_err(|e| e.to_string())
    };
    let exclude = glob_set(&mut files.exclude.iter())?;
    let mut list = Vec::new();
    for mount in &files.mounts {
        match mount {
            FileMount::Glob { base, pattern } => {
                let matcher = glob_set(&mut std::iter::once(pattern))?;
                for rel in files_under(base)? {
                    if matcher.is_match(&rel) && !exclude.is_match(&rel) {
                        list.push((base.join(&rel), rel));
                    }
                }
            }
            FileMount::Copy {
                base,
                source,
                destination,
            } => {
                let to = Path::new(destination.trim_start_matches('/'));
                let from = base.join(source);
                if from.is_dir() {
                    for rel in files_under(&from)? {
                        if !exclude.is_match(source.join(&rel)) {
                            list.push((from.join(&rel), to.join(&rel)));
                        }
                    }
                } else if from.is_file() {
                    list.push((from, to.to_path_buf()));
                } else {
                    return Err(format!("{} does not exist", from.display()));
                }
            }
        }
    }
    Ok(list)
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    // A manifest named without a directory has the empty path as its directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let entries = std::fs::read_dir(dir.join(&rel))
            .map_err(|e| format!("{}: {e}", dir.join(&rel).display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    Ok(out)
}
