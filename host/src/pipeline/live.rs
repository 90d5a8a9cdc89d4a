//! A running job's counters, for whoever watches it (the host's API and
//! `/metrics`). The run keeps its own [`RunSummary`]; once per poll each
//! worker (and the checkpoint coordinator) adds what changed since its last
//! publish, so the cost is a few atomic adds per batch, not per event.
//! Each worker also stores its lowest watermark once per poll (one atomic
//! store); the checkpointer records each checkpoint as it ends, and the
//! plugin instances time their calls into a shared histogram of atomics.

use super::RunSummary;
use crate::plugin::{CallTimes, CallTimesSnapshot};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How many checkpoints the history keeps (the newest).
pub const CHECKPOINT_HISTORY: usize = 50;

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
    /// The watermark of each worker of the runs going on, as they publish
    /// it; a run's slots go when it ends.
    watermarks: Mutex<Vec<Weak<AtomicI64>>>,
    /// The newest checkpoints, oldest first.
    history: Mutex<VecDeque<CheckpointRecord>>,
    /// The time of each plugin call, shared by the job's instances.
    plugin_calls: Arc<CallTimes>,
    /// A member of a consumer group: what it owns now.
    group: Mutex<Option<GroupShare>>,
}

/// What one member of a consumer group (`[source] scale_out`) owns of its
/// topic: set at the start of each of its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupShare {
    /// The member's name in the group's storage
    /// (`<host>-<pid>-<start ms>`).
    pub member: String,
    /// The partitions it owns, ascending.
    pub partitions: Vec<i32>,
    /// Since when, ms since the Unix epoch.
    pub since_ms: i64,
    /// Partitions it handed over to other members so far.
    pub handed_over: u64,
    /// Partitions it gained from other members so far (its first
    /// assignment included).
    pub gained: u64,
}

/// How a checkpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStatus {
    /// Complete: written, its sinks told and its offsets committed.
    Completed,
    /// It failed (the job went on if `[checkpoint] tolerable_failures`
    /// allowed it).
    Failed,
}

