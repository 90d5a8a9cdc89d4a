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
            | SinkError::FlushTimeout { topic, .. } => topic.clone(),
        }
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
pub trait Sink: Send {
    /// Queues one record; `key` is the Kafka message key (the record key).
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError>;

    /// Blocks until everything queued is written.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Where records go, for messages.
    fn name(&self) -> &str;

    /// How far the sink has written, once flushed, for a checkpoint: a
    /// file's length. `None` for a sink that cannot be cut back (Kafka).
    fn position(&mut self) -> Result<Option<u64>, SinkError> {
        Ok(None)
    }

    /// Cuts the output back to `position` (from [`Sink::position`]),
    /// dropping what was written after it: a restored job writes it again.
    /// A sink that cannot be cut back keeps everything (at-least-once).
    fn rewind(&mut self, _position: u64) -> Result<(), SinkError> {
        Ok(())
    }
}
