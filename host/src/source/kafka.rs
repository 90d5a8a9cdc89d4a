//! A Kafka topic source: one consumer assigned to every partition of one
//! topic, polled on the engine's thread.
//!
//! Records come straight from librdkafka's consumer queue in batches
//! (`rd_kafka_consume_batch_queue`) and are handed over as slices of
//! librdkafka's own buffers: nothing is allocated or copied per record.
//! (rdkafka's `BaseConsumer::poll` allocates an `Arc` per message, so the
//! queue is read through the C API.)
//!
//! Bounded mode (`--until-end`) reads each partition up to the high
//! watermark it had at open, then ends, even if more arrives meanwhile.
//!
//! With `scale_out`, the consumer subscribes to the topic as a member of
//! its group (cooperative-sticky) instead of assigning every partition.
//! Its queue is then read as events (`rd_kafka_queue_poll`, one message
//! per event, still borrowed): a batch read would have librdkafka act on
//! a rebalance by itself. A rebalance is kept ([`Source::group_changes`])
//! until the job has checkpointed what it loses or restored what it gains,
//! and then assigned ([`Source::take_partitions`],
//! [`Source::release_partitions`]).

use super::{CommitError, Poll, RawRecord, Source, SourceError};
use crate::kafka::{
    Cluster, GroupChange, KafkaError, OutageReport, WeirContext, effective_property, err_text, is_transient,
};
use rdkafka::bindings as rd;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, CString};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where reading starts: the job file's `source.start` and `weir consume
/// --from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest message still held.
    #[default]
    Earliest,
    /// Only messages that arrive after the source opened.
    Latest,
    /// The group's committed offsets; partitions without one start at the
    /// earliest.
    Committed,
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<StartFrom, String> {
        match text {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            "committed" => Ok(StartFrom::Committed),
            other => Err(format!("expected earliest, latest or committed, got '{other}'")),
        }
    }
}

/// What a Kafka source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceOptions {
    /// The topic; every partition is read.
    pub topic: String,
    /// The consumer group offsets are committed for. Without one the source
    /// cannot commit and `StartFrom::Committed` is refused.
    pub group: Option<String>,
    /// Where reading starts.
    pub start: StartFrom,
    /// Bounded: end at the end offsets seen at open.
    pub until_end: bool,
    /// Join `group` and read the partitions it gives this member, which
    /// change as members come and go (see the module documentation).
    pub scale_out: bool,
}

impl KafkaSourceOptions {
    /// Reads `topic` from the earliest offset, unbounded, without a group.
    pub fn new(topic: &str) -> KafkaSourceOptions {
        KafkaSourceOptions {
            topic: topic.to_string(),
            group: None,
            start: StartFrom::Earliest,
            until_end: false,
            scale_out: false,
        }
    }
}

/// One message as the source reads it: a [`RawRecord`] plus the message
/// key and timestamp, all borrowed from librdkafka's buffers.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The message key, if it has one.
    pub key: Option<&'a [u8]>,
    /// The message timestamp in ms, if it has one.
    pub timestamp: Option<i64>,
    /// The payload (empty for a tombstone).
    pub payload: &'a [u8],
}

/// The most messages taken from librdkafka in one call.
const BATCH: usize = 1024;

/// Reads one topic. See the module documentation.
pub struct KafkaSource {
    /// The consumer's message queue; released before the consumer.
    queue: ConsumerQueue,
    /// librdkafka's main queue: its log lines and client errors (a broker
    /// down), which the source serves itself between polls.
    events: ConsumerQueue,
    /// Message pointers of the batch being handed over.
    batch: MessageBatch,
    consumer: BaseConsumer<WeirContext>,
    topic: String,
    group: Option<String>,
    /// Partition ids, ascending; the per-partition vectors below follow it.
    partitions: Vec<i32>,
    /// The offset after the last record handed over (-1: none yet).
    next: Vec<i64>,
    /// The offsets last committed (-1: none).
    committed: Vec<i64>,
    /// Bounded mode: the end offset of each partition, and which are done.
    ends: Option<Vec<i64>>,
    done: Vec<bool>,
    remaining: usize,
    /// Where partitions start unless a seek says otherwise.
    start: StartFrom,
    /// Whether the brokers are reachable: an outage is reported once when
    /// it starts and once when it ends, not per failed request.
    outage: OutageReport,
    /// In an outage, when the brokers were last asked whether they are back.
    probed: Instant,
    cluster: Cluster,
    /// A member of a group (`scale_out`): the rebalances not acted on yet,
    /// and which partitions the member reads now. Outside a group every
    /// partition is owned.
    rebalances: Option<Vec<GroupChange>>,
    owned: Vec<bool>,
}

