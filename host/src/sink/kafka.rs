//! A Kafka topic sink: an idempotent, batching producer.
//!
//! `send` queues a copy of the record in librdkafka (the record key becomes
//! the message key) and returns; librdkafka batches (`linger`), sends and
//! retries with backoff. When the local queue is full, `send` waits for
//! deliveries instead of dropping anything. `flush` waits until every queued
//! message is delivered and fails if any could not be.
//!
//! Messages are queued through `rd_kafka_produce` on a topic handle made
//! once, because rdkafka's `BaseProducer::send` allocates the topic name for
//! every message. (Sequenced records, which carry headers and a partition,
//! go through `BaseProducer::send`.)
//!
//! How records are kept from repeating after a restore is the sink's
//! [`Delivery`]: not at all (at-least-once), by sequence numbers in headers
//! (`sequence.rs`), or by transactions committed at checkpoints.

mod sequence;

use super::{DeliveryFailure, Sink, SinkError};
use crate::kafka::{Cluster, KafkaError, Lease, effective_property, err_text};
use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::types::RDKafkaRespErr;
use sequence::Sequencer;
pub use sequence::{SEQUENCE_HEADER, SOURCE_PARTITION_HEADER};
use std::ffi::CString;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How a Kafka sink keeps records from repeating after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Delivery {
    /// It does not: the idempotent producer never repeats a record within a
    /// run, but output after the last checkpoint is written again after a
    /// restore (at-least-once).
    #[default]
    Idempotent,
    /// Each record carries its source partition and a sequence number per
    /// (source partition, output partition) as headers; the sink picks the
    /// output partition itself (murmur2 of the key, as the Java client does,
    /// or the source partition for records without a key), checkpoints the
    /// numbers and the partitions' end offsets, and after a restore reads
    /// back what was written since and skips what the replay makes again.
    Sequence,
    /// A transactional producer with this `transactional.id`: records are
    /// committed when the checkpoint holding them completes, and a restore
    /// aborts what was not; a newer producer with the same id fences this
    /// one.
    Transactions {
        /// The `transactional.id`.
        id: String,
    },
}

/// Serve delivery reports after this many sends, so their memory is freed
/// steadily rather than at flush.
const POLL_EVERY: u32 = 1024;

/// Writes records to one topic. See the module documentation.
pub struct KafkaSink {
    /// The topic handle; released before the producer (field order).
    topic_handle: TopicHandle,
    producer: BaseProducer<Deliveries>,
    topic: String,
    unpolled: u32,
    /// How long librdkafka keeps trying to deliver a message
    /// (`message.timeout.ms` as the producer has it).
    delivery_timeout: Duration,
    cluster: Cluster,
    mode: Mode,
    /// Messages queued so far: each carries its number as its delivery
    /// opaque, so a report tells whether it was sent before a barrier.
    produced: u64,
    /// A member of a consumer group: the lease its output needs.
    lease: Option<Lease>,
    /// The lease was lost: what was queued is purged, and nothing more is
    /// written.
    fenced: bool,
}

/// The sink's [`Delivery`], with what it keeps.
enum Mode {
    Idempotent,
    Sequence(Box<Sequencer>),
    /// Whether a transaction is open.
    Transactions {
        open: bool,
    },
}

impl KafkaSink {
    /// Opens an idempotent producer for `topic`, which must exist (create
    /// it with [`Cluster::ensure_topic`] first if need be).
    pub fn open(cluster: &Cluster, topic: &str) -> Result<KafkaSink, SinkError> {
        KafkaSink::open_with(cluster, topic, &Delivery::Idempotent)
    }

    /// Opens a producer for `topic` that delivers as `delivery` says. A
    /// transactional one registers its id (fencing any older producer with
    /// it) and opens a transaction.
    pub fn open_with(cluster: &Cluster, topic: &str, delivery: &Delivery) -> Result<KafkaSink, SinkError> {
        KafkaSink::open_leased(cluster, topic, delivery, None)
    }

