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
use crate::plugin::types::{Events, FieldType, Rows, Window};
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
        rows: &'a Rows,
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
}

impl KeyState {
    fn is_empty(&self) -> bool {
        self.panes.is_empty() && self.sessions.is_empty()
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
}

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
        let (pane_start, first_end, new_pane, index) = match newest {
            Some((start, first_end)) => (start, first_end, false, key_state.panes.len() - 1),
            None => {
                let start = ts - ts.rem_euclid(pane);
                let i = key_state.panes.partition_point(|p| p.start < start);
                let found = key_state.panes.get(i).is_some_and(|p| p.start == start);
                let first_end = self.first_window_end(start);
                if !found {
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
            } else if new_pane {
                state.timers.insert((w.end, key.clone()));
            }
        }
        if new_pane {
            let cleanup = self.last_window_end(pane_start).saturating_sub(1).saturating_add(lateness);
            state.cleanups.insert((cleanup, key.clone()));
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
        if window.end - 1 <= self.watermark {
            state.refires.insert((window.end, key.clone()));
        } else {
            state.timers.insert((window.end, key.clone()));
        }
        state.cleanups.insert((window.end.saturating_sub(1).saturating_add(self.lateness), key.clone()));
    }

    /// Advances the watermark to `watermark` (it never goes back): fires the
    /// windows it completes, fires again those late events changed, and
    /// drops state past its allowed lateness.
    pub fn advance(&mut self, watermark: i64, plugin: &mut PluginInstance, out: &mut dyn FnMut(Output<'_>)) {
        self.watermark = self.watermark.max(watermark);
        let wm = self.watermark;
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        // Late changes to windows that already fired come first.
        for &partition in &partitions {
            let refires = std::mem::take(&mut self.partition(partition).refires);
            for (end, key) in refires {
                self.fire(partition, &key, end, true, plugin, out);
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
            self.fire(partition, &key, end, false, plugin, out);
        }
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
        if key_state.is_empty() {
            state.keys.remove(key);
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
                out(Output::Fired { key, window, rows: &rows, refire });
            }
            (window, Err(error)) => {
                self.stats.failed += 1;
                out(Output::Failed { key, window, error: &error });
            }
        }
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
