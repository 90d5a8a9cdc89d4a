//! Decoding raw payloads into columnar batches: the step between a source
//! and window assignment.

mod batch;
mod flat;
mod json;

pub use batch::Batch;
pub use json::{DecodeError, JsonDecoder, RecordSchema};
