//! The embedded broker: librdkafka's in-process mock cluster, owned here.
//!
//! rdkafka's own `MockCluster` borrows the client that hosts it and exposes
//! neither the advertised-address setting nor a way to outlive a scope, so
//! weir owns the cluster directly: [`EmbeddedCluster`] holds the hosting
//! client and the cluster together and destroys them in the right order.
//! Share it through [`super::Cluster`] (an `Arc`), which every source and
//! sink keeps, so the broker lives exactly as long as something uses it.

use super::{KafkaError, WeirContext};
use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr, RDKafkaType};
use std::ffi::{CStr, CString};

/// A Kafka cluster inside this process (librdkafka's mock cluster). It keeps
/// everything in memory and speaks enough of the protocol for producing,
/// fetching, consumer groups and offset commits. Topics are created with
/// [`EmbeddedCluster::create_topic`] (the mock brokers do not implement the
/// CreateTopics request; `weir dev-broker` adds it in front of them).
///
/// Retention is bounded: each partition keeps its latest 5 MiB of message
/// batches (librdkafka's fixed limit) and drops older ones, moving the low
/// watermark up. A reader that falls further behind than that loses data,
/// so long runs should consume while they produce.
pub struct EmbeddedCluster {
    mock: *mut rd::rd_kafka_mock_cluster_t,
    bootstrap: String,
    brokers: i32,
    /// The librdkafka handle the mock cluster runs on; it must outlive the
    /// cluster, so it is dropped after `Drop::drop` destroyed the cluster.
    _host: Client<WeirContext>,
}

// SAFETY: librdkafka's mock cluster API is thread-safe: every call is sent as
// an operation to the cluster's own thread, and the handle is only freed in
// `Drop`.
unsafe impl Send for EmbeddedCluster {}
// SAFETY: see `Send`; no method needs exclusive access.
unsafe impl Sync for EmbeddedCluster {}

