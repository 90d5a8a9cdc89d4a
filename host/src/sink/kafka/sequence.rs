//! `exactly_once = "sequence"`: sequence numbers in headers, and skipping
//! what a restored run writes again.
//!
//! Each record gets two headers: its source partition and a number that
//! counts records per (source partition, output partition) pair. Per pair,
//! because the idempotent producer keeps order only within one output
//! partition: after a crash, number 120 of one pair may be written while
//! number 118 of another, on another partition, never arrived. Within a
//! pair, what was written is always a prefix of what was sent.
//!
//! A checkpoint (taken after a flush) records each pair's last number, the
//! highest number known written (above the last one while a restored run
//! is still skipping what the run before it wrote), and each output
//! partition's end offset. A restore reads every output partition from that
//! offset to its current end, finds the highest number written per pair,
//! and the replay then skips each record whose number is not above it or
//! the recorded one. This needs a replay that makes the same records, in the
//! same order, per source partition as the run before.

use crate::kafka::{Cluster, WeirContext};
use crate::sink::SinkError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The header that holds a record's source partition, as decimal text.
pub const SOURCE_PARTITION_HEADER: &str = "weir-source-partition";

/// The header that holds a record's sequence number within its (source
/// partition, output partition) pair, as decimal text, from 1.
pub const SEQUENCE_HEADER: &str = "weir-sequence";

/// What a sequenced sink's checkpoint state starts with.
const MAGIC: &[u8; 4] = b"WSEQ";

/// The version of the state's layout.
const VERSION: u32 = 2;

/// A (source partition, output partition) pair.
type Pair = (i32, i32);

/// Numbers records per pair and skips those already written.
pub(super) struct Sequencer {
    /// The topic's partition count when the sink opened.
    partitions: i32,
    /// For watermark requests.
    client: BaseConsumer<WeirContext>,
    /// The last number given, per pair.
    last: BTreeMap<Pair, u64>,
    /// The highest number found written after the restored checkpoint.
    written: HashMap<Pair, u64>,
    skipped: u64,
    /// Per output partition, an offset no later than anything this run
    /// writes there: its end when the run started (asked once).
    start_ends: Option<Vec<i64>>,
}

impl Sequencer {
    pub(super) fn new(partitions: i32, client: BaseConsumer<WeirContext>) -> Sequencer {
        Sequencer {
            partitions,
            client,
            last: BTreeMap::new(),
            written: HashMap::new(),
            skipped: 0,
            start_ends: None,
        }
    }

    /// The topic's partition count.
    pub(super) fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Records skipped since the restore.
    pub(super) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Numbers the next record of a pair: its headers, or `None` if the
    /// run before the restore already wrote it.
    pub(super) fn next(&mut self, source: i32, output: i32) -> Option<OwnedHeaders> {
        let seq = self.last.entry((source, output)).or_insert(0);
        *seq += 1;
        if self.written.get(&(source, output)).is_some_and(|&written| *seq <= written) {
            self.skipped += 1;
            return None;
        }
        let (source_text, seq_text) = (source.to_string(), seq.to_string());
        Some(
            OwnedHeaders::new_with_capacity(2)
                .insert(Header { key: SOURCE_PARTITION_HEADER, value: Some(source_text.as_bytes()) })
                .insert(Header { key: SEQUENCE_HEADER, value: Some(seq_text.as_bytes()) }),
        )
    }

