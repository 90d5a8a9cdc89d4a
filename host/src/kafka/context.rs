//! The rdkafka client context weir's clients share: it sends librdkafka's
//! log lines to `tracing`.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;

/// Routes librdkafka's logs to `tracing` under the target `librdkafka`.
/// Errors the client reports to its caller (a failed request, a lost
/// delivery) come back through results, so librdkafka's own copies of them
/// are logged quietly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WeirContext;

impl ClientContext for WeirContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for WeirContext {}

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
