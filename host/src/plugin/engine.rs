//! The one wasmtime engine shared by every plugin: pooling allocation, epoch
//! interruption for wall-time deadlines, and the component cache.

use super::builtin::{builtin, builtin_names};
use super::cache::{ComponentCache, default_cache_dir, sha256_hex};
use super::error::LoadError;
use super::load::Plugin;
use super::store::StoreState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The most linear memory any plugin can be given; per-job limits are
/// checked against it.
pub const MAX_PLUGIN_MEMORY: usize = 1 << 30;

/// Bytes of a pooled memory or table that a freed slot keeps mapped and
/// zeroes by hand, instead of giving back to the kernel: the next instance
/// finds those bytes without page faults or an madvise call. 128 KiB holds
/// a bundled guest's 64 KiB stack, its data and its first heap pages (see
/// `toolchain::GUEST_RUSTFLAGS`); more only adds zeroing, which grows with
/// the size.
const KEEP_RESIDENT: usize = 1 << 17;

/// What each pool slot budgets for one component instance, so that every
/// slot can hold any guest: a Rust component is a handful of core
/// instances (the program and small adapter shims) with one memory and a
/// few tables; a componentize-py one (CPython, its libraries and shims) is
/// 14 core instances with one memory and two tables. The counts are
/// totals over the pool, so small guests leave room for large ones.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
/// See [`CORE_INSTANCES_PER_SLOT`].
const MEMORIES_PER_SLOT: u32 = 2;
/// See [`CORE_INSTANCES_PER_SLOT`].
const TABLES_PER_SLOT: u32 = 8;

/// Settings for the shared engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many plugin instances may be alive at once (pool slots).
    pub max_instances: u32,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_instances: 256, cache_dir: default_cache_dir() }
    }
}

/// What benchmarks turn off to measure what it saves (the `bench` feature;
/// a real engine always has both on).
#[cfg(feature = "bench")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchSwitches {
    /// Use the pooling allocator (fast instantiation).
    pub pooling: bool,
    /// Enforce call deadlines (wall time) with epoch interruption. Without it an
    /// infinite loop hangs its thread.
    pub epoch_interruption: bool,
}

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The shared plugin engine. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Option<ComponentCache>,
    ticker_stop: Arc<AtomicBool>,
    epochs: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        Self::build(config, true, true)
    }

    /// Builds an engine with the pooling allocator or epoch interruption
    /// turned off, for benchmarks that measure them.
    #[cfg(feature = "bench")]
    pub fn with_bench_switches(config: EngineConfig, switches: BenchSwitches) -> Result<Self, EngineError> {
        Self::build(config, switches.pooling, switches.epoch_interruption)
    }

    fn build(config: EngineConfig, pooling: bool, epochs: bool) -> Result<Self, EngineError> {
        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_SLOT))
            .total_memories(n.saturating_mul(MEMORIES_PER_SLOT))
            .total_tables(n.saturating_mul(TABLES_PER_SLOT))
            .max_memory_size(MAX_PLUGIN_MEMORY)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true).epoch_interruption(epochs).cranelift_opt_level(OptLevel::Speed);
        if pooling {
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| EngineError(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        // Replays must see the same random bytes: see `determinism`.
        super::determinism::add_to_linker(&mut linker).map_err(|e| EngineError(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| EngineError(format!("cannot start the epoch thread: {e}")))?;

        let cache = config.cache_dir.map(|dir| ComponentCache::new(&engine, dir));
        Ok(PluginEngine { inner: Arc::new(Inner { engine, linker, cache, ticker_stop, epochs }) })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether call deadlines are enforced.
    pub(crate) fn epochs(&self) -> bool {
        self.inner.epochs
    }

    pub(crate) fn linker(&self) -> &Linker<StoreState> {
        &self.inner.linker
    }

    /// Loads a component from bytes; `origin` names it in messages.
    pub fn load(&self, bytes: &[u8], origin: &str) -> Result<Plugin, LoadError> {
        check_magic(bytes, origin)?;
        let sha256 = sha256_hex(bytes);
        let compiled = match &self.inner.cache {
            Some(cache) => cache.load_or_compile(&self.inner.engine, bytes, &sha256, origin),
            None => super::cache::compile(&self.inner.engine, bytes, origin),
        };
        let component = compiled
            .map_err(|e| LoadError::Compile { origin: origin.to_string(), message: format!("{e:#}") })?;
        Plugin::from_component(self.clone(), component, origin.to_string(), sha256, bytes.len())
    }

    /// Loads a component from a file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        self.load(&bytes, &path.display().to_string())
    }

    /// Loads what a job file's `plugin = "…"` names: a bundled function's
    /// name, or a path to a `.wasm` component.
    pub fn load_ref(&self, reference: &str) -> Result<Plugin, LoadError> {
        if let Some(bytes) = builtin(reference) {
            return self.load(bytes, &format!("built-in '{reference}'"));
        }
        let path = Path::new(reference);
        if path.extension().is_some_and(|e| e == "wasm") || path.exists() {
            return self.load_file(path);
        }
        Err(LoadError::UnknownBuiltin { name: reference.to_string(), builtins: builtin_names() })
    }
}

/// Tells a component from a core module or a file that is not wasm at all,
/// before wasmtime gives a vaguer message.
fn check_magic(bytes: &[u8], origin: &str) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(LoadError::NotWasm { origin: origin.to_string() });
    }
    if bytes.get(4..8) == Some(&CORE_VERSION[..]) {
        return Err(LoadError::CoreModule { origin: origin.to_string() });
    }
    Ok(())
}