    /// The checkpoint state at a barrier: each pair's last number and, per
    /// output partition, where a restore reads back from (`acked`: the
    /// offset after the last acknowledged message, per partition).
    pub(super) fn state(
        &mut self,
        topic: &str,
        cluster: &Cluster,
        acked: &[i64],
    ) -> Result<Vec<u8>, SinkError> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.partitions.to_le_bytes());
        let start_ends = self.start_ends(topic, cluster)?;
        for (partition, start) in start_ends.iter().enumerate() {
            // Where a restore reads back from: after what the brokers have
            // acknowledged (messages still in flight come later), or the
            // run's start. Not asked of the brokers: that costs a round
            // trip per partition at every checkpoint.
            let from = (*start).max(acked.get(partition).copied().unwrap_or(0));
            out.extend_from_slice(&from.to_le_bytes());
        }
        // A restored run that is still skipping knows numbers written beyond
        // its last one: they stay known, or a restore of this checkpoint
        // (whose end offsets are past them) would write them again.
        let mut pairs: BTreeMap<Pair, (u64, u64)> = BTreeMap::new();
        for (&pair, &seq) in &self.last {
            pairs.entry(pair).or_default().0 = seq;
        }
        for (&pair, &written) in &self.written {
            pairs.entry(pair).or_default().1 = written;
        }
        out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (&(source, output), &(seq, written)) in &pairs {
            out.extend_from_slice(&source.to_le_bytes());
            out.extend_from_slice(&output.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&seq.max(written).to_le_bytes());
        }
        Ok(out)
    }

    /// Each output partition's end offset when the run started, asked of
    /// the brokers at the restore (or the first checkpoint of a sink never
    /// restored).
    fn start_ends(&mut self, topic: &str, cluster: &Cluster) -> Result<Vec<i64>, SinkError> {
        if let Some(ends) = &self.start_ends {
            return Ok(ends.clone());
        }
        let mut ends = Vec::with_capacity(self.partitions as usize);
        for partition in 0..self.partitions {
            ends.push(self.watermarks(topic, cluster, partition)?.1);
        }
        self.start_ends = Some(ends.clone());
        Ok(ends)
    }

    /// Goes back to a checkpoint's state (`None` or empty: a fresh start):
    /// numbering continues from its numbers, and what was written after it
    /// is read back (with a consumer made from `config`) so that the replay
    /// skips it.
    pub(super) fn restore(
        &mut self,
        state: Option<&[u8]>,
        topic: &str,
        cluster: &Cluster,
        config: ClientConfig,
    ) -> Result<(), SinkError> {
        self.last.clear();
        self.written.clear();
        self.skipped = 0;
        // Asked now, before anything is sent: checkpoints then need no
        // round trip to the brokers.
        self.start_ends = None;
        let highs = self.start_ends(topic, cluster)?;
        // An empty state is a checkpoint taken without sequencing (the job
        // was at-least-once): nothing to go on.
        let Some(state) = state.filter(|s| !s.is_empty()) else { return Ok(()) };
        let bad = |reason: String| SinkError::State { sink: topic.to_string(), reason };
        let decoded = decode(state).ok_or_else(|| {
            bad("not a sequenced Kafka sink's state (was [sink] exactly_once changed?)".into())
        })?;
        if decoded.ends.len() != self.partitions as usize {
            return Err(bad(format!(
                "the topic had {} partitions at the checkpoint and has {} now: records would be \
                 numbered on other partitions",
                decoded.ends.len(),
                self.partitions
            )));
        }
        self.last = decoded.last;
        self.written = self.read_back(topic, cluster, config, &decoded.ends, &highs)?;
        for (pair, known) in decoded.written {
            let written = self.written.entry(pair).or_insert(0);
            *written = (*written).max(known);
        }
        // Records the run before wrote past this checkpoint's numbers: the
        // replay makes them again and skips them.
        // Counted for the source partitions the checkpoint numbers (a
        // member of a consumer group also reads back other members' pairs,
        // which it does not write).
        let sources: std::collections::BTreeSet<i32> = self.last.keys().map(|&(source, _)| source).collect();
        let ahead: u64 = self
            .written
            .iter()
            .filter(|((source, _), _)| sources.contains(source))
            .map(|(pair, &written)| written.saturating_sub(self.last.get(pair).copied().unwrap_or(0)))
            .sum();
        tracing::info!(
            "topic '{topic}': {ahead} records written after the checkpoint, not to be written again ({} pair(s) of source and output partition)",
            self.written.len()
        );
        Ok(())
    }

    /// The highest number per pair in each output partition from `ends`
    /// (the checkpoint's read-back offsets) to `highs` (its end now).
    fn read_back(
        &self,
        topic: &str,
        cluster: &Cluster,
        config: ClientConfig,
        ends: &[i64],
        highs: &[i64],
    ) -> Result<HashMap<Pair, u64>, SinkError> {
        let fail = |partition: i32, reason: String| SinkError::ReadBack {
            topic: topic.to_string(),
            brokers: cluster.label().to_string(),
            partition,
            reason,
        };
        let mut wanted = TopicPartitionList::new();
        // The offset each partition must be read to.
        let mut until: BTreeMap<i32, i64> = BTreeMap::new();
        for ((partition, &from), &high) in (0..self.partitions).zip(ends).zip(highs) {
            if high > from {
                wanted
                    .add_partition_offset(topic, partition, Offset::Offset(from))
                    .map_err(|e| fail(partition, e.to_string()))?;
                until.insert(partition, high);
            }
        }
        let mut written = HashMap::new();
        if until.is_empty() {
            return Ok(written);
        }
        let consumer: BaseConsumer<WeirContext> =
            config.create_with_context(WeirContext::default()).map_err(|e| fail(-1, e.to_string()))?;
        consumer.assign(&wanted).map_err(|e| fail(-1, e.to_string()))?;
        // Gives up only when nothing arrives for a while, however much
        // there is to read.
        let patience = cluster.config().request_timeout * 3;
        let mut last_progress = Instant::now();
        while let Some((&partition, _)) = until.first_key_value() {
            if last_progress.elapsed() > patience {
                return Err(fail(partition, format!("no records arrived for {patience:?}")));
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
            let message = match result {
                Ok(m) => m,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
                Err(e) => return Err(fail(partition, e.to_string())),
            };
            last_progress = Instant::now();
            let (partition, offset) = (message.partition(), message.offset());
            if let Some(source) = message.headers().and_then(pair_of) {
                let best = written.entry((source.0, partition)).or_insert(0);
                *best = (*best).max(source.1);
            }
            if until.get(&partition).is_some_and(|&end| offset + 1 >= end) {
                until.remove(&partition);
            }
        }
        Ok(written)
    }

    fn watermarks(&self, topic: &str, cluster: &Cluster, partition: i32) -> Result<(i64, i64), SinkError> {
        self.client.fetch_watermarks(topic, partition, cluster.config().request_timeout).map_err(|e| {
            SinkError::ReadBack {
                topic: topic.to_string(),
                brokers: cluster.label().to_string(),
                partition,
                reason: format!("cannot read its end offset: {e}"),
            }
        })
    }
}

