//! Firing: the watermark completes windows, which go to the function in
//! batched calls, a round at a time. A failed batched call is retried item
//! by item (accumulator by accumulator, then window by window), so that
//! only the windows holding what the function refused fail, each reported
//! once with its key and true bounds.

use super::{
    DueWindow, Firing, KeyState, MAX_CALL_EVENTS, MAX_CALL_WINDOWS, Pane, PaneHome, Reduce, RowsRef,
    WindowOperator,
};
use crate::plugin::PluginError;
use crate::record::Key;
use crate::types::{Accumulators, Events, RowRange, Rows, RowsMany, Window};
use crate::window::WindowFunction;
use crate::window::WindowSpec;
use crate::window::state::{PaneState, append_events, append_range, clear_events, empty_events};
use std::collections::VecDeque;

/// A pane the function refused to `add` in this round, with its error.
type Refused = (i32, Key, PaneHome, PluginError);

impl WindowOperator {
    /// Advances the watermark of `partition` (of every partition for
    /// `None`) to `watermark` (it never goes back): fires the windows it
    /// completes, fires again those late events changed, and drops state
    /// past its allowed lateness. Re-fires come first, then completed
    /// windows in end order (across partitions, for `None`).
    pub fn advance(
        &mut self,
        partition: Option<i32>,
        watermark: i64,
        function: &mut dyn WindowFunction,
        out: &mut dyn FnMut(Firing<'_>),
    ) {
        // Reused: a partition fires often (at every window end it crosses).
        let mut partitions = std::mem::take(&mut self.advancing);
        partitions.clear();
        match partition {
            Some(p) => partitions.push(p),
            None => partitions.extend(self.partitions.keys().copied()),
        }
        for &p in &partitions {
            let state = self.partition(p);
            state.watermark = state.watermark.max(watermark);
        }
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.calls.runs.clear();
        // Late changes to windows that already fired come first.
        for &partition in &partitions {
            for (end, key) in std::mem::take(&mut self.partition(partition).refires) {
                push_due(
                    &mut due,
                    &mut self.calls.runs,
                    DueWindow { partition, key, end, refire: true, rank: 0 },
                );
            }
        }
        // Then the windows the watermark completes, in end order across
        // partitions, so output reads in time order.
        let refires = due.len();
        let spec = self.spec;
        for &partition in &partitions {
            let Some(state) = self.partitions.get_mut(&partition) else { continue };
            while let Some(&(end, _)) = state.timers.first() {
                if end.saturating_sub(1) > state.watermark {
                    break;
                }
                let Some((end, key)) = state.timers.pop_first() else { break };
                if let WindowSpec::Session { .. } = spec {
                    // The session this timer was set for may have grown (or
                    // merged into one that did): re-arm at its current end.
                    let grown = state
                        .keys
                        .get(&key)
                        .and_then(|k| k.sessions.iter().find(|(w, _)| w.start < end && end <= w.end))
                        .map(|(w, _)| w.end);
                    match grown {
                        // Grown, and due all the same: fire it now (the
                        // timers of merged sessions may fire it twice: the
                        // round drops the copies once it is sorted).
                        Some(current) if current != end && current.saturating_sub(1) <= state.watermark => {
                            push_due(
                                &mut due,
                                &mut self.calls.runs,
                                DueWindow { partition, key, end: current, refire: false, rank: 0 },
                            )
                        }
                        Some(current) if current != end => {
                            // Into the set (which dedupes the timers of merged
                            // sessions); this loop pops it when it is due.
                            state.timers.insert((current, key));
                        }
                        Some(_) => push_due(
                            &mut due,
                            &mut self.calls.runs,
                            DueWindow { partition, key, end, refire: false, rank: 0 },
                        ),
                        None => {}
                    }
                    continue;
                }
                // A key's panes have one timer: walk through its windows the
                // watermark has passed, then set it at the next one.
                let Some(key_state) = state.keys.get_mut(&key) else { continue };
                if key_state.timer_at != Some(end) {
                    // Left by a snapshot from before one timer per key.
                    continue;
                }
                let mut at = end;
                let mut from = usize::MAX;
                loop {
                    let d = DueWindow { partition, key: key.clone(), end: at, refire: false, rank: 0 };
                    push_due(&mut due, &mut self.calls.runs, d);
                    match super::next_window_end(spec, key_state, at, &mut from) {
                        Some(next) if next.saturating_sub(1) <= state.watermark => at = next,
                        next => {
                            key_state.timer_at = next;
                            if let Some(next) = next {
                                state.timers.insert((next, key));
                            }
                            break;
                        }
                    }
                }
            }
        }
        // In end order, then by partition and key (by rank, which orders
        // them the same): often they already are (tumbling windows found
        // key by key all end together).
        self.rank_due(&mut due);
        if !due[refires..].is_sorted_by_key(|d| (d.end, d.rank)) {
            due[refires..].sort_unstable_by_key(|d| (d.end, d.rank));
        }
        if let WindowSpec::Session { .. } = spec {
            // One (partition, key, end) is one session: fired once.
            dedup_sorted(&mut due, refires);
        }
        match self.reduce {
            Reduce::Apply => self.fire_windows(&due, function, out),
            Reduce::Aggregate { .. } => self.fire_aggregates(&due, function, out),
        }
        self.due = due;
        for &partition in &partitions {
            loop {
                let state = self.partition(partition);
                let Some(first) = state.cleanups.first() else { break };
                if first.0 > state.watermark {
                    break;
                }
                let Some((_, key)) = state.cleanups.pop_first() else { break };
                self.clean(partition, &key);
            }
        }
        self.advancing = partitions;
    }

    /// The key's state, if it has any in `partition`.
    fn key_state(&mut self, partition: i32, key: &Key) -> Option<&mut KeyState> {
        self.partitions.get_mut(&partition)?.keys.get_mut(key)
    }

    /// The pane or session at `home`.
    fn pane_mut(&mut self, partition: i32, key: &Key, home: PaneHome) -> Option<&mut PaneState> {
        let key_state = self.key_state(partition, key)?;
        match home {
            PaneHome::Pane(start) => {
                let i = key_state.panes.partition_point(|p| p.start < start);
                key_state.panes.get_mut(i).filter(|p| p.start == start).map(|p| &mut p.contents)
            }
            PaneHome::Session(end) => {
                key_state.sessions.iter_mut().find(|(w, _)| w.end == end).map(|(_, c)| c)
            }
        }
    }

    /// Replaces each due window's run number with the rank of its
    /// (partition, key) among the round's: a sort of the runs, which are
    /// far fewer than the windows when keys have several (sliding).
    fn rank_due(&mut self, due: &mut [DueWindow]) {
        let c = &mut self.calls;
        c.run_order.clear();
        c.run_order.extend(0..c.runs.len() as u32);
        let runs = &c.runs;
        let of = |r: &u32| {
            let d = &due[runs[*r as usize]];
            (d.partition, &d.key)
        };
        c.run_order.sort_unstable_by(|a, b| of(a).cmp(&of(b)));
        c.run_rank.clear();
        c.run_rank.resize(runs.len(), 0);
        let mut rank = 0;
        for (i, &r) in c.run_order.iter().enumerate() {
            if i > 0 && of(&c.run_order[i - 1]) != of(&r) {
                rank += 1;
            }
            c.run_rank[r as usize] = rank;
        }
        c.ranks = if runs.is_empty() { 0 } else { rank as usize + 1 };
        for d in due.iter_mut() {
            d.rank = c.run_rank[d.rank as usize];
        }
    }

    /// Sorts the due windows `chunk` (in due order) into `self.calls.order`
    /// by partition and key (by rank), keeping due order within each key:
    /// the windows of one key come together in end order, so that its
    /// panes go into a call once and its windows are ranges of them.
    fn order_by_key(&mut self, due: &[DueWindow], chunk: std::ops::Range<usize>) {
        let c = &mut self.calls;
        c.order.clear();
        if chunk.clone().is_sorted_by_key(|i| due[i].rank) {
            c.order.extend(chunk);
        } else if c.ranks <= chunk.len() {
            // By counting: few keys, many windows each (sliding).
            c.counts.clear();
            c.counts.resize(c.ranks + 1, 0);
            for i in chunk.clone() {
                c.counts[due[i].rank as usize + 1] += 1;
            }
            for r in 1..c.counts.len() {
                c.counts[r] += c.counts[r - 1];
            }
            c.order.resize(chunk.len(), 0);
            for i in chunk {
                let slot = &mut c.counts[due[i].rank as usize];
                c.order[*slot as usize] = i;
                *slot += 1;
            }
        } else {
            c.order.extend(chunk);
            c.order.sort_unstable_by_key(|&i| (due[i].rank, i));
        }
    }

    /// The end of the run of `self.calls.order` from `i` that has one
    /// partition and key.
    fn key_run(&self, due: &[DueWindow], i: usize) -> usize {
        let order = &self.calls.order;
        let rank = due[order[i]].rank;
        i + order[i..].iter().take_while(|&&j| due[j].rank == rank).count()
    }

    /// Adds one key's due windows (`run`, in end order) to the call: its
    /// events once each, every window a range of them. Panes that no
    /// window of the run holds stay out.
    fn gather_run(&mut self, due: &[DueWindow], run: std::ops::Range<usize>) {
        let spec = self.spec;
        let first = &due[self.calls.order[run.start]];
        let Some(key_state) = self.partitions.get(&first.partition).and_then(|s| s.keys.get(&first.key))
        else {
            return;
        };
        let (scratch, calls) = (&mut self.scratch, &mut self.calls);
        let len = |scratch: &Events| scratch.timestamps.len() as u32;
        match spec {
            WindowSpec::Session { .. } => {
                for &i in &calls.order[run] {
                    let d = &due[i];
                    let Some((window, contents)) = key_state.sessions.iter().find(|(w, _)| w.end == d.end)
                    else {
                        continue;
                    };
                    let start = len(scratch);
                    append_events(scratch, &contents.events);
                    if len(scratch) > start {
                        calls.keys.push(d.key.to_value());
                        calls.windows.push(*window);
                        calls.ranges.push(RowRange { start, end: len(scratch) });
                        calls.due_index.push(i);
                    }
                }
            }
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                let windows = &calls.order[run];
                calls.pane_rows.clear();
                for pane in
                    panes_in_windows(&key_state.panes, due, windows, size).map(|i| &key_state.panes[i])
                {
                    let start = len(scratch);
                    append_events(scratch, &pane.contents.events);
                    calls.pane_rows.push((pane.start, start, len(scratch)));
                }
                let mut cursor = PaneCursor::new();
                for &i in windows {
                    let d = &due[i];
                    let window = Window { start: d.end - size, end: d.end };
                    let rows = &calls.pane_rows;
                    let (a, b) = cursor.span(rows, window);
                    if a == b || rows[a].1 == rows[b - 1].2 {
                        continue;
                    }
                    calls.keys.push(d.key.to_value());
                    calls.windows.push(window);
                    calls.ranges.push(RowRange { start: rows[a].1, end: rows[b - 1].2 });
                    calls.due_index.push(i);
                }
            }
        }
    }

