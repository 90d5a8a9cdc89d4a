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

use super::WindowSpec;
use super::state::{Contents, Reduce, append_events, clear_events, empty_events, push_row};
use crate::decode::Batch;
use crate::plugin::types::{Accumulators, Column, Events, FieldType, Rows, RowsMany, Window};
use crate::plugin::{PluginError, PluginInstance};
use crate::record::Key;
use rustc_hash::FxBuildHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Keyed state: FxHash (keys are small and trusted to be spread well
/// enough), and `entry_ref` so a key is cloned only when it is new.
type KeyMap = hashbrown::HashMap<Key, KeyState, FxBuildHasher>;

/// What the operator hands back as windows fire.
pub enum Output<'a> {
    /// A window's result.
    Fired {
        /// The key.
        key: &'a Key,
        /// The window.
        window: Window,
        /// The function's rows for it.
        rows: RowsRef<'a>,
        /// True when a late event made it fire again.
        refire: bool,
    },
    /// The function failed for a window; its events are reported, not lost.
    Failed {
        /// The key.
        key: &'a Key,
        /// The window.
        window: Window,
        /// What went wrong.
        error: &'a PluginError,
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
    /// Windows whose function call failed.
    pub failed: u64,
}

struct Pane {
    start: i64,
    first_end: i64,
    contents: Contents,
}

#[derive(Default)]
struct KeyState {
    /// Tumbling and sliding: the open panes in start order, each with its
    /// first window's end. Few are open per key, and events mostly land in
    /// the newest, which is checked first.
    panes: VecDeque<Pane>,
    /// Sessions: sorted by start, never overlapping.
    sessions: Vec<(Window, Contents)>,
    /// When this key's next cleanup is scheduled: one at a time per key,
    /// rescheduled as panes and sessions expire.
    cleanup_at: Option<i64>,
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
#[derive(Default)]
struct PartitionState {
    keys: KeyMap,
    /// Windows to fire, by end: fire at `end - 1`.
    timers: BTreeSet<(i64, Key)>,
    /// When to drop a key's expired panes or sessions.
    cleanups: BTreeSet<(i64, Key)>,
    /// Fired windows (by end) that late events changed.
    refires: BTreeSet<(i64, Key)>,
}

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
    watermark: i64,
    scratch: Events,
    windows: Vec<Window>,
    stats: OperatorStats,
    /// Emptied contents of expired panes and sessions, reused for new ones
    /// so that steady-state windowing does not allocate.
    pool: Vec<Contents>,
    /// The windows due in the current round of firing.
    due: Vec<Due>,
    /// Reused buffers for batched plugin calls.
    calls: CallBuffers,
}

/// A window due to fire.
struct Due {
    partition: i32,
    key: Key,
    end: i64,
    refire: bool,
}

/// Where a pane or session lives, to write an accumulator back.
#[derive(Clone, Copy)]
enum Slot {
    Pane(i64),
    Session(i64),
}

/// The arguments of one batched call, reused from round to round.
struct CallBuffers {
    keys: Vec<crate::plugin::types::Value>,
    windows: Vec<Window>,
    ends: Vec<u32>,
    accs: Accumulators,
    /// Index into `due` of each window in the call.
    members: Vec<usize>,
    /// For `add-many`: where each accumulator goes back.
    slots: Vec<(i32, Key, Slot)>,
}

impl Default for CallBuffers {
    fn default() -> Self {
        CallBuffers {
            keys: Vec::new(),
            windows: Vec::new(),
            ends: Vec::new(),
            accs: Accumulators { bytes: Vec::new(), ends: Vec::new() },
            members: Vec::new(),
            slots: Vec::new(),
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
            watermark: i64::MIN,
            windows: Vec::new(),
            stats: OperatorStats::default(),
            pool: Vec::new(),
            due: Vec::new(),
            calls: CallBuffers::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> OperatorStats {
        self.stats
    }

    /// The watermark the operator has fired up to.
    pub fn watermark(&self) -> i64 {
        self.watermark
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

    /// The end of the last window that contains pane `pane_start`.
    fn last_window_end(&self, pane_start: i64) -> i64 {
        match self.spec {
            WindowSpec::Tumbling { size } => pane_start + size,
            WindowSpec::Sliding { size, slide } => pane_start - pane_start.rem_euclid(slide) + size,
            WindowSpec::Session { gap } => pane_start + gap,
        }
    }

    /// Whether a window is past its allowed lateness: no event may change it.
    fn expired(&self, window_end: i64) -> bool {
        window_end.saturating_sub(1).saturating_add(self.lateness) <= self.watermark
    }

    /// Whether an event is too late for every window it belongs to. Such an
    /// event must go to the late output instead of [`Self::process`].
    pub fn is_late(&self, partition: i32, key: &Key, ts: i64) -> bool {
        match self.spec {
            WindowSpec::Session { gap } => {
                if !self.expired(ts.saturating_add(gap)) {
                    return false;
                }
                // Late alone, but it may still join a live session.
                let sessions = self.partitions.get(&partition).and_then(|p| p.keys.get(key));
                !sessions.is_some_and(|k| {
                    k.sessions.iter().any(|(w, _)| w.start < ts + gap && ts < w.end && !self.expired(w.end))
                })
            }
            _ => {
                let pane_start = ts - ts.rem_euclid(self.pane);
                self.expired(self.last_window_end(pane_start))
            }
        }
    }

    /// Adds a batch's events (none of them late) to their windows.
    pub fn process(&mut self, batch: &Batch, plugin: &mut PluginInstance, out: &mut dyn FnMut(Output<'_>)) {
        let n = batch.len();
        let mut row = 0;
        while row < n {
            // Rows of a poll come in runs of one partition: look its state
            // up once per run.
            let partition = batch.partitions[row];
            let mut state = self.partitions.remove(&partition).unwrap_or_default();
            while row < n && batch.partitions[row] == partition {
                if let Some(key) = &batch.keys[row] {
                    self.stats.events += 1;
                    let ts = batch.timestamps[row];
                    match self.spec {
                        WindowSpec::Session { gap } => {
                            self.add_to_session(&mut state, key, ts, gap, batch, row, plugin, out)
                        }
                        _ => self.add_to_pane(&mut state, key, ts, batch, row, plugin, out),
                    }
                }
                row += 1;
            }
            self.partitions.insert(partition, state);
        }
    }

    /// Empty contents: reused from the pool when there are some.
    fn fresh_contents(&mut self) -> Contents {
        self.pool.pop().unwrap_or_else(|| Contents::new(&self.types))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_to_pane(
        &mut self,
        state: &mut PartitionState,
        key: &Key,
        ts: i64,
        batch: &Batch,
        row: usize,
        plugin: &mut PluginInstance,
        out: &mut dyn FnMut(Output<'_>),
    ) {
        let (watermark, lateness, pane) = (self.watermark, self.lateness, self.pane);
        let key_state = state.keys.entry_ref(key).or_default();
        // Fast path: the event falls in the key's newest pane (no division).
        let newest = key_state
            .panes
            .back()
            .filter(|p| p.start <= ts && ts < p.start + pane)
            .map(|p| (p.start, p.first_end));
        // Windows that also hold the new pane's neighbours already have
        // timers (those neighbours registered them): only windows ending
        // after the previous pane's last window and before the next pane's
        // first one are new. In order, that is one window per pane.
        let mut covered = (i64::MIN, i64::MAX);
        let (pane_start, first_end, new_pane, index) = match newest {
            Some((start, first_end)) => (start, first_end, false, key_state.panes.len() - 1),
            None => {
                let start = ts - ts.rem_euclid(pane);
                let i = key_state.panes.partition_point(|p| p.start < start);
                let found = key_state.panes.get(i).is_some_and(|p| p.start == start);
                let first_end = self.first_window_end(start);
                if !found {
                    if let Some(prev) = i.checked_sub(1).and_then(|j| key_state.panes.get(j)) {
                        covered.0 = self.last_window_end(prev.start);
                    }
                    if let Some(next) = key_state.panes.get(i) {
                        covered.1 = next.first_end;
                    }
                    let contents = self.pool.pop().unwrap_or_else(|| Contents::new(&self.types));
                    key_state.panes.insert(i, Pane { start, first_end, contents });
                }
                (start, first_end, !found, i)
            }
        };
        let Some(Pane { contents, .. }) = key_state.panes.get_mut(index) else { return };
        push_row(&mut contents.events, ts, &batch.columns, &self.inputs, row);
        if let Reduce::Aggregate { flush_at } = self.reduce
            && contents.events.timestamps.len() >= flush_at
            && let Err(error) = contents.flush(plugin, key)
        {
            self.stats.failed += 1;
            let window = Window { start: pane_start, end: pane_start + self.pane };
            out(Output::Failed { key, window, error: &error });
        }

        // Windows already fired (end - 1 <= watermark) change: fire them
        // again. New panes need timers for the windows still to come.
        if !new_pane && first_end - 1 > watermark {
            return;
        }
        self.spec.assign(pane_start, &mut self.windows);
        for w in &self.windows {
            if w.end.saturating_sub(1).saturating_add(lateness) <= watermark {
                continue;
            }
            if w.end - 1 <= watermark {
                state.refires.insert((w.end, key.clone()));
            } else if new_pane && covered.0 < w.end && w.end < covered.1 {
                state.timers.insert((w.end, key.clone()));
            }
        }
        if new_pane {
            let cleanup = self.last_window_end(pane_start).saturating_sub(1).saturating_add(lateness);
            if let Some(key_state) = state.keys.get_mut(key) {
                schedule_cleanup(&mut state.cleanups, key_state, key, cleanup);
            }
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
        plugin: &mut PluginInstance,
        out: &mut dyn FnMut(Output<'_>),
    ) {
        let fresh = self.fresh_contents();
        let key_state = state.keys.entry_ref(key).or_default();
        let sessions = &mut key_state.sessions;
        let own = Window { start: ts, end: ts + gap };
        // Sessions are sorted and disjoint, so those that overlap the
        // event's own span are contiguous: [first, last).
        let first = sessions.partition_point(|(w, _)| w.end <= own.start);
        let mut last = first;
        while last < sessions.len() && sessions[last].0.start < own.end {
            last += 1;
        }
        let mut failure = None;
        let previous_end = sessions[first..last].iter().map(|(w, _)| w.end).max().unwrap_or(i64::MIN);
        if first == last {
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
                if let Err(e) = base.1.absorb(other, self.reduce, plugin, key) {
                    failure = Some(e);
                }
            }
            let base = &mut sessions[first].0;
            base.start = base.start.min(own.start);
            base.end = base.end.max(own.end);
        }
        let (window, contents) = &mut sessions[first];
        let window = *window;
        push_row(&mut contents.events, ts, &batch.columns, &self.inputs, row);
        if let Reduce::Aggregate { flush_at } = self.reduce
            && contents.events.timestamps.len() >= flush_at
            && let Err(e) = contents.flush(plugin, key)
        {
            failure = Some(e);
        }
        if let Some(error) = failure {
            self.stats.failed += 1;
            out(Output::Failed { key, window, error: &error });
        }
        // A session's timer is set when it starts; when the session grows,
        // the timer re-arms itself at the new end as it comes due (see
        // `advance`), so growing costs nothing here.
        if window.end - 1 <= self.watermark {
            state.refires.insert((window.end, key.clone()));
        } else if first == last || previous_end.saturating_sub(1) <= self.watermark {
            // A new session, or one whose timer already fired: it needs a
            // timer at its new end. Otherwise its pending timer re-arms.
            state.timers.insert((window.end, key.clone()));
        }
        let cleanup = window.end.saturating_sub(1).saturating_add(self.lateness);
        if let Some(key_state) = state.keys.get_mut(key) {
            schedule_cleanup(&mut state.cleanups, key_state, key, cleanup);
        }
    }

    /// Advances the watermark to `watermark` (it never goes back): fires the
    /// windows it completes, fires again those late events changed, and
    /// drops state past its allowed lateness.
    pub fn advance(&mut self, watermark: i64, plugin: &mut PluginInstance, out: &mut dyn FnMut(Output<'_>)) {
        self.watermark = self.watermark.max(watermark);
        let wm = self.watermark;
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        // Late changes to windows that already fired come first.
        for &partition in &partitions {
            for (end, key) in std::mem::take(&mut self.partition(partition).refires) {
                due.push(Due { partition, key, end, refire: true });
            }
        }
        // Then the windows the watermark completes, in end order across
        // partitions, so output reads in time order.
        loop {
            let next = self
                .partitions
                .iter()
                .filter_map(|(p, s)| s.timers.first().map(|(end, _)| (*end, *p)))
                .filter(|(end, _)| end.saturating_sub(1) <= wm)
                .min();
            let Some((_, partition)) = next else { break };
            let Some((end, key)) = self.partition(partition).timers.pop_first() else { break };
            if let WindowSpec::Session { .. } = self.spec {
                // The session this timer was set for may have grown (or
                // merged into one that did): re-arm at its current end.
                let grown = self
                    .partitions
                    .get(&partition)
                    .and_then(|s| s.keys.get(&key))
                    .and_then(|k| k.sessions.iter().find(|(w, _)| w.start < end && end <= w.end))
                    .map(|(w, _)| w.end);
                match grown {
                    Some(current) if current != end => {
                        // Into the set (which dedupes the timers of merged
                        // sessions); this loop pops it when it is due.
                        self.partition(partition).timers.insert((current, key));
                        continue;
                    }
                    Some(_) => {}
                    None => continue,
                }
            }
            due.push(Due { partition, key, end, refire: false });
        }
        match self.reduce {
            Reduce::Window => self.fire_windows(&due, plugin, out),
            Reduce::Aggregate { .. } => self.fire_aggregates(&due, plugin, out),
        }
        self.due = due;
        for partition in partitions {
            loop {
                let state = self.partition(partition);
                let Some(first) = state.cleanups.first() else { break };
                if first.0 > wm {
                    break;
                }
                let Some((_, key)) = state.cleanups.pop_first() else { break };
                self.clean(partition, &key);
            }
        }
    }

    /// Appends the events of a due window to the call's batch; returns the
    /// window's bounds, or `None` if it holds nothing (merged away, or
    /// empty).
    fn gather_events(&mut self, d: &Due) -> Option<Window> {
        let state = self.partitions.get_mut(&d.partition)?;
        let key_state = state.keys.get_mut(&d.key)?;
        match self.spec {
            WindowSpec::Session { .. } => {
                let (window, contents) = key_state.sessions.iter().find(|(w, _)| w.end == d.end)?;
                append_events(&mut self.scratch, &contents.events);
                Some(*window)
            }
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                let window = Window { start: d.end - size, end: d.end };
                let first = key_state.panes.partition_point(|p| p.start < window.start);
                let before = self.scratch.timestamps.len();
                for pane in key_state.panes.range(first..).take_while(|p| p.start < window.end) {
                    append_events(&mut self.scratch, &pane.contents.events);
                }
                (self.scratch.timestamps.len() > before).then_some(window)
            }
        }
    }

    /// Reports a batched call's results; on a failed call, fires its
    /// windows one by one so the failure is pinned on the right window.
    fn report(
        &mut self,
        due: &[Due],
        results: Result<RowsMany, PluginError>,
        plugin: &mut PluginInstance,
        out: &mut dyn FnMut(Output<'_>),
    ) {
        let members = std::mem::take(&mut self.calls.members);
        match results {
            Ok(many) => {
                let mut start = 0usize;
                for ((&m, &end), &window) in members.iter().zip(&many.ends).zip(&self.calls.windows) {
                    let d = &due[m];
                    let rows = RowsRef { columns: &many.columns, start, len: end as usize - start };
                    start = end as usize;
                    if d.refire {
                        self.stats.refired += 1;
                    } else {
                        self.stats.fired += 1;
                    }
                    out(Output::Fired { key: &d.key, window, rows, refire: d.refire });
                }
            }
            Err(error) => {
                tracing::warn!("{error}; retrying its windows one by one");
                for &m in &members {
                    let d = &due[m];
                    self.fire(d.partition, &d.key, d.end, d.refire, plugin, out);
                }
            }
        }
        self.calls.members = members;
    }

    /// Fires due windows of a window function, many per `apply-many` call.
    fn fire_windows(&mut self, due: &[Due], plugin: &mut PluginInstance, out: &mut dyn FnMut(Output<'_>)) {
        let mut next = 0;
        while next < due.len() {
            clear_events(&mut self.scratch);
            let c = &mut self.calls;
            c.keys.clear();
            c.windows.clear();
            c.ends.clear();
            c.members.clear();
            while next < due.len()
                && self.scratch.timestamps.len() < MAX_CALL_EVENTS
                && self.calls.members.len() < MAX_CALL_WINDOWS
            {
                let d = &due[next];
                if let Some(window) = self.gather_events(d) {
                    let c = &mut self.calls;
                    c.keys.push(d.key.to_value());
                    c.windows.push(window);
                    c.ends.push(self.scratch.timestamps.len() as u32);
                    c.members.push(next);
                }
                next += 1;
            }
            if self.calls.members.is_empty() {
                continue;
            }
            let c = &self.calls;
            let results = plugin.apply_many(&c.keys, &c.windows, &c.ends, &self.scratch);
            self.report(due, results, plugin, out);
        }
    }

    /// Fires due windows of an aggregate: first one `add-many` for every
    /// pane or session with events not yet added, then `get-results` for
    /// many windows per call.
    fn fire_aggregates(&mut self, due: &[Due], plugin: &mut PluginInstance, out: &mut dyn FnMut(Output<'_>)) {
        if due.is_empty() {
            return;
        }
        if let Err(error) = self.flush_due(due, plugin) {
            // The events of those panes could not be added: their windows
            // are reported failed, with the reason.
            for d in due {
                self.stats.failed += 1;
                let window = Window { start: d.end - self.pane, end: d.end };
                out(Output::Failed { key: &d.key, window, error: &error });
            }
            return;
        }
        let mut next = 0;
        while next < due.len() {
            let c = &mut self.calls;
            c.keys.clear();
            c.windows.clear();
            c.ends.clear();
            c.accs.bytes.clear();
            c.accs.ends.clear();
            c.members.clear();
            while next < due.len() && self.calls.members.len() < MAX_CALL_WINDOWS {
                let d = &due[next];
                next += 1;
                let Some(state) = self.partitions.get(&d.partition) else { continue };
                let Some(key_state) = state.keys.get(&d.key) else { continue };
                let c = &mut self.calls;
                let before = c.accs.ends.len();
                let window = match self.spec {
                    WindowSpec::Session { .. } => {
                        let Some((w, contents)) = key_state.sessions.iter().find(|(w, _)| w.end == d.end)
                        else {
                            continue;
                        };
                        push_acc(&mut c.accs, contents.acc.as_deref());
                        *w
                    }
                    WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                        let window = Window { start: d.end - size, end: d.end };
                        let first = key_state.panes.partition_point(|p| p.start < window.start);
                        for pane in key_state.panes.range(first..).take_while(|p| p.start < window.end) {
                            push_acc(&mut c.accs, pane.contents.acc.as_deref());
                        }
                        window
                    }
                };
                if c.accs.ends.len() == before {
                    continue;
                }
                c.keys.push(d.key.to_value());
                c.windows.push(window);
                c.ends.push(c.accs.ends.len() as u32);
                c.members.push(next - 1);
            }
            if self.calls.members.is_empty() {
                continue;
            }
            let c = &self.calls;
            let results = plugin.get_results(&c.keys, &c.windows, &c.ends, &c.accs);
            self.report(due, results, plugin, out);
        }
    }

    /// Adds the buffered events of every pane or session of the due windows
    /// to their accumulators, in one `add-many` call per chunk.
    fn flush_due(&mut self, due: &[Due], plugin: &mut PluginInstance) -> Result<(), PluginError> {
        let mut empty: Option<Vec<u8>> = None;
        let mut next = 0;
        while next < due.len() {
            clear_events(&mut self.scratch);
            self.calls.accs.bytes.clear();
            self.calls.accs.ends.clear();
            self.calls.ends.clear();
            self.calls.slots.clear();
            while next < due.len() && self.scratch.timestamps.len() < MAX_CALL_EVENTS {
                let d = &due[next];
                next += 1;
                let Some(state) = self.partitions.get_mut(&d.partition) else { continue };
                let Some(key_state) = state.keys.get_mut(&d.key) else { continue };
                let mut take =
                    |contents: &mut Contents, slot: Slot, calls: &mut CallBuffers, scratch: &mut Events| {
                        if contents.events.timestamps.is_empty() {
                            return Ok(());
                        }
                        append_events(scratch, &contents.events);
                        clear_events(&mut contents.events);
                        let acc = match contents.acc.take() {
                            Some(acc) => acc,
                            None => match &empty {
                                Some(e) => e.clone(),
                                None => {
                                    let e = plugin.create_accumulator()?;
                                    empty = Some(e.clone());
                                    e
                                }
                            },
                        };
                        push_acc(&mut calls.accs, Some(&acc));
                        calls.ends.push(scratch.timestamps.len() as u32);
                        calls.slots.push((d.partition, d.key.clone(), slot));
                        Ok::<(), PluginError>(())
                    };
                match self.spec {
                    WindowSpec::Session { .. } => {
                        if let Some((w, contents)) =
                            key_state.sessions.iter_mut().find(|(w, _)| w.end == d.end)
                        {
                            let slot = Slot::Session(w.end);
                            take(contents, slot, &mut self.calls, &mut self.scratch)?;
                        }
                    }
                    WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                        let start = d.end - size;
                        let first = key_state.panes.partition_point(|p| p.start < start);
                        for pane in key_state.panes.range_mut(first..).take_while(|p| p.start < d.end) {
                            take(
                                &mut pane.contents,
                                Slot::Pane(pane.start),
                                &mut self.calls,
                                &mut self.scratch,
                            )?;
                        }
                    }
                }
            }
            if self.calls.accs.ends.is_empty() {
                continue;
            }
            let accs = plugin.add_many(&self.calls.accs, &self.calls.ends, &self.scratch)?;
            let mut start = 0usize;
            let pieces = accs.ends.iter().map(|&end| {
                let piece = accs.bytes[start..end as usize].to_vec();
                start = end as usize;
                piece
            });
            for ((partition, key, slot), acc) in self.calls.slots.drain(..).zip(pieces) {
                let Some(key_state) = self.partitions.get_mut(&partition).and_then(|s| s.keys.get_mut(&key))
                else {
                    continue;
                };
                let contents = match slot {
                    Slot::Pane(start) => {
                        key_state.panes.iter_mut().find(|p| p.start == start).map(|p| &mut p.contents)
                    }
                    Slot::Session(end) => {
                        key_state.sessions.iter_mut().find(|(w, _)| w.end == end).map(|(_, c)| c)
                    }
                };
                if let Some(contents) = contents {
                    contents.acc = Some(acc);
                }
            }
        }
        Ok(())
    }

    fn partition(&mut self, partition: i32) -> &mut PartitionState {
        self.partitions.entry(partition).or_default()
    }

    /// Drops a key's panes or sessions whose windows are all past lateness,
    /// keeping their emptied contents for reuse. Both are kept in start
    /// order, and expire in that order.
    fn clean(&mut self, partition: i32, key: &Key) {
        let wm = self.watermark;
        let lateness = self.lateness;
        let expired = |end: i64| end.saturating_sub(1).saturating_add(lateness) <= wm;
        let spec = self.spec;
        let Some(state) = self.partitions.get_mut(&partition) else { return };
        let Some(key_state) = state.keys.get_mut(key) else { return };
        let mut recycle = |mut contents: Contents| {
            if self.pool.len() < POOL_LIMIT {
                contents.reset();
                self.pool.push(contents);
            }
        };
        while let Some(front) = key_state.panes.front() {
            let start = front.start;
            let last_end = match spec {
                WindowSpec::Sliding { size, slide } => start - start.rem_euclid(slide) + size,
                WindowSpec::Tumbling { size } => start + size,
                WindowSpec::Session { gap } => start + gap,
            };
            if !expired(last_end) {
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
            (Some(pane), _) => {
                let last_end = match spec {
                    WindowSpec::Sliding { size, slide } => pane.start - pane.start.rem_euclid(slide) + size,
                    WindowSpec::Tumbling { size } => pane.start + size,
                    WindowSpec::Session { gap } => pane.start + gap,
                };
                Some(last_end)
            }
            (None, Some((w, _))) => Some(w.end),
            (None, None) => None,
        };
        match next {
            Some(end) => {
                let at = end.saturating_sub(1).saturating_add(lateness);
                schedule_cleanup(&mut state.cleanups, key_state, key, at);
            }
            None => {
                state.keys.remove(key);
            }
        }
    }

    /// Fires the window of `key` that ends at `end`.
    fn fire(
        &mut self,
        partition: i32,
        key: &Key,
        end: i64,
        refire: bool,
        plugin: &mut PluginInstance,
        out: &mut dyn FnMut(Output<'_>),
    ) {
        let Some(state) = self.partitions.get_mut(&partition) else { return };
        let Some(key_state) = state.keys.get_mut(key) else { return };
        let result = match self.spec {
            WindowSpec::Session { .. } => {
                // A timer may point at a session that has since merged into
                // a longer one: then there is nothing to fire at this end.
                let Some((window, contents)) = key_state.sessions.iter_mut().find(|(w, _)| w.end == end)
                else {
                    return;
                };
                let window = *window;
                (window, reduce_one(contents, self.reduce, plugin, key, window))
            }
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                let window = Window { start: end - size, end };
                let first = key_state.panes.partition_point(|p| p.start < window.start);
                let mut panes = key_state
                    .panes
                    .range_mut(first..)
                    .take_while(|p| p.start < window.end)
                    .map(|p| &mut p.contents);
                let result = match (panes.next(), panes.next()) {
                    (None, _) => return,
                    (Some(only), None) => reduce_one(only, self.reduce, plugin, key, window),
                    (Some(a), Some(b)) => {
                        let rest = std::iter::once(a).chain(std::iter::once(b)).chain(panes);
                        reduce_many(rest, self.reduce, plugin, key, window, &mut self.scratch)
                    }
                };
                (window, result)
            }
        };
        match result {
            (window, Ok(rows)) => {
                if refire {
                    self.stats.refired += 1;
                } else {
                    self.stats.fired += 1;
                }
                out(Output::Fired { key, window, rows: RowsRef::all(&rows), refire });
            }
            (window, Err(error)) => {
                self.stats.failed += 1;
                out(Output::Failed { key, window, error: &error });
            }
        }
    }
}

/// Appends an accumulator (if there is one) to a batched call's buffer.
fn push_acc(accs: &mut Accumulators, acc: Option<&[u8]>) {
    if let Some(acc) = acc {
        accs.bytes.extend_from_slice(acc);
        accs.ends.push(accs.bytes.len() as u32);
    }
}

/// The result of a window held in one pane or session.
fn reduce_one(
    contents: &mut Contents,
    reduce: Reduce,
    plugin: &mut PluginInstance,
    key: &Key,
    window: Window,
) -> Result<Rows, PluginError> {
    match reduce {
        Reduce::Window => plugin.apply(&key.to_value(), window, &contents.events),
        Reduce::Aggregate { .. } => {
            contents.flush(plugin, key)?;
            let acc = match &contents.acc {
                Some(acc) => acc.clone(),
                None => plugin.create_accumulator()?,
            };
            plugin.get_result(&key.to_value(), window, &acc)
        }
    }
}

/// The result of a window made of several panes: their events joined for a
/// window function, their accumulators merged for an aggregate.
fn reduce_many<'a>(
    panes: impl Iterator<Item = &'a mut Contents>,
    reduce: Reduce,
    plugin: &mut PluginInstance,
    key: &Key,
    window: Window,
    scratch: &mut Events,
) -> Result<Rows, PluginError> {
    match reduce {
        Reduce::Window => {
            clear_events(scratch);
            for pane in panes {
                append_events(scratch, &pane.events);
            }
            plugin.apply(&key.to_value(), window, scratch)
        }
        Reduce::Aggregate { .. } => {
            let value = key.to_value();
            let mut merged: Option<Vec<u8>> = None;
            for pane in panes {
                pane.flush(plugin, key)?;
                merged = match (merged, &pane.acc) {
                    (Some(m), Some(acc)) => Some(plugin.merge(&value, &m, acc)?),
                    (None, Some(acc)) => Some(acc.clone()),
                    (m, None) => m,
                };
            }
            let acc = match merged {
                Some(acc) => acc,
                None => plugin.create_accumulator()?,
            };
            plugin.get_result(&value, window, &acc)
        }
    }
}
