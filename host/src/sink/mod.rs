//! Sinks: where output records, dead letters and late events go.

pub mod file;
pub mod kafka;

/// A sink failed in a way that retrying will not fix.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink_name}: {message}")]
pub struct SinkError {
    /// Which sink (a topic or a path).
    pub sink_name: String,
    /// What went wrong.
    pub message: String,
}

/// A destination for records. Sinks run on the engine's own thread and
/// buffer: `send` should not block except for backpressure.
pub trait Sink: Send {
    /// Queues one record; `key` is the Kafka message key (the record key).
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError>;

    /// Blocks until everything queued is written.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Where records go, for messages.
    fn name(&self) -> &str;
}
