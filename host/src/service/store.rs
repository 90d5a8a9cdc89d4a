//! The host's plugin store: uploaded components, content-addressed by
//! sha256 under `<data>/plugins/`, named `name@version` from what their
//! `describe` says, with an index (`index.json`) that survives restarts.

use super::ServiceError;
use super::names::{check_name, check_version, newer};
use crate::plugin::{Plugin, PluginEngine};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One stored plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlugin {
    /// Its name, from `describe`.
    pub name: String,
    /// Its version, from `describe`.
    pub version: String,
    /// `window-function`, `aggregate-function` or `map-function`.
    pub world: String,
    /// The contract version it was built against (`0.2.0`).
    pub contract: String,
    /// The state version its aggregate state (if any) is at.
    pub state_version: u32,
    /// The sha256 of its bytes, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded, in ms since the Unix epoch.
    pub uploaded_ms: i64,
}

impl StoredPlugin {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// A new plugin was stored.
    Stored,
    /// The same bytes were already stored under this name.
    AlreadyStored,
}

/// The store: a folder and its index, kept in memory too.
pub struct PluginStore {
    dir: PathBuf,
    plugins: Vec<StoredPlugin>,
}

impl PluginStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<PluginStore, ServiceError> {
        std::fs::create_dir_all(dir).map_err(|e| ServiceError::io("create the plugin store", dir, e))?;
        let index = dir.join("index.json");
        let plugins = match std::fs::read(&index) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ServiceError::Internal(format!("the plugin index {} is damaged: {e}", index.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ServiceError::io("read the plugin index", &index, e)),
        };
        Ok(PluginStore { dir: dir.to_path_buf(), plugins })
    }

    /// Every stored plugin, by name then version.
    pub fn list(&self) -> Vec<StoredPlugin> {
        let mut list = self.plugins.clone();
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| newer(&a.version, &b.version).reverse()));
        list
    }

    /// Where a stored plugin's bytes are.
    pub fn path_of(&self, plugin: &StoredPlugin) -> PathBuf {
        self.dir.join(format!("{}.wasm", plugin.sha256))
    }

    /// What a job's `plugin = "…"` names in the store: `name@version`, or
    /// `name` for its newest version. `None` when the store has no such
    /// plugin (a bare name may still be a built-in). A reference that is no
    /// valid name is refused.
    pub fn resolve(&self, reference: &str) -> Result<Option<StoredPlugin>, ServiceError> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference, None),
        };
        check_name("plugin", name)?;
        if let Some(version) = version {
            check_version("plugin version", version)?;
        }
        let mut matching = self.plugins.iter().filter(|p| p.name == name);
        Ok(match version {
            Some(v) => matching.find(|p| p.version == v).cloned(),
            None => matching.max_by(|a, b| newer(&a.version, &b.version)).cloned(),
        })
    }

    /// Validates `bytes` as a component (as a job would load it) and stores
    /// it. The same `name@version` with other bytes is refused: a version
    /// names one build.
    pub fn upload(
        &mut self,
        engine: &PluginEngine,
        bytes: &[u8],
    ) -> Result<(StoredPlugin, Uploaded), ServiceError> {
        let plugin: Plugin = engine
            .load(bytes, "the uploaded component")
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let d = plugin.descriptor();
        check_name("the plugin's name (from describe)", &d.name)?;
        check_version("the plugin's version (from describe)", &d.version)?;
        let stored = StoredPlugin {
            name: d.name.clone(),
            version: d.version.clone(),
            world: d.kind.to_string(),
            contract: plugin.contract_version().to_string(),
            state_version: d.state_version,
            sha256: plugin.sha256().to_string(),
            size: bytes.len() as u64,
            uploaded_ms: crate::time::now_ms(),
        };
        if let Some(existing) =
            self.plugins.iter().find(|p| p.name == stored.name && p.version == stored.version)
        {
            if existing.sha256 == stored.sha256 {
                return Ok((existing.clone(), Uploaded::AlreadyStored));
            }
            return Err(ServiceError::Conflict(format!(
                "{} is already stored with other bytes (sha256 {}): give the new build another version",
                existing.reference(),
                existing.sha256
            )));
        }
        let path = self.path_of(&stored);
        write_atomically(&path, bytes)?;
        self.plugins.push(stored.clone());
        if let Err(e) = self.save() {
            self.plugins.pop();
            return Err(e);
        }
        Ok((stored, Uploaded::Stored))
    }

    /// Removes `name@version` (the caller checks that no job uses it).
    pub fn delete(&mut self, plugin: &StoredPlugin) -> Result<(), ServiceError> {
        let Some(at) = self.plugins.iter().position(|p| p == plugin) else {
            return Err(ServiceError::NotFound(format!("no plugin {}", plugin.reference())));
        };
        let removed = self.plugins.remove(at);
        if let Err(e) = self.save() {
            self.plugins.insert(at, removed);
            return Err(e);
        }
        // The bytes go unless another name shares them.
        if !self.plugins.iter().any(|p| p.sha256 == removed.sha256) {
            let path = self.path_of(&removed);
            std::fs::remove_file(&path).map_err(|e| ServiceError::io("remove", &path, e))?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), ServiceError> {
        let text = serde_json::to_vec_pretty(&self.plugins)
            .map_err(|e| ServiceError::Internal(format!("cannot encode the plugin index: {e}")))?;
        write_atomically(&self.dir.join("index.json"), &text)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// a crash leaves the old file or the new one, never half of one.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ServiceError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| ServiceError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ServiceError::io("write", path, e))
}
