//! An on-disk cache of compiled components, keyed by the sha256 of the
//! component and by the engine's compatibility hash, so each component is
//! compiled once (about 40 ms) and later loads take about 0.3 ms.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache folder: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("components"))
}

/// Components above this size get a log line when they are compiled: a
/// CPython one (18 MB) takes seconds, a Rust one tens of milliseconds.
const LARGE_COMPONENT: usize = 4 << 20;

/// Compiles a component, saying so in the log when it is large enough to
/// take a while.
pub(crate) fn compile(engine: &Engine, bytes: &[u8], origin: &str) -> wasmtime::Result<Component> {
    if bytes.len() < LARGE_COMPONENT {
        return Component::new(engine, bytes);
    }
    tracing::info!(
        "compiling {origin} ({} MiB) for this machine; this takes seconds, once",
        bytes.len() >> 20
    );
    let started = std::time::Instant::now();
    let component = Component::new(engine, bytes)?;
    tracing::info!("compiled {origin} in {:.1?}", started.elapsed());
    Ok(component)
}

/// Compiled components on disk.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ComponentCache {
    pub(crate) fn new(engine: &Engine, dir: PathBuf) -> Self {
        // A compiled artifact is only valid for an engine with the same
        // settings and version: fold that into the file name.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache { dir, engine_tag: format!("{:016x}", hasher.finish()) }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag))
    }

    /// The component, from the cache when it is there, else compiled and
    /// stored. A cache that cannot be read or written only costs time.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
        origin: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.path(sha256);
        if path.is_file() {
            // SAFETY: the file is one this cache wrote from
            // `Component::serialize` for an engine with the same
            // compatibility hash, in a folder owned by the user running
            // weir; wasmtime checks its header before using it.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("ignoring unreadable cached component {}: {e}", path.display()),
            }
        }
        let component = compile(engine, bytes, origin)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!("cannot cache compiled component in {}: {e}", self.dir.display());
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let serialized = component.serialize().map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&self.dir)?;
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
