//! What each plugin instance's `Store` holds: a capability-free WASI context
//! and the memory limiter.

use super::log::CappedLog;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of a plugin's `Store`.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
}

impl StoreState {
    /// A state whose WASI context grants nothing: no preopened directories,
    /// no network, no environment, no arguments, no stdin. Rust guests
    /// import `wasi:cli` and `wasi:io` through std even when they are pure
    /// compute, so the imports exist, but they reach nothing of the host.
    pub(crate) fn new(memory_limit: usize, log: &CappedLog) -> Self {
        let wasi = WasiCtx::builder().stdout(log.clone()).stderr(log.clone()).build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory_limit, refused: None },
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps a plugin's linear memory, and remembers a refusal so that the trap
/// that follows can be reported as "memory limit" rather than a bare trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// The size, in bytes, that the guest last asked for and was refused.
    pub(crate) refused: Option<usize>,
}

/// Tables hold function references; no honest guest needs more than this.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            // An error traps the guest at once, which reads better than an
            // allocation failure deep inside its allocator.
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded: asked for {desired} bytes",
                self.limit
            )));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}