    /// [`KafkaSink::open_with`] for a member of a consumer group: its
    /// messages expire after the lease's `message_timeout`, and it writes
    /// nothing once the lease is lost (see `kafka::lease`).
    pub fn open_leased(
        cluster: &Cluster,
        topic: &str,
        delivery: &Delivery,
        lease: Option<&Lease>,
    ) -> Result<KafkaSink, SinkError> {
        let mut sink = KafkaSink::connect(cluster, topic, delivery, lease)
            .map_err(|e| SinkError::OpenTopic { topic: topic.to_string(), source: Box::new(e) })?;
        if let Mode::Transactions { .. } = sink.mode {
            let timeout = sink.cluster.config().request_timeout;
            let init = sink.producer.init_transactions(timeout);
            init.map_err(|e| sink.transaction_error("init", e))?;
            sink.begin()?;
        }
        Ok(sink)
    }

    fn connect(
        cluster: &Cluster,
        topic: &str,
        delivery: &Delivery,
        lease: Option<&Lease>,
    ) -> Result<KafkaSink, KafkaError> {
        let fail = |reason: String| KafkaError::Topic {
            brokers: cluster.label().to_string(),
            topic: topic.to_string(),
            action: "write to",
            reason,
        };
        // Fails with advice if the topic is missing, rather than letting the
        // broker create one with its default settings.
        let probe = cluster.metadata_client()?;
        let metadata = cluster.topic_metadata(&probe, topic)?;
        let partitions = metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>();

        let mut config = cluster.config().producer(cluster.bootstrap());
        if let Some(lease) = lease {
            // What this member queued cannot outlive its lease.
            let wanted = lease.message_timeout.as_millis().max(1);
            let set = config.get("message.timeout.ms").and_then(|v| v.parse::<u128>().ok());
            config.set("message.timeout.ms", set.map_or(wanted, |v| v.min(wanted)).to_string());
        }
        if let Delivery::Transactions { id } = delivery {
            config.set("transactional.id", id);
            // librdkafka wants a transaction to outlive a message's
            // delivery timeout, unless the job sets it.
            if !cluster.config().properties.contains_key("transaction.timeout.ms") {
                let timeout = cluster.config().delivery_timeout.max(Duration::from_secs(60));
                config.set("transaction.timeout.ms", timeout.as_millis().min(900_000).to_string());
            }
        }
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::new(topic, cluster.label(), partitions))
            .map_err(|e| fail(format!("cannot create a producer: {e}")))?;
        let name = CString::new(topic).map_err(|_| fail("the name contains a NUL byte".into()))?;
        // SAFETY: the producer is live; the name is copied. The handle is
        // released in `TopicHandle::drop`, before the producer.
        let handle = unsafe {
            rd::rd_kafka_topic_new(producer.client().native_ptr(), name.as_ptr(), std::ptr::null_mut())
        };
        if handle.is_null() {
            // SAFETY: reads librdkafka's thread-local last error.
            return Err(fail(err_text(unsafe { rd::rd_kafka_last_error() })));
        }
        // SAFETY: the producer is live.
        let delivery_timeout =
            unsafe { effective_property(producer.client().native_ptr(), "message.timeout.ms") }
                .and_then(|ms| ms.parse::<u64>().ok())
                .map_or(cluster.config().delivery_timeout, Duration::from_millis);
        let mode = match delivery {
            Delivery::Idempotent => Mode::Idempotent,
            Delivery::Sequence => {
                let count = i32::try_from(partitions).map_err(|_| fail("too many partitions".into()))?;
                Mode::Sequence(Box::new(Sequencer::new(count, probe)))
            }
            Delivery::Transactions { .. } => Mode::Transactions { open: false },
        };
        Ok(KafkaSink {
            topic_handle: TopicHandle(handle),
            producer,
            topic: topic.to_string(),
            unpolled: 0,
            delivery_timeout,
            cluster: cluster.clone(),
            mode,
            produced: 0,
            lease: lease.cloned(),
            fenced: false,
        })
    }

    /// Refuses to go on once the lease is lost, purging what is queued.
    fn check_lease(&mut self) -> Result<(), SinkError> {
        match &self.lease {
            Some(lease) if self.fenced || !lease.holds() => {
                let suspended_after = lease.suspended_after();
                self.purge();
                Err(SinkError::LeaseLost { topic: self.topic.clone(), suspended_after })
            }
            _ => Ok(()),
        }
    }

    /// Drops every message not yet delivered, for good.
    fn purge(&mut self) {
        if !self.fenced {
            self.fenced = true;
            self.producer.purge(PurgeConfig::default().queue().inflight());
            self.producer.poll(Duration::ZERO);
        }
    }

    fn transaction_error(&self, action: &'static str, e: rdkafka::error::KafkaError) -> SinkError {
        SinkError::Transaction {
            topic: self.topic.clone(),
            brokers: self.cluster.label().to_string(),
            action,
            source: Box::new(e),
        }
    }

    /// Opens a transaction (transactional sinks).
    fn begin(&mut self) -> Result<(), SinkError> {
        self.producer.begin_transaction().map_err(|e| self.transaction_error("begin", e))?;
        self.mode = Mode::Transactions { open: true };
        Ok(())
    }

    /// Commits the open transaction and opens the next (transactional
    /// sinks).
    pub fn commit(&mut self) -> Result<(), SinkError> {
        if let Mode::Transactions { open: true } = self.mode {
            self.mode = Mode::Transactions { open: false };
            let timeout = self.delivery_timeout + self.cluster.config().request_timeout;
            self.producer.commit_transaction(timeout).map_err(|e| self.transaction_error("commit", e))?;
            self.begin()?;
        }
        Ok(())
    }

    /// Aborts the open transaction and opens the next (transactional
    /// sinks): what was sent in it is never seen by read_committed readers.
    pub fn abort(&mut self) -> Result<(), SinkError> {
        if let Mode::Transactions { open: true } = self.mode {
            self.mode = Mode::Transactions { open: false };
            let timeout = self.delivery_timeout + self.cluster.config().request_timeout;
            self.producer.abort_transaction(timeout).map_err(|e| self.transaction_error("abort", e))?;
            self.begin()?;
        }
        Ok(())
    }

    /// Queues a record with headers on partition `partition`, waiting for
    /// room when the queue is full.
    fn produce_sequenced(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: rdkafka::message::OwnedHeaders,
    ) -> Result<(), SinkError> {
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, self.produced as usize)
            .partition(partition)
            .payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        record = record.headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.produced += 1;
                    break;
                }
                Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                    self.unpolled = 0;
                    self.check_failures()?;
                }
                Err((e, _)) => {
                    return Err(SinkError::Queue {
                        topic: self.topic.clone(),
                        brokers: self.cluster.label().to_string(),
                        source: e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
                    });
                }
            }
        }
        Ok(())
    }

    /// Queues a record on the partition librdkafka's partitioner picks.
    fn produce(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        self.produce_on(rdkafka::producer::PARTITION_UA, key, payload)
    }

    /// Sends a record to partition `partition` of the topic instead of the
    /// one its key hashes to: for loaders that lay data out by partition
    /// (a benchmark puts each device in a partition of its own). Only for
    /// an idempotent sink: the others place records themselves.
    pub fn send_to_partition(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        self.check_failures()?;
        if !matches!(self.mode, Mode::Idempotent) {
            return Err(SinkError::Queue {
                topic: self.topic.clone(),
                brokers: self.cluster.label().to_string(),
                source: RDKafkaErrorCode::InvalidArgument,
            });
        }
        self.produce_on(partition, key, payload)?;
        self.unpolled += 1;
        if self.unpolled >= POLL_EVERY {
            self.producer.poll(Duration::ZERO);
            self.unpolled = 0;
        }
        Ok(())
    }

    fn produce_on(&mut self, partition: i32, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        let (key_ptr, key_len) = key.map_or((std::ptr::null(), 0), |k| (k.as_ptr(), k.len()));
        loop {
            // SAFETY: the topic handle is live; with F_COPY librdkafka copies
            // key and payload before returning and never writes through the
            // payload pointer.
            let rc = unsafe {
                rd::rd_kafka_produce(
                    self.topic_handle.0,
                    partition,
                    rd::RD_KAFKA_MSG_F_COPY,
                    payload.as_ptr() as *mut std::ffi::c_void,
                    payload.len(),
                    key_ptr as *const std::ffi::c_void,
                    key_len,
                    // The message's number, for its delivery report (rdkafka
                    // reads a `usize` opaque back from the pointer's value).
                    self.produced as usize as *mut std::ffi::c_void,
                )
            };
            if rc == 0 {
                self.produced += 1;
                return Ok(());
            }
            // SAFETY: reads librdkafka's thread-local last error.
            let err = unsafe { rd::rd_kafka_last_error() };
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__QUEUE_FULL {
                return Err(SinkError::Queue {
                    topic: self.topic.clone(),
                    brokers: self.cluster.label().to_string(),
                    source: err.into(),
                });
            }
            // Backpressure: the queue is full, so wait for deliveries to make
            // room, and report a failure if one happened meanwhile.
            self.producer.poll(Duration::from_millis(10));
            self.unpolled = 0;
            self.check_failures()?;
        }
    }

    /// The value the producer actually uses for librdkafka property `name`
    /// (global or topic-level), or `None` if librdkafka has no such
    /// property.
    pub fn client_property(&self, name: &str) -> Option<String> {
        // SAFETY: the producer is live for as long as `self`.
        unsafe { effective_property(self.producer.client().native_ptr(), name) }
    }

    /// Messages delivered (acknowledged by the brokers) so far.
    pub fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    /// Messages queued but not yet delivered or failed.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// Fails if any message could not be delivered: a lost message stops the
    /// job rather than being skipped.
    fn check_failures(&self) -> Result<(), SinkError> {
        let deliveries = self.producer.context();
        let failed = deliveries.failed.load(Ordering::Acquire);
        if failed == 0 {
            return Ok(());
        }
        // The count is raised after the failure is stored, so it is there.
        let source =
            deliveries.first_failure.lock().unwrap_or_else(PoisonError::into_inner).clone().map(Box::new);
        Err(SinkError::Undelivered {
            topic: self.topic.clone(),
            brokers: self.cluster.label().to_string(),
            failed,
            source,
        })
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        self.send_from(0, key, payload)
    }

    fn send_from(
        &mut self,
        source_partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        self.check_lease()?;
        self.check_failures()?;
        match &mut self.mode {
            Mode::Sequence(sequencer) => {
                let partition =
                    output_partition(&self.topic_handle, source_partition, key, sequencer.partitions());
                // Written before the restore: the replay made it again.
                let Some(headers) = sequencer.next(source_partition, partition) else { return Ok(()) };
                self.produce_sequenced(partition, key, payload, headers)?;
            }
            Mode::Idempotent | Mode::Transactions { .. } => self.produce(key, payload)?,
        }
        self.unpolled += 1;
        if self.unpolled >= POLL_EVERY {
            self.producer.poll(Duration::ZERO);
            self.unpolled = 0;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.check_lease()?;
        // Every message is delivered or failed within the delivery timeout,
        // so this wait ends.
        let limit = self.delivery_timeout + self.cluster.config().request_timeout;
        let flushed = self.producer.flush(limit);
        self.unpolled = 0;
        // A process suspended while it waited here finds its messages timed
        // out, or the wait over: that is the lost lease, not a broker's
        // failure.
        self.check_lease()?;
        self.check_failures()?;
        flushed.map_err(|e| SinkError::FlushTimeout {
            topic: self.topic.clone(),
            brokers: self.cluster.label().to_string(),
            in_flight: self.in_flight(),
            waited: limit,
            source: Box::new(e),
        })
    }

    fn name(&self) -> &str {
        &self.topic
    }

    /// Flushes; a sequenced sink returns its sequence numbers and the
    /// partitions' end offsets (`sequence.rs`), others nothing.
    fn reads_back(&self) -> bool {
        matches!(self.mode, Mode::Sequence(_))
    }

    /// The barrier: what was queued until now must be acknowledged before
    /// the checkpoint completes ([`Sink::checkpoint_pending`]); the loop
    /// does not wait for it here. A transactional sink flushes instead (its
    /// transaction commits at completion). A sequenced sink's state holds,
    /// per output partition, an offset no later than its first record after
    /// the barrier: where a restore reads back from.
    fn checkpoint_state(&mut self) -> Result<Vec<u8>, SinkError> {
        self.check_lease()?;
        if let Mode::Transactions { .. } = self.mode {
            self.flush()?;
            return Ok(Vec::new());
        }
        self.producer.poll(Duration::ZERO);
        self.unpolled = 0;
        self.check_failures()?;
        let deliveries = self.producer.context();
        // Reports are served on this thread (in `poll`): every one so far
        // is of a message before the barrier, and no more arrive meanwhile.
        let resolved =
            deliveries.delivered.load(Ordering::Relaxed) + deliveries.failed.load(Ordering::Relaxed);
        deliveries.barrier.store(self.produced, Ordering::Relaxed);
        deliveries.before_barrier.store(self.produced.saturating_sub(resolved), Ordering::Relaxed);
        match &mut self.mode {
            Mode::Sequence(sequencer) => {
                let acked: Vec<i64> =
                    deliveries.acked_end.iter().map(|a| a.load(Ordering::Relaxed)).collect();
                sequencer.state(&self.topic, &self.cluster, &acked)
            }
            Mode::Idempotent | Mode::Transactions { .. } => Ok(Vec::new()),
        }
    }

    fn checkpoint_pending(&mut self) -> Result<bool, SinkError> {
        self.check_lease()?;
        self.producer.poll(Duration::ZERO);
        self.unpolled = 0;
        self.check_failures()?;
        Ok(self.producer.context().before_barrier.load(Ordering::Relaxed) > 0)
    }

    fn checkpoint_complete(&mut self) -> Result<(), SinkError> {
        self.commit()
    }

    fn commits_at_checkpoints(&self) -> bool {
        matches!(self.mode, Mode::Transactions { .. })
    }

    /// Sequenced: reads back what was written after the checkpoint, to skip
    /// it when the replay makes it again. Transactional: aborts the open
    /// transaction. Idempotent: nothing.
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        match &mut self.mode {
            Mode::Sequence(sequencer) => {
                let config = self.cluster.config().consumer(self.cluster.bootstrap(), "weir-read-back", true);
                sequencer.restore(state, &self.topic, &self.cluster, config)
            }
            Mode::Transactions { .. } => self.abort(),
            Mode::Idempotent => Ok(()),
        }
    }

    fn fence(&mut self) {
        if let Some(lease) = &self.lease {
            lease.lose();
        }
        self.purge();
    }

    fn merge_states(&self, pieces: &[(Vec<i32>, Vec<u8>)]) -> Result<Vec<u8>, SinkError> {
        match &self.mode {
            Mode::Sequence(_) => sequence::merge(pieces).ok_or_else(|| SinkError::State {
                sink: self.topic.clone(),
                reason: "the checkpoints of the group's members hold states that do not fit together \
                         (another exactly_once, or another partition count)"
                    .into(),
            }),
            Mode::Idempotent | Mode::Transactions { .. } => Ok(Vec::new()),
        }
    }

    fn skipped(&self) -> u64 {
        match &self.mode {
            Mode::Sequence(sequencer) => sequencer.skipped(),
            Mode::Idempotent | Mode::Transactions { .. } => 0,
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // An uncommitted transaction is aborted: its records belong after
        // the last checkpoint, and a restored run writes them again.
        if let Mode::Transactions { open: true } = self.mode {
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
        // A member that lost its lease leaves nothing to be sent.
        if self.lease.as_ref().is_some_and(|l| !l.holds()) {
            self.purge();
            return;
        }
        // Dropping rdkafka's producer purges its queue; give queued messages
        // a short chance, and say if any are lost.
        if !self.fenced && self.in_flight() > 0 && self.producer.flush(Duration::from_secs(5)).is_err() {
            tracing::warn!(
                "topic '{}': {} message(s) were not delivered before the sink closed (flush it first)",
                self.topic,
                self.in_flight()
            );
        }
    }
}

/// Counts delivery reports and keeps the first failure; reports broker
/// outages once as they start and end.
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<DeliveryFailure>>,
    outage: crate::kafka::OutageReport,
    /// The number of the first message after the last checkpoint barrier,
    /// and how many before it are still unreported.
    barrier: AtomicU64,
    before_barrier: AtomicU64,
    /// Per output partition, the offset after the last acknowledged
    /// message (0: none yet).
    acked_end: Vec<AtomicI64>,
}

