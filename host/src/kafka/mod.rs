//! Kafka I/O support: where the brokers are (a `host:port` list, or an
//! in-process mock cluster for `brokers = "embedded"`), client settings with
//! retry and backoff, and topic admin.
//!
//! The source and the sink themselves are `source::kafka::KafkaSource` and
//! `sink::kafka::KafkaSink`.
//!
//! Everything here is synchronous: the engine runs on its own threads and
//! never on an async runtime. librdkafka does its network I/O on its own
//! threads; the few calls that rdkafka offers only as futures (topic
//! creation) are driven by [`block_on`].

mod admin;
mod cluster;
mod config;
mod context;
mod dev_broker;
mod embedded;
mod error;
mod lease;
mod outage;

pub use admin::{PartitionInfo, TopicInfo, TopicSummary};
pub use cluster::{BrokerSpec, Cluster};
pub(crate) use config::effective_property;
pub use config::{Backoff, KafkaConfig, PropertyError, RESERVED_PROPERTIES, check_property};
pub use dev_broker::MockBackend;
pub use embedded::EmbeddedCluster;
pub use error::KafkaError;
/// librdkafka's protocol request kinds and error codes, for fault injection
/// on an [`EmbeddedCluster`].
pub use rdkafka::types::{RDKafkaApiKey as ApiKey, RDKafkaRespErr as RespErr};

pub use context::GroupChange;
pub(crate) use context::{WeirContext, log as log_line};
pub(crate) use embedded::err_text;
pub use lease::Lease;
pub(crate) use outage::{OutageReport, is_transient};

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs a future to completion on the calling thread, parking between polls.
/// rdkafka's admin futures are completed by librdkafka's own threads, so no
/// runtime is needed to drive them.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
