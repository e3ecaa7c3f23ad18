//! The on-disk compile cache: `.wasm` components compiled once, stored by content digest
//! and engine fingerprint, and memory-mapped on later starts.

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
    pub(crate) fn entry_for(&self, wasm: &[u8], fingerprint: u64) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let name = format!("{}-{fingerprint:016x}.cwasm", hex(&digest));
        self.dir.join(name)
    }

    /// Whether `entry` was compiled by `engine` (by its name; the host runs two engines).
    pub(crate) fn made_by(&self, entry: &Path, fingerprint: u64) -> bool {
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".cwasm"))
            .is_some_and(|n| n.ends_with(&format!("-{fingerprint:016x}")))
    }

    /// The entry last stored for the file at `path` as it is now (same path, length and
    /// modification time; the path relative to the cache's parent directory where it lies
    /// under it), found without reading the file: hashing an 18 MB component
    /// costs a start-up more than mapping its compiled form. `None` if the file changed
    /// or was never indexed; then the caller reads and hashes it.
    pub(crate) fn indexed_entry(&self, path: &Path, fingerprint: u64) -> Option<PathBuf> {
        let name = std::fs::read_to_string(self.index_for(path, fingerprint)?).ok()?;
        let entry = self.dir.join(name.trim());
        // Only names this cache writes; never a path out of it.
        (entry.parent() == Some(self.dir.as_path()) && entry.is_file()).then_some(entry)
    }

    /// Remembers that the file at `path`, as it is now, compiles to `entry`.
    pub(crate) fn index(&self, path: &Path, fingerprint: u64, entry: &Path) {
        let (Some(index), Some(name)) = (self.index_for(path, fingerprint), entry.file_name())
        else {
            return;
        };
        // An index that cannot be written costs the next start a hash, nothing more.
        let _ = self.store(&index, name.as_encoded_bytes());
    }

    fn index_for(&self, path: &Path, fingerprint: u64) -> Option<PathBuf> {
        let path = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        // Relative to the directory holding the cache where the component lives under it:
        // an image build fills `<ctx>/app/cache` for `<ctx>/app/...` and the image serves
        // `/app/...`, and copying keeps lengths and modification times.
        let home = std::fs::canonicalize(&self.dir)
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf));
        let key_path = home
            .and_then(|home| path.strip_prefix(home).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| path.clone());
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let mut key = Sha256::new();
        key.update(key_path.as_os_str().as_encoded_bytes());
        key.update(meta.len().to_le_bytes());
        key.update(modified.as_nanos().to_le_bytes());
        key.update(fingerprint.to_le_bytes());
        Some(self.dir.join(format!("{}.index", hex(&key.finalize()))))
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
