//! Kafka client settings: one typed, documented struct with defaults, turned
//! into librdkafka properties here and nowhere else; and the rules for the
//! extra librdkafka properties a job file may add.

use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

/// Settings shared by every Kafka client weir makes. Every field has a
/// default, so a TOML or JSON form sets only what it wants to change:
///
/// ```toml
/// connect_attempts = 10
/// linger = "20ms"
/// properties = { "fetch.max.bytes" = "10485760" }
/// ```
///
/// A job file does not set these; its `[source.kafka]` and `[sink.kafka]`
/// tables add librdkafka `properties` (checked with [`check_property`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// How many times to try reaching the brokers at start before giving up
    /// (a typical Kafka producer's retry count). Each attempt waits up to 3 s
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
    /// How many brokers an embedded (in-process) cluster has.
    pub embedded_brokers: u32,
    /// Extra librdkafka properties. They win over the settings above; the
    /// ones weir sets itself ([`RESERVED_PROPERTIES`]) are ignored.
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

    /// Properties of a producer. It is idempotent (librdkafka retries never
    /// duplicate or reorder a message), every in-sync replica acknowledges
    /// each write, it retries until `delivery_timeout`, and it keeps at most
    /// 5 requests in flight per connection, the most that idempotence
    /// allows while keeping order.
    pub(crate) fn producer(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.client(bootstrap);
        c.set("linger.ms", millis(self.linger))
            .set("batch.num.messages", self.batch_messages.max(1).to_string())
            .set("queue.buffering.max.messages", self.queue_messages.max(1).to_string())
            .set("message.timeout.ms", millis(self.delivery_timeout));
        self.extra(&mut c);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.send.max.retries", i32::MAX.to_string())
            // The Java client's partitioner, so that a key lands on the same
            // partition whichever client wrote it.
            .set("partitioner", "murmur2_random");
        c
    }

    /// Properties of a consumer that assigns partitions itself and commits
    /// only when told to.
    pub(crate) fn consumer(&self, bootstrap: &str, group: &str, partition_eof: bool) -> ClientConfig {
        let mut c = self.client(bootstrap);
        // When a partition's prefetch queue is full, librdkafka waits this
        // long before fetching for it again: 1 s by default, which stalls a
        // job that drains its queue faster than that (a job reading a full
        // topic ran at a sixth of its speed). A job's properties may set it.
        c.set("fetch.queue.backoff.ms", "10");
        self.extra(&mut c);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", partition_eof.to_string());
        c
    }

    /// Properties of a client that only reads metadata or runs admin calls.
    pub(crate) fn admin(&self, bootstrap: &str) -> ClientConfig {
        let mut c = self.client(bootstrap);
        self.extra(&mut c);
        c
    }

    /// Applies `properties`, except the reserved ones: setting those (or an
    /// alias of them) could change what weir relies on.
    fn extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties {
            if RESERVED_PROPERTIES.iter().any(|(name, _)| name == k) {
                tracing::warn!("ignoring librdkafka property '{k}': weir sets it itself");
                continue;
            }
            c.set(k, v);
        }
    }
}

/// The librdkafka properties weir sets itself, each with the reason. A job
/// file may not set them (see [`check_property`]); in
/// [`KafkaConfig::properties`] they are ignored.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "weir sets it from `brokers`"),
    ("metadata.broker.list", "weir sets it from `brokers`"),
    ("group.id", "weir sets it from source.group"),
    ("enable.auto.commit", "weir commits offsets itself, and only after the sinks have written the results"),
    (
        "auto.commit.interval.ms",
        "weir commits offsets itself, and only after the sinks have written the results",
    ),
    (
        "enable.auto.offset.store",
        "weir commits offsets itself, and only after the sinks have written the results",
    ),
    ("auto.offset.reset", "weir sets it from source.start"),
    ("enable.partition.eof", "weir uses it to find the end of a bounded read"),
    (
        "enable.idempotence",
        "the sink's producer is always idempotent, so that retries never duplicate or reorder a record",
    ),
    ("acks", "every in-sync replica must acknowledge a write (acks = all), so none is lost"),
    ("request.required.acks", "every in-sync replica must acknowledge a write (acks = all), so none is lost"),
    (
        "max.in.flight.requests.per.connection",
        "the idempotent producer keeps order with at most 5 requests in flight",
    ),
    ("max.in.flight", "the idempotent producer keeps order with at most 5 requests in flight"),
    ("retries", "the producer retries until message.timeout.ms, so that nothing is dropped early"),
    (
        "message.send.max.retries",
        "the producer retries until message.timeout.ms, so that nothing is dropped early",
    ),
    ("partitioner", "a key must always go to the same partition (murmur2_random, as the Java client does)"),
    (
        "transactional.id",
        "weir derives it from the job's name and the topic, with [sink] exactly_once = \"transactions\"",
    ),
];

