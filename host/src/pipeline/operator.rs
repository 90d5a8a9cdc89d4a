//! The operator lifecycle: what the loop calls on the job's operator, in
//! order, and nothing else. The loop moves records, watermarks and (with
//! checkpoints) barriers; an operator turns them into output.
//!
//! - [`Operator::is_late`] is asked for each decoded event, before it joins
//!   a batch: a too-late event goes to the late output with its payload.
//! - [`Operator::process_batch`] gets each batch of decoded events (or a
//!   run of its rows, when a watermark must fire in the middle of it).
//! - [`Operator::handle_watermark`] gets a partition's watermark when it
//!   is `[time] fire_delay` past [`Operator::next_due`], right after the
//!   record that moved it (so firing depends only on that partition's
//!   records), and at once before an event at or behind it; every
//!   partition's, for the processing-time clock after each poll and for
//!   +∞ at the end of a bounded input.
//! - [`Operator::finish`] adds the operator's counters to the run summary.
//!
//! Output goes through a [`Collector`], which encodes, writes to the sinks
//! and counts.

use super::RunSummary;
use super::collect::Collector;
use super::payloads::Payloads;
use crate::decode::Batch;
use crate::record::Key;
use crate::window::SnapshotError;
use std::ops::Range;

/// One step of a job between decode and the sinks.
pub trait Operator {
    /// Whether an event is too late for every window it could belong to:
    /// such an event goes to the late output instead of
    /// [`Operator::process_batch`].
    fn is_late(&self, _partition: i32, _key: Option<&Key>, _ts: i64) -> bool {
        false
    }

    /// The watermark `partition`'s windows have fired up to: late records
    /// name it.
    fn watermark(&self, _partition: i32) -> i64 {
        i64::MIN
    }

    /// Whether the operator has windows: only then do watermarks matter.
    fn windowed(&self) -> bool {
        false
    }

    /// The watermark at which `partition` has something to fire
    /// (`i64::MAX`: nothing).
    fn next_due(&self, _partition: i32) -> i64 {
        i64::MAX
    }

    /// The watermark at which an event at `ts`, once processed, makes
    /// something fire. Monotonic: a later event is never due sooner (the
    /// loop does not ask again for an event no earlier than one it asked
    /// for).
    fn due_of(&self, _ts: i64) -> i64 {
        i64::MAX
    }

    /// The allowed lateness in ms: late records name it.
    fn lateness(&self) -> i64 {
        0
    }

    /// Whether [`Operator::process_batch`] reads the raw payloads (a map
    /// writes the input record back out, changed); the loop keeps them only
    /// then.
    fn reads_payloads(&self) -> bool {
        false
    }

    /// Rows `rows` of a batch of decoded events, none of them late.
    /// `payloads` holds the batch's raw records when
    /// [`Operator::reads_payloads`] says so. Only a windowed operator is
    /// given less than the whole batch.
    fn process_batch(
        &mut self,
        batch: &Batch,
        rows: Range<usize>,
        payloads: &Payloads,
        out: &mut Collector<'_>,
    );

    /// The watermark of `partition` (of every partition for `None`) moved
    /// to `watermark` (it never goes back; +∞ at the end of a bounded
    /// input): fire what it completes.
    fn handle_watermark(&mut self, _partition: Option<i32>, _watermark: i64, _out: &mut Collector<'_>) {}

    /// Per source partition, the lowest offset of an event the operator
    /// still holds for output to come (an event in a window not yet
    /// fired). Committing past it would lose that event if the job
    /// restarted without its state.
    fn unfired_offsets(&self, _each: &mut dyn FnMut(i32, i64)) {}

    /// The source partitions the operator holds state for (for
    /// checkpoints); none for a stateless operator.
    fn state_partitions(&self) -> Vec<i32> {
        Vec::new()
    }

    /// Appends `partition`'s state to `out`, for a checkpoint.
    fn snapshot_partition(&self, _partition: i32, _out: &mut Vec<u8>) {}

    /// Restores `partition`'s state from a checkpoint.
    fn restore_partition(&mut self, _partition: i32, _bytes: &[u8]) -> Result<(), SnapshotError> {
        Ok(())
    }

    /// Migrates the restored state, saved by state version `from` of the
    /// function, to the function's own layout (a plugin upgrade); returns
    /// how many accumulators it migrated, or why it could not.
    fn migrate_state(&mut self, _from: u32) -> Result<u64, String> {
        Ok(0)
    }

    /// Adds the operator's own counters to the summary, at the end.
    fn finish(&mut self, _summary: &mut RunSummary) {}
}
