//! What `weir dev-broker` serves: a one-broker embedded cluster behind the
//! forwarder of [`weir_devtools::DevBroker`], which gives it a fixed address
//! and the CreateTopics request. In the library so that benchmarks can run
//! the same broker in a process of their own.

use super::{EmbeddedCluster, KafkaError};
use std::net::SocketAddr;
use weir_devtools::{Backend, TopicError};

/// The broker behind the forwarder: a one-broker embedded (mock) cluster.
pub struct MockBackend {
    cluster: EmbeddedCluster,
    address: SocketAddr,
}

impl MockBackend {
    /// Starts the mock broker on an ephemeral loopback port.
    pub fn start() -> Result<MockBackend, KafkaError> {
        let cluster = EmbeddedCluster::start(1)?;
        let address = cluster.bootstrap().parse().map_err(|_| {
            KafkaError::Embedded(format!("unexpected mock broker address '{}'", cluster.bootstrap()))
        })?;
        Ok(MockBackend { cluster, address })
    }

    /// The mock cluster, to take its broker down and up.
    pub fn cluster(&self) -> &EmbeddedCluster {
        &self.cluster
    }
}

impl Backend for MockBackend {
    fn address(&self) -> SocketAddr {
        self.address
    }

    fn advertise(&self, host: &str, port: u16) -> Result<(), String> {
        self.cluster.advertise(1, host, port).map_err(|e| e.to_string())
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), TopicError> {
        match self.cluster.create_topic(topic, partitions, 1) {
            Ok(()) => Ok(()),
            Err(KafkaError::TopicExists { .. }) => Err(TopicError::Exists),
            Err(KafkaError::Topic { reason, .. }) => Err(TopicError::Invalid(reason)),
            Err(e) => Err(TopicError::Failed(e.to_string())),
        }
    }
}