/// Why a librdkafka property from a job file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// weir sets the property itself.
    #[error("weir controls this property: {reason}")]
    Reserved {
        /// Why weir needs it.
        reason: &'static str,
    },
    /// librdkafka does not know the property, or refuses the value.
    #[error("librdkafka refuses it: {reason}")]
    Refused {
        /// librdkafka's message.
        reason: String,
    },
}

/// Checks one extra librdkafka property: it must not be one weir sets
/// itself ([`RESERVED_PROPERTIES`]), and librdkafka must know the name and
/// accept the value.
pub fn check_property(name: &str, value: &str) -> Result<(), PropertyError> {
    if let Some((_, reason)) = RESERVED_PROPERTIES.iter().find(|(n, _)| *n == name) {
        return Err(PropertyError::Reserved { reason });
    }
    let mut c = ClientConfig::new();
    c.set(name, value);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, description, _, _)) => {
            Err(PropertyError::Refused { reason: description })
        }
        Err(other) => Err(PropertyError::Refused { reason: other.to_string() }),
    }
}

/// The value a live client actually uses for librdkafka property `name`
/// (global or default-topic), as librdkafka reports it; `None` if it has no
/// such property.
///
/// # Safety
///
/// `client` must be a live librdkafka handle.
pub(crate) unsafe fn effective_property(client: *mut rd::rd_kafka_t, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    // SAFETY: the caller guarantees a live handle; its configuration lives
    // as long as it does.
    let conf = unsafe { rd::rd_kafka_conf(client) };
    if conf.is_null() {
        return None;
    }
    let mut size = 0usize;
    // SAFETY: a null destination only asks for the size.
    let found = unsafe { rd::rd_kafka_conf_get(conf, name.as_ptr(), std::ptr::null_mut(), &mut size) };
    if found != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK || size == 0 {
        return None;
    }
    let mut buffer = vec![0u8; size];
    // SAFETY: `buffer` has room for `size` bytes, as librdkafka asked.
    let found = unsafe {
        rd::rd_kafka_conf_get(conf, name.as_ptr(), buffer.as_mut_ptr().cast::<c_char>(), &mut size)
    };
    if found != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        return None;
    }
    CStr::from_bytes_until_nul(&buffer).ok().map(|s| s.to_string_lossy().into_owned())
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

    #[test]
    fn reserved_unknown_and_invalid_properties_are_refused_with_the_reason() {
        assert_eq!(check_property("fetch.max.bytes", "1048576"), Ok(()));
        assert_eq!(check_property("compression.type", "lz4"), Ok(()));
        for name in ["enable.idempotence", "group.id", "bootstrap.servers", "enable.auto.commit", "acks"] {
            assert!(
                matches!(check_property(name, "x"), Err(PropertyError::Reserved { .. })),
                "{name} is not refused"
            );
        }
        let e = check_property("enable.idempotence", "false").unwrap_err().to_string();
        assert!(e.contains("always idempotent"), "{e}");
        let e = check_property("fetch.max.bytez", "1").unwrap_err().to_string();
        assert!(e.starts_with("librdkafka refuses it") && e.contains("fetch.max.bytez"), "{e}");
        let e = check_property("fetch.max.bytes", "lots").unwrap_err().to_string();
        assert!(e.starts_with("librdkafka refuses it") && e.contains("fetch.max.bytes"), "{e}");
    }

    #[test]
    fn extra_properties_cannot_change_the_settings_weir_relies_on() {
        let mut properties = BTreeMap::new();
        for (name, _) in RESERVED_PROPERTIES {
            properties.insert(name.to_string(), "overridden".to_string());
        }
        properties.insert("linger.ms".into(), "77".into());
        let config = KafkaConfig { properties, ..KafkaConfig::default() };
        let producer = config.producer("h:1");
        for (name, value) in [
            ("bootstrap.servers", "h:1"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "77"),
        ] {
            assert_eq!(producer.get(name), Some(value), "producer {name}");
        }
        for alias in ["metadata.broker.list", "request.required.acks", "max.in.flight", "retries"] {
            assert_eq!(producer.get(alias), None, "producer {alias}");
        }
        let consumer = config.consumer("h:1", "g", true);
        for (name, value) in [
            ("bootstrap.servers", "h:1"),
            ("group.id", "g"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
        ] {
            assert_eq!(consumer.get(name), Some(value), "consumer {name}");
        }
    }
}
