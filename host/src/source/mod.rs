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

    /// Records durably that every record before `next_offsets` has been
    /// processed and its results written, so that a job restarted with
    /// `start = "committed"` resumes there. Each pair is `(partition, offset
    /// of the next record to read)`, i.e. the last processed offset + 1.
    /// Partitions left out keep their previous commit, and an offset not
    /// past a partition's previous commit is skipped, so commits only move
    /// forward.
    ///
    /// Call it only after the sinks have flushed everything derived from
    /// those records: what is committed is never read again. A Kafka source
    /// commits synchronously to its consumer group and returns the broker's
    /// error if the commit fails; a file source has nothing to commit and
    /// does nothing.
    fn commit(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError>;
}