/// How often a source in an outage asks the brokers whether they are back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl KafkaSource {
    /// Where reading `partition` starts when nothing says where it goes
    /// on: its first offset, its end, or the group's committed offset, as
    /// `start` says (the broker asked now).
    fn start_offset(&self, partition: i32) -> Result<i64, SourceError> {
        let fail = |reason: String| SourceError::Seek { name: self.topic.clone(), reason };
        let timeout = self.cluster.config().request_timeout;
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, timeout)
            .map_err(|e| fail(format!("cannot read the offsets of partition {partition}: {e}")))?;
        Ok(match self.start {
            StartFrom::Earliest => low,
            StartFrom::Latest => high,
            StartFrom::Committed => {
                let mut tpl = TopicPartitionList::with_capacity(1);
                tpl.add_partition(&self.topic, partition);
                let stored = self
                    .consumer
                    .committed_offsets(tpl, timeout)
                    .map_err(|e| fail(format!("cannot read the committed offset of {partition}: {e}")))?;
                match stored.find_partition(&self.topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o.max(low),
                    _ => low,
                }
            }
        })
    }
    /// Opens `options.topic` on `cluster`: reads its partitions and, in
    /// bounded mode, their end offsets, and assigns them all.
    pub fn open(cluster: &Cluster, options: &KafkaSourceOptions) -> Result<KafkaSource, SourceError> {
        KafkaSource::connect(cluster, options)
            .map_err(|e| SourceError::OpenTopic { topic: options.topic.clone(), source: Box::new(e) })
    }

    fn connect(cluster: &Cluster, options: &KafkaSourceOptions) -> Result<KafkaSource, KafkaError> {
        let topic = options.topic.as_str();
        let fail = |reason: String| KafkaError::Topic {
            brokers: cluster.label().to_string(),
            topic: topic.to_string(),
            action: "read",
            reason,
        };
        if options.start == StartFrom::Committed && options.group.is_none() {
            return Err(fail("start = committed needs a consumer group".into()));
        }
        if options.scale_out && options.group.is_none() {
            return Err(fail("scale_out needs a consumer group".into()));
        }
        // librdkafka needs a group id to hand out a consumer queue; a source
        // without a group gets a private one and never commits.
        let group = options
            .group
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{}", std::process::id(), unique_suffix()));
        let rebalances = options.scale_out.then(Vec::new);
        let mut config = cluster.config().consumer(cluster.bootstrap(), &group, options.until_end);
        let context = match options.scale_out {
            true => {
                // Members keep what they own across a rebalance and move
                // only what must move.
                config.set("partition.assignment.strategy", "cooperative-sticky");
                WeirContext::for_group()
            }
            false => WeirContext::default(),
        };
        let consumer: BaseConsumer<WeirContext> = config
            .create_with_context(context)
            .map_err(|e| fail(format!("cannot create a consumer: {e}")))?;
        let timeout = cluster.config().request_timeout;

        let metadata = cluster.topic_metadata(&consumer, topic)?;
        let mut partitions: Vec<i32> =
            metadata.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id()).collect();
        partitions.sort_unstable();
        let n = partitions.len();

        let mut done = vec![false; n];
        let mut committed = vec![-1; n];
        if options.group.is_some() {
            let mut tpl = TopicPartitionList::with_capacity(n);
            for &p in &partitions {
                tpl.add_partition(topic, p);
            }
            let stored = consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| fail(format!("cannot read committed offsets: {e}")))?;
            for (i, &p) in partitions.iter().enumerate() {
                if let Some(Offset::Offset(o)) = stored.find_partition(topic, p).map(|e| e.offset()) {
                    committed[i] = o;
                }
            }
        }
        let ends = if options.until_end {
            let mut ends = Vec::with_capacity(n);
            for (i, &p) in partitions.iter().enumerate() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| fail(format!("cannot read the end offset of partition {p}: {e}")))?;
                let start = match options.start {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                    StartFrom::Committed if committed[i] >= 0 => committed[i].max(low),
                    StartFrom::Committed => low,
                };
                // A member of a group learns where its partitions start
                // when the group gives them to it.
                done[i] = !options.scale_out && start >= high;
                ends.push(high);
            }
            Some(ends)
        } else {
            None
        };

        let mut assignment = TopicPartitionList::with_capacity(n);
        for (i, &p) in partitions.iter().enumerate() {
            // A finished partition is not fetched at all.
            if done[i] || options.scale_out {
                continue;
            }
            let offset = match options.start {
                StartFrom::Earliest => Offset::Beginning,
                StartFrom::Latest => Offset::End,
                StartFrom::Committed => Offset::Stored,
            };
            assignment
                .add_partition_offset(topic, p, offset)
                .map_err(|e| fail(format!("cannot assign partition {p}: {e}")))?;
        }
        if options.scale_out {
            consumer.subscribe(&[topic]).map_err(|e| fail(format!("cannot join group '{group}': {e}")))?;
        } else {
            consumer.assign(&assignment).map_err(|e| fail(format!("cannot assign the partitions: {e}")))?;
        }

        // SAFETY: the consumer is live; the queue reference is released in
        // `ConsumerQueue::drop`, before the consumer (field order).
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        if queue.is_null() {
            return Err(fail("librdkafka gave no consumer queue".into()));
        }
        let queue = ConsumerQueue(queue);
        // rdkafka forwards the main queue (logs, errors) into the consumer
        // queue, where the batch read would print them raw to stderr; they
        // are taken apart again and served by `serve_events`.
        // SAFETY: as for the consumer queue.
        let events = unsafe { rd::rd_kafka_queue_get_main(consumer.client().native_ptr()) };
        if events.is_null() {
            return Err(fail("librdkafka gave no main queue".into()));
        }
        let events = ConsumerQueue(events);
        // SAFETY: both queues are live.
        unsafe { rd::rd_kafka_queue_forward(events.0, std::ptr::null_mut()) };
        let remaining = done.iter().filter(|d| !**d).count();
        tracing::debug!(
            "reading topic '{topic}' ({n} partitions) from {}{}",
            cluster.label(),
            if options.until_end { ", up to the end offsets seen now" } else { "" }
        );
        Ok(KafkaSource {
            queue,
            events,
            batch: MessageBatch(vec![std::ptr::null_mut(); BATCH]),
            consumer,
            topic: topic.to_string(),
            group: options.group.clone(),
            partitions,
            next: vec![-1; n],
            committed,
            ends,
            done,
            remaining,
            start: options.start,
            outage: OutageReport::new("source", topic, cluster.label()),
            probed: Instant::now(),
            cluster: cluster.clone(),
            owned: vec![!options.scale_out; n],
            rebalances,
        })
    }

    /// The value the consumer actually uses for librdkafka property
    /// `name`, or `None` if librdkafka has no such property.
    pub fn client_property(&self, name: &str) -> Option<String> {
        // SAFETY: the consumer is live for as long as `self`.
        unsafe { effective_property(self.consumer.client().native_ptr(), name) }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the group asked for a rebalance not acted on yet.
    fn rebalancing(&self) -> bool {
        self.rebalances.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// A member of a group: like the batch read of [`Source::poll`], from
    /// events, keeping each rebalance for the job (and returning at once).
    /// Returns how many records were handed over.
    fn poll_events(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(KafkaRecord<'_>),
    ) -> Result<usize, SourceError> {
        let deadline = Instant::now() + wait;
        let mut handed = 0usize;
        while handed < max && !self.rebalancing() {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout_ms = match handed {
                0 if !left.is_zero() => i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX),
                _ => 0,
            };
            // SAFETY: the queue is live; a returned event is destroyed below.
            let event = unsafe { rd::rd_kafka_queue_poll(self.queue.0, timeout_ms) };
            if event.is_null() {
                if handed > 0 || Instant::now() >= deadline {
                    break;
                }
                continue;
            }
            let mut failure = None;
            // SAFETY: `event` is live until destroyed at the end; the
            // messages and lists it hands out are owned by it.
            unsafe {
                match rd::rd_kafka_event_type(event) {
                    rd::RD_KAFKA_EVENT_FETCH => loop {
                        let m = rd::rd_kafka_event_message_next(event);
                        if m.is_null() || failure.is_some() {
                            break;
                        }
                        match self.handle(&*m, each) {
                            Ok(true) => handed += 1,
                            Ok(false) => {}
                            Err(e) => failure = Some(e),
                        }
                    },
                    rd::RD_KAFKA_EVENT_REBALANCE => {
                        let err = rd::rd_kafka_event_error(event);
                        let list = rd::rd_kafka_event_topic_partition_list(event);
                        let mut partitions = Vec::new();
                        if !list.is_null() {
                            let list = &*list;
                            for k in 0..usize::try_from(list.cnt).unwrap_or(0) {
                                partitions.push((*list.elems.add(k)).partition);
                            }
                        }
                        partitions.sort_unstable();
                        let change = match err {
                            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                                Some(GroupChange::Assigned(partitions))
                            }
                            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                                let lost = self.consumer.assignment_lost();
                                Some(GroupChange::Revoked { partitions, lost })
                            }
                            other => {
                                tracing::warn!("consumer group rebalance failed: {}", err_text(other));
                                None
                            }
                        };
                        if let (Some(change), Some(queue)) = (change, self.rebalances.as_mut()) {
                            tracing::debug!("consumer group: {change:?}");
                            queue.push(change);
                        }
                    }
                    rd::RD_KAFKA_EVENT_ERROR => self.client_error(event),
                    _ => {}
                }
                rd::rd_kafka_event_destroy(event);
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(handed)
    }

    /// The topic's partitions as a list for librdkafka.
    fn partition_list(&self, partitions: &[(i32, Offset)]) -> Result<TopicPartitionList, SourceError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for &(p, offset) in partitions {
            tpl.add_partition_offset(&self.topic, p, offset).map_err(|e| SourceError::Seek {
                name: self.topic.clone(),
                reason: format!("cannot assign partition {p}: {e}"),
            })?;
        }
        Ok(tpl)
    }

    /// For each partition, the offset after the last record handed over
    /// (the offset to commit once that record is processed); partitions
    /// with nothing handed over yet are left out.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions.iter().copied().zip(self.next.iter().copied()).filter(|&(_, o)| o >= 0).collect()
    }

    /// Commits the offsets of every record handed over so far (for tools
    /// that are done with a record once it is handed over, like `weir
    /// consume`; a job commits what its sinks have written, through
    /// [`Source::commit`]).
    pub fn commit_positions(&mut self) -> Result<(), SourceError> {
        let positions = self.positions();
        self.commit_offsets(&positions)
    }

    /// The offsets this source committed or found committed at open, as
    /// `(partition, next offset to read)`; partitions without one are left
    /// out.
    pub fn committed(&self) -> Vec<(i32, i64)> {
        self.partitions.iter().copied().zip(self.committed.iter().copied()).filter(|&(_, o)| o >= 0).collect()
    }

    /// Commits `(partition, next offset)` pairs for the group, synchronously,
    /// for example those of a checkpoint. Offsets not past the last commit
    /// are skipped.
    pub fn commit_offsets(&mut self, offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        let fail = |source: CommitError| SourceError::Commit {
            topic: self.topic.clone(),
            brokers: self.cluster.label().to_string(),
            source,
        };
        if self.group.is_none() {
            return Err(fail(CommitError::NoGroup));
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        let mut changed = Vec::new();
        for &(partition, offset) in offsets {
            let Some(i) = self.index(partition) else {
                return Err(fail(CommitError::UnknownPartition(partition)));
            };
            if offset < 0 {
                return Err(fail(CommitError::BadOffset { partition, offset }));
            }
            if offset > self.committed[i] {
                tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                    .map_err(|e| fail(CommitError::Request(Box::new(e))))?;
                changed.push((i, offset));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => self.outage.reachable(),
            // A member of a group restores from checkpoints, not from its
            // commits, which a rebalance under way refuses (they only show
            // the group's progress): the next one carries the offsets.
            Err(e) if self.rebalances.is_some() => {
                tracing::debug!("offsets not committed (the group may be rebalancing): {e}");
                return Ok(());
            }
            // The brokers are away: the offsets stay uncommitted, and the
            // next commit (which carries every partition's latest offset)
            // sends them again. Only a restart in between would re-read
            // what they cover, which at-least-once allows.
            Err(e) if e.rdkafka_error_code().is_some_and(is_transient) => {
                self.outage.unreachable(&format!("offsets not committed yet: {e}"));
                return Ok(());
            }
            Err(e) => return Err(fail(CommitError::Request(Box::new(e)))),
        }
        for (i, offset) in changed {
            self.committed[i] = offset;
        }
        Ok(())
    }

    fn index(&self, partition: i32) -> Option<usize> {
        // Partition ids are 0..n in practice, so the id is the index.
        match usize::try_from(partition).ok().filter(|&i| self.partitions.get(i) == Some(&partition)) {
            Some(i) => Some(i),
            None => self.partitions.iter().position(|&p| p == partition),
        }
    }

    /// Marks a partition finished (bounded mode) and stops fetching it.
    fn finish(&mut self, i: usize) {
        if self.done[i] {
            return;
        }
        self.done[i] = true;
        self.remaining -= 1;
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition(&self.topic, self.partitions[i]);
        // Only saves fetching; records past the end are skipped anyway.
        let _ = self.consumer.pause(&tpl);
    }

    /// Serves the events waiting in librdkafka's main queue: log lines go
    /// to the log, and errors of brokers that are away start an outage.
    fn serve_events(&mut self) {
        loop {
            // SAFETY: the queue is live; a returned event is destroyed below.
            let event = unsafe { rd::rd_kafka_queue_poll(self.events.0, 0) };
            if event.is_null() {
                return;
            }
            // SAFETY: `event` is live until destroyed; the strings it hands
            // out are owned by it and copied before that.
            unsafe {
                match rd::rd_kafka_event_type(event) {
                    rd::RD_KAFKA_EVENT_LOG => {
                        let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                        if rd::rd_kafka_event_log(event, &mut fac, &mut text, &mut level) == 0
                            && !fac.is_null()
                            && !text.is_null()
                        {
                            let fac = CStr::from_ptr(fac).to_string_lossy();
                            let text = CStr::from_ptr(text).to_string_lossy();
                            crate::kafka::log_line(log_level(level), &fac, &text);
                        }
                    }
                    rd::RD_KAFKA_EVENT_ERROR => self.client_error(event),
                    _ => {}
                }
                rd::rd_kafka_event_destroy(event);
            }
        }
    }

    /// An error event of librdkafka's (a broker away): logged, and the start
    /// of an outage when it is one.
    ///
    /// # Safety
    /// `event` must be a live error event.
    unsafe fn client_error(&mut self, event: *mut rd::rd_kafka_event_t) {
        // SAFETY: the caller's; the text is copied before the event goes.
        let (code, text) =
            unsafe { (rd::rd_kafka_event_error(event), rd::rd_kafka_event_error_string(event)) };
        let text = if text.is_null() {
            err_text(code)
        } else {
            // SAFETY: a NUL-terminated string the live event owns.
            unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
        };
        tracing::debug!(target: "librdkafka", "{}: {text}", err_text(code));
        if is_transient(code.into()) {
            self.outage.unreachable(&text);
        }
    }

    /// In an outage, asks the brokers (at most every [`PROBE_EVERY`],
    /// waiting at most `wait`) whether they are back. Records handed over
    /// do not tell: librdkafka may have fetched them before the outage.
    fn probe(&mut self, wait: Duration) {
        if !self.outage.is_down() || self.probed.elapsed() < PROBE_EVERY {
            return;
        }
        self.probed = Instant::now();
        let Some(&partition) = self.partitions.first() else { return };
        let wait = wait.clamp(Duration::from_millis(10), Duration::from_secs(1));
        if self.consumer.fetch_watermarks(&self.topic, partition, wait).is_ok() {
            self.outage.reachable();
        }
    }

    /// Whether every record of `partition` below the high watermark of
    /// librdkafka's last fetch from it has been handed over. Unknown (no
    /// fetch answered yet, or nothing handed over from a partition that
    /// holds records) counts as behind.
    fn read_to_high_watermark(&self, partition: i32) -> bool {
        let Some(i) = self.index(partition) else { return true };
        if self.done.get(i).copied().unwrap_or(false) {
            return true;
        }
        let Ok(topic) = CString::new(self.topic.as_str()) else { return false };
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client is live; the call only reads librdkafka's
        // cached offsets of the partition into the two locals.
        let err = unsafe {
            rd::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
            return false;
        }
        match self.next[i] {
            next if next >= 0 => next >= high,
            _ => low >= 0 && high <= low,
        }
    }

    fn error(&self, code: RDKafkaRespErr, detail: String) -> SourceError {
        SourceError::Consume {
            topic: self.topic.clone(),
            brokers: self.cluster.label().to_string(),
            source: code.into(),
            detail,
        }
    }

    /// Handles one message of a batch; returns whether it was handed over.
    fn handle(
        &mut self,
        m: &rd::rd_kafka_message_t,
        each: &mut dyn FnMut(KafkaRecord<'_>),
    ) -> Result<bool, SourceError> {
        let bounded = self.ends.is_some();
        if m.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            if m.err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                // Everything up to the partition's current high watermark has
                // been handed over, and that is at least the end seen at open.
                if bounded && let Some(i) = self.index(m.partition).filter(|&i| self.owned[i]) {
                    self.finish(i);
                }
                return Ok(false);
            }
            if is_fatal(m.err) {
                return Err(self.error(m.err, message_detail(m)));
            }
            // Anything else is librdkafka saying what it retries by itself
            // (a lost connection, a broker down): ride it out.
            self.outage.unreachable(&message_error(m));
            return Ok(false);
        }
        let Some(i) = self.index(m.partition) else {
            return Ok(false);
        };
        // Still queued from before the group took the partition away.
        if !self.owned[i] {
            return Ok(false);
        }
        // A record before the partition's next offset comes from an earlier
        // assignment (fetched before a `seek`, still queued): it was read,
        // or is to be skipped, already.
        if m.offset < self.next[i] {
            return Ok(false);
        }
        let end = self.ends.as_ref().map(|ends| ends[i]);
        if let Some(end) = end
            && (self.done[i] || m.offset >= end)
        {
            self.finish(i);
            return Ok(false);
        }
        let payload: &[u8] = if m.payload.is_null() {
            &[]
        } else {
            // SAFETY: librdkafka guarantees `len` readable bytes at `payload`
            // until the message is destroyed, which happens after this call.
            unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) }
        };
        let key = (!m.key.is_null()).then(|| {
            // SAFETY: as for the payload.
            unsafe { std::slice::from_raw_parts(m.key as *const u8, m.key_len) }
        });
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is a live message.
        let timestamp = unsafe { rd::rd_kafka_message_timestamp(m, &mut kind) };
        let timestamp = (timestamp >= 0).then_some(timestamp);
        each(KafkaRecord { partition: m.partition, offset: m.offset, key, timestamp, payload });
        self.next[i] = m.offset + 1;
        if let Some(end) = end
            && m.offset + 1 >= end
        {
            self.finish(i);
        }
        Ok(true)
    }
}

