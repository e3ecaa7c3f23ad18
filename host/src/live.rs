//! The app a server serves, replaced while it serves. A reload (SIGHUP to `wasmfn serve`,
//! or `wasmfn dev` after a rebuild or a manifest change) loads the manifest into a new app
//! beside the running one and swaps it in: requests in flight finish on the app they
//! started on, new ones get the new one, and nothing waits on a lock. A manifest or a
//! component that does not load leaves the running app serving, and says why.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use arc_swap::ArcSwap;

use crate::events::schedule::Scheduler;
use crate::manifest::{Manifest, ManifestError, ManifestFiles, Selection};
use crate::server::{App, AppLoadError};

/// Why a reload left the running app in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The manifest does not parse or validate.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A function or capability does not load.
    #[error(transparent)]
    Load(#[from] AppLoadError),
}

/// The running app, and how to load the next one.
pub struct LiveApp {
    current: ArcSwap<App>,
    manifest: ManifestFiles,
    /// What of the manifest this host serves (`--functions`, `--pin-versions`).
    selected: Selection,
    /// The running app's schedule tasks, when this host fires schedules.
    schedules: Mutex<Option<Scheduler>>,
    fire_schedules: bool,
}

impl LiveApp {
    /// Serves `app`, loaded from the manifest at `manifest` (with `selected` functions);
    /// fires its schedules when `fire_schedules`. Needs a tokio runtime.
    pub fn new(
        app: Arc<App>,
        manifest: ManifestFiles,
        selected: Selection,
        fire_schedules: bool,
    ) -> Arc<Self> {
        let schedules = fire_schedules.then(|| app.start_schedules());
        Arc::new(Self {
            current: ArcSwap::new(app),
            manifest,
            selected,
            schedules: Mutex::new(schedules),
            fire_schedules,
        })
    }

    /// The app to answer the next request with.
    pub fn app(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// The manifest the app was loaded from.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest.path
    }

    /// Reads the manifest again (with its runtime configuration, for a Spin app).
    pub fn load_manifest(&self) -> Result<Manifest, ManifestError> {
        self.manifest.load()
    }

    /// Reads the manifest again and swaps in the app it describes; the running app stays
    /// if anything fails. Returns the new manifest.
    pub fn reload(&self) -> Result<Manifest, ReloadError> {
        let manifest = self.selected.apply(self.manifest.load()?)?;
        let next = self.app().reloaded(&manifest)?;
        // The schedules follow the app: the old tasks stop as the new ones start.
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        *schedules = self.fire_schedules.then(|| next.start_schedules());
        self.current.store(next);
        Ok(manifest)
    }
}
