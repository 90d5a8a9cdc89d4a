//! Errors of the Kafka layer. Each names the brokers and, where there is
//! one, the topic, and says what to do.

/// A Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// `brokers` was neither `embedded` nor a `host:port` list.
    #[error(
        "invalid brokers '{0}': expected \"embedded\" or a list like \"127.0.0.1:9092\" or \"host1:9092,host2:9092\""
    )]
    BadBrokers(String),

    /// No broker answered, even after retrying with backoff.
    #[error(
        "cannot reach Kafka at {brokers} after {attempts} attempt(s): {reason}. Check that a broker \
         runs there; for a local one run `weir dev-broker --listen 127.0.0.1:9092`"
    )]
    Unreachable {
        /// The bootstrap list.
        brokers: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        reason: String,
    },

    /// The topic does not exist.
    #[error(
        "topic '{topic}' does not exist on {brokers}; create it with \
         `weir topic create --brokers {brokers} --topic {topic} --partitions N`"
    )]
    UnknownTopic {
        /// The bootstrap list.
        brokers: String,
        /// The topic.
        topic: String,
    },

    /// The topic to create exists already.
    #[error("topic '{topic}' already exists on {brokers}")]
    TopicExists {
        /// The bootstrap list.
        brokers: String,
        /// The topic.
        topic: String,
    },

    /// A topic operation failed.
    #[error("{brokers}: cannot {action} topic '{topic}': {reason}")]
    Topic {
        /// The bootstrap list.
        brokers: String,
        /// The topic.
        topic: String,
        /// What was being done: "create", "describe", "read", "write to".
        action: &'static str,
        /// What went wrong, and what to do if we know.
        reason: String,
    },

    /// Any other client failure.
    #[error("{brokers}: {action}: {reason}")]
    Client {
        /// The bootstrap list.
        brokers: String,
        /// What was being done.
        action: String,
        /// What went wrong.
        reason: String,
    },

    /// The in-process mock cluster could not be started or driven.
    #[error("embedded Kafka broker: {0}")]
    Embedded(String),
}
