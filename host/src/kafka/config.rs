//! Kafka client settings: one typed, documented struct with defaults, turned
//! into librdkafka properties here and nowhere else.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Settings shared by every Kafka client weir makes. Every field has a
/// default, so a job file sets only what it wants to change:
///
/// ```toml
/// [source.kafka]
/// connect_attempts = 10
/// linger = "20ms"
/// properties = { "fetch.max.bytes" = "10485760" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// How many times to try reaching the brokers at start before giving up
    /// (the homework's producer tried 6 times). Each attempt waits up to 3 s
    /// (or `request_timeout` if shorter) for an answer.
    pub connect_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each
    /// further failure, up to `backoff_max`. librdkafka uses the same bounds
    /// for its reconnects and its request retries.
    #[serde(with = "crate::duration::serde_text")]
    pub backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "crate::duration::serde_text")]
    pub backoff_max: Duration,
    /// How long one metadata or admin request may take.
    #[serde(with = "crate::duration::serde_text")]
    pub request_timeout: Duration,
    /// How long the producer waits to fill a batch before sending it.
    #[serde(with = "crate::duration::serde_text")]
    pub linger: Duration,
    /// The most messages in one produce batch.
    pub batch_messages: u32,
    /// The most messages the producer queues locally; past it `send` blocks
    /// (backpressure) instead of dropping anything.
    pub queue_messages: u32,
    /// How long the producer keeps retrying one message before reporting it
    /// as failed.
    #[serde(with = "crate::duration::serde_text")]
    pub delivery_timeout: Duration,
    /// Idempotent producing: retries never duplicate or reorder a message.
    pub idempotence: bool,
    /// How many brokers an embedded (in-process) cluster has.
    pub embedded_brokers: u32,
    /// Extra librdkafka properties, applied last (they win over the above).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            connect_attempts: 6,
            backoff: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            batch_messages: 10_000,
            queue_messages: 100_000,
            delivery_timeout: Duration::from_secs(120),
            idempotence: true,
            embedded_brokers: 1,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The waits between connection attempts: `backoff`, doubling, capped
    /// at `backoff_max`.
    pub fn backoff(&self) -> Backoff {
        Backoff { next: self.backoff, max: self.backoff_max.max(self.backoff) }
    }

    /// Properties every client gets.
    pub(crate) fn client(&self, bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("client.id", "weir")
            .set("reconnect.backoff.ms", millis(self.backoff))
            .set("reconnect.backoff.max.ms", millis(self.backoff_max))
            .set("retry.backoff.ms", millis(self.backoff))
            .set("retry.backoff.max.ms", millis(self.backoff_max.max(self.backoff)))
            .set("socket.timeout.ms", millis(self.request_timeout.max(Duration::from_secs(10))));
        c
    }

    /// Properties of a producer.
    pub(crate) fn producer(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.client(bootstrap);
        c.set("linger.ms", millis(self.linger))
            .set("batch.num.messages", self.batch_messages.max(1).to_string())
            .set("queue.buffering.max.messages", self.queue_messages.max(1).to_string())
            .set("message.timeout.ms", millis(self.delivery_timeout))
            .set("enable.idempotence", self.idempotence.to_string())
            .set("acks", "all")
            // The Java client's partitioner, so that a key lands on the same
            // partition whichever client wrote it.
            .set("partitioner", "murmur2_random");
        self.extra(&mut c);
        c
    }

    /// Properties of a consumer that assigns partitions itself and commits
    /// only when told to.
    pub(crate) fn consumer(&self, bootstrap: &str, group: &str, partition_eof: bool) -> ClientConfig {
        let mut c = self.client(bootstrap);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", partition_eof.to_string());
        self.extra(&mut c);
        c
    }

    /// Properties of a client that only reads metadata or runs admin calls.
    pub(crate) fn admin(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.client(bootstrap);
        self.extra(&mut c);
        c
    }

    fn extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().min(i32::MAX as u128).to_string()
}

/// Exponential backoff: each wait doubles, up to a cap. An endless
/// iterator; take as many as there are retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = KafkaConfig {
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..KafkaConfig::default()
        };
        let waits: Vec<u128> = config.backoff().take(5).map(|d| d.as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn reads_durations_and_properties_from_toml() {
        let config: KafkaConfig = toml::from_str(
            "connect_attempts = 3\nlinger = \"20ms\"\nproperties = { \"fetch.max.bytes\" = \"1024\" }",
        )
        .unwrap();
        assert_eq!(config.connect_attempts, 3);
        assert_eq!(config.linger, Duration::from_millis(20));
        assert_eq!(config.backoff, KafkaConfig::default().backoff);
        assert_eq!(config.properties["fetch.max.bytes"], "1024");
        assert!(toml::from_str::<KafkaConfig>("lingr = \"1s\"").is_err());
    }
}
