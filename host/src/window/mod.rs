//! Window assignment: which windows an event belongs to, Flink's way.
//!
//! - Tumbling `[start, start + size)` with `start` a multiple of `size`.
//! - Sliding: `size / slide` overlapping windows of length `size`, every
//!   `slide`.
//! - Session: per key, a window closes after `gap` with no events; sessions
//!   whose spans overlap merge (a session ends at its last event + `gap`).

mod function;
pub mod native;
mod operator;
mod spec;
pub(crate) mod state;

pub use function::WindowFunction;
pub use operator::{
    Firing, OperatorStats, RowsRef, SnapshotError, SnapshotSummary, WindowOperator, summarize_snapshot,
};
pub use state::{Reduce, empty_events};

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use spec::{WindowKind, WindowProblem, WindowSpec, WindowSpecError};

use crate::types::Window;

impl WindowSpec {
    /// The windows an event at `ts` belongs to, in start order. Session
    /// windows are per key and merge, so this gives the event's own
    /// session, `[ts, ts + gap)`, before merging.
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            WindowSpec::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                out.push(Window { start, end: start + size });
            }
            WindowSpec::Sliding { size, slide } => {
                // Starts are multiples of slide in (ts - size, ts].
                let last_start = ts - ts.rem_euclid(slide);
                let lowest = ts - size + 1;
                let mut start = lowest + (slide - lowest.rem_euclid(slide)) % slide;
                while start <= last_start {
                    out.push(Window { start, end: start + size });
                    start += slide;
                }
            }
            WindowSpec::Session { gap } => out.push(Window { start: ts, end: ts + gap }),
        }
    }
}

/// Merges one key's session windows: `windows` sorted by start; windows
/// that overlap become one.
pub fn merge_sessions(windows: &mut Vec<Window>) {
    windows.sort_by_key(|w| w.start);
    let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
    for w in windows.drain(..) {
        match merged.last_mut() {
            Some(last) if w.start < last.end => last.end = last.end.max(w.end),
            _ => merged.push(w),
        }
    }
    *windows = merged;
}

#[cfg(test)]
mod assign_tests {
    use super::*;

    fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.assign(ts, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_align_to_multiples_of_size() {
        let t = WindowSpec::Tumbling { size: 1000 };
        assert_eq!(windows(t, 0), [(0, 1000)]);
        assert_eq!(windows(t, 999), [(0, 1000)]);
        assert_eq!(windows(t, 1000), [(1000, 2000)]);
        assert_eq!(windows(t, -1), [(-1000, 0)]);
    }

    #[test]
    fn sliding_windows_match_a_brute_force_scan() {
        for (size, slide) in [(1000, 100), (1000, 1000), (1000, 300), (10, 3)] {
            let spec = WindowSpec::Sliding { size, slide };
            for ts in -2500..2500 {
                // Every window start that is a multiple of slide and covers ts.
                let expected: Vec<(i64, i64)> = (-4000..4000)
                    .filter(|s: &i64| s.rem_euclid(slide) == 0 && *s <= ts && ts < s + size)
                    .map(|s| (s, s + size))
                    .collect();
                assert_eq!(windows(spec, ts), expected, "size {size} slide {slide} ts {ts}");
            }
        }
    }

    #[test]
    fn sessions_merge_when_they_overlap() {
        let gap = 100;
        let mut ws: Vec<Window> =
            [0, 50, 149, 400, 499, 600].iter().map(|&t| Window { start: t, end: t + gap }).collect();
        merge_sessions(&mut ws);
        let got: Vec<(i64, i64)> = ws.iter().map(|w| (w.start, w.end)).collect();
        // 0..100, 50..150, 149..249 chain; 400..500 and 499..599 chain; 600..700 starts after 599.
        assert_eq!(got, [(0, 249), (400, 599), (600, 700)]);
    }
}