/// One checkpoint of a job, as its history shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// When the run saw it end, ms since the Unix epoch.
    pub time_ms: i64,
    /// From its start until its manifest was written (a failed one: until
    /// the run saw it fail), in ms.
    pub duration_ms: u64,
    /// The bytes of the files it wrote (0 for a failed one).
    pub bytes: u64,
    /// Completed or failed.
    pub status: CheckpointStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where one worker publishes its watermark (the lowest of its
/// partitions'); dropped with the worker's run.
#[derive(Debug)]
pub struct WatermarkSlot(Arc<AtomicI64>);

impl WatermarkSlot {
    /// The worker's watermark now (`None`: no partition of it has one yet).
    pub fn set(&self, watermark: Option<i64>) {
        self.0.store(watermark.unwrap_or(i64::MIN), Ordering::Relaxed);
    }
}

/// A copy of [`LiveMetrics`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
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
    /// The job's watermark: the lowest of its partitions' that have one,
    /// over the workers of the run going on (ms of event time).
    pub watermark: Option<i64>,
    /// Wall-clock now minus `watermark`, in ms.
    pub watermark_lag_ms: Option<i64>,
    /// How long the last completed checkpoint took, in ms.
    pub last_checkpoint_duration_ms: Option<u64>,
    /// The bytes the last completed checkpoint wrote.
    pub last_checkpoint_bytes: Option<u64>,
    /// The newest checkpoints (at most [`CHECKPOINT_HISTORY`]), oldest first.
    pub checkpoint_history: Vec<CheckpointRecord>,
    /// How long the plugin's calls took.
    pub plugin_calls: CallTimesSnapshot,
    /// A member of a consumer group (`[source] scale_out`): the partitions
    /// this process owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupShare>,
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

    /// A slot for one worker's watermark, for as long as it lives.
    pub fn watermark_slot(&self) -> WatermarkSlot {
        let slot = Arc::new(AtomicI64::new(i64::MIN));
        let mut slots = lock(&self.watermarks);
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        WatermarkSlot(slot)
    }

    /// The histogram the job's plugin instances time their calls into.
    pub fn plugin_calls(&self) -> Arc<CallTimes> {
        self.plugin_calls.clone()
    }

    /// A group member's new session: it owns `partitions`, of which it
    /// just gained `gained`.
    pub fn group_session(&self, member: &str, partitions: &[i32], gained: usize) {
        let mut share = lock(&self.group);
        let share = share.get_or_insert_with(GroupShare::default);
        share.member = member.to_string();
        share.partitions = partitions.to_vec();
        share.since_ms = crate::time::now_ms();
        share.gained += gained as u64;
    }

    /// A group member handed `count` partitions over.
    pub fn group_handed_over(&self, count: usize) {
        if let Some(share) = lock(&self.group).as_mut() {
            share.handed_over += count as u64;
        }
    }

    /// Records a checkpoint that completed.
    pub fn checkpoint_completed(&self, id: u64, took: Duration, bytes: u64) {
        self.record(CheckpointRecord {
            id,
            time_ms: crate::time::now_ms(),
            duration_ms: millis(took),
            bytes,
            status: CheckpointStatus::Completed,
            error: None,
        });
    }

    /// Records a checkpoint that failed, and why.
    pub fn checkpoint_failed(&self, id: u64, took: Duration, error: String) {
        self.record(CheckpointRecord {
            id,
            time_ms: crate::time::now_ms(),
            duration_ms: millis(took),
            bytes: 0,
            status: CheckpointStatus::Failed,
            error: Some(error),
        });
    }

    fn record(&self, checkpoint: CheckpointRecord) {
        let mut history = lock(&self.history);
        if history.len() == CHECKPOINT_HISTORY {
            history.pop_front();
        }
        history.push_back(checkpoint);
    }

    /// The lowest watermark the live workers published, if any has one.
    fn watermark(&self) -> Option<i64> {
        let slots = lock(&self.watermarks);
        let published = slots.iter().filter_map(Weak::upgrade).map(|s| s.load(Ordering::Relaxed));
        // i64::MIN: none yet; i64::MAX: the end of a bounded input.
        published.filter(|&w| w != i64::MIN && w != i64::MAX).min()
    }

    /// The counts now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let watermark = self.watermark();
        let history: Vec<CheckpointRecord> = lock(&self.history).iter().cloned().collect();
        let last = history.iter().rev().find(|c| c.status == CheckpointStatus::Completed);
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
            watermark,
            watermark_lag_ms: watermark.map(|w| crate::time::now_ms().saturating_sub(w)),
            last_checkpoint_duration_ms: last.map(|c| c.duration_ms),
            last_checkpoint_bytes: last.map(|c| c.bytes),
            checkpoint_history: history,
            plugin_calls: self.plugin_calls.snapshot(),
            group: lock(&self.group).clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    #[test]
    fn the_watermark_is_the_lowest_of_the_live_workers_and_goes_with_them() {
        let live = LiveMetrics::default();
        assert_eq!(live.snapshot().watermark, None);
        let (a, b) = (live.watermark_slot(), live.watermark_slot());
        a.set(Some(5_000));
        b.set(None);
        assert_eq!(live.snapshot().watermark, Some(5_000), "a worker without one does not count");
        b.set(Some(3_000));
        let s = live.snapshot();
        assert_eq!(s.watermark, Some(3_000));
        let lag = s.watermark_lag_ms.unwrap();
        assert!(
            lag >= crate::time::now_ms() - 3_000 - 1_000 && lag <= crate::time::now_ms() - 3_000,
            "{lag}"
        );
        drop(b);
        assert_eq!(live.snapshot().watermark, Some(5_000), "a finished run's slot is gone");
        drop(a);
        assert_eq!(live.snapshot().watermark_lag_ms, None);
    }

    #[test]
    fn the_checkpoint_history_keeps_the_newest_and_the_last_completed_one() {
        let live = LiveMetrics::default();
        for id in 1..=60 {
            live.checkpoint_completed(id, Duration::from_millis(id), id * 100);
        }
        live.checkpoint_failed(61, Duration::from_millis(7), "the storage is full".into());
        let s = live.snapshot();
        assert_eq!(s.checkpoint_history.len(), CHECKPOINT_HISTORY);
        assert_eq!(s.checkpoint_history.first().map(|c| c.id), Some(12));
        let last = s.checkpoint_history.last().unwrap();
        assert_eq!((last.id, last.status, last.bytes), (61, CheckpointStatus::Failed, 0));
        assert_eq!(last.error.as_deref(), Some("the storage is full"));
        assert_eq!((s.last_checkpoint_duration_ms, s.last_checkpoint_bytes), (Some(60), Some(6_000)));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["checkpoint_history"][0]["status"], "completed");
        assert_eq!(json["checkpoint_history"][49]["status"], "failed");
    }
}
