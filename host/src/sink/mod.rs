//! Sinks: where output records, dead letters and late events go.

pub mod file;
pub mod kafka;

use crate::kafka::KafkaError;
use rdkafka::error::RDKafkaErrorCode;
use std::path::PathBuf;
use std::time::Duration;

/// A sink failed in a way that retrying will not fix. The message says it
/// was a sink and names the file or topic; the cause (an I/O error, a Kafka
/// error) is its [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file sink could not be created.
    #[error("sink file {}: cannot create it", path.display())]
    CreateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file sink could not be written.
    #[error("sink file {}: cannot write to it", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A Kafka sink could not be opened: its brokers or its topic.
    #[error("sink topic '{topic}': cannot open it")]
    OpenTopic {
        /// The topic.
        topic: String,
        /// Why.
        source: Box<KafkaError>,
    },
    /// librdkafka refused to queue a message (other than for a full queue,
    /// which only makes `send` wait).
    #[error("sink topic '{topic}' on {brokers}: cannot queue a message")]
    Queue {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// librdkafka's error code.
        source: RDKafkaErrorCode,
    },
    /// Messages could not be delivered, even with retries: the job stops
    /// rather than skip them.
    #[error("sink topic '{topic}' on {brokers}: {failed} message(s) could not be delivered")]
    Undelivered {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// How many failed so far.
        failed: u64,
        /// The first failure.
        source: Option<Box<DeliveryFailure>>,
    },
    /// A flush did not see every message delivered in time.
    #[error("sink topic '{topic}' on {brokers}: {in_flight} message(s) still undelivered after {waited:?}")]
    FlushTimeout {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// Messages still queued or in flight.
        in_flight: usize,
        /// How long the flush waited.
        waited: Duration,
        /// librdkafka's error.
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A checkpoint's state for this sink cannot be used.
    #[error("sink {sink}: cannot restore the checkpoint's state: {reason}")]
    State {
        /// The file or topic.
        sink: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A restored sink could not read back what it wrote after the
    /// checkpoint (`exactly_once = "sequence"`).
    #[error("sink topic '{topic}' on {brokers}: cannot read back partition {partition}: {reason}")]
    ReadBack {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// The output partition.
        partition: i32,
        /// What went wrong.
        reason: String,
    },
    /// A step of the transactional protocol failed
    /// (`exactly_once = "transactions"`).
    #[error("sink topic '{topic}' on {brokers}: cannot {action} a transaction")]
    Transaction {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// The step: "init", "begin", "commit" or "abort".
        action: &'static str,
        /// librdkafka's error.
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A member of a consumer group was suspended (SIGSTOP, a frozen VM)
    /// for longer than its lease: the group may have given its partitions
    /// to another member, so it wrote nothing more and dropped what it held.
    #[error(
        "sink topic '{topic}': this process did not run for more than {suspended_after:?}, so its consumer group may \
         have given its partitions to another member: it writes nothing more and joins the group again"
    )]
    LeaseLost {
        /// The topic.
        topic: String,
        /// How long the process may go without running.
        suspended_after: std::time::Duration,
    },
    /// A sink was used while the workers of a parallel run still held it
    /// (a bug in weir, reported rather than losing records).
    #[error("sink {sink}: used while the workers still hold it (this is a bug in weir; please report it)")]
    Detached {
        /// The sink's name.
        sink: String,
    },
}

impl SinkError {
    /// The file or topic of the sink that failed.
    pub fn sink_name(&self) -> String {
        match self {
            SinkError::CreateFile { path, .. } | SinkError::WriteFile { path, .. } => {
                path.display().to_string()
            }
            SinkError::OpenTopic { topic, .. }
            | SinkError::Queue { topic, .. }
            | SinkError::Undelivered { topic, .. }
            | SinkError::FlushTimeout { topic, .. }
            | SinkError::ReadBack { topic, .. }
            | SinkError::Transaction { topic, .. }
            | SinkError::LeaseLost { topic, .. } => topic.clone(),
            SinkError::State { sink, .. } | SinkError::Detached { sink } => sink.clone(),
        }
    }

