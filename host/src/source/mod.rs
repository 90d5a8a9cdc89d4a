//! Sources: where raw records come from. A source hands the engine raw
//! payloads in batches, borrowed so that nothing is copied per event; the
//! engine decodes them.

pub mod file;
pub mod kafka;

/// One raw record, borrowed from the source's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The source partition (a Kafka partition; 0 for a file).
    pub partition: i32,
    /// The record's offset within its partition (a line number for files).
    pub offset: i64,
    /// The payload, a JSON document.
    pub payload: &'a [u8],
}

/// What one poll produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// This many records were handed over.
    Records(usize),
    /// Nothing arrived within the poll's wait.
    Idle,
    /// A bounded source has nothing more: every record was handed over.
    End,
}

/// A source failed in a way that retrying will not fix.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {message}")]
pub struct SourceError {
    /// Which source (a topic or a path).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// A source of raw records. Sources run on the engine's own thread.
pub trait Source: Send {
    /// The partitions this source reads, known at start.
    fn partitions(&self) -> Vec<i32>;

    /// Hands over up to `max` records to `each`, waiting at most `wait` for
    /// the first.
    fn poll(
        &mut self,
        max: usize,
        wait: std::time::Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError>;

    /// Where the records came from, for dead-letter reasons: a topic or a
    /// path.
    fn name(&self) -> &str;
}
