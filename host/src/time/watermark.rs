//! Watermarks, Flink's bounded-out-of-orderness way, kept **per source
//! partition**: a partition's watermark is the maximum event time seen on
//! it minus the bound, minus 1 ms. Each partition fires its own windows by
//! its own watermark, as Kafka Streams keeps stream time per task: whether
//! an event is late, and when a window fires, depends only on that
//! partition's records, so a replay gives the same output however the
//! partitions' reads interleave.
//!
//! An idle partition (no record for `idle_timeout`) would keep its open
//! windows forever; its watermark then follows the highest watermark of
//! the others (see [`Watermarks::idle`]). That depends on wall time, so a
//! job with checkpoints records each such move in a checkpoint before it
//! takes effect, and a replay restores it from there.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct PartitionClock {
    partition: i32,
    max_ts: i64,
    /// Where an idle advance (or a restored checkpoint) moved the
    /// watermark: it never goes back below this.
    floor: i64,
    last_event: Instant,
    /// The watermark at which the partition has something to fire: its
    /// operator state's earliest due window, or an event not yet handed
    /// to it (the loop's cache of it).
    due: i64,
    /// The watermark at which the partition fires: `due` plus the fire
    /// delay.
    fire_at: i64,
    /// Events at or after this time cannot lower `due` (when one is due
    /// is monotonic in event time): no need to ask.
    due_from: i64,
}

impl PartitionClock {
    fn new(partition: i32, now: Instant) -> Self {
        PartitionClock {
            partition,
            max_ts: i64::MIN,
            floor: i64::MIN,
            last_event: now,
            due: i64::MAX,
            fire_at: i64::MAX,
            due_from: i64::MAX,
        }
    }
}

/// Tracks the watermark of each of a job's source partitions.
#[derive(Debug, Clone)]
pub struct Watermarks {
    out_of_orderness: i64,
    /// How far past what it has due a partition's watermark goes before
    /// it fires (ms): a round of firing then covers every window end in
    /// that span.
    fire_delay: i64,
    idle_timeout: Option<Duration>,
    /// Sorted by partition. Few partitions per job, and records come in
    /// runs of one partition, so a lookup is mostly the cached last one.
    clocks: Vec<PartitionClock>,
    last: usize,
    /// When tracking began: a partition first seen later counts as quiet
    /// since then until its first event (no clock read per record).
    started: Instant,
}

