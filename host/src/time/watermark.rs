//! Watermarks, Flink's bounded-out-of-orderness way: per source partition,
//! the maximum event time seen minus the bound, minus 1 ms; the job's
//! watermark is the minimum over the partitions that are not idle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct PartitionClock {
    max_ts: i64,
    last_event: Instant,
}

/// Tracks the watermark of a job's source partitions.
#[derive(Debug, Clone)]
pub struct Watermarks {
    out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    partitions: BTreeMap<i32, PartitionClock>,
    /// Never goes back, even when a partition wakes up behind the others.
    emitted: i64,
}

impl Watermarks {
    /// Tracks `partitions`, all starting with no events at `now`.
    pub fn new(
        partitions: &[i32],
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Self {
        let clocks =
            partitions.iter().map(|&p| (p, PartitionClock { max_ts: i64::MIN, last_event: now })).collect();
        Watermarks {
            out_of_orderness: out_of_orderness.as_millis().min(i64::MAX as u128) as i64,
            idle_timeout,
            partitions: clocks,
            emitted: i64::MIN,
        }
    }

    /// Notes an event at `ts` on `partition`.
    #[inline]
    pub fn observe(&mut self, partition: i32, ts: i64, now: Instant) {
        let clock =
            self.partitions.entry(partition).or_insert(PartitionClock { max_ts: i64::MIN, last_event: now });
        clock.max_ts = clock.max_ts.max(ts);
        clock.last_event = now;
    }

    /// The job's watermark at `now`: the minimum over partitions that had an
    /// event within the idle timeout, so an idle partition never holds it
    /// back. When every partition is idle, none holds it back: it moves to
    /// the highest partition watermark, as if the busiest partition had been
    /// the last one active. It never decreases.
    pub fn current(&mut self, now: Instant) -> i64 {
        let bound = |c: &PartitionClock| c.max_ts.saturating_sub(self.out_of_orderness).saturating_sub(1);
        let active = self.partitions.values().filter(|c| match self.idle_timeout {
            Some(timeout) => now.saturating_duration_since(c.last_event) < timeout,
            None => true,
        });
        let candidate = match active.map(bound).min() {
            Some(wm) => Some(wm),
            None => self.partitions.values().filter(|c| c.max_ts > i64::MIN).map(bound).max(),
        };
        if let Some(wm) = candidate {
            self.emitted = self.emitted.max(wm);
        }
        self.emitted
    }

    /// The maximum event time seen on `partition`, if any: what a
    /// checkpoint keeps of its clock.
    pub fn max_event_time(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(|c| c.max_ts).filter(|&t| t > i64::MIN)
    }

    /// Restores a partition's clock from a checkpoint, and the watermark
    /// already emitted (it never goes back).
    pub fn restore(&mut self, partition: i32, max_event_time: Option<i64>, emitted: i64, now: Instant) {
        let clock =
            self.partitions.entry(partition).or_insert(PartitionClock { max_ts: i64::MIN, last_event: now });
        clock.max_ts = clock.max_ts.max(max_event_time.unwrap_or(i64::MIN));
        self.emitted = self.emitted.max(emitted);
    }

    /// The end of a bounded input: every window may fire.
    pub fn finish(&mut self) -> i64 {
        self.emitted = i64::MAX;
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_the_min_over_partitions_minus_the_bound() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(&[0, 1], Duration::from_millis(500), None, t0);
        w.observe(0, 10_000, t0);
        assert_eq!(w.current(t0), i64::MIN, "partition 1 has seen nothing yet");
        w.observe(1, 4_000, t0);
        assert_eq!(w.current(t0), 4_000 - 500 - 1);
        w.observe(1, 3_000, t0);
        assert_eq!(w.current(t0), 3_499, "an older event does not move it back");
    }

    #[test]
    fn idle_partitions_stop_holding_the_watermark_back() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(5);
        let mut w = Watermarks::new(&[0, 1], Duration::ZERO, Some(idle), t0);
        w.observe(0, 10_000, t0);
        assert_eq!(w.current(t0 + Duration::from_secs(1)), i64::MIN);
        // Partition 1 never spoke; after the timeout it is idle.
        w.observe(0, 12_000, t0 + Duration::from_secs(6));
        assert_eq!(w.current(t0 + Duration::from_secs(6)), 11_999);
        // Partition 1 wakes up behind: the watermark does not go back.
        w.observe(1, 5_000, t0 + Duration::from_secs(7));
        assert_eq!(w.current(t0 + Duration::from_secs(7)), 11_999);
        // Everyone idle: nobody holds it back; the highest partition
        // watermark (partition 0's) stands.
        assert_eq!(w.current(t0 + Duration::from_secs(60)), 11_999);
        let mut quiet = Watermarks::new(&[0, 1, 2], Duration::ZERO, Some(idle), t0);
        quiet.observe(0, 3_000, t0);
        assert_eq!(quiet.current(t0), i64::MIN, "1 and 2 are not idle yet");
        assert_eq!(quiet.current(t0 + Duration::from_secs(6)), 2_999, "all idle: 1 and 2 never spoke");
        assert_eq!(w.finish(), i64::MAX);
    }
}
