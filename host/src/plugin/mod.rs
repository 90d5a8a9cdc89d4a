//! The plugin runtime: loads user functions (WebAssembly components built
//! against `wit/weir.wit`) and calls them safely.
//!
//! - One shared [`PluginEngine`] (wasmtime, pooling allocator, epoch
//!   interruption). Components are compiled once and cached on disk by
//!   sha256 ([`cache`]).
//! - [`PluginEngine::load`] checks that a file is a component, finds which
//!   world it implements, checks its exports against that world, and reads
//!   its descriptor, giving a [`LoadError`] that names the problem.
//! - [`Plugin::instantiate`] gives a [`PluginInstance`], configured with the
//!   job's parameters and held to its [`PluginLimits`]: a wall-time deadline
//!   per call, a memory cap, an output cap and a log cap. A plugin that breaks a
//!   limit or traps gives a [`PluginError`] naming the plugin, the call, the
//!   key and the window; the instance is replaced and the host goes on.
//! - Plugins get no filesystem, network, environment or arguments; their
//!   stdout and stderr go to the host log, capped.
//! - Plugins are deterministic: their clocks read the call's event time and
//!   their random bytes come from a hash of the call's arguments
//!   (`determinism.rs`), so a replayed call gives the same output.

pub(crate) mod bindings;
pub mod builtin;
pub mod cache;
mod determinism;
mod engine;
mod error;
mod instance;
mod legacy;
mod limits;
mod load;
mod log;
pub mod schema;
mod signatures;
mod store;
pub mod toolchain;
mod window_function;

#[cfg(test)]
mod determinism_tests;
#[cfg(test)]
mod tests;

pub use bindings::CONTRACT_VERSION;
pub use bindings::map::exports::weir::functions::map::Mapped;
#[cfg(feature = "bench")]
pub use engine::BenchSwitches;
pub use engine::{EPOCH_TICK, EngineConfig, EngineError, MAX_PLUGIN_MEMORY, PluginEngine};
pub use error::{CallSite, Failure, LoadError, PluginError};
pub use instance::{CALL_BUCKETS_US, CallTimes, CallTimesSnapshot, InstanceStats, LogSink, PluginInstance};
pub use legacy::LEGACY_VERSION;
pub use limits::PluginLimits;
pub use load::Plugin;
pub use log::CallLog;
