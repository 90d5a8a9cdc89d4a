//! weir: a stream processor whose user functions are WebAssembly components.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

pub mod checkpoint;
pub mod decode;
pub mod duration;
pub mod encode;
pub mod job;
pub mod kafka;
pub mod pipeline;
pub mod plugin;
pub mod record;
pub mod service;
pub mod sink;
pub mod source;
pub mod time;
pub mod types;

#[cfg(test)]
pub(crate) mod testing;
pub mod window;