/// A record's source partition and sequence number, from its headers;
/// `None` for a record weir did not number.
fn pair_of(headers: &impl Headers) -> Option<(i32, u64)> {
    let (mut source, mut seq) = (None, None);
    for header in headers.iter() {
        let text = || header.value.and_then(|v| std::str::from_utf8(v).ok());
        match header.key {
            SOURCE_PARTITION_HEADER => source = text().and_then(|t| t.parse().ok()),
            SEQUENCE_HEADER => seq = text().and_then(|t| t.parse().ok()),
            _ => {}
        }
    }
    Some((source?, seq?))
}

/// One sequenced state from pieces of several (a member of a consumer
/// group restoring partitions that other members had): each piece gives
/// the numbers of the pairs of its listed source partitions, and a restore
/// reads back each output partition from the lowest offset any piece
/// reads it from. `None` if a piece is not a sequenced state, or the
/// pieces disagree on the partition count.
pub(super) fn merge(pieces: &[(Vec<i32>, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut ends: Option<Vec<i64>> = None;
    let mut pairs: BTreeMap<Pair, (u64, u64)> = BTreeMap::new();
    for (sources, bytes) in pieces {
        if bytes.is_empty() {
            continue;
        }
        let decoded = decode(bytes)?;
        match &mut ends {
            None => ends = Some(decoded.ends.clone()),
            Some(ends) if ends.len() != decoded.ends.len() => return None,
            Some(ends) => {
                for (end, other) in ends.iter_mut().zip(&decoded.ends) {
                    *end = (*end).min(*other);
                }
            }
        }
        for (&pair, &last) in decoded.last.iter().filter(|(pair, _)| sources.contains(&pair.0)) {
            let written = decoded.written.get(&pair).copied().unwrap_or(last);
            pairs.insert(pair, (last, written));
        }
    }
    let Some(ends) = ends else { return Some(Vec::new()) };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&i32::try_from(ends.len()).ok()?.to_le_bytes());
    for end in &ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    out.extend_from_slice(&u32::try_from(pairs.len()).ok()?.to_le_bytes());
    for (&(source, output), &(last, written)) in &pairs {
        out.extend_from_slice(&source.to_le_bytes());
        out.extend_from_slice(&output.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
        out.extend_from_slice(&written.to_le_bytes());
    }
    Some(out)
}

/// A decoded checkpoint state.
struct Decoded {
    ends: Vec<i64>,
    last: BTreeMap<Pair, u64>,
    /// The highest number known written, per pair.
    written: BTreeMap<Pair, u64>,
}

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut at = 0;
    let mut take = |n: usize| {
        let slice = bytes.get(at..at + n);
        at += n;
        slice
    };
    if take(4)? != MAGIC || u32::from_le_bytes(take(4)?.try_into().ok()?) != VERSION {
        return None;
    }
    let partitions = i32::from_le_bytes(take(4)?.try_into().ok()?);
    let mut ends = Vec::new();
    for _ in 0..partitions {
        ends.push(i64::from_le_bytes(take(8)?.try_into().ok()?));
    }
    let pairs = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let (mut last, mut written) = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..pairs {
        let source = i32::from_le_bytes(take(4)?.try_into().ok()?);
        let output = i32::from_le_bytes(take(4)?.try_into().ok()?);
        last.insert((source, output), u64::from_le_bytes(take(8)?.try_into().ok()?));
        written.insert((source, output), u64::from_le_bytes(take(8)?.try_into().ok()?));
    }
    (at == bytes.len()).then_some(Decoded { ends, last, written })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_decodes_to_what_was_encoded_and_nothing_else_decodes() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&2i32.to_le_bytes());
        bytes.extend_from_slice(&10i64.to_le_bytes());
        bytes.extend_from_slice(&0i64.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&3i32.to_le_bytes());
        bytes.extend_from_slice(&1i32.to_le_bytes());
        bytes.extend_from_slice(&77u64.to_le_bytes());
        bytes.extend_from_slice(&90u64.to_le_bytes());
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.ends, [10, 0]);
        assert_eq!(decoded.last, BTreeMap::from([((3, 1), 77)]));
        assert_eq!(decoded.written, BTreeMap::from([((3, 1), 90)]));
        assert!(decode(&bytes[..bytes.len() - 1]).is_none(), "cut short");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing bytes");
        let mut other = bytes.clone();
        other[4] = 9;
        assert!(decode(&other).is_none(), "another version");
        assert!(decode(&20u64.to_le_bytes()).is_none(), "a file sink's state");
    }

    /// A state of `ends`, with pairs `(source, output, last, written)`.
    fn state(ends: &[i64], pairs: &[(i32, i32, u64, u64)]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&(ends.len() as i32).to_le_bytes());
        for end in ends {
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for &(source, output, last, written) in pairs {
            bytes.extend_from_slice(&source.to_le_bytes());
            bytes.extend_from_slice(&output.to_le_bytes());
            bytes.extend_from_slice(&last.to_le_bytes());
            bytes.extend_from_slice(&written.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn merged_states_keep_each_pieces_own_partitions_and_read_back_from_the_lowest_offsets() {
        // Member A had source partitions 0 and 1, member B partition 2 (and
        // an older copy of 1, which must not win: 1 is taken from A).
        let a = state(&[40, 7], &[(0, 0, 10, 10), (0, 1, 4, 6), (1, 0, 3, 3)]);
        let b = state(&[35, 9], &[(1, 0, 1, 1), (2, 1, 8, 8)]);
        let merged = merge(&[(vec![0, 1], a.clone()), (vec![2], b.clone())]).unwrap();
        let decoded = decode(&merged).unwrap();
        assert_eq!(decoded.ends, [35, 7], "each output partition from the lowest offset");
        assert_eq!(decoded.last, BTreeMap::from([((0, 0), 10), ((0, 1), 4), ((1, 0), 3), ((2, 1), 8)]));
        assert_eq!(decoded.written, BTreeMap::from([((0, 0), 10), ((0, 1), 6), ((1, 0), 3), ((2, 1), 8)]));
        // A piece for no partition adds nothing but its offsets.
        let only_a = decode(&merge(&[(vec![0, 1], a.clone()), (vec![], b)]).unwrap()).unwrap();
        assert_eq!(only_a.last.len(), 3);
        assert_eq!(only_a.ends, [35, 7]);
        // Pieces that disagree on the partition count, or are not states,
        // do not merge; no state at all merges to none.
        assert!(merge(&[(vec![0], a.clone()), (vec![1], state(&[1, 2, 3], &[]))]).is_none());
        assert!(merge(&[(vec![0], a), (vec![1], 20u64.to_le_bytes().to_vec())]).is_none());
        assert_eq!(merge(&[(vec![0], Vec::new())]), Some(Vec::new()));
    }
}
