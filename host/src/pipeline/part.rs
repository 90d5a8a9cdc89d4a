//! One share of a running job's source partitions: the operator that holds
//! their window state, their clocks and read positions, and the step that
//! polls records, decodes them and fires what they make due. A job with
//! one worker has one part; a parallel job has one per worker thread, each
//! over its own partitions (see `parallel.rs`).

use super::collect::Collector;
use super::operator::Operator;
use super::payloads::Payloads;
use super::positions::ReadPositions;
use super::{BATCH_SIZE, Sinks};
use crate::decode::{Batch, JsonDecoder};
use crate::job::Job;
use crate::source::{Poll, Source, SourceError};
use crate::time::{Watermarks, now_ms};
use std::time::{Duration, Instant};

/// A share of a job's partitions and the state the loop keeps for them.
pub(super) struct Part<'o> {
    /// The partitions this part reads.
    pub(super) partitions: Vec<i32>,
    pub(super) operator: &'o mut (dyn Operator + Send),
    pub(super) watermarks: Watermarks,
    pub(super) read: ReadPositions,
    decoder: JsonDecoder,
    batch: Batch,
    payloads: Payloads,
    event_time: bool,
    /// A window job in event time: firing follows each record.
    windowed: bool,
    keep_payloads: bool,
}

impl<'o> Part<'o> {
    /// A part of `job` reading `partitions`, with `operator` (its own
    /// instance of the function) holding their state.
    pub(super) fn new(job: &Job, operator: &'o mut (dyn Operator + Send), partitions: Vec<i32>) -> Part<'o> {
        let event_time = job.config.format.timestamp.is_some();
        let watermarks = Watermarks::new(
            &partitions,
            job.config.time.max_out_of_orderness,
            Some(job.config.time.idle_timeout),
            Instant::now(),
        )
        .with_fire_delay(job.config.time.fire_delay);
        Part {
            partitions,
            windowed: operator.windowed() && event_time,
            keep_payloads: operator.reads_payloads(),
            operator,
            watermarks,
            read: ReadPositions::default(),
            decoder: JsonDecoder::new(job.record_schema()),
            batch: Batch::new(&job.fields),
            payloads: Payloads::default(),
            event_time,
        }
    }

    /// Whether firing follows each record (a window job in event time),
    /// and idle partitions are moved on.
    pub(super) fn windowed(&self) -> bool {
        self.windowed
    }

    /// After a restore: each partition fires when it reaches what its
    /// restored state has due.
    pub(super) fn set_dues(&mut self) {
        for partition in self.operator.state_partitions() {
            self.watermarks.set_due(partition, self.operator.next_due(partition));
        }
    }

    /// After a restore: a checkpoint may hold watermarks past what their
    /// partitions' windows fired up to (an idle move, recorded before it
    /// took effect): fire up to them now, as the run before did. Only the
    /// recorded move: windows merely waiting for the fire delay wait for
    /// the same records as in the run before.
    pub(super) fn fire_restored(&mut self, out: &mut Collector<'_>) {
        if !self.windowed {
            return;
        }
        for partition in self.operator.state_partitions() {
            let watermark = self.watermarks.floor(partition);
            if watermark > self.operator.watermark(partition) {
                self.operator.handle_watermark(Some(partition), watermark, out);
                self.watermarks.set_due(partition, self.operator.next_due(partition));
            }
        }
    }

    /// Fires idle partitions moved to the watermarks of `moves`.
    pub(super) fn fire_moves(&mut self, moves: &[(i32, i64)], out: &mut Collector<'_>) {
        for &(partition, watermark) in moves {
            self.operator.handle_watermark(Some(partition), watermark, out);
            self.watermarks.set_due(partition, self.operator.next_due(partition));
        }
    }

    /// Polls `source` once (up to a batch of records, waiting at most
    /// `wait` for the first) and hands the records on.
    ///
    /// Per record: the record's partition's watermark moves with it, and
    /// when it is `fire_delay` past what the partition has due (its
    /// operator state's next timer, or an event still in the batch), the
    /// rows so far are handed over and that partition fires, right after
    /// the record: every window due by then, in one round. An event behind
    /// its partition's watermark first brings the operator up to date (to
    /// judge it late, or to fire its window again at once). So each
    /// partition's output, and each call to the function, depends only on
    /// its own records, not on how polls cut them or interleave partitions.
    ///
    /// The end of a bounded input fires every open window; in processing
    /// time, the clock is every partition's watermark after each poll.
    pub(super) fn step(
        &mut self,
        source: &mut dyn Source,
        wait: Duration,
        out: &mut Collector<'_>,
    ) -> Result<Poll, SourceError> {
        let Part { operator, watermarks, read, decoder, batch, payloads, windowed, keep_payloads, .. } = self;
        let (windowed, keep_payloads) = (*windowed, *keep_payloads);
        batch.clear();
        payloads.clear();
        let now = now_ms();
        // One clock reading per poll: idleness is measured in seconds, so
        // every event of a batch can share it.
        let polled_at = Instant::now();
        // Rows before this one have been handed to the operator.
        let mut handed = 0;
        let polled = source.poll(BATCH_SIZE, wait, &mut |record| {
            out.summary.records += 1;
            read.advance(record.partition, record.offset);
            let partition = record.partition;
            if let Err(reason) = decoder.decode_into(record.payload, partition, record.offset, now, batch) {
                out.undecodable(partition, record.offset, record.payload, &reason.to_string());
                return;
            }
            if !windowed {
                if keep_payloads {
                    payloads.push(record.payload);
                }
                return;
            }
            let row = batch.len() - 1;
            let ts = batch.timestamps[row];
            let (after, fires) = match watermarks.event(partition, ts, polled_at, |ts| operator.due_of(ts)) {
                Ok(ahead) => ahead,
                Err(before) => {
                    // Behind the watermark: the operator catches up first,
                    // to judge it late against every window that should
                    // have fired by now.
                    operator.process_batch(batch, handed..row, payloads, out);
                    handed = row;
                    operator.handle_watermark(Some(partition), before, out);
                    watermarks.set_due(partition, operator.next_due(partition));
                    if operator.is_late(partition, batch.keys[row].as_ref(), ts) {
                        batch.truncate(row);
                        let (watermark, lateness) = (operator.watermark(partition), operator.lateness());
                        out.late(partition, record.offset, record.payload, ts, watermark, lateness);
                        return;
                    }
                    let after = watermarks.observe(partition, ts, polled_at);
                    watermarks.lower_due(partition, ts, |ts| operator.due_of(ts));
                    // Not late: it changed a window that may have fired,
                    // which fires again at once.
                    (after, true)
                }
            };
            if fires {
                operator.process_batch(batch, handed..row + 1, payloads, out);
                handed = row + 1;
                operator.handle_watermark(Some(partition), after, out);
                watermarks.set_due(partition, operator.next_due(partition));
            }
        })?;
        out.summary.events += batch.len() as u64;
        operator.process_batch(batch, handed..batch.len(), payloads, out);
        if polled == Poll::End {
            // The end of a bounded input (a file, or Kafka read up to the
            // end offsets seen at start) fires every open window, one
            // partition at a time, so that each call to the function holds
            // one partition's windows, as in a replay.
            for partition in operator.state_partitions() {
                operator.handle_watermark(Some(partition), i64::MAX, out);
            }
        } else if !self.event_time {
            // Processing time: the clock is every partition's watermark.
            operator.handle_watermark(None, now_ms() - 1, out);
        }
        Ok(polled)
    }

    /// Flushes the sinks, then commits to the source the offsets whose
    /// output they now hold: what was read, held back to the oldest record
    /// a window still to fire needs. Without checkpoints, a restarted job
    /// reads those records again and rebuilds its open windows from them.
    pub(super) fn commit(
        &self,
        sinks: &mut Sinks,
        source: &mut dyn Source,
    ) -> Result<(), super::PipelineError> {
        sinks.flush()?;
        let mut held: Vec<(i32, i64)> = Vec::new();
        self.operator.unfired_offsets(&mut |partition, offset| held.push((partition, offset)));
        let offsets = self.read.to_commit(|p| held.iter().find(|(q, _)| *q == p).map(|&(_, o)| o));
        source.commit(&offsets)?;
        Ok(())
    }
}

/// The idle partitions of `parts` at `now` (see [`Watermarks::idle`]),
/// each moved up to the highest watermark of all of them, per part; only
/// partitions that `caught_up` says are read to the end of what is known
/// (quiet, not just read late). Nothing fires until the caller does.
/// Returns each part's moves, with what [`Watermarks::undo_idle`] needs.
pub(super) fn move_idle(
    parts: &mut [&mut Part<'_>],
    now: Instant,
    caught_up: &dyn Fn(usize, i32) -> bool,
) -> Vec<Vec<(i32, i64, i64)>> {
    let highest = parts.iter().filter_map(|p| p.watermarks.highest()).max();
    parts
        .iter_mut()
        .enumerate()
        .map(|(i, part)| {
            let Some(highest) = highest.filter(|_| part.windowed) else { return Vec::new() };
            let moves = part.watermarks.idle_under(now, highest);
            moves
                .into_iter()
                .filter(|&(partition, _)| caught_up(i, partition))
                .map(|(partition, watermark)| {
                    let before = part.watermarks.move_idle(partition, watermark);
                    (partition, watermark, before)
                })
                .collect()
        })
        .collect()
}