impl KafkaSource {
    /// Like [`Source::poll`], with each message's key and timestamp too.
    pub fn poll_records(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(KafkaRecord<'_>),
    ) -> Result<Poll, SourceError> {
        // A member of a group never ends by itself: its partitions may
        // change hands, and the job decides when every one is done.
        let ends_alone = self.ends.is_some() && self.rebalances.is_none();
        if ends_alone && self.remaining == 0 {
            return Ok(Poll::End);
        }
        // First, so that errors queued while the loop was busy elsewhere (a
        // sink's flush waits out an outage) come before the records that
        // show the brokers are back.
        self.serve_events();
        if self.rebalances.is_some() {
            let handed = self.poll_events(max, wait, each)?;
            self.probe(wait);
            return Ok(if handed == 0 { Poll::Idle } else { Poll::Records(handed) });
        }
        let deadline = Instant::now() + wait;
        let mut handed = 0usize;
        while handed < max {
            let left = deadline.saturating_duration_since(Instant::now());
            // Wait only for the first record, one at a time so the wait ends
            // when it comes; then take what is already there.
            let (timeout_ms, size) = if handed == 0 && !left.is_zero() {
                (i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX), 1)
            } else {
                (0, (max - handed).min(BATCH))
            };
            // SAFETY: the queue is live and `batch` has room for `size`
            // pointers; each returned message is destroyed below.
            let got = unsafe {
                rd::rd_kafka_consume_batch_queue(self.queue.0, timeout_ms, self.batch.0.as_mut_ptr(), size)
            };
            let got = match usize::try_from(got) {
                Ok(n) => n,
                // SAFETY: reads librdkafka's thread-local last error.
                Err(_) => return Err(self.error(unsafe { rd::rd_kafka_last_error() }, String::new())),
            };
            let mut failure = None;
            for k in 0..got {
                let ptr = self.batch.0[k];
                if failure.is_none() {
                    // SAFETY: librdkafka returned `got` valid message pointers.
                    match self.handle(unsafe { &*ptr }, each) {
                        Ok(true) => handed += 1,
                        Ok(false) => {}
                        Err(e) => failure = Some(e),
                    }
                }
                // SAFETY: each message is destroyed exactly once, after use.
                unsafe { rd::rd_kafka_message_destroy(ptr) };
            }
            if let Some(e) = failure {
                return Err(e);
            }
            let finished = ends_alone && self.remaining == 0;
            if finished || (got < size && (handed > 0 || Instant::now() >= deadline)) {
                break;
            }
        }
        self.probe(wait);
        Ok(match handed {
            0 if ends_alone && self.remaining == 0 => Poll::End,
            0 => Poll::Idle,
            n => Poll::Records(n),
        })
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<i32> {
        self.partitions.clone()
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        self.poll_records(max, wait, &mut |r| {
            each(RawRecord { partition: r.partition, offset: r.offset, payload: r.payload })
        })
    }

    fn name(&self) -> &str {
        &self.topic
    }

    fn commit(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.commit_offsets(next_offsets)
    }

    fn caught_up(&self, partition: i32) -> bool {
        self.read_to_high_watermark(partition)
    }

    fn group_changes(&mut self) -> Vec<GroupChange> {
        self.rebalances.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn take_partitions(&mut self, partitions: &[(i32, Option<i64>)]) -> Result<(), SourceError> {
        let fail = |name: &str, reason: String| SourceError::Seek { name: name.to_string(), reason };
        if self.rebalances.is_none() {
            return Err(fail(&self.topic, "it is not in a consumer group".into()));
        }
        let mut list = Vec::with_capacity(partitions.len());
        let mut finished = Vec::new();
        for &(p, resume) in partitions {
            let Some(i) = self.index(p) else {
                return Err(fail(&self.topic, format!("the topic has no partition {p}")));
            };
            self.owned[i] = true;
            self.next[i] = resume.unwrap_or(-1);
            // Read to its end only if it resumes there: an end noted while
            // another member owned it (or before) does not count. One that
            // no checkpoint holds starts where `start` says, which may be
            // its end already (an empty partition sends nothing to say so).
            let starts_at = match resume {
                Some(o) => Some(o),
                None if self.ends.is_some() => Some(self.start_offset(p)?),
                None => None,
            };
            self.done[i] = matches!((starts_at, &self.ends), (Some(o), Some(ends)) if o >= ends[i]);
            if self.done[i] {
                finished.push((p, Offset::Beginning));
            }
            list.push((
                p,
                match (resume, self.start) {
                    (Some(o), _) => Offset::Offset(o),
                    (None, StartFrom::Earliest) => Offset::Beginning,
                    (None, StartFrom::Latest) => Offset::End,
                    (None, StartFrom::Committed) => Offset::Stored,
                },
            ));
        }
        let tpl = self.partition_list(&list)?;
        if let Some(e) = self.consumer.incremental_assign(&tpl).err() {
            return Err(fail(&self.topic, format!("cannot take the partitions the group gave: {e}")));
        }
        // A partition read to its end needs no fetching.
        if !finished.is_empty() {
            let _ = self.consumer.pause(&self.partition_list(&finished)?);
        }
        self.remaining = self.done.iter().filter(|d| !**d).count();
        Ok(())
    }

    fn release_partitions(&mut self, partitions: &[i32]) -> Result<(), SourceError> {
        if self.rebalances.is_none() {
            return Err(SourceError::Seek {
                name: self.topic.clone(),
                reason: "it is not in a consumer group".into(),
            });
        }
        let list: Vec<(i32, Offset)> = partitions.iter().map(|&p| (p, Offset::Invalid)).collect();
        for &p in partitions {
            if let Some(i) = self.index(p) {
                self.owned[i] = false;
                self.next[i] = -1;
            }
        }
        let tpl = self.partition_list(&list)?;
        self.consumer.incremental_unassign(&tpl).map_err(|e| SourceError::Seek {
            name: self.topic.clone(),
            reason: format!("cannot give back the partitions the group took: {e}"),
        })
    }

    fn end_offsets(&self) -> Option<Vec<(i32, i64)>> {
        self.ends.as_ref().map(|ends| self.partitions.iter().copied().zip(ends.iter().copied()).collect())
    }

    fn set_end_offsets(&mut self, ends: &[(i32, i64)]) {
        let Some(own) = &mut self.ends else { return };
        for &(p, end) in ends {
            if let Some(i) = self.partitions.iter().position(|&q| q == p) {
                own[i] = end;
            }
        }
    }

    fn finished_partitions(&self) -> Vec<i32> {
        self.partitions.iter().zip(&self.done).filter(|(_, d)| **d).map(|(p, _)| *p).collect()
    }

    /// Assigns the partitions again, the listed ones at their offsets. In
    /// bounded mode a partition whose offset reached its end is done.
    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        let fail = |reason: String| SourceError::Seek { name: self.topic.clone(), reason };
        let mut assignment = TopicPartitionList::with_capacity(self.partitions.len());
        for (i, &p) in self.partitions.iter().enumerate() {
            let resume = next_offsets.iter().find(|(q, _)| *q == p).map(|&(_, o)| o);
            if let (Some(o), Some(ends)) = (resume, &self.ends) {
                self.done[i] = o >= ends[i];
            }
            if self.done[i] {
                continue;
            }
            if let Some(o) = resume {
                self.next[i] = o;
            }
            let offset = match (resume, self.start) {
                (Some(o), _) => Offset::Offset(o),
                (None, StartFrom::Earliest) => Offset::Beginning,
                (None, StartFrom::Latest) => Offset::End,
                (None, StartFrom::Committed) => Offset::Stored,
            };
            assignment
                .add_partition_offset(&self.topic, p, offset)
                .map_err(|e| fail(format!("cannot assign partition {p}: {e}")))?;
        }
        for &(p, _) in next_offsets {
            if !self.partitions.contains(&p) {
                return Err(fail(format!("the topic has no partition {p}")));
            }
        }
        self.consumer.assign(&assignment).map_err(|e| fail(format!("cannot assign the partitions: {e}")))?;
        self.remaining = self.done.iter().filter(|d| !**d).count();
        Ok(())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // A member leaving its group gives its partitions back as it closes
        // (`WeirContext`), with no session left to checkpoint them first.
        // The consumer's close (in rdkafka's drop) is answered on the main
        // queue: forward it to the consumer queue again, as rdkafka set it.
        // SAFETY: both queues are live until the fields drop, after this.
        unsafe { rd::rd_kafka_queue_forward(self.events.0, self.queue.0) };
    }
}

/// A reference to one of a consumer's queues, released on drop.
struct ConsumerQueue(*mut rd::rd_kafka_queue_t);

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        // SAFETY: obtained from `rd_kafka_queue_get_consumer`, released once.
        unsafe { rd::rd_kafka_queue_destroy(self.0) };
    }
}