    /// Hands out a batched call's rows, window by window in due order; if
    /// the call failed, fires its windows one by one so the failure is
    /// pinned on the right windows.
    fn report(
        &mut self,
        due: &[DueWindow],
        results: Result<RowsMany, PluginError>,
        function: &mut dyn WindowFunction,
        out: &mut dyn FnMut(Firing<'_>),
    ) {
        let due_index = std::mem::take(&mut self.calls.due_index);
        let mut emit = std::mem::take(&mut self.calls.emit);
        in_due_order(&due_index, &mut emit, &mut self.calls.counts);
        match results {
            Ok(many) => {
                for &k in &emit {
                    // The instance checked the ends; a native function is
                    // trusted, but still cannot make this panic.
                    let start = if k == 0 { Some(0) } else { many.ends.get(k - 1).map(|&e| e as usize) };
                    let (Some(start), Some(end)) = (start, many.ends.get(k).map(|&e| e as usize)) else {
                        continue;
                    };
                    let d = &due[due_index[k]];
                    let window = self.calls.windows[k];
                    let rows = RowsRef { columns: &many.columns, start, len: end - start };
                    self.stats.count_fired(d.refire);
                    out(Firing::Rows { partition: d.partition, key: &d.key, window, rows, refire: d.refire });
                }
            }
            Err(error) => {
                tracing::warn!("{error}; retrying its windows one by one");
                for &k in &emit {
                    let d = &due[due_index[k]];
                    self.fire(d, function, out);
                }
            }
        }
        self.calls.due_index = due_index;
        self.calls.emit = emit;
    }

    /// Fires due windows of a window function, many per `apply-many` call.
    fn fire_windows(
        &mut self,
        due: &[DueWindow],
        function: &mut dyn WindowFunction,
        out: &mut dyn FnMut(Firing<'_>),
    ) {
        let mut next = 0;
        while next < due.len() {
            let chunk = next..(next + MAX_CALL_WINDOWS).min(due.len());
            next = chunk.end;
            self.order_by_key(due, chunk);
            let mut i = 0;
            while i < self.calls.order.len() {
                clear_events(&mut self.scratch);
                self.calls.clear();
                while i < self.calls.order.len()
                    && (self.calls.due_index.is_empty() || self.scratch.timestamps.len() < MAX_CALL_EVENTS)
                {
                    let run = i..self.key_run(due, i);
                    i = run.end;
                    self.gather_run(due, run);
                }
                if self.calls.due_index.is_empty() {
                    continue;
                }
                let c = &self.calls;
                let results = function.apply_many(&c.keys, &c.windows, &c.ranges, &self.scratch);
                self.report(due, results, function, out);
            }
        }
    }

    /// Fires due windows of an aggregate: first `add-many` for every pane
    /// or session with events not yet added, then `get-results` for many
    /// windows per call. A window that holds a pane the function refused
    /// fails; the others fire.
    fn fire_aggregates(
        &mut self,
        due: &[DueWindow],
        function: &mut dyn WindowFunction,
        out: &mut dyn FnMut(Firing<'_>),
    ) {
        if due.is_empty() {
            return;
        }
        let refused = self.flush_due(due, function);
        let refusal = |partition: i32, key: &Key, home: PaneHome| {
            refused.iter().find(|(p, k, h, _)| *p == partition && k == key && *h == home).map(|r| &r.3)
        };
        let spec = self.spec;
        let mut next = 0;
        while next < due.len() {
            let chunk = next..(next + MAX_CALL_WINDOWS).min(due.len());
            next = chunk.end;
            self.order_by_key(due, chunk);
            self.calls.clear();
            let mut i = 0;
            while i < self.calls.order.len() {
                let run = i..self.key_run(due, i);
                i = run.end;
                let first = &due[self.calls.order[run.start]];
                let Some(key_state) =
                    self.partitions.get(&first.partition).and_then(|s| s.keys.get(&first.key))
                else {
                    continue;
                };
                let c = &mut self.calls;
                // The key's accumulators go into the call once; each window
                // is a range of them.
                c.pane_rows.clear();
                if let WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } = spec {
                    let windows = &c.order[run.clone()];
                    let panes = &key_state.panes;
                    for pane in panes_in_windows(panes, due, windows, size).map(|i| &panes[i]) {
                        let start = c.accs.ends.len() as u32;
                        push_acc(&mut c.accs, pane.contents.acc.as_deref());
                        c.pane_rows.push((pane.start, start, c.accs.ends.len() as u32));
                    }
                }
                let mut cursor = PaneCursor::new();
                for k in run {
                    let index = c.order[k];
                    let d = &due[index];
                    let (window, range, failure) = match spec {
                        WindowSpec::Session { .. } => {
                            let Some((w, contents)) = key_state.sessions.iter().find(|(w, _)| w.end == d.end)
                            else {
                                continue;
                            };
                            let failure = contents
                                .broken
                                .as_deref()
                                .or_else(|| refusal(d.partition, &d.key, PaneHome::Session(w.end)))
                                .cloned();
                            let start = c.accs.ends.len() as u32;
                            if failure.is_none() {
                                push_acc(&mut c.accs, contents.acc.as_deref());
                            }
                            (*w, RowRange { start, end: c.accs.ends.len() as u32 }, failure)
                        }
                        WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                            let window = Window { start: d.end - size, end: d.end };
                            let rows = &c.pane_rows;
                            let (a, b) = cursor.span(rows, window);
                            let failure = match refused.is_empty() {
                                true => None,
                                false => rows[a..b]
                                    .iter()
                                    .find_map(|p| refusal(d.partition, &d.key, PaneHome::Pane(p.0)))
                                    .cloned(),
                            };
                            let range = match a < b {
                                true => RowRange { start: rows[a].1, end: rows[b - 1].2 },
                                false => RowRange { start: 0, end: 0 },
                            };
                            (window, range, failure)
                        }
                    };
                    if let Some(error) = failure {
                        self.stats.failed += 1;
                        let (partition, key, refire) = (d.partition, &d.key, d.refire);
                        out(Firing::Failed { partition, key, window, error: &error, refire });
                        continue;
                    }
                    if range.start == range.end {
                        continue;
                    }
                    c.keys.push(d.key.to_value());
                    c.windows.push(window);
                    c.ranges.push(range);
                    c.due_index.push(index);
                }
            }
            if self.calls.due_index.is_empty() {
                continue;
            }
            let c = &self.calls;
            let results = function.get_results(&c.keys, &c.windows, &c.ranges, &c.accs);
            self.report(due, results, function, out);
        }
    }

    /// Adds the buffered events of every pane or session of the due windows
    /// to their accumulators, in one `add-many` call per chunk. If a call
    /// fails, its panes get their events and accumulators back and are
    /// added one by one: the panes the function refuses are returned, with
    /// their events still buffered.
    fn flush_due(&mut self, due: &[DueWindow], function: &mut dyn WindowFunction) -> Vec<Refused> {
        let mut refused = Vec::new();
        let mut empty: Option<Result<Vec<u8>, PluginError>> = None;
        let spec = self.spec;
        // By key, so that each pane is visited once, not once per window
        // that holds it.
        self.order_by_key(due, 0..due.len());
        let order = std::mem::take(&mut self.calls.order);
        let mut next = 0;
        while next < order.len() {
            clear_events(&mut self.scratch);
            self.calls.clear();
            while next < order.len() && self.scratch.timestamps.len() < MAX_CALL_EVENTS {
                let d = &due[order[next]];
                let run = next..next + order[next..].iter().take_while(|&&j| due[j].rank == d.rank).count();
                next = run.end;
                let Some(state) = self.partitions.get_mut(&d.partition) else { continue };
                let Some(key_state) = state.keys.get_mut(&d.key) else { continue };
                let mut take = |contents: &mut PaneState, home: PaneHome| {
                    if contents.events.timestamps.is_empty() || contents.broken.is_some() {
                        return;
                    }
                    let had_acc = contents.acc.is_some();
                    let acc = match contents.acc.take() {
                        Some(acc) => acc,
                        None => match empty.get_or_insert_with(|| function.create_accumulator()) {
                            Ok(e) => e.clone(),
                            Err(e) => {
                                refused.push((d.partition, d.key.clone(), home, e.clone()));
                                return;
                            }
                        },
                    };
                    append_events(&mut self.scratch, &contents.events);
                    clear_events(&mut contents.events);
                    push_acc(&mut self.calls.accs, Some(&acc));
                    self.calls.ends.push(self.scratch.timestamps.len() as u32);
                    self.calls.homes.push((d.partition, d.key.clone(), home, had_acc));
                };
                match spec {
                    WindowSpec::Session { .. } => {
                        for &i in &order[run] {
                            let end = due[i].end;
                            if let Some((w, contents)) =
                                key_state.sessions.iter_mut().find(|(w, _)| w.end == end)
                            {
                                take(contents, PaneHome::Session(w.end));
                            }
                        }
                    }
                    WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                        let windows = &order[run.clone()];
                        let (from, to) = pane_span(&key_state.panes, due, windows, size);
                        let all = covers_span(due, windows, size);
                        for i in from..to {
                            if all || holds(&key_state.panes[i], due, windows, size) {
                                let pane = &mut key_state.panes[i];
                                take(&mut pane.contents, PaneHome::Pane(pane.start));
                            }
                        }
                    }
                }
            }
            if self.calls.homes.is_empty() {
                continue;
            }
            let homes = std::mem::take(&mut self.calls.homes);
            match function.add_many(&self.calls.accs, &self.calls.ends, &self.scratch) {
                Ok(added) => {
                    for (i, (partition, key, home, _)) in homes.iter().enumerate() {
                        let bytes = piece(&added.ends, i).and_then(|r| added.bytes.get(r));
                        if let (Some(bytes), Some(pane)) = (bytes, self.pane_mut(*partition, key, *home)) {
                            pane.acc = Some(bytes.to_vec());
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!("{error}; adding its accumulators one by one");
                    // Each pane gets back its events (from the call's batch)
                    // and its accumulator, then is added on its own.
                    let scratch = std::mem::replace(&mut self.scratch, empty_events(&[]));
                    for (i, (partition, key, home, had_acc)) in homes.iter().enumerate() {
                        let rows = piece(&self.calls.ends, i).unwrap_or(0..0);
                        let acc = piece(&self.calls.accs.ends, i)
                            .and_then(|r| self.calls.accs.bytes.get(r))
                            .map(<[u8]>::to_vec);
                        if let Some(pane) = self.pane_mut(*partition, key, *home) {
                            append_range(&mut pane.events, &scratch, rows);
                            pane.acc = acc.filter(|_| *had_acc);
                            if let Err(e) = pane.flush(function, key) {
                                refused.push((*partition, key.clone(), *home, e));
                            }
                        }
                    }
                    self.scratch = scratch;
                }
            }
            self.calls.homes = homes;
        }
        self.calls.order = order;
        refused
    }

    /// Fires one due window on its own (single calls), reporting its rows
    /// or its failure.
    fn fire(&mut self, d: &DueWindow, function: &mut dyn WindowFunction, out: &mut dyn FnMut(Firing<'_>)) {
        let (spec, reduce) = (self.spec, self.reduce);
        let Some(state) = self.partitions.get_mut(&d.partition) else { return };
        let Some(key_state) = state.keys.get_mut(&d.key) else { return };
        let (window, result) = match spec {
            WindowSpec::Session { .. } => {
                // A timer may point at a session that has since merged into
                // a longer one: then there is nothing to fire at this end.
                let Some((window, contents)) = key_state.sessions.iter_mut().find(|(w, _)| w.end == d.end)
                else {
                    return;
                };
                let window = *window;
                let result = match &contents.broken {
                    Some(e) => Err(PluginError::clone(e)),
                    None => reduce_one(contents, reduce, function, &d.key, window),
                };
                (window, result)
            }
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => {
                let window = Window { start: d.end - size, end: d.end };
                let first = key_state.panes.partition_point(|p| p.start < window.start);
                let mut panes = key_state
                    .panes
                    .range_mut(first..)
                    .take_while(|p| p.start < window.end)
                    .map(|p| &mut p.contents);
                let result = match (panes.next(), panes.next()) {
                    (None, _) => return,
                    (Some(only), None) => reduce_one(only, reduce, function, &d.key, window),
                    (Some(a), Some(b)) => {
                        let all = std::iter::once(a).chain(std::iter::once(b)).chain(panes);
                        reduce_many(all, reduce, function, &d.key, window, &mut self.scratch)
                    }
                };
                (window, result)
            }
        };
        let (partition, key, refire) = (d.partition, &d.key, d.refire);
        match result {
            Ok(rows) => {
                self.stats.count_fired(refire);
                out(Firing::Rows { partition, key, window, rows: RowsRef::all(&rows), refire });
            }
            Err(error) => {
                self.stats.failed += 1;
                out(Firing::Failed { partition, key, window, error: &error, refire });
            }
        }
    }
}

/// The indices of a key's panes that `windows` hold, in start order.
/// `windows` index `due`, one key's windows in end order, each `size` long.
fn panes_in_windows<'a>(
    panes: &'a VecDeque<Pane>,
    due: &'a [DueWindow],
    windows: &'a [usize],
    size: i64,
) -> impl Iterator<Item = usize> + 'a {
    let (from, to) = pane_span(panes, due, windows, size);
    let all = covers_span(due, windows, size);
    (from..to).filter(move |&i| all || holds(&panes[i], due, windows, size))
}

/// Finds the panes of each window of a run in the run's `pane_rows`
/// (sorted by pane start): it moves on as the windows come in end order,
/// and starts over should one come out of order.
struct PaneCursor {
    a: usize,
    b: usize,
    last_start: i64,
}

impl PaneCursor {
    fn new() -> PaneCursor {
        PaneCursor { a: 0, b: 0, last_start: i64::MIN }
    }

