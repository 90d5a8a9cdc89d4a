//! The window operator: keyed window state per source partition, fired by
//! the watermark, Flink's way.
//!
//! - Tumbling and sliding windows are built from panes of length
//!   gcd(size, slide): an event is stored once, in its pane, never copied
//!   into the size/slide windows that contain it. A window fires by reading
//!   (window functions) or merging (aggregates) its panes.
//! - Session windows are kept per key and merge when their spans overlap.
//! - A window fires once the watermark reaches `end - 1`. Until the
//!   watermark passes `end - 1 + allowed_lateness` it is kept, and a late
//!   event re-fires it with the updated result; after that, an event for it
//!   is late (see [`WindowOperator::is_late`]) and goes to the late output.

mod fire;
mod snapshot;

pub use snapshot::{SnapshotError, SnapshotSummary, summarize as summarize_snapshot};

use super::state::{PaneState, Reduce, empty_events, push_row};
use super::{WindowFunction, WindowSpec};
use crate::decode::Batch;
use crate::plugin::PluginError;
use crate::record::Key;
use crate::types::{Accumulators, Column, Events, FieldType, RowRange, Rows, Value, Window};
use rustc_hash::FxBuildHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Keyed state: FxHash (keys are small and trusted to be spread well
/// enough), and `entry_ref` so a key is cloned only when it is new.
type KeyMap = hashbrown::HashMap<Key, KeyState, FxBuildHasher>;

/// A window as it fires: its rows, or the function's error.
pub enum Firing<'a> {
    /// The window's rows.
    Rows {
        /// The source partition whose events the window holds.
        partition: i32,
        /// The key.
        key: &'a Key,
        /// The window.
        window: Window,
        /// The function's rows for it.
        rows: RowsRef<'a>,
        /// True when a late event made it fire again.
        refire: bool,
    },
    /// The function failed for this window: it is reported, not lost.
    Failed {
        /// The source partition whose events the window holds.
        partition: i32,
        /// The key.
        key: &'a Key,
        /// The window, with its true bounds.
        window: Window,
        /// What went wrong.
        error: &'a PluginError,
        /// True when a late event made it fire again.
        refire: bool,
    },
}

/// A window's output rows: rows `[start, start + len)` of `columns`
/// (a batched call returns many windows' rows in the same columns).
#[derive(Debug, Clone, Copy)]
pub struct RowsRef<'a> {
    /// The columns, in the function's declared output order.
    pub columns: &'a [Column],
    /// The window's first row.
    pub start: usize,
    /// How many rows the window has.
    pub len: usize,
}

