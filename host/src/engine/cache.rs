//! The on-disk compile cache: `.wasm` components compiled once, stored by content digest
//! and engine fingerprint, and memory-mapped on later starts.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CacheDir {
    dir: PathBuf,
}

impl CacheDir {
    /// Uses `dir`, creating it if needed.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The user's cache directory (`$XDG_CACHE_HOME/wasmfn` or `~/.cache/wasmfn`), or
    /// `/tmp/wasmfn-cache` where that cannot be created (a read-only root filesystem, as
    /// Knative allows). `None` if neither is writable: then nothing is cached.
    pub fn default_location() -> Option<Self> {
        let candidates = dirs::cache_dir()
            .map(|d| d.join("wasmfn"))
            .into_iter()
            .chain([std::env::temp_dir().join("wasmfn-cache")]);
        for dir in candidates {
            if let Ok(cache) = Self::new(&dir)
                && is_writable(&cache.dir)
            {
                return Some(cache);
            }
        }
        None
    }

    /// Where the compiled form of `wasm` lives for `engine`. The name carries both the
    /// content digest and the engine's compatibility hash, so a host with another wasmtime
    /// version or configuration never picks up an entry it cannot use.
    pub(crate) fn entry_for(&self, wasm: &[u8], engine: &wasmtime::Engine) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let name = format!("{}-{:016x}.cwasm", hex(&digest), hasher.finish());
        self.dir.join(name)
    }

    /// Writes an entry atomically, so a concurrent start never maps a half-written file.
    pub(crate) fn store(&self, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        // Readable by everyone (temp files start as 0600): a cache filled while building an
        // image is read at run time by another, non-root user. Compiled code is no secret.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.write_all(bytes)?;
        tmp.persist(entry).map_err(|e| e.error)?;
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

fn is_writable(dir: &Path) -> bool {
    tempfile::NamedTempFile::new_in(dir).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