    /// The rows `[a, b)` whose panes start within `window`.
    fn span(&mut self, rows: &[(i64, u32, u32)], window: Window) -> (usize, usize) {
        if window.start < self.last_start {
            (self.a, self.b) = (0, 0);
        }
        self.last_start = window.start;
        while self.a < rows.len() && rows[self.a].0 < window.start {
            self.a += 1;
        }
        self.b = self.b.max(self.a);
        while self.b < rows.len() && rows[self.b].0 < window.end {
            self.b += 1;
        }
        (self.a, self.b)
    }
}

/// Whether `windows` (in end order, each `size` long) leave no gap between
/// the first one's start and the last one's end, so that they hold every
/// pane of their span (consecutive sliding or tumbling windows do).
fn covers_span(due: &[DueWindow], windows: &[usize], size: i64) -> bool {
    windows.windows(2).all(|w| due[w[1]].end - due[w[0]].end <= size)
}

/// Drops the windows of `due[from..]` (sorted by end and rank) equal in
/// both to the one before.
fn dedup_sorted(due: &mut Vec<DueWindow>, from: usize) {
    let mut kept = from;
    for i in from..due.len() {
        if kept > from && due[kept - 1].end == due[i].end && due[kept - 1].rank == due[i].rank {
            continue;
        }
        due.swap(kept, i);
        kept += 1;
    }
    due.truncate(kept);
}

/// Adds `d` to the round's due windows, numbering the runs of one
/// (partition, key): `runs` gets the first window of each.
fn push_due(due: &mut Vec<DueWindow>, runs: &mut Vec<usize>, mut d: DueWindow) {
    match due.last() {
        Some(last) if last.partition == d.partition && last.key == d.key => d.rank = last.rank,
        _ => {
            d.rank = runs.len() as u32;
            runs.push(due.len());
        }
    }
    due.push(d);
}

/// `emit` gets the indices of `due_index` in the order of its values
/// (distinct, and within a round's chunk): by counting into `slots`.
fn in_due_order(due_index: &[usize], emit: &mut Vec<usize>, slots: &mut Vec<u32>) {
    emit.clear();
    let (Some(&min), Some(&max)) = (due_index.iter().min(), due_index.iter().max()) else { return };
    if due_index.is_sorted() {
        emit.extend(0..due_index.len());
        return;
    }
    slots.clear();
    slots.resize(max - min + 1, u32::MAX);
    for (k, &i) in due_index.iter().enumerate() {
        slots[i - min] = k as u32;
    }
    emit.extend(slots.iter().filter(|&&k| k != u32::MAX).map(|&k| k as usize));
}

/// The panes from the first window's start to the last one's end.
fn pane_span(panes: &VecDeque<Pane>, due: &[DueWindow], windows: &[usize], size: i64) -> (usize, usize) {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else { return (0, 0) };
    let from = panes.partition_point(|p| p.start < due[first].end - size);
    (from, panes.partition_point(|p| p.start < due[last].end))
}

/// Whether one of `windows` (in end order, so in start order) holds `pane`:
/// the first of them that ends after the pane starts does, or none does.
fn holds(pane: &Pane, due: &[DueWindow], windows: &[usize], size: i64) -> bool {
    let w = windows.partition_point(|&w| due[w].end <= pane.start);
    windows.get(w).is_some_and(|&w| due[w].end - size <= pane.start)
}

/// Item `i`'s range in a flat buffer cut by `ends`.
fn piece(ends: &[u32], i: usize) -> Option<std::ops::Range<usize>> {
    let start = if i == 0 { 0 } else { *ends.get(i - 1)? as usize };
    let end = *ends.get(i)? as usize;
    (start <= end).then_some(start..end)
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
    contents: &mut PaneState,
    reduce: Reduce,
    function: &mut dyn WindowFunction,
    key: &Key,
    window: Window,
) -> Result<Rows, PluginError> {
    match reduce {
        Reduce::Apply => function.apply(&key.to_value(), window, &contents.events),
        Reduce::Aggregate { .. } => {
            contents.flush(function, key)?;
            let acc = match &contents.acc {
                Some(acc) => acc.clone(),
                None => function.create_accumulator()?,
            };
            function.get_result(&key.to_value(), window, &acc)
        }
    }
}

/// The result of a window made of several panes: their events joined for a
/// window function, their accumulators merged for an aggregate.
fn reduce_many<'a>(
    panes: impl Iterator<Item = &'a mut PaneState>,
    reduce: Reduce,
    function: &mut dyn WindowFunction,
    key: &Key,
    window: Window,
    scratch: &mut Events,
) -> Result<Rows, PluginError> {
    match reduce {
        Reduce::Apply => {
            clear_events(scratch);
            for pane in panes {
                append_events(scratch, &pane.events);
            }
            function.apply(&key.to_value(), window, scratch)
        }
        Reduce::Aggregate { .. } => {
            let value = key.to_value();
            let mut merged: Option<Vec<u8>> = None;
            for pane in panes {
                pane.flush(function, key)?;
                merged = match (merged, &pane.acc) {
                    (Some(m), Some(acc)) => Some(function.merge(&value, &m, acc)?),
                    (None, Some(acc)) => Some(acc.clone()),
                    (m, None) => m,
                };
            }
            let acc = match merged {
                Some(acc) => acc,
                None => function.create_accumulator()?,
            };
            function.get_result(&value, window, &acc)
        }
    }
}
