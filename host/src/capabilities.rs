//! What the host offers guests beyond their request, opened once at start: the key-value
//! stores some function is granted, and the outbound HTTP client when some function may
//! call out. [`Capabilities::grants`] resolves one function's share (its variables' values
//! too), which the engine keeps with the loaded function.

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{Grants, KeyValueGrant};
use crate::keyvalue::{OpenError, Stores};
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

/// The stores and the client, shared by every function.
pub struct Capabilities {
    stores: Stores,
    declared: Arc<[String]>,
    client: Option<Client>,
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
        let wanted = manifest
            .functions
            .iter()
            .any(|f| !f.allowed_outbound_hosts.is_empty());
        let client = match &self.client {
            Some(client) if wanted => Some(client.clone()),
            _ if wanted => Some(Client::new(options.ca_file.as_deref())?),
            _ => None,
        };
        Ok(Self {
            stores,
            declared: manifest.key_value.iter().map(|s| s.label.clone()).collect(),
            client,
        })
    }

    /// Nothing: no stores, no outbound client.
    pub fn none() -> Self {
        Self {
            stores: Stores::default(),
            declared: Arc::new([]),
            client: None,
        }
    }

    /// What `spec`'s guest may reach, its variables resolved now.
    pub fn grants(&self, spec: &FunctionSpec) -> Result<Grants, UnresolvedVariable> {
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
            variables,
            key_value: KeyValueGrant {
                stores: spec
                    .key_value_stores
                    .iter()
                    .filter_map(|label| self.stores.get(label).cloned())
                    .collect(),
                declared: self.declared.clone(),
            },
            outbound: self
                .client
                .clone()
                .filter(|_| !spec.allowed_outbound_hosts.is_empty()),
        })
    }
}