/// Room for the message pointers of one batch. Only used within `poll`.
struct MessageBatch(Vec<*mut rd::rd_kafka_message_t>);

// SAFETY: librdkafka queues may be used from any thread, and the batch's
// pointers are only live within one `poll` call.
unsafe impl Send for ConsumerQueue {}
// SAFETY: see `ConsumerQueue`.
unsafe impl Send for MessageBatch {}

/// Errors after which reading cannot go on.
fn is_fatal(err: RDKafkaRespErr) -> bool {
    use RDKafkaRespErr::*;
    matches!(
        err,
        RD_KAFKA_RESP_ERR__FATAL
            | RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            | RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
            | RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            | RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
            | RD_KAFKA_RESP_ERR__AUTHENTICATION
    )
}

/// librdkafka's syslog-style level as rdkafka's enum.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        i32::MIN..=2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// The text of a consumer error message: librdkafka puts it in the payload.
fn message_error(m: &rd::rd_kafka_message_t) -> String {
    let detail = message_detail(m);
    let code = err_text(m.err);
    if detail.is_empty() { code } else { format!("{code}: {detail}") }
}

/// librdkafka's description of a consumer error message, if it says more
/// than the error code's own text.
fn message_detail(m: &rd::rd_kafka_message_t) -> String {
    // SAFETY: for error messages librdkafka returns a NUL-terminated string
    // owned by the message, or its static error text.
    let detail = unsafe { CStr::from_ptr(rd::rd_kafka_message_errstr(m)) }.to_string_lossy().into_owned();
    if detail == err_text(m.err) { String::new() } else { detail }
}

