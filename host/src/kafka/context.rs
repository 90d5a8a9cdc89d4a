//! The rdkafka client context weir's clients share: it sends librdkafka's
//! log lines to `tracing`, and gives a closing group member's partitions
//! back.

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;

/// Routes librdkafka's logs to `tracing` under the target `librdkafka`.
/// Errors the client reports to its caller (a failed request, a lost
/// delivery) come back through results, so librdkafka's own copies of them
/// are logged quietly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WeirContext {
    /// A consumer in a group (cooperative-sticky). Its source serves the
    /// group's rebalances itself (`source::kafka`); the context only sees
    /// the last one, as the consumer closes, and gives everything back.
    group: bool,
}

/// A rebalance of a consumer group, as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// The group gives this member these partitions.
    Assigned(Vec<i32>),
    /// The group takes these partitions away. `lost` says that the
    /// member had already been dropped from the group (its session timed
    /// out): another member may own them already.
    Revoked {
        /// The partitions.
        partitions: Vec<i32>,
        /// Whether the group had already given them away.
        lost: bool,
    },
}

impl WeirContext {
    /// The context of a consumer in a group.
    pub(crate) fn for_group() -> WeirContext {
        WeirContext { group: true }
    }
}

impl ClientContext for WeirContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for WeirContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        // Sources outside a group assign their partitions themselves;
        // librdkafka asks nothing of them.
        if !self.group {
            return;
        }
        // A closing member gives back what it had: librdkafka's close
        // waits for that.
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => consumer.incremental_assign(tpl),
            _ => consumer.incremental_unassign(tpl),
        };
        if let Err(e) = result {
            tracing::debug!("leaving the group: {e}");
        }
    }
}

/// Logs one librdkafka line at a level that matches its own.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(target: "librdkafka", "{fac}: {message}")
        }
        // Connection failures are reported here every reconnect; callers
        // report the outcome (retries, timeouts) themselves.
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
            tracing::debug!(target: "librdkafka", "{fac}: {message}")
        }
        _ => tracing::trace!(target: "librdkafka", "{fac}: {message}"),
    }
}