impl Watermarks {
    /// Tracks `partitions`, all starting with no events at `now`.
    pub fn new(
        partitions: &[i32],
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Self {
        let mut clocks: Vec<_> = partitions.iter().map(|&p| PartitionClock::new(p, now)).collect();
        clocks.sort_by_key(|c| c.partition);
        clocks.dedup_by_key(|c| c.partition);
        Watermarks {
            out_of_orderness: out_of_orderness.as_millis().min(i64::MAX as u128) as i64,
            fire_delay: 0,
            idle_timeout,
            clocks,
            last: 0,
            started: now,
        }
    }

    /// Fires a partition only once its watermark is `delay` past what it
    /// has due, instead of as soon as it reaches it (see
    /// [`Watermarks::fires`]).
    pub fn with_fire_delay(mut self, delay: Duration) -> Self {
        self.fire_delay = delay.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    #[inline]
    fn clock(&mut self, partition: i32) -> &mut PartitionClock {
        if self.clocks.get(self.last).is_none_or(|c| c.partition != partition) {
            self.find(partition);
        }
        &mut self.clocks[self.last]
    }

    /// Makes `partition`'s clock the cached one, tracking it if new.
    #[cold]
    fn find(&mut self, partition: i32) {
        self.last = match self.clocks.binary_search_by_key(&partition, |c| c.partition) {
            Ok(i) => i,
            Err(i) => {
                self.clocks.insert(i, PartitionClock::new(partition, self.started));
                i
            }
        };
    }

    fn of(&self, c: &PartitionClock) -> i64 {
        c.max_ts.saturating_sub(self.out_of_orderness).saturating_sub(1).max(c.floor)
    }

    /// `partition`'s watermark.
    #[inline]
    pub fn watermark(&mut self, partition: i32) -> i64 {
        let bound = self.out_of_orderness;
        let c = self.clock(partition);
        c.max_ts.saturating_sub(bound).saturating_sub(1).max(c.floor)
    }

    /// An event at `ts` on `partition`, in one step: unless it is behind
    /// the partition's watermark (`Err` with that watermark: nothing is
    /// noted then), notes it, lowers what is due for it as
    /// [`Watermarks::lower_due`] does, and returns the watermark after it
    /// and whether the partition fires there ([`Watermarks::fires`]).
    #[inline]
    pub fn event(
        &mut self,
        partition: i32,
        ts: i64,
        now: Instant,
        due_of: impl FnOnce(i64) -> i64,
    ) -> Result<(i64, bool), i64> {
        let (bound, delay) = (self.out_of_orderness, self.fire_delay);
        let c = self.clock(partition);
        let before = c.max_ts.saturating_sub(bound).saturating_sub(1).max(c.floor);
        if ts <= before {
            return Err(before);
        }
        c.max_ts = c.max_ts.max(ts);
        c.last_event = now;
        if ts < c.due_from {
            c.due_from = ts;
            let due = due_of(ts);
            if due < c.due {
                c.due = due;
                c.fire_at = due.saturating_add(delay);
            }
        }
        let after = c.max_ts.saturating_sub(bound).saturating_sub(1).max(c.floor);
        Ok((after, after >= c.fire_at))
    }

    /// Notes an event at `ts` on `partition`; returns the partition's
    /// watermark after it.
    #[inline]
    pub fn observe(&mut self, partition: i32, ts: i64, now: Instant) -> i64 {
        let bound = self.out_of_orderness;
        let c = self.clock(partition);
        c.max_ts = c.max_ts.max(ts);
        c.last_event = now;
        c.max_ts.saturating_sub(bound).saturating_sub(1).max(c.floor)
    }

    /// The watermark at which `partition` has something to fire.
    #[inline]
    pub fn due(&mut self, partition: i32) -> i64 {
        self.clock(partition).due
    }

    /// Sets what `partition` has due after its operator state changed
    /// (every event so far was handed to it).
    #[inline]
    pub fn set_due(&mut self, partition: i32, due: i64) {
        let delay = self.fire_delay;
        let c = self.clock(partition);
        c.due = due;
        c.fire_at = due.saturating_add(delay);
        c.due_from = i64::MAX;
    }

    /// Lowers what `partition` has due for an event at `ts` not yet handed
    /// to the operator, which makes something due at `due_of(ts)`.
    /// `due_of` must be monotonic (a later event is never due sooner): it
    /// is not asked for events at or after one already asked for.
    #[inline]
    pub fn lower_due(&mut self, partition: i32, ts: i64, due_of: impl FnOnce(i64) -> i64) {
        let delay = self.fire_delay;
        let c = self.clock(partition);
        if ts >= c.due_from {
            return;
        }
        c.due_from = ts;
        let due = due_of(ts);
        if due < c.due {
            c.due = due;
            c.fire_at = due.saturating_add(delay);
        }
    }

    /// Whether `partition`, at `watermark`, fires: its watermark is the
    /// fire delay past what it has due.
    #[inline]
    pub fn fires(&mut self, partition: i32, watermark: i64) -> bool {
        watermark >= self.clock(partition).fire_at
    }

    /// The partitions idle at `now` (no record for the idle timeout) whose
    /// watermark may move up to the highest of all partitions, with that
    /// watermark: a quiet partition's windows then fire as the others' do.
    /// An idle partition whose own watermark has reached what it has due,
    /// but not the fire delay past it, is among them too (its watermark
    /// "moves" to itself): no record will come to fire its windows.
    /// Nothing changes until [`Watermarks::move_idle`].
    pub fn idle(&self, now: Instant) -> Vec<(i32, i64)> {
        match self.highest() {
            Some(highest) => self.idle_under(now, highest),
            None => Vec::new(),
        }
    }

    /// The highest watermark of a partition that has had an event, if any.
    pub fn highest(&self) -> Option<i64> {
        self.clocks.iter().filter(|c| c.max_ts > i64::MIN).map(|c| self.of(c)).max()
    }

    /// The lowest watermark of the partitions that have one (an event, an
    /// idle move or a restore put it above `i64::MIN`), if any: how far the
    /// tracked partitions all are in event time.
    pub fn lowest(&self) -> Option<i64> {
        self.clocks.iter().map(|c| self.of(c)).filter(|&w| w > i64::MIN).min()
    }

    /// [`Watermarks::idle`], with `highest` the highest watermark of all
    /// the job's partitions (those of other workers too).
    pub fn idle_under(&self, now: Instant, highest: i64) -> Vec<(i32, i64)> {
        let Some(timeout) = self.idle_timeout else { return Vec::new() };
        self.clocks
            .iter()
            .filter(|c| now.saturating_duration_since(c.last_event) >= timeout)
            .filter(|c| self.of(c) < highest || self.of(c) >= c.due)
            .map(|c| (c.partition, highest.max(self.of(c))))
            .collect()
    }

    /// Moves an idle partition's watermark up to `watermark`; it never goes
    /// back when the partition wakes up. Returns what to give
    /// [`Watermarks::undo_idle`] if the move must not happen after all.
    pub fn move_idle(&mut self, partition: i32, watermark: i64) -> i64 {
        let c = self.clock(partition);
        let before = c.floor;
        c.floor = c.floor.max(watermark);
        before
    }

    /// Takes back a move (the checkpoint meant to record it failed).
    pub fn undo_idle(&mut self, partition: i32, before: i64) {
        self.clock(partition).floor = before;
    }

    /// Where idle moves (or a restored checkpoint) put `partition`'s
    /// watermark at least (`i64::MIN` for a partition it does not know).
    pub fn floor(&self, partition: i32) -> i64 {
        self.clocks.iter().find(|c| c.partition == partition).map_or(i64::MIN, |c| c.floor)
    }

    /// `partition`'s watermark, without tracking a partition it does not
    /// know (`i64::MIN` then).
    pub fn current(&self, partition: i32) -> i64 {
        self.clocks.iter().find(|c| c.partition == partition).map_or(i64::MIN, |c| self.of(c))
    }

    /// The maximum event time seen on `partition`, if any: what a
    /// checkpoint keeps of its clock.
    pub fn max_event_time(&self, partition: i32) -> Option<i64> {
        self.clocks.iter().find(|c| c.partition == partition).map(|c| c.max_ts).filter(|&t| t > i64::MIN)
    }

    /// Restores a partition's clock from a checkpoint, with the watermark
    /// its windows had fired up to (it never goes back).
    pub fn restore(&mut self, partition: i32, max_event_time: Option<i64>, fired: i64) {
        let c = self.clock(partition);
        c.max_ts = c.max_ts.max(max_event_time.unwrap_or(i64::MIN));
        c.floor = c.floor.max(fired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partition_has_its_own_watermark_trailing_its_events_by_the_bound() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(&[0, 1], Duration::from_millis(500), None, t0);
        assert_eq!(w.observe(0, 10_000, t0), 10_000 - 500 - 1);
        assert_eq!(w.watermark(1), i64::MIN, "partition 1 has seen nothing yet");
        assert_eq!(w.lowest(), Some(10_000 - 500 - 1), "partition 1 has none yet");
        assert_eq!(w.observe(1, 4_000, t0), 3_499);
        assert_eq!(w.lowest(), Some(3_499));
        assert_eq!(w.observe(1, 3_000, t0), 3_499, "an older event does not move it back");
        assert_eq!(w.watermark(0), 9_499, "partition 1 does not hold partition 0 back");
        assert_eq!(w.observe(7, 1, t0), -500, "a partition not known at start is tracked too");
        assert_eq!(w.max_event_time(7), Some(1));
    }

    #[test]
    fn idle_partitions_follow_the_highest_watermark_and_never_go_back() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(5);
        let mut w = Watermarks::new(&[0, 1, 2], Duration::ZERO, Some(idle), t0);
        w.observe(0, 10_000, t0);
        w.observe(1, 3_000, t0);
        assert_eq!(w.idle(t0 + Duration::from_secs(1)), vec![], "nobody is idle yet");
        w.observe(0, 12_000, t0 + Duration::from_secs(6));
        // Partition 1 spoke last at t0, partition 2 never: both are idle.
        let moves = w.idle(t0 + Duration::from_secs(6));
        assert_eq!(moves, vec![(1, 11_999), (2, 11_999)]);
        assert_eq!(w.watermark(1), 2_999, "nothing moves until told");
        for (p, wm) in moves {
            w.move_idle(p, wm);
        }
        assert_eq!(w.watermark(1), 11_999);
        assert_eq!(w.current(2), 11_999);
        // Partition 1 wakes up behind: its watermark does not go back.
        assert_eq!(w.observe(1, 5_000, t0 + Duration::from_secs(7)), 11_999);
        let mut off = Watermarks::new(&[0, 1], Duration::ZERO, None, t0);
        off.observe(0, 10_000, t0);
        assert_eq!(off.idle(t0 + Duration::from_secs(3600)), vec![], "no idle timeout, no idle moves");
    }
}