impl<'a> RowsRef<'a> {
    /// All of `rows`.
    pub fn all(rows: &'a Rows) -> RowsRef<'a> {
        RowsRef { columns: &rows.columns, start: 0, len: rows.len as usize }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorStats {
    /// Events added to windows.
    pub events: u64,
    /// Windows fired (first firings).
    pub fired: u64,
    /// Windows fired again for late events.
    pub refired: u64,
    /// Windows the function failed on (first firings and re-fires).
    pub failed: u64,
}

impl OperatorStats {
    fn count_fired(&mut self, refire: bool) {
        if refire {
            self.refired += 1;
        } else {
            self.fired += 1;
        }
    }
}

struct Pane {
    start: i64,
    first_end: i64,
    contents: PaneState,
}

#[derive(Default)]
struct KeyState {
    /// Tumbling and sliding: the open panes in start order, each with its
    /// first window's end. Few are open per key, and events mostly land in
    /// the newest, which is checked first.
    panes: VecDeque<Pane>,
    /// Sessions: sorted by start, never overlapping.
    sessions: Vec<(Window, PaneState)>,
    /// When this key's next cleanup is scheduled: one at a time per key,
    /// rescheduled as panes and sessions expire.
    cleanup_at: Option<i64>,
    /// Tumbling and sliding: the end of the key's next window to fire, the
    /// one timer its panes have. Firing it walks on through the key's
    /// windows the watermark has passed and sets the timer at the next.
    timer_at: Option<i64>,
}

/// Schedules a cleanup of `key` at `at`, unless one comes sooner.
fn schedule_cleanup(cleanups: &mut BTreeSet<(i64, Key)>, key_state: &mut KeyState, key: &Key, at: i64) {
    if key_state.cleanup_at.is_none_or(|c| at < c) {
        cleanups.insert((at, key.clone()));
        key_state.cleanup_at = Some(at);
    }
}

/// The state of one source partition. Kept apart so that a checkpoint can
/// snapshot, and a later scale-out move, one partition at a time.
struct PartitionState {
    /// The partition's own watermark, the one its windows have fired up
    /// to: firing and lateness depend only on the partition's records, so
    /// a replay of them gives the same output however the partitions'
    /// reads interleave.
    watermark: i64,
    keys: KeyMap,
    /// Windows to fire, by end: fire at `end - 1`.
    timers: BTreeSet<(i64, Key)>,
    /// When to drop a key's expired panes or sessions.
    cleanups: BTreeSet<(i64, Key)>,
    /// Fired windows (by end) that late events changed.
    refires: BTreeSet<(i64, Key)>,
}

impl Default for PartitionState {
    fn default() -> Self {
        PartitionState {
            watermark: i64::MIN,
            keys: KeyMap::default(),
            timers: BTreeSet::new(),
            cleanups: BTreeSet::new(),
            refires: BTreeSet::new(),
        }
    }
}

/// An accumulator in a function's current layout, from one saved by an
/// older version (see [`WindowOperator::migrate_accumulators`]).
pub type Migrate<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// Keyed window state and firing for one job.
pub struct WindowOperator {
    spec: WindowSpec,
    /// Pane length (tumbling and sliding).
    pane: i64,
    lateness: i64,
    reduce: Reduce,
    types: Vec<FieldType>,
    inputs: Vec<usize>,
    partitions: BTreeMap<i32, PartitionState>,
    scratch: Events,
    windows: Vec<Window>,
    stats: OperatorStats,
    /// Emptied state of expired panes and sessions, reused for new ones so
    /// that steady-state windowing does not allocate.
    pool: Vec<PaneState>,
    /// Emptied session lists of dropped keys, for keys that come back (a
    /// key whose sessions are far apart is dropped after each one).
    session_lists: Vec<Vec<(Window, PaneState)>>,
    /// The windows due in the current round of firing.
    due: Vec<DueWindow>,
    /// The partitions a round of firing covers (reused).
    advancing: Vec<i32>,
    /// Reused buffers for batched plugin calls.
    calls: CallBuffers,
}

/// A window due to fire.
struct DueWindow {
    partition: i32,
    key: Key,
    end: i64,
    refire: bool,
    /// First, which run of one (partition, key) it was found in; then
    /// (see `rank_due`) the rank of its (partition, key) among the round's:
    /// ordering and grouping a round compare these numbers, not keys.
    rank: u32,
}

/// Where a pane or session lives: to write its accumulator back after an
/// `add-many`, and to find it again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PaneHome {
    /// A pane, by start.
    Pane(i64),
    /// A session, by end.
    Session(i64),
}

/// The arguments of one batched call, reused from round to round.
struct CallBuffers {
    keys: Vec<Value>,
    windows: Vec<Window>,
    /// `add-many`: where each accumulator's events end.
    ends: Vec<u32>,
    /// `apply-many` and `get-results`: each window's rows or accumulators.
    ranges: Vec<RowRange>,
    accs: Accumulators,
    /// For each window in the call, its index in the round's due windows.
    due_index: Vec<usize>,
    /// The round's due windows in the order calls take them: by partition
    /// and key, so that a key's windows share its panes.
    order: Vec<usize>,
    /// The panes of the key being gathered: start, and its rows (or its
    /// accumulator's index) in the call.
    pane_rows: Vec<(i64, u32, u32)>,
    /// The call's windows in due order, to hand out their rows in it.
    emit: Vec<usize>,
    /// Ordering a round by rank: the first due window of each run of one
    /// (partition, key), the runs sorted by key, each run's rank, and
    /// counts (or slots) for sorts by counting.
    runs: Vec<usize>,
    run_order: Vec<u32>,
    run_rank: Vec<u32>,
    counts: Vec<u32>,
    /// How many distinct (partition, key) the round has.
    ranks: usize,
    /// For `add-many`: each accumulator's pane, and whether it had an
    /// accumulator before (to put things back if the call fails).
    homes: Vec<(i32, Key, PaneHome, bool)>,
}

impl CallBuffers {
    /// Empties the buffers for the next call, keeping their allocations.
    fn clear(&mut self) {
        self.keys.clear();
        self.windows.clear();
        self.ends.clear();
        self.ranges.clear();
        self.accs.bytes.clear();
        self.accs.ends.clear();
        self.due_index.clear();
        self.homes.clear();
    }
}

impl Default for CallBuffers {
    fn default() -> Self {
        CallBuffers {
            keys: Vec::new(),
            windows: Vec::new(),
            ends: Vec::new(),
            ranges: Vec::new(),
            accs: Accumulators { bytes: Vec::new(), ends: Vec::new() },
            due_index: Vec::new(),
            order: Vec::new(),
            pane_rows: Vec::new(),
            emit: Vec::new(),
            homes: Vec::new(),
            runs: Vec::new(),
            run_order: Vec::new(),
            run_rank: Vec::new(),
            counts: Vec::new(),
            ranks: 0,
        }
    }
}

/// A batched call covers at most this many events or windows, so its
/// arguments stay well within a plugin's memory.
const MAX_CALL_EVENTS: usize = 1 << 16;
const MAX_CALL_WINDOWS: usize = 4096;

/// How many emptied contents to keep for reuse.
const POOL_LIMIT: usize = 4096;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl WindowOperator {
    /// An operator for `spec`. `types` are the plugin's input types and
    /// `inputs[i]` the batch column that feeds input `i`.
    pub fn new(
        spec: WindowSpec,
        allowed_lateness: i64,
        reduce: Reduce,
        types: Vec<FieldType>,
        inputs: Vec<usize>,
    ) -> WindowOperator {
        let pane = match spec {
            WindowSpec::Tumbling { size } => size,
            WindowSpec::Sliding { size, slide } => gcd(size, slide),
            WindowSpec::Session { gap } => gap,
        };
        WindowOperator {
            spec,
            pane,
            lateness: allowed_lateness.max(0),
            reduce,
            scratch: empty_events(&types),
            types,
            inputs,
            partitions: BTreeMap::new(),
            windows: Vec::new(),
            stats: OperatorStats::default(),
            pool: Vec::new(),
            session_lists: Vec::new(),
            due: Vec::new(),
            advancing: Vec::new(),
            calls: CallBuffers::default(),
        }
    }

    /// Replaces every accumulator the operator holds with `migrate`'s
    /// version of it (a plugin upgrade, right after a restore), and returns
    /// how many there were. The first error stops it: the state is then
    /// partly migrated, and the run must not go on with it.
    pub fn migrate_accumulators(&mut self, migrate: &mut Migrate<'_>) -> Result<u64, String> {
        let mut migrated = 0;
        for state in self.partitions.values_mut() {
            for key_state in state.keys.values_mut() {
                let panes = key_state.panes.iter_mut().map(|p| &mut p.contents);
                for contents in panes.chain(key_state.sessions.iter_mut().map(|(_, c)| c)) {
                    if let Some(acc) = &mut contents.acc {
                        *acc = migrate(acc)?;
                        migrated += 1;
                    }
                }
            }
        }
        Ok(migrated)
    }

    /// Counters so far.
    pub fn stats(&self) -> OperatorStats {
        self.stats
    }

    /// The watermark `partition`'s windows have fired up to.
    pub fn watermark(&self, partition: i32) -> i64 {
        self.partitions.get(&partition).map_or(i64::MIN, |s| s.watermark)
    }

    /// The watermark at which `partition` has something to fire next: its
    /// earliest timer's `end - 1`, or `i64::MIN` when a late event changed
    /// a fired window (it fires again at once); `i64::MAX` when nothing
    /// waits. Session timers may be early (a session grows without moving
    /// its timer), which only makes the caller fire sooner, to no effect.
    pub fn next_due(&self, partition: i32) -> i64 {
        let Some(state) = self.partitions.get(&partition) else { return i64::MAX };
        if !state.refires.is_empty() {
            return i64::MIN;
        }
        state.timers.first().map_or(i64::MAX, |(end, _)| end.saturating_sub(1))
    }

    /// The watermark at which an event at `ts` makes a window fire: the end
    /// of the first window holding it, minus 1.
    #[inline]
    pub fn due_of(&self, ts: i64) -> i64 {
        match self.spec {
            WindowSpec::Session { gap } => ts.saturating_add(gap).saturating_sub(1),
            _ => self.first_window_end(ts - ts.rem_euclid(self.pane)).saturating_sub(1),
        }
    }

    /// Open (key, pane or session) entries, and the bytes they hold.
    pub fn open_state(&self) -> (usize, usize) {
        let mut entries = 0;
        let mut bytes = 0;
        for p in self.partitions.values() {
            for k in p.keys.values() {
                entries += k.panes.len() + k.sessions.len();
                bytes += k.panes.iter().map(|p| p.contents.size()).sum::<usize>();
                bytes += k.sessions.iter().map(|(_, c)| c.size()).sum::<usize>();
            }
        }
        (entries, bytes)
    }

    /// Per source partition, the lowest offset of an event that a window
    /// still to fire holds: a run restarted without this state must read
    /// the partition again from there. Partitions with no such event are
    /// left out.
    pub fn unfired_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().filter_map(move |(&partition, state)| {
            let unfired = |last_end: i64| last_end.saturating_sub(1) > state.watermark;
            let lowest = state
                .keys
                .values()
                .flat_map(|k| {
                    let panes = k.panes.iter().map(|p| (last_window_end(self.spec, p.start), &p.contents));
                    let sessions = k.sessions.iter().map(|(w, c)| (w.end, c));
                    panes.chain(sessions)
                })
                .filter(|(last_end, _)| unfired(*last_end))
                .map(|(_, contents)| contents.first_offset)
                .min()?;
            Some((partition, lowest))
        })
    }

    /// The end of the last window that contains pane `pane_start`.
    fn last_window_end(&self, pane_start: i64) -> i64 {
        last_window_end(self.spec, pane_start)
    }

    /// Whether a window is past its allowed lateness: no event may change it.
    fn expired(&self, window_end: i64, watermark: i64) -> bool {
        window_end.saturating_sub(1).saturating_add(self.lateness) <= watermark
    }

    /// Whether an event is too late for every window it belongs to. Such an
    /// event must go to the late output instead of [`Self::process`].
    pub fn is_late(&self, partition: i32, key: &Key, ts: i64) -> bool {
        let wm = self.watermark(partition);
        match self.spec {
            WindowSpec::Session { gap } => {
                if !self.expired(ts.saturating_add(gap), wm) {
                    return false;
                }
                // Late alone, but it may still join a live session.
                let sessions = self.partitions.get(&partition).and_then(|p| p.keys.get(key));
                !sessions.is_some_and(|k| {
                    k.sessions
                        .iter()
                        .any(|(w, _)| w.start < ts + gap && ts < w.end && !self.expired(w.end, wm))
                })
            }
            _ => {
                let pane_start = ts - ts.rem_euclid(self.pane);
                self.expired(self.last_window_end(pane_start), wm)
            }
        }
    }

    /// Adds rows `rows` of a batch (none of them late) to their windows. Nothing
    /// fires here: aggregates may `add` early, and a refused `add` keeps
    /// its events for the firing to try again and report.
    pub fn process(
        &mut self,
        batch: &Batch,
        rows: std::ops::Range<usize>,
        function: &mut dyn WindowFunction,
    ) {
        let n = rows.end.min(batch.len());
        let mut row = rows.start;
        while row < n {
            // Rows of a poll come in runs of one partition: look its state
            // up once per run.
            let partition = batch.partitions[row];
            // Taken out (not removed: no rebalancing) so that the methods
            // below can borrow the operator; put back after the run.
            let mut state = std::mem::take(self.partition(partition));
            while row < n && batch.partitions[row] == partition {
                if let Some(key) = &batch.keys[row] {
                    self.stats.events += 1;
                    let ts = batch.timestamps[row];
                    match self.spec {
                        WindowSpec::Session { gap } => {
                            self.add_to_session(&mut state, key, ts, gap, batch, row, function)
                        }
                        _ => self.add_to_pane(&mut state, key, ts, batch, row, function),
                    }
                }
                row += 1;
            }
            *self.partition(partition) = state;
        }
    }

    /// Empty contents: reused from the pool when there are some.
    fn fresh_contents(&mut self) -> PaneState {
        self.pool.pop().unwrap_or_else(|| PaneState::new(&self.types))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_to_pane(
        &mut self,
        state: &mut PartitionState,
        key: &Key,
        ts: i64,
        batch: &Batch,
        row: usize,
        function: &mut dyn WindowFunction,
    ) {
        let (watermark, lateness, pane) = (state.watermark, self.lateness, self.pane);
        let key_state = state.keys.entry_ref(key).or_default();
        // Fast path: the event falls in the key's newest pane (no division).
        let newest = key_state
            .panes
            .back()
            .filter(|p| p.start <= ts && ts < p.start + pane)
            .map(|p| (p.start, p.first_end));
        let (pane_start, first_end, new_pane, index) = match newest {
            Some((start, first_end)) => (start, first_end, false, key_state.panes.len() - 1),
            None => {
                let start = ts - ts.rem_euclid(pane);
                let i = key_state.panes.partition_point(|p| p.start < start);
                let found = key_state.panes.get(i).is_some_and(|p| p.start == start);
                let first_end = self.first_window_end(start);
                if !found {
                    let mut contents = self.pool.pop().unwrap_or_else(|| PaneState::new(&self.types));
                    contents.first_offset = batch.offsets[row];
                    // A key's first pane gets room for one, not the four a
                    // deque starts with: most keys of a tumbling window hold
                    // one pane at a time, and a million keys would carry
                    // 300 MB of empty room (more memory for a checkpoint's
                    // fork to map, too).
                    if key_state.panes.capacity() == 0 {
                        key_state.panes.reserve_exact(1);
                    }
                    key_state.panes.insert(i, Pane { start, first_end, contents });
                }
                (start, first_end, !found, i)
            }
        };
        let Some(Pane { contents, .. }) = key_state.panes.get_mut(index) else { return };
        push_row(&mut contents.events, ts, &batch.columns, &self.inputs, row);
        flush_early(contents, self.reduce, function, key);

        // Windows already fired (end - 1 <= watermark) change: fire them
        // again. A new pane's first window still to come may be the key's
        // next one: then the key's timer moves to it.
        if !new_pane && first_end - 1 > watermark {
            return;
        }
        self.spec.assign(pane_start, &mut self.windows);
        let mut next = None;
        for w in &self.windows {
            if w.end.saturating_sub(1).saturating_add(lateness) <= watermark {
                continue;
            }
            if w.end - 1 <= watermark {
                state.refires.insert((w.end, key.clone()));
            } else if new_pane && next.is_none() {
                next = Some(w.end);
            }
        }
        if new_pane && let Some(key_state) = state.keys.get_mut(key) {
            if let Some(at) = next
                && key_state.timer_at.is_none_or(|t| at < t)
            {
                if let Some(old) = key_state.timer_at.replace(at) {
                    state.timers.remove(&(old, key.clone()));
                }
                state.timers.insert((at, key.clone()));
            }
            let cleanup = self.last_window_end(pane_start).saturating_sub(1).saturating_add(lateness);
            schedule_cleanup(&mut state.cleanups, key_state, key, cleanup);
        }
    }

    /// The end of the first window that contains the pane at `pane_start`.
    fn first_window_end(&self, pane_start: i64) -> i64 {
        match self.spec {
            WindowSpec::Sliding { size, slide } => {
                let lowest = pane_start - size + 1;
                lowest + (slide - lowest.rem_euclid(slide)) % slide + size
            }
            _ => self.last_window_end(pane_start),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_to_session(
        &mut self,
        state: &mut PartitionState,
        key: &Key,
        ts: i64,
        gap: i64,
        batch: &Batch,
        row: usize,
        function: &mut dyn WindowFunction,
    ) {
        let PartitionState { watermark, keys, timers, cleanups, refires } = state;
        let lists = &mut self.session_lists;
        let key_state = keys
            .entry_ref(key)
            .or_insert_with(|| KeyState { sessions: lists.pop().unwrap_or_default(), ..KeyState::default() });
        let sessions = &mut key_state.sessions;
        let own = Window { start: ts, end: ts + gap };
        // Fast path, for events in time order: the event falls in the key's
        // last session, which it may extend. Every other session ends at or
        // before that one's start, so none of them can merge.
        if let Some((window, contents)) = sessions.last_mut()
            && window.start <= ts
            && ts < window.end
        {
            let previous_end = window.end;
            window.end = window.end.max(own.end);
            let window = *window;
            push_row(&mut contents.events, ts, &batch.columns, &self.inputs, row);
            flush_early(contents, self.reduce, function, key);
            let grown = SessionGrown { window, previous_end, new: false, watermark: *watermark };
            grown.schedule(timers, refires, cleanups, key_state, key, self.lateness);
            return;
        }
        let fresh = self.fresh_contents();
        // Sessions are sorted and disjoint, so those that overlap the
        // event's own span are contiguous: [first, last).
        let first = sessions.partition_point(|(w, _)| w.end <= own.start);
        let mut last = first;
        while last < sessions.len() && sessions[last].0.start < own.end {
            last += 1;
        }
        let previous_end = sessions[first..last].iter().map(|(w, _)| w.end).max().unwrap_or(i64::MIN);
        if first == last {
            let mut fresh = fresh;
            fresh.first_offset = batch.offsets[row];
            sessions.insert(first, (own, fresh));
        } else {
            self.pool.push(fresh);
            // Merge into the first overlapping session, in place. The
            // merged span cannot reach the session after `last`: it only
            // grows to spans that were already disjoint from it.
            for i in (first + 1..last).rev() {
                let (w, other) = sessions.remove(i);
                let base = &mut sessions[first];
                base.0.end = base.0.end.max(w.end);
                base.1.absorb(other, self.reduce, function, key);
            }
            let base = &mut sessions[first].0;
            base.start = base.start.min(own.start);
            base.end = base.end.max(own.end);
        }
        let (window, contents) = &mut sessions[first];
        let window = *window;
        push_row(&mut contents.events, ts, &batch.columns, &self.inputs, row);
        flush_early(contents, self.reduce, function, key);
        let grown = SessionGrown { window, previous_end, new: first == last, watermark: *watermark };
        grown.schedule(timers, refires, cleanups, key_state, key, self.lateness);
    }

    fn partition(&mut self, partition: i32) -> &mut PartitionState {
        self.partitions.entry(partition).or_default()
    }

    /// Drops a key's panes or sessions whose windows are all past lateness,
    /// keeping their emptied contents for reuse. Both are kept in start
    /// order, and expire in that order.
    fn clean(&mut self, partition: i32, key: &Key) {
        let wm = self.watermark(partition);
        let lateness = self.lateness;
        let expired = |end: i64| end.saturating_sub(1).saturating_add(lateness) <= wm;
        let spec = self.spec;
        let Some(state) = self.partitions.get_mut(&partition) else { return };
        let Some(key_state) = state.keys.get_mut(key) else { return };
        let mut recycle = |mut contents: PaneState| {
            if self.pool.len() < POOL_LIMIT {
                contents.reset();
                self.pool.push(contents);
            }
        };
        while let Some(front) = key_state.panes.front() {
            if !expired(last_window_end(spec, front.start)) {
                break;
            }
            if let Some(pane) = key_state.panes.pop_front() {
                recycle(pane.contents);
            }
        }
        while key_state.sessions.first().is_some_and(|(w, _)| expired(w.end)) {
            let (_, contents) = key_state.sessions.remove(0);
            recycle(contents);
        }
        // The next cleanup: when the oldest remaining pane or session
        // expires.
        key_state.cleanup_at = None;
        let next = match (key_state.panes.front(), key_state.sessions.first()) {
            (Some(pane), _) => Some(last_window_end(spec, pane.start)),
            (None, Some((w, _))) => Some(w.end),
            (None, None) => None,
        };
        match next {
            Some(end) => {
                let at = end.saturating_sub(1).saturating_add(lateness);
                schedule_cleanup(&mut state.cleanups, key_state, key, at);
            }
            None => {
                if let Some(gone) = state.keys.remove(key)
                    && (1..=8).contains(&gone.sessions.capacity())
                    && self.session_lists.len() < POOL_LIMIT
                {
                    self.session_lists.push(gone.sessions);
                }
            }
        }
    }
}

/// A session an event went into: its bounds now, its end before (or that
/// it is new), and the partition's watermark.
struct SessionGrown {
    window: Window,
    previous_end: i64,
    new: bool,
    watermark: i64,
}

impl SessionGrown {
    /// Sets the session's timer or re-fire, and the key's cleanup.
    fn schedule(
        self,
        timers: &mut BTreeSet<(i64, Key)>,
        refires: &mut BTreeSet<(i64, Key)>,
        cleanups: &mut BTreeSet<(i64, Key)>,
        key_state: &mut KeyState,
        key: &Key,
        lateness: i64,
    ) {
        let SessionGrown { window, previous_end, new, watermark } = self;
        // A session's timer is set when it starts; when the session grows,
        // the timer re-arms itself at the new end as it comes due (see
        // `advance`), so growing costs nothing here.
        if window.end - 1 <= watermark {
            refires.insert((window.end, key.clone()));
        } else if new || previous_end.saturating_sub(1) <= watermark {
            // A new session, or one whose timer already fired: it needs a
            // timer at its new end. Otherwise its pending timer re-arms.
            timers.insert((window.end, key.clone()));
        }
        let cleanup = window.end.saturating_sub(1).saturating_add(lateness);
        schedule_cleanup(cleanups, key_state, key, cleanup);
    }
}

/// The end of a key's next window after the one ending at `after` that
/// holds one of its panes (tumbling and sliding), if any.
///
/// `from` is the first pane that can be in that window, found by a binary
/// search when it is `usize::MAX`, then moved on: a walk through a key's
/// windows in end order (`after` only grows) looks at each pane once.
fn next_window_end(spec: WindowSpec, key_state: &KeyState, after: i64, from: &mut usize) -> Option<i64> {
    let (size, slide) = match spec {
        WindowSpec::Tumbling { size } => (size, size),
        WindowSpec::Sliding { size, slide } => (size, slide),
        WindowSpec::Session { .. } => return None,
    };
    let candidate = after + slide;
    let panes = &key_state.panes;
    if *from == usize::MAX {
        *from = panes.partition_point(|p| p.start < candidate - size);
    }
    while *from < panes.len() && panes[*from].start < candidate - size {
        *from += 1;
    }
    let pane = panes.get(*from)?;
    Some(if pane.start < candidate { candidate } else { pane.first_end })
}

/// The end of the last window that contains the pane at `pane_start`.
fn last_window_end(spec: WindowSpec, pane_start: i64) -> i64 {
    match spec {
        WindowSpec::Tumbling { size } => pane_start + size,
        WindowSpec::Sliding { size, slide } => pane_start - pane_start.rem_euclid(slide) + size,
        WindowSpec::Session { gap } => pane_start + gap,
    }
}

/// Aggregates add a pane's buffered events once there are `flush_at` of
/// them, so an open pane holds little more than its accumulator. A refused
/// `add` is not retried per event: the events wait for the firing.
fn flush_early(pane: &mut PaneState, reduce: Reduce, function: &mut dyn WindowFunction, key: &Key) {
    if let Reduce::Aggregate { flush_at } = reduce
        && !pane.add_refused
        && pane.events.timestamps.len() >= flush_at
        && let Err(error) = pane.flush(function, key)
    {
        tracing::debug!("{error}; the events wait for the window to fire");
    }
}