impl EmbeddedCluster {
    /// Starts a cluster of `brokers` brokers (ids 1 to `brokers`), each
    /// listening on an ephemeral loopback port.
    pub fn start(brokers: u32) -> Result<EmbeddedCluster, KafkaError> {
        let brokers = i32::try_from(brokers.clamp(1, 16)).unwrap_or(1);
        let config = ClientConfig::new();
        let native = config.create_native_config().map_err(|e| KafkaError::Embedded(e.to_string()))?;
        let host = Client::new(&config, native, RDKafkaType::RD_KAFKA_PRODUCER, WeirContext::default())
            .map_err(|e| KafkaError::Embedded(format!("cannot create the hosting client: {e}")))?;
        // SAFETY: `host` is a live handle and outlives the cluster (see the
        // field's comment and `Drop`).
        let mock = unsafe { rd::rd_kafka_mock_cluster_new(host.native_ptr(), brokers) };
        if mock.is_null() {
            return Err(KafkaError::Embedded(
                "librdkafka could not start the mock cluster (no free loopback port?)".into(),
            ));
        }
        // SAFETY: `mock` is live; the returned string is owned by it and
        // copied at once.
        let bootstrap = unsafe { CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(mock)) }
            .to_string_lossy()
            .into_owned();
        tracing::debug!("embedded Kafka cluster with {brokers} broker(s) at {bootstrap}");
        Ok(EmbeddedCluster { mock, bootstrap, brokers, _host: host })
    }

    /// The brokers' real listening addresses, `host:port,…`. Metadata may
    /// advertise others (see [`EmbeddedCluster::advertise`]).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// How many brokers the cluster has.
    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// Creates `topic` with `partitions` partitions, replicated `replication`
    /// times (at most the number of brokers).
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<(), KafkaError> {
        let fail = |reason: String| KafkaError::Topic {
            brokers: self.label(),
            topic: topic.to_string(),
            action: "create",
            reason,
        };
        if partitions < 1 {
            return Err(fail(format!("the partition count must be at least 1, got {partitions}")));
        }
        if replication < 1 || replication > self.brokers {
            return Err(fail(format!(
                "the replication factor must be between 1 and the cluster's {} broker(s), got {replication}",
                self.brokers
            )));
        }
        let name = CString::new(topic).map_err(|_| fail("the name contains a NUL byte".into()))?;
        // SAFETY: `self.mock` is live; the name is copied by the call.
        let err =
            unsafe { rd::rd_kafka_mock_topic_create(self.mock, name.as_ptr(), partitions, replication) };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => {
                Err(KafkaError::TopicExists { brokers: self.label(), topic: topic.to_string() })
            }
            other => Err(fail(err_text(other))),
        }
    }

    /// Makes metadata advertise `host:port` for broker `broker` (the broker
    /// keeps listening where it was; something must forward from there).
    pub fn advertise(&self, broker: i32, host: &str, port: u16) -> Result<(), KafkaError> {
        let host = CString::new(host).map_err(|_| KafkaError::Embedded("host contains a NUL byte".into()))?;
        // SAFETY: `self.mock` is live; the host is copied by the call.
        unsafe { rd::rd_kafka_mock_broker_set_host_port(self.mock, broker, host.as_ptr(), i32::from(port)) };
        Ok(())
    }

    /// Takes broker `broker` down (-1: all): its connections are closed and
    /// new ones refused. For fault-injection tests.
    pub fn broker_down(&self, broker: i32) -> Result<(), KafkaError> {
        // SAFETY: `self.mock` is live.
        self.check(unsafe { rd::rd_kafka_mock_broker_set_down(self.mock, broker) }, "take a broker down")
    }

    /// Brings broker `broker` back up (-1: all).
    pub fn broker_up(&self, broker: i32) -> Result<(), KafkaError> {
        // SAFETY: `self.mock` is live.
        self.check(unsafe { rd::rd_kafka_mock_broker_set_up(self.mock, broker) }, "bring a broker up")
    }

    /// Makes the next requests of kind `api` fail with `errors`, one each,
    /// in order. `RD_KAFKA_RESP_ERR__TRANSPORT` drops the connection instead.
    pub fn push_request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        // SAFETY: `self.mock` is live; the array is copied by the call.
        unsafe {
            rd::rd_kafka_mock_push_request_errors_array(self.mock, api.into(), errors.len(), errors.as_ptr())
        }
    }

    /// Delays broker `broker`'s responses (-1: all brokers) by `rtt`; the
    /// requests themselves are handled at once. With `rtt` past a client's
    /// request timeout, the client retries requests the broker has already
    /// carried out.
    pub fn set_round_trip(&self, broker: i32, rtt: std::time::Duration) -> Result<(), KafkaError> {
        let ms = i32::try_from(rtt.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `self.mock` is live.
        self.check(
            unsafe { rd::rd_kafka_mock_broker_set_rtt(self.mock, broker, ms) },
            "set the round-trip time",
        )
    }

    /// Starts recording which requests the brokers receive (see
    /// [`EmbeddedCluster::requests_seen`]), forgetting earlier ones.
    pub fn track_requests(&self) {
        // SAFETY: `self.mock` is live.
        unsafe {
            rd::rd_kafka_mock_start_request_tracking(self.mock);
            rd::rd_kafka_mock_clear_requests(self.mock);
        }
    }

    /// How many requests of kind `api` the brokers received since
    /// [`EmbeddedCluster::track_requests`], including those answered with an
    /// injected error.
    pub fn requests_seen(&self, api: RDKafkaApiKey) -> usize {
        let key: i16 = api.into();
        let mut count = 0usize;
        // SAFETY: `self.mock` is live; the returned array of `count` copies
        // is ours and freed with its elements below.
        unsafe {
            let requests = rd::rd_kafka_mock_get_requests(self.mock, &mut count);
            if requests.is_null() {
                return 0;
            }
            let seen =
                (0..count).filter(|&i| rd::rd_kafka_mock_request_api_key(*requests.add(i)) == key).count();
            rd::rd_kafka_mock_request_destroy_array(requests, count);
            seen
        }
    }

    fn check(&self, err: RDKafkaRespErr, what: &str) -> Result<(), KafkaError> {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            other => Err(KafkaError::Embedded(format!("cannot {what}: {}", err_text(other)))),
        }
    }

    fn label(&self) -> String {
        format!("the embedded broker ({})", self.bootstrap)
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        // SAFETY: created in `start`, destroyed only here, before `_host`.
        unsafe { rd::rd_kafka_mock_cluster_destroy(self.mock) };
    }
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster")
            .field("bootstrap", &self.bootstrap)
            .field("brokers", &self.brokers)
            .finish()
    }
}

/// librdkafka's text for an error code.
pub(crate) fn err_text(err: RDKafkaRespErr) -> String {
    // SAFETY: librdkafka returns a static string for every code.
    unsafe { CStr::from_ptr(rd::rd_kafka_err2str(err)) }.to_string_lossy().into_owned()
}
