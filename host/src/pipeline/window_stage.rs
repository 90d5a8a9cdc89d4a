//! The operator of window jobs: the window operator (keyed state, panes,
//! sessions, timers) with the job's function, its fired windows encoded
//! as output records and its failed windows as dead letters.

use super::RunSummary;
use super::collect::{Collector, OutputRow};
use super::operator::Operator;
use super::payloads::Payloads;
use crate::decode::Batch;
use crate::encode::WindowRecords;
use crate::record::Key;
use crate::types::Field;
use crate::window::{Firing, SnapshotError, WindowFunction, WindowOperator};
use std::ops::Range;

/// Window state and firing, with the function that reduces windows.
pub struct WindowStage<F> {
    operator: WindowOperator,
    function: F,
    /// The function's declared outputs, in column order.
    outputs: Vec<Field>,
    /// How their rows are written as output records.
    records: WindowRecords,
    /// Allowed lateness in ms, for late records.
    lateness: i64,
}

impl<F: WindowFunction> WindowStage<F> {
    /// A stage over `operator` with `function`, whose rows have `outputs`;
    /// output records name the key `key_field`.
    pub fn new(
        operator: WindowOperator,
        function: F,
        key_field: &str,
        outputs: Vec<Field>,
        lateness: i64,
    ) -> Self {
        let records = WindowRecords::new(key_field, &outputs);
        WindowStage { operator, function, outputs, records, lateness }
    }

    /// The function.
    pub fn function(&self) -> &F {
        &self.function
    }
}

impl<F: WindowFunction> Operator for WindowStage<F> {
    fn is_late(&self, partition: i32, key: Option<&Key>, ts: i64) -> bool {
        key.is_some_and(|key| self.operator.is_late(partition, key, ts))
    }

    fn watermark(&self, partition: i32) -> i64 {
        self.operator.watermark(partition)
    }

    fn windowed(&self) -> bool {
        true
    }

    fn next_due(&self, partition: i32) -> i64 {
        self.operator.next_due(partition)
    }

    #[inline]
    fn due_of(&self, ts: i64) -> i64 {
        self.operator.due_of(ts)
    }

    fn lateness(&self) -> i64 {
        self.lateness
    }

    fn process_batch(&mut self, batch: &Batch, rows: Range<usize>, _: &Payloads, _: &mut Collector<'_>) {
        self.operator.process(batch, rows, &mut self.function);
    }

    fn handle_watermark(&mut self, partition: Option<i32>, watermark: i64, out: &mut Collector<'_>) {
        let (fields, records) = (&self.outputs, &self.records);
        self.operator.advance(partition, watermark, &mut self.function, &mut |firing| match firing {
            Firing::Rows { partition, key, window, rows, refire, .. } => {
                for row in rows.start..rows.start + rows.len {
                    let typed = OutputRow { fields, rows, row };
                    out.output(partition, Some(key), Some(window), refire, Some(typed), |buffer| {
                        records.write(buffer, key, window, rows, row)
                    });
                }
            }
            Firing::Failed { partition, key, window, error, .. } => {
                out.failed_window(partition, key, window, error);
            }
        });
        // Counted as they fire, so that a live job's published counts
        // show them (`finish` sets the same totals at the end).
        let stats = self.operator.stats();
        (out.summary.windows, out.summary.refired) = (stats.fired, stats.refired);
    }

    fn unfired_offsets(&self, each: &mut dyn FnMut(i32, i64)) {
        for (partition, offset) in self.operator.unfired_offsets() {
            each(partition, offset);
        }
    }

    fn state_partitions(&self) -> Vec<i32> {
        self.operator.partitions()
    }

    fn snapshot_partition(&self, partition: i32, out: &mut Vec<u8>) {
        self.operator.snapshot_partition(partition, out);
    }

    fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.operator.restore_partition(partition, bytes)
    }

    fn migrate_state(&mut self, from: u32) -> Result<u64, String> {
        let function = &mut self.function;
        self.operator.migrate_accumulators(&mut |acc| function.migrate(acc, from))
    }

    fn finish(&mut self, summary: &mut RunSummary) {
        let stats = self.operator.stats();
        summary.windows = stats.fired;
        summary.refired = stats.refired;
    }
}
