//! Development tools for weir, kept out of the `weir` library:
//!
//! - [`readings`]: the reproducible IoT readings that `weir produce`,
//!   `weir demo`, the tests and the benchmarks send;
//! - [`dev_broker`]: a fixed-address forwarder in front of an in-process
//!   Kafka broker (`weir dev-broker`), which answers the few requests the
//!   broker lacks, with the little of the Kafka wire protocol it needs;
//! - [`hdfs`]: a throwaway HDFS cluster for the tests.
//!
//! This crate does not depend on `weir`: the broker behind the forwarder
//! is reached through the [`dev_broker::Backend`] trait, which the `weir`
//! binary implements for its embedded cluster.

pub mod dev_broker;
pub mod hdfs;
mod protocol;
pub mod readings;

pub use dev_broker::{Backend, DevBroker, DevBrokerError, DevBrokerOptions, TopicError};
