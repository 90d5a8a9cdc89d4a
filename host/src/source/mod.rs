//! Sources: where raw records come from. A source hands the engine raw
//! payloads in batches, borrowed so that nothing is copied per event; the
//! engine decodes them.

pub mod file;
pub mod files;
pub mod kafka;

use crate::kafka::{GroupChange, KafkaError};
use rdkafka::error::RDKafkaErrorCode;
use std::path::PathBuf;

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

/// A source failed in a way that retrying will not fix. The message says
/// it was the source and names the file or topic; the cause (an I/O error,
/// a Kafka error) is its [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file source could not be opened.
    #[error("source file {}: cannot open it", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file source's folder or glob names no file.
    #[error("source path {}: {reason}", path.display())]
    NoFiles {
        /// The folder or the pattern.
        path: PathBuf,
        /// Why it names none.
        reason: String,
    },
    /// A file source could not be read.
    #[error("source file {}: cannot read it", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A Kafka source could not be opened: its brokers, its topic, its
    /// committed offsets or its partitions.
    #[error("source topic '{topic}': cannot open it")]
    OpenTopic {
        /// The topic.
        topic: String,
        /// Why.
        source: Box<KafkaError>,
    },
    /// The consumer reported an error that reading cannot get past (the
    /// topic was deleted, access was denied, …).
    #[error("source topic '{topic}' on {brokers}: cannot read it{}", detail_suffix(detail))]
    Consume {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// librdkafka's error code.
        source: RDKafkaErrorCode,
        /// librdkafka's description, if it gave more than the code.
        detail: String,
    },
    /// Offsets could not be committed.
    #[error("source topic '{topic}' on {brokers}: cannot commit offsets")]
    Commit {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// Why.
        source: CommitError,
    },
    /// The source could not go to the offsets a checkpoint holds.
    #[error("source {name}: cannot resume at the checkpoint's offsets: {reason}")]
    Seek {
        /// The file or topic.
        name: String,
        /// Why.
        reason: String,
    },
}

impl SourceError {
    /// The file or topic of the source that failed.
    pub fn source_name(&self) -> String {
        match self {
            SourceError::OpenFile { path, .. }
            | SourceError::ReadFile { path, .. }
            | SourceError::NoFiles { path, .. } => path.display().to_string(),
            SourceError::OpenTopic { topic, .. }
            | SourceError::Consume { topic, .. }
            | SourceError::Commit { topic, .. } => topic.clone(),
            SourceError::Seek { name, .. } => name.clone(),
        }
    }
}

/// Why offsets could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The source reads without a consumer group.
    #[error("the source has no consumer group; set one to commit")]
    NoGroup,
    /// The partition is not one of the topic's.
    #[error("partition {0} is not one of the topic's")]
    UnknownPartition(i32),
    /// A negative offset.
    #[error("partition {partition}: {offset} is not an offset")]
    BadOffset {
        /// The partition.
        partition: i32,
        /// The offset given.
        offset: i64,
    },
    /// The brokers refused or did not answer the commit.
    #[error("the commit request failed")]
    Request(#[source] Box<rdkafka::error::KafkaError>),
}

/// `: detail`, or nothing for an empty detail.
fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
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

    /// Goes to `next_offsets` (`(partition, offset of the next record to
    /// read)`), before the first poll: where a restored checkpoint left
    /// off. Partitions left out start as the source would.
    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError>;

    /// Whether the source has handed over every record of `partition` it
    /// knows of. Only such a partition can be idle: one whose records are
    /// merely read late (they wait in the broker while other partitions
    /// are fetched) is not quiet, and moving its watermark on would make
    /// its own records late. A source that cannot tell says yes.
    fn caught_up(&self, _partition: i32) -> bool {
        true
    }

    /// A member of a consumer group (a Kafka source with `scale_out`): the
    /// rebalances since the last call, in order, each still to be acted on
    /// with [`Source::take_partitions`] or [`Source::release_partitions`].
    /// Other sources are never in a group.
    fn group_changes(&mut self) -> Vec<GroupChange> {
        Vec::new()
    }

    /// A member of a group starts reading partitions the group gave it,
    /// each at its offset (the next record to read), or where the source's
    /// `start` says for `None`.
    fn take_partitions(&mut self, partitions: &[(i32, Option<i64>)]) -> Result<(), SourceError> {
        let _ = partitions;
        Err(SourceError::Seek {
            name: self.name().to_string(),
            reason: "it is not in a consumer group".into(),
        })
    }

    /// A member of a group stops reading partitions the group took away.
    fn release_partitions(&mut self, partitions: &[i32]) -> Result<(), SourceError> {
        let _ = partitions;
        Err(SourceError::Seek {
            name: self.name().to_string(),
            reason: "it is not in a consumer group".into(),
        })
    }

    /// A bounded source: where each partition ends, `(partition, offset
    /// after its last record)`, as seen at open; `None` when unbounded or
    /// when the source cannot tell.
    fn end_offsets(&self) -> Option<Vec<(i32, i64)>> {
        None
    }

    /// A bounded member of a group: ends its partitions at `ends` instead
    /// of the offsets it saw at open (every member must agree on them).
    fn set_end_offsets(&mut self, ends: &[(i32, i64)]) {
        let _ = ends;
    }

    /// A bounded source: the partitions it has read to their end.
    fn finished_partitions(&self) -> Vec<i32> {
        Vec::new()
    }

    /// Whether [`Source::split`] can spread the partitions over workers.
    fn splittable(&self) -> bool {
        false
    }

    /// Splits the source into one source per share, share `i` reading the
    /// partitions `shares[i]` (every partition in one share), each read by
    /// a worker thread of its own. Only a source that is
    /// [`Source::splittable`] can, before its first poll.
    fn split(&mut self, shares: &[Vec<i32>]) -> Result<Vec<Box<dyn Source>>, SourceError> {
        let _ = shares;
        Err(SourceError::Seek {
            name: self.name().to_string(),
            reason: "it cannot be split over workers".into(),
        })
    }
}
