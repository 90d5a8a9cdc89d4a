//! A running job's counters, for whoever watches it (the host's API and
//! `/metrics`). The run keeps its own [`RunSummary`]; once per poll each
//! worker (and the checkpoint coordinator) adds what changed since its last
//! publish, so the cost is a few atomic adds per batch, not per event.

use super::RunSummary;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the job started on this host, over all its runs (a
/// restored run counts again what it reads again after its checkpoint).
#[derive(Debug, Default)]
pub struct LiveMetrics {
    records: AtomicU64,
    events: AtomicU64,
    dead_letters: AtomicU64,
    late: AtomicU64,
    windows: AtomicU64,
    refired: AtomicU64,
    failed: AtomicU64,
    outputs: AtomicU64,
    checkpoints: AtomicU64,
    failed_checkpoints: AtomicU64,
}

/// A copy of [`LiveMetrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    /// Records read from the source.
    pub records: u64,
    /// Events decoded and processed.
    pub events: u64,
    /// Records sent to the dead letters.
    pub dead_letters: u64,
    /// Events too late for any window.
    pub late: u64,
    /// Windows fired (first firings).
    pub windows: u64,
    /// Windows fired again for late events.
    pub refired: u64,
    /// Windows or batches the function failed on.
    pub failed: u64,
    /// Output records.
    pub outputs: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Checkpoints that failed while the job went on.
    pub failed_checkpoints: u64,
}

impl LiveMetrics {
    /// Adds what `now` counts beyond `last` (the same run's summary at the
    /// previous publish), then remembers `now` as `last`.
    pub fn publish(&self, now: &RunSummary, last: &mut RunSummary) {
        let add = |counter: &AtomicU64, now: u64, last: u64| {
            if now > last {
                counter.fetch_add(now - last, Ordering::Relaxed);
            }
        };
        add(&self.records, now.records, last.records);
        add(&self.events, now.events, last.events);
        add(&self.dead_letters, now.dead_letters, last.dead_letters);
        add(&self.late, now.late, last.late);
        add(&self.windows, now.windows, last.windows);
        add(&self.refired, now.refired, last.refired);
        add(&self.failed, now.failed, last.failed);
        add(&self.outputs, now.outputs, last.outputs);
        add(&self.checkpoints, now.checkpoints, last.checkpoints);
        add(&self.failed_checkpoints, now.failed_checkpoints, last.failed_checkpoints);
        *last = *now;
    }

    /// The counts now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            records: get(&self.records),
            events: get(&self.events),
            dead_letters: get(&self.dead_letters),
            late: get(&self.late),
            windows: get(&self.windows),
            refired: get(&self.refired),
            failed: get(&self.failed),
            outputs: get(&self.outputs),
            checkpoints: get(&self.checkpoints),
            failed_checkpoints: get(&self.failed_checkpoints),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_adds_only_what_changed_across_workers() {
        let live = LiveMetrics::default();
        let (mut a, mut b) = (RunSummary::default(), RunSummary::default());
        let mut now_a = RunSummary { records: 10, events: 9, outputs: 2, ..RunSummary::default() };
        live.publish(&now_a, &mut a);
        live.publish(&now_a, &mut a);
        let now_b = RunSummary { records: 5, events: 5, late: 1, ..RunSummary::default() };
        live.publish(&now_b, &mut b);
        now_a.records = 12;
        live.publish(&now_a, &mut a);
        let s = live.snapshot();
        assert_eq!((s.records, s.events, s.outputs, s.late), (17, 14, 2, 1));
    }
}