    /// Whether another producer with the same transactional id took over
    /// (fenced this one): it must not write again.
    pub fn is_fenced(&self) -> bool {
        let code = match self {
            SinkError::Transaction { source, .. } | SinkError::FlushTimeout { source, .. } => {
                source.rdkafka_error_code()
            }
            SinkError::Undelivered { source: Some(failure), .. } => failure.source.rdkafka_error_code(),
            SinkError::Queue { source, .. } => Some(*source),
            _ => None,
        };
        matches!(
            code,
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        )
    }
}

/// The first message a Kafka sink could not deliver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the first failed delivery was to partition {partition}")]
pub struct DeliveryFailure {
    /// The partition it was for.
    pub partition: i32,
    /// librdkafka's error.
    pub source: rdkafka::error::KafkaError,
}

/// A destination for records. Sinks run on the engine's own thread and
/// buffer: `send` should not block except for backpressure.
///
/// A checkpoint asks each sink for its state ([`Sink::checkpoint_state`],
/// opaque bytes the sink alone reads) and a restore hands it back
/// ([`Sink::restore`]): a file sink records its length and cuts the file
/// back to it; a Kafka sink with `exactly_once = "sequence"` records the
/// sequence numbers and offsets it reached and skips what a replay would
/// write again.
pub trait Sink: Send {
    /// Queues one record; `key` is the Kafka message key (the record key).
    /// Records that come from no source partition (tools, tests) go here.
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError>;

    /// Queues one record the job made from `source_partition`'s input. A
    /// sink that numbers output per source partition (Kafka with
    /// `exactly_once = "sequence"`) needs it; others ignore it.
    fn send_from(
        &mut self,
        source_partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        let _ = source_partition;
        self.send(key, payload)
    }

    /// Blocks until everything queued is written.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Where records go, for messages.
    fn name(&self) -> &str;

    /// Returns what a checkpoint keeps for this sink so that
    /// [`Sink::restore`] can bring it back to this point: the checkpoint's
    /// barrier. Everything sent before it must be durable before the
    /// checkpoint completes: a sink flushes here, or says it is not yet
    /// with [`Sink::checkpoint_pending`]. The default (a sink that keeps no
    /// state) only flushes.
    fn checkpoint_state(&mut self) -> Result<Vec<u8>, SinkError> {
        self.flush()?;
        Ok(Vec::new())
    }

    /// Whether some of what was sent before the last
    /// [`Sink::checkpoint_state`] is not yet durable (a Kafka sink's
    /// deliveries still unacknowledged): the checkpoint waits, and the
    /// loop goes on meanwhile. An error is a send that failed.
    fn checkpoint_pending(&mut self) -> Result<bool, SinkError> {
        Ok(false)
    }

    /// Called once a checkpoint that holds this sink's state is complete
    /// (its manifest written): a transactional sink commits here.
    fn checkpoint_complete(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether [`Sink::checkpoint_complete`] must run before the sink is
    /// sent anything more (a transactional sink has one transaction open
    /// at a time, so the loop waits for the checkpoint's write).
    fn commits_at_checkpoints(&self) -> bool {
        false
    }

    /// Brings the sink back to a checkpoint's `state` (from
    /// [`Sink::checkpoint_state`]) before a restored job runs, or, with
    /// `None`, to a fresh start. Called once, before any `send`. The
    /// default keeps everything (at-least-once).
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        let _ = state;
        Ok(())
    }

    /// The member of a consumer group this sink writes for lost its
    /// partitions before it could hand them over: drop everything not yet
    /// written, and write nothing more. The default keeps everything.
    fn fence(&mut self) {}

    /// One state made of pieces of several checkpoints' states, each piece
    /// kept for the source partitions listed with it: a member of a
    /// consumer group restores each partition it gains from the checkpoint
    /// of whoever had it. The default (a sink whose state does not depend
    /// on source partitions) keeps the first piece.
    fn merge_states(&self, pieces: &[(Vec<i32>, Vec<u8>)]) -> Result<Vec<u8>, SinkError> {
        Ok(pieces.first().map(|(_, state)| state.clone()).unwrap_or_default())
    }

    /// Records not written because a restored run had written them before
    /// (`exactly_once = "sequence"`).
    fn skipped(&self) -> u64 {
        0
    }

    /// Whether a restore reads back what the sink wrote after the
    /// checkpoint (`exactly_once = "sequence"`). A fresh run of such a sink
    /// takes a checkpoint before it sends anything, so that a crash before
    /// its first regular checkpoint still has a point to read back from.
    fn reads_back(&self) -> bool {
        false
    }
}