/// A suffix that makes private group names unique within this process.
fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{KafkaConfig, RESERVED_PROPERTIES};
    use crate::sink::Sink;
    use std::collections::BTreeMap;

    /// A partition is caught up only when every record below the broker's
    /// high watermark was handed over: one read late is not idle.
    #[test]
    fn a_partition_is_caught_up_only_once_its_records_are_all_handed_over() {
        let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
        cluster.create_topic("in", 2, 1).unwrap();
        let mut sink = crate::sink::kafka::KafkaSink::open(&cluster, "in").unwrap();
        for i in 0..200 {
            sink.send(Some(b"one key"), format!("{i}").as_bytes()).unwrap();
        }
        sink.flush().unwrap();
        let mut source = KafkaSource::open(&cluster, &KafkaSourceOptions::new("in")).unwrap();
        let mut seen = Vec::new();
        while seen.is_empty() {
            source.poll(10, Duration::from_secs(5), &mut |r| seen.push((r.partition, r.offset))).unwrap();
        }
        let full = seen[0].0;
        let empty = 1 - full;
        assert!(seen.len() < 200 && seen.iter().all(|&(p, _)| p == full), "{seen:?}");
        assert!(!source.caught_up(full), "190 records wait in the broker: behind, not caught up");
        // The empty partition is caught up once a fetch has answered for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !source.caught_up(empty) && Instant::now() < deadline {
            source.poll(10, Duration::from_millis(50), &mut |r| seen.push((r.partition, r.offset))).unwrap();
        }
        assert!(source.caught_up(empty), "an empty partition has nothing to read");
        while seen.len() < 200 && Instant::now() < deadline {
            source
                .poll(1000, Duration::from_millis(50), &mut |r| seen.push((r.partition, r.offset)))
                .unwrap();
        }
        assert_eq!(seen, (0..200).map(|o| (full, o)).collect::<Vec<_>>());
        assert!(source.caught_up(full), "every record handed over");
    }

    /// Commits happen only when weir says: the consumer must never commit
    /// or store offsets by itself, and must read from its group's commits.
    /// Read back from the live consumer, so an override is caught.
    #[test]
    fn the_consumer_commits_only_when_told_to() {
        let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
        cluster.create_topic("in", 2, 1).unwrap();
        let hostile: BTreeMap<String, String> =
            RESERVED_PROPERTIES.iter().map(|(name, _)| (name.to_string(), "0".to_string())).collect();
        for cluster in [cluster.clone(), cluster.with_properties(&hostile)] {
            let options = KafkaSourceOptions {
                group: Some("job".into()),
                until_end: true,
                ..KafkaSourceOptions::new("in")
            };
            let source = KafkaSource::open(&cluster, &options).unwrap();
            for (name, value) in [
                ("group.id", "job"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                ("auto.offset.reset", "smallest"),
                ("bootstrap.servers", cluster.bootstrap()),
            ] {
                assert_eq!(source.client_property(name).as_deref(), Some(value), "{name}");
            }
        }
    }
}
