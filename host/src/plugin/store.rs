//! What each plugin instance's `Store` holds: a capability-free WASI context
//! with deterministic clocks and randomness, and the memory limiter.

use super::determinism::{CallClock, CallContext, CallRandom, MonotonicClock, WallClock};
use super::log::CappedLog;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of a plugin's `Store`.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// What the WASI clocks read; set before each call.
    clock: Arc<CallClock>,
    /// The `wasi:random` streams; reseeded before each call.
    pub(crate) random: CallRandom,
}

impl StoreState {
    /// A state whose WASI context grants nothing: no preopened directories,
    /// no network, no environment, no arguments, no stdin. Rust guests
    /// import `wasi:cli` and `wasi:io` through std even when they are pure
    /// compute, so the imports exist, but they reach nothing of the host.
    /// The clocks and randomness are the call's (see `determinism`), not
    /// the host's.
    pub(crate) fn new(memory_limit: usize, log: &CappedLog) -> Self {
        let clock = Arc::new(CallClock::default());
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .wall_clock(WallClock(clock.clone()))
            .monotonic_clock(MonotonicClock(clock.clone()))
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory_limit, refused: None },
            clock,
            random: CallRandom::new(CallContext::EPOCH.seed),
        }
    }

    /// Sets what the guest's clocks and random streams give during the next
    /// call. Allocates nothing: it is on every call's path.
    pub(crate) fn begin_call(&mut self, call: CallContext) {
        self.clock.set(call.now_ms);
        self.random.reseed(call.seed);
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