impl Deliveries {
    fn new(topic: &str, brokers: &str, partitions: usize) -> Deliveries {
        Deliveries {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            outage: crate::kafka::OutageReport::new("sink", topic, brokers),
            barrier: AtomicU64::new(0),
            before_barrier: AtomicU64::new(0),
            acked_end: (0..partitions).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// A report of message `number`: one fewer before the barrier if it is.
    fn reported(&self, number: usize) {
        if (number as u64) < self.barrier.load(Ordering::Relaxed) {
            let _ =
                self.before_barrier.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::log_line(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
        // The producer retries until the delivery timeout; meanwhile the
        // job is degraded, which is said once.
        if error.rdkafka_error_code().is_some_and(crate::kafka::is_transient) {
            self.outage.unreachable(reason);
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, number: usize) {
        match result {
            Ok(message) => {
                use rdkafka::Message;
                self.outage.reachable();
                if let Some(end) =
                    usize::try_from(message.partition()).ok().and_then(|p| self.acked_end.get(p))
                {
                    end.fetch_max(message.offset() + 1, Ordering::Relaxed);
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.reported(number);
            }
            Err((e, message)) => {
                use rdkafka::Message;
                // Stored before the count is raised, so a reader that sees
                // the count sees the failure.
                let mut first = self.first_failure.lock().unwrap_or_else(PoisonError::into_inner);
                if first.is_none() {
                    *first = Some(DeliveryFailure { partition: message.partition(), source: e.clone() });
                }
                drop(first);
                self.failed.fetch_add(1, Ordering::Release);
                self.reported(number);
            }
        }
    }
}

/// The output partition of a sequenced record: the Java client's murmur2
/// of the key (as librdkafka's default partitioner picks for keyed
/// messages), or the source partition for records without a key, modulo
/// the topic's `count` partitions. Fixed, so that a replay numbers records
/// as the run before it did.
fn output_partition(handle: &TopicHandle, source_partition: i32, key: Option<&[u8]>, count: i32) -> i32 {
    match key {
        // SAFETY: the topic handle is live; the function only hashes the
        // key.
        Some(k) => unsafe {
            rd::rd_kafka_msg_partitioner_murmur2(
                handle.0,
                k.as_ptr().cast(),
                k.len(),
                count,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        },
        None => source_partition.rem_euclid(count),
    }
}

/// A topic handle of the producer, released on drop.
struct TopicHandle(*mut rd::rd_kafka_topic_t);

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: made by `rd_kafka_topic_new`, released once.
        unsafe { rd::rd_kafka_topic_destroy(self.0) };
    }
}

// SAFETY: librdkafka topic handles may be used from any thread.
unsafe impl Send for TopicHandle {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{KafkaConfig, RESERVED_PROPERTIES};
    use std::collections::BTreeMap;

    /// Exactly-once output rests on these producer settings; a change to any
    /// of them must fail here. They are read back from the live producer,
    /// so an override anywhere on the way is caught.
    #[test]
    fn the_producer_keeps_the_settings_exactly_once_delivery_relies_on() {
        let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
        cluster.create_topic("out", 2, 1).unwrap();
        // Every reserved property set to something else: none may stick.
        let hostile: BTreeMap<String, String> =
            RESERVED_PROPERTIES.iter().map(|(name, _)| (name.to_string(), "0".to_string())).collect();
        for cluster in [cluster.clone(), cluster.with_properties(&hostile)] {
            let sink = KafkaSink::open(&cluster, "out").unwrap();
            let expected = [
                // Retries never duplicate or reorder a message.
                ("enable.idempotence", "true"),
                // Every in-sync replica acknowledges a write.
                ("acks", "-1"),
                // The most requests in flight that idempotence keeps in order.
                ("max.in.flight.requests.per.connection", "5"),
                // Retry until the delivery timeout, with backoff.
                ("message.send.max.retries", "2147483647"),
                ("retry.backoff.ms", "250"),
                ("retry.backoff.max.ms", "8000"),
                ("message.timeout.ms", "120000"),
                // A key always lands on the same partition.
                ("partitioner", "murmur2_random"),
                ("bootstrap.servers", cluster.bootstrap()),
            ];
            for (name, value) in expected {
                assert_eq!(sink.client_property(name).as_deref(), Some(value), "{name}");
            }
            // No transactions: the producer is not transactional.
            assert_eq!(sink.client_property("transactional.id"), None);
            assert_eq!(sink.delivery_timeout, Duration::from_secs(120));
        }
    }
}
