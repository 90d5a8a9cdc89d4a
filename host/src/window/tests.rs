//! The window operator against brute-force oracles: random out-of-order
//! input over several partitions, with late events inside and beyond the
//! allowed lateness, through both a window function and an aggregate. The
//! function is `NativeMax` (plain Rust), then the WebAssembly guests on top;
//! failing functions are in `failure_tests.rs`.

use super::{Firing, Reduce, RowsRef, WindowFunction, WindowOperator, WindowSpec};
use crate::decode::Batch;
use crate::record::Key;
use crate::testing::{Lcg, NativeMax, instance};
use crate::types::{Column, Field, FieldType, Window};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub partition: i32,
    pub key: i64,
    pub ts: i64,
    pub temp: f64,
}

/// What a window gave: its max (as bits, to compare exactly) and count,
/// or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Rows { max: u64, count: i64 },
    Failed,
}

/// (key, window start, window end, outcome): one firing.
pub(crate) type Emission = (i64, i64, i64, Outcome);

/// Which windows a function fails on, given the window's events: none.
pub(crate) fn never(_: &[Event]) -> bool {
    false
}

/// The outcome of a window holding `events`, as a function that fails
/// where `fails` says would give it.
fn outcome(events: &[Event], fails: &dyn Fn(&[Event]) -> bool) -> Outcome {
    match fails(events) {
        true => Outcome::Failed,
        false => Outcome::Rows {
            max: events.iter().map(|e| e.temp).fold(f64::MIN, f64::max).to_bits(),
            count: events.len() as i64,
        },
    }
}

/// Batches of events: keys live on partition key % 3; time moves forward
/// with jitter up to `jitter` ms, and about 1 in 40 events is very late.
pub(super) fn scenario(seed: u64, n: usize, jitter: i64) -> Vec<Vec<Event>> {
    let mut rng = Lcg(seed);
    let mut clock = 1_000_000i64;
    let mut batches = vec![];
    let mut left = n;
    while left > 0 {
        let size = (1 + rng.below(40) as usize).min(left);
        left -= size;
        let batch = (0..size)
            .map(|_| {
                clock += rng.below(15) as i64;
                let key = rng.below(7) as i64;
                let mut ts = clock - rng.below(jitter as u64 + 1) as i64;
                if rng.below(40) == 0 {
                    ts -= 2_000 + rng.below(3_000) as i64;
                }
                Event { partition: (key % 3) as i32, key, ts, temp: 300.0 + rng.below(1000) as f64 / 10.0 }
            })
            .collect();
        batches.push(batch);
    }
    batches
}

/// The windows containing `ts`, by brute force over candidate starts.
fn windows_of(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
    let (size, slide) = match spec {
        WindowSpec::Tumbling { size } => (size, size),
        WindowSpec::Sliding { size, slide } => (size, slide),
        WindowSpec::Session { .. } => unreachable!("sessions have their own oracle"),
    };
    let mut out = vec![];
    let mut s = ts - ts.rem_euclid(slide);
    while s + size > ts {
        out.push((s, s + size));
        s -= slide;
    }
    out.reverse();
    out
}

/// The oracle for tumbling and sliding windows, by definition, one event
/// at a time: each partition has its own watermark (its max event time so
/// far minus the bound, minus 1). An event every window of which is past
/// its allowed lateness by its partition's watermark is late; an accepted
/// event in a window that already fired fires it again at once; after
/// each event, every window of its partition that its watermark completes
/// fires. Max and count are rescanned from all accepted events.
pub(crate) fn oracle(
    spec: WindowSpec,
    lateness: i64,
    bound: i64,
    batches: &[Vec<Event>],
    fails: &dyn Fn(&[Event]) -> bool,
) -> (Vec<Emission>, usize) {
    let mut accepted: Vec<Event> = vec![];
    let mut emitted: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
    let mut out = vec![];
    let mut late = 0;
    let mut wms: BTreeMap<i32, i64> = BTreeMap::new();
    let expired = |end: i64, wm: i64| end.saturating_sub(1).saturating_add(lateness) <= wm;
    let result = |accepted: &[Event], key: i64, s: i64, e: i64| -> Outcome {
        let events: Vec<Event> =
            accepted.iter().filter(|x| x.key == key && s <= x.ts && x.ts < e).copied().collect();
        outcome(&events, fails)
    };
    // Fires every window of `partition` complete at `wm` and not yet fired.
    let fire =
        |accepted: &[Event], partition: Option<i32>, wm: i64, emitted: &mut BTreeSet<_>, out: &mut Vec<_>| {
            let mut due: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
            for x in accepted.iter().filter(|x| partition.is_none_or(|p| x.partition == p)) {
                for (s, e) in windows_of(spec, x.ts) {
                    if e - 1 <= wm && !emitted.contains(&(x.key, s, e)) {
                        due.insert((x.key, s, e));
                    }
                }
            }
            for (k, s, e) in due {
                out.push((k, s, e, result(accepted, k, s, e)));
                emitted.insert((k, s, e));
            }
        };
    for e in batches.iter().flatten() {
        let wm = *wms.get(&e.partition).unwrap_or(&i64::MIN);
        let ws = windows_of(spec, e.ts);
        if ws.iter().all(|&(_, end)| expired(end, wm)) {
            late += 1;
            continue;
        }
        accepted.push(*e);
        for (s, end) in ws {
            if expired(end, wm) {
                // Closed for good: the event counts only in its other
                // windows, and this one never fires (again).
                emitted.insert((e.key, s, end));
            } else if end - 1 <= wm {
                out.push((e.key, s, end, result(&accepted, e.key, s, end)));
                emitted.insert((e.key, s, end));
            }
        }
        let wm = wm.max(e.ts - bound - 1);
        wms.insert(e.partition, wm);
        fire(&accepted, Some(e.partition), wm, &mut emitted, &mut out);
    }
    fire(&accepted, None, i64::MAX, &mut emitted, &mut out);
    out.sort();
    (out, late)
}

/// Drives a window operator as the pipeline's loop does: the batch's rows
/// are handed over in runs, and a partition fires right after the event
/// that moves its watermark to what it has due; an event behind its
/// partition's watermark first brings the operator up to date, to judge
/// it late or to fire its window again at once.
pub(super) struct Driver {
    pub op: WindowOperator,
    bound: i64,
    /// Per partition: (watermark, what is due).
    clocks: BTreeMap<i32, (i64, i64)>,
    batch: Batch,
    handed: usize,
    /// Late events so far.
    pub late: usize,
}

impl Driver {
    pub fn new(op: WindowOperator, bound: i64) -> Driver {
        let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
        Driver { op, bound, clocks: BTreeMap::new(), batch: Batch::new(&fields), handed: 0, late: 0 }
    }

    /// Feeds one event (with its source offset); false if it was late.
    pub fn feed(
        &mut self,
        e: &Event,
        offset: i64,
        function: &mut dyn WindowFunction,
        out: &mut dyn FnMut(Firing<'_>),
    ) -> bool {
        let (before, mut due) = *self.clocks.get(&e.partition).unwrap_or(&(i64::MIN, i64::MAX));
        let behind = e.ts <= before;
        if behind {
            let row = self.batch.len();
            self.op.process(&self.batch, self.handed..row, function);
            self.handed = row;
            self.op.advance(Some(e.partition), before, function, out);
            due = self.op.next_due(e.partition);
            if self.op.is_late(e.partition, &Key::Int(e.key), e.ts) {
                self.late += 1;
                self.clocks.insert(e.partition, (before, due));
                return false;
            }
        }
        self.batch.partitions.push(e.partition);
        self.batch.offsets.push(offset);
        self.batch.keys.push(Some(Key::Int(e.key)));
        self.batch.timestamps.push(e.ts);
        let Column::F64(t) = &mut self.batch.columns[0] else { unreachable!() };
        t.push(e.temp);
        let after = before.max(e.ts - self.bound - 1);
        due = due.min(self.op.due_of(e.ts));
        if behind || after >= due {
            self.op.process(&self.batch, self.handed..self.batch.len(), function);
            self.handed = self.batch.len();
            self.op.advance(Some(e.partition), after, function, out);
            due = self.op.next_due(e.partition);
        }
        self.clocks.insert(e.partition, (after, due));
        true
    }

    /// The end of a poll: the rest of the batch is handed over.
    pub fn end_batch(&mut self, function: &mut dyn WindowFunction) {
        self.op.process(&self.batch, self.handed..self.batch.len(), function);
        self.batch.clear();
        self.handed = 0;
    }

    /// The end of the input: everything fires.
    pub fn finish(&mut self, function: &mut dyn WindowFunction, out: &mut dyn FnMut(Firing<'_>)) {
        self.end_batch(function);
        self.op.advance(None, i64::MAX, function, out);
    }

    /// `partition`'s watermark.
    pub fn watermark(&self, partition: i32) -> i64 {
        self.clocks.get(&partition).map_or(i64::MIN, |c| c.0)
    }

    /// Swaps in a restored operator; what is due is asked again.
    pub fn replace(&mut self, op: WindowOperator) {
        self.op = op;
        for (p, clock) in self.clocks.iter_mut() {
            clock.1 = self.op.next_due(*p);
        }
    }
}

/// Runs the operator over the batches, with the same watermarks; returns
/// what fired (sorted) and how many events were late. Every failure must
/// name its key and window.
pub(super) fn run(
    spec: WindowSpec,
    lateness: i64,
    bound: i64,
    reduce: Reduce,
    batches: &[Vec<Event>],
    function: &mut dyn WindowFunction,
) -> (Vec<Emission>, usize) {
    run_with(spec, lateness, bound, reduce, batches, function, &max_and_count)
}

/// Reads a max-temperature window's one row.
fn max_and_count(rows: RowsRef<'_>) -> Outcome {
    let (Column::F64(m), Column::I64(c)) = (&rows.columns[0], &rows.columns[1]) else { panic!("columns") };
    assert_eq!(rows.len, 1, "one row per window");
    Outcome::Rows { max: m[rows.start].to_bits(), count: c[rows.start] }
}

/// [`run`], reading each window's rows with `read`.
pub(super) fn run_with(
    spec: WindowSpec,
    lateness: i64,
    bound: i64,
    reduce: Reduce,
    batches: &[Vec<Event>],
    function: &mut dyn WindowFunction,
    read: &dyn Fn(RowsRef<'_>) -> Outcome,
) -> (Vec<Emission>, usize) {
    let op = WindowOperator::new(spec, lateness, reduce, vec![FieldType::F64], vec![0]);
    let mut driver = Driver::new(op, bound);
    let mut out = vec![];
    let mut collect = |firing: Firing<'_>| match firing {
        Firing::Rows { key: Key::Int(k), window: Window { start, end }, rows, .. } => {
            out.push((*k, start, end, read(rows)));
        }
        Firing::Failed { key: Key::Int(k), window: Window { start, end }, error, .. } => {
            assert!(
                error.call.key.is_none() || error.call.key.as_deref() == Some(k.to_string().as_str()),
                "{error}"
            );
            out.push((*k, start, end, Outcome::Failed));
        }
        _ => panic!("string key"),
    };
    for events in batches {
        for e in events {
            driver.feed(e, 0, function, &mut collect);
        }
        driver.end_batch(function);
    }
    driver.finish(function, &mut collect);
    let (op, late) = (&driver.op, driver.late);
    assert_eq!(op.open_state().0, 0, "all state is dropped at the end");
    let failed = out.iter().filter(|e| e.3 == Outcome::Failed).count() as u64;
    assert_eq!(op.stats().failed, failed, "the failed-window count");
    out.sort();
    (out, late)
}

/// The oracle's cases: tumbling and sliding, with and without lateness.
pub(super) const CASES: [(WindowSpec, i64); 4] = [
    (WindowSpec::Tumbling { size: 1000 }, 0),
    (WindowSpec::Tumbling { size: 1000 }, 1500),
    (WindowSpec::Sliding { size: 1000, slide: 250 }, 0),
    (WindowSpec::Sliding { size: 1000, slide: 300 }, 700),
];

#[test]
fn tumbling_and_sliding_match_the_oracle_with_lateness() {
    for (seed, (spec, lateness)) in CASES.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 11, 3000, 300);
        let (expected, expected_late) = oracle(spec, lateness, 300, &batches, &never);
        assert!(expected_late > 0, "the scenario must have late events");
        for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 3 }] {
            let (got, late) = run(spec, lateness, 300, reduce, &batches, &mut NativeMax::new());
            assert_eq!(late, expected_late, "{spec} lateness {lateness} {reduce:?}: late events");
            assert_eq!(got, expected, "{spec} lateness {lateness} {reduce:?}");
        }
    }
}

#[test]
fn the_webassembly_guests_match_the_oracle_too() {
    for (seed, (spec, lateness)) in CASES.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 11, 3000, 300);
        let (expected, expected_late) = oracle(spec, lateness, 300, &batches, &never);
        for (reduce, name) in
            [(Reduce::Apply, "max-temperature"), (Reduce::Aggregate { flush_at: 3 }, "max-temperature-agg")]
        {
            let (got, late) = run(spec, lateness, 300, reduce, &batches, &mut instance(name, vec![]));
            assert_eq!(late, expected_late, "{spec} lateness {lateness} {name}: late events");
            assert_eq!(got, expected, "{spec} lateness {lateness} {name}");
        }
    }
}

#[test]
fn components_built_for_the_0_1_0_contract_match_the_oracle() {
    for (seed, (spec, lateness)) in CASES.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 11, 3000, 300);
        let (expected, expected_late) = oracle(spec, lateness, 300, &batches, &never);
        for (reduce, name) in [
            (Reduce::Apply, "legacy_max_temperature.wasm"),
            (Reduce::Aggregate { flush_at: 3 }, "legacy_max_temperature_agg.wasm"),
        ] {
            let mut legacy = instance(name, vec![]);
            assert_eq!(legacy.plugin().descriptor().state_version, 0);
            let (got, late) = run(spec, lateness, 300, reduce, &batches, &mut legacy);
            assert_eq!(late, expected_late, "{spec} lateness {lateness} {name}: late events");
            assert_eq!(got, expected, "{spec} lateness {lateness} {name}");
        }
    }
}

/// Counts what the batched calls carry: the events (or accumulators)
/// passed, and the rows the windows' ranges cover together.
struct Counting<'a> {
    inner: &'a mut dyn WindowFunction,
    passed: usize,
    covered: usize,
}

impl Counting<'_> {
    fn count(&mut self, passed: usize, ranges: &[crate::types::RowRange]) {
        self.passed += passed;
        self.covered += ranges.iter().map(|r| (r.end - r.start) as usize).sum::<usize>();
    }
}

impl WindowFunction for Counting<'_> {
    fn apply(
        &mut self,
        key: &crate::types::Value,
        window: Window,
        events: &crate::types::Events,
    ) -> Result<crate::types::Rows, crate::plugin::PluginError> {
        self.inner.apply(key, window, events)
    }
    fn apply_many(
        &mut self,
        keys: &[crate::types::Value],
        windows: &[Window],
        ranges: &[crate::types::RowRange],
        events: &crate::types::Events,
    ) -> Result<crate::types::RowsMany, crate::plugin::PluginError> {
        self.count(events.timestamps.len(), ranges);
        self.inner.apply_many(keys, windows, ranges, events)
    }
    fn create_accumulator(&mut self) -> Result<Vec<u8>, crate::plugin::PluginError> {
        self.inner.create_accumulator()
    }
    fn add(
        &mut self,
        key: &crate::types::Value,
        accumulator: &[u8],
        events: &crate::types::Events,
    ) -> Result<Vec<u8>, crate::plugin::PluginError> {
        self.inner.add(key, accumulator, events)
    }
    fn merge(
        &mut self,
        key: &crate::types::Value,
        a: &[u8],
        b: &[u8],
    ) -> Result<Vec<u8>, crate::plugin::PluginError> {
        self.inner.merge(key, a, b)
    }
    fn get_result(
        &mut self,
        key: &crate::types::Value,
        window: Window,
        accumulator: &[u8],
    ) -> Result<crate::types::Rows, crate::plugin::PluginError> {
        self.inner.get_result(key, window, accumulator)
    }
    fn add_many(
        &mut self,
        accumulators: &crate::types::Accumulators,
        ends: &[u32],
        events: &crate::types::Events,
    ) -> Result<crate::types::Accumulators, crate::plugin::PluginError> {
        self.inner.add_many(accumulators, ends, events)
    }
    fn get_results(
        &mut self,
        keys: &[crate::types::Value],
        windows: &[Window],
        ranges: &[crate::types::RowRange],
        accumulators: &crate::types::Accumulators,
    ) -> Result<crate::types::RowsMany, crate::plugin::PluginError> {
        self.count(accumulators.ends.len(), ranges);
        self.inner.get_results(keys, windows, ranges, accumulators)
    }
}

/// Sliding windows share their panes: a round of firing passes each pane's
/// events (or accumulator) once, and the windows are overlapping ranges of
/// them, with late events and re-fires, for both function kinds, natively
/// and through the guests; the output is still the oracle's.
#[test]
fn sliding_windows_pass_each_pane_once_and_match_the_oracle() {
    let (spec, lateness) = (WindowSpec::Sliding { size: 1000, slide: 250 }, 700);
    let batches = scenario(29, 3000, 300);
    let (expected, expected_late) = oracle(spec, lateness, 300, &batches, &never);
    for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 3 }] {
        let guest = match reduce {
            Reduce::Apply => "max-temperature",
            Reduce::Aggregate { .. } => "max-temperature-agg",
        };
        let (mut native, mut wasm) = (NativeMax::new(), instance(guest, vec![]));
        for inner in [&mut native as &mut dyn WindowFunction, &mut wasm] {
            // This driver fires as soon as a window is due: rounds are
            // small, and late events re-fire windows.
            let mut counting = Counting { inner, passed: 0, covered: 0 };
            let (got, late) = run(spec, lateness, 300, reduce, &batches, &mut counting);
            assert_eq!((got, late), (expected.clone(), expected_late), "{reduce:?}");
            assert!(counting.passed <= counting.covered, "{reduce:?}");

            // Rounds of a whole poll (in-order events, as the pipeline
            // fires them) cover many windows: each pane goes once for the
            // 4 windows that hold it.
            let mut counting = Counting { inner: counting.inner, passed: 0, covered: 0 };
            let (got, want) = in_polls(spec, reduce, &mut counting);
            assert_eq!(got, want, "{reduce:?}, whole polls");
            let (passed, covered) = (counting.passed, counting.covered);
            assert!(passed > 0 && passed * 3 < covered, "{reduce:?}: {passed} passed for {covered} covered");
        }
    }
}

/// A key's panes have one timer however many windows they open: 10 keys,
/// each with 40 sliding windows still to fire, hold 10 timers.
#[test]
fn a_key_s_panes_have_one_timer() {
    let spec = WindowSpec::Sliding { size: 1000, slide: 100 };
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(spec, 0, Reduce::Apply, vec![FieldType::F64], vec![0]);
    let mut batch = Batch::new(&fields);
    for i in 0..600i64 {
        batch.partitions.push(0);
        batch.offsets.push(i);
        batch.keys.push(Some(Key::Int(i % 10)));
        batch.timestamps.push(i * 5);
        let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
        t.push(1.0);
    }
    let mut function = NativeMax::new();
    op.process(&batch, 0..batch.len(), &mut function);
    let mut bytes = Vec::new();
    op.snapshot_partition(0, &mut bytes);
    let summary = super::summarize_snapshot(0, &bytes).expect("summary");
    assert_eq!(summary.timers, 10, "{summary:?}");
    // Half the windows are due: each key still has one timer after.
    let mut fired = 0;
    op.advance(Some(0), 1500, &mut function, &mut |_| fired += 1);
    assert_eq!(fired, 10 * 15, "windows ending at 100 to 1500");
    bytes.clear();
    op.snapshot_partition(0, &mut bytes);
    assert_eq!(super::summarize_snapshot(0, &bytes).expect("summary").timers, 10);
}

/// 4,000 in-order events of 10 keys in polls of 500, the watermark moved to
/// the end of each poll: what fired (sorted), and the oracle's windows.
fn in_polls(
    spec: WindowSpec,
    reduce: Reduce,
    function: &mut dyn WindowFunction,
) -> (Vec<Emission>, Vec<Emission>) {
    let events: Vec<Event> = (0..4000)
        .map(|i| Event { partition: 0, key: i % 10, ts: i * 5, temp: ((i * 7919) % 1013) as f64 / 7.0 })
        .collect();
    let polls: Vec<Vec<Event>> = events.chunks(500).map(<[Event]>::to_vec).collect();
    let (want, late) = oracle(spec, 0, 0, &polls, &never);
    assert_eq!(late, 0, "in order: nothing is late");
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(spec, 0, reduce, vec![FieldType::F64], vec![0]);
    let mut got = vec![];
    let mut collect = |firing: Firing<'_>| match firing {
        Firing::Rows { key: Key::Int(k), window, rows, .. } => {
            got.push((*k, window.start, window.end, max_and_count(rows)))
        }
        _ => panic!("only rows"),
    };
    for poll in &polls {
        let mut batch = Batch::new(&fields);
        for e in poll {
            batch.partitions.push(e.partition);
            batch.offsets.push(0);
            batch.keys.push(Some(Key::Int(e.key)));
            batch.timestamps.push(e.ts);
            let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
            t.push(e.temp);
        }
        op.process(&batch, 0..batch.len(), function);
        let last = poll.last().map_or(0, |e| e.ts);
        op.advance(Some(0), last, function, &mut collect);
    }
    op.advance(None, i64::MAX, function, &mut collect);
    got.sort();
    (got, want)
}

#[test]
fn in_order_events_within_the_bound_are_never_late() {
    let batches = scenario(99, 2000, 200)
        .into_iter()
        .map(|b| {
            b.into_iter()
                .map(|mut e| {
                    e.ts = e.ts.max(0);
                    e
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    // With a bound of 10 s no event of this scenario is late.
    let spec = WindowSpec::Tumbling { size: 500 };
    let (got, late) = run(spec, 0, 10_000, Reduce::Apply, &batches, &mut NativeMax::new());
    assert_eq!(late, 0);
    let (expected, _) = oracle(spec, 0, 10_000, &batches, &never);
    assert_eq!(got, expected);
}

/// Sessions per key by brute force: sort, split where the next event comes
/// a full gap after the previous one.
pub(super) fn sessions_oracle(gap: i64, events: &[Event], fails: &dyn Fn(&[Event]) -> bool) -> Vec<Emission> {
    let mut by_key: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.key).or_default().push(*e);
    }
    let mut out = vec![];
    for (key, mut es) in by_key {
        es.sort_by_key(|e| e.ts);
        let mut groups: Vec<Vec<Event>> = vec![];
        for e in es {
            match groups.last_mut() {
                Some(g) if e.ts < g.last().map_or(i64::MIN, |l| l.ts) + gap => g.push(e),
                _ => groups.push(vec![e]),
            }
        }
        for g in groups {
            out.push((key, g[0].ts, g[g.len() - 1].ts + gap, outcome(&g, fails)));
        }
    }
    out.sort();
    out
}

/// Out-of-order input within the bound (no late events), so sessions merge
/// as gaps fill in; returns the batches and the events kept.
pub(super) fn session_scenario(seed: u64) -> (Vec<Vec<Event>>, Vec<Event>) {
    let mut batches = scenario(seed, 3000, 400);
    for b in &mut batches {
        for e in b.iter_mut() {
            e.ts = e.ts.max(999_000);
        }
    }
    let all: Vec<Event> = batches.iter().flatten().copied().collect();
    // Remove the very late events: this test is about merging.
    let mut max_seen = i64::MIN;
    let batches: Vec<Vec<Event>> = batches
        .into_iter()
        .map(|b| {
            b.into_iter()
                .filter(|e| {
                    let keep = e.ts >= max_seen.saturating_sub(400);
                    max_seen = max_seen.max(e.ts);
                    keep
                })
                .collect()
        })
        .collect();
    let kept: Vec<Event> = batches.iter().flatten().copied().collect();
    assert!(kept.len() < all.len());
    (batches, kept)
}

#[test]
fn sessions_match_the_oracle_for_out_of_order_input() {
    let (batches, kept) = session_scenario(7);
    let expected = sessions_oracle(40, &kept, &never);
    let spec = WindowSpec::Session { gap: 40 };
    for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 2 }] {
        let (got, late) = run(spec, 0, 2_000, reduce, &batches, &mut NativeMax::new());
        assert_eq!(late, 0);
        assert_eq!(got, expected, "{reduce:?}");
    }
    for (reduce, name) in
        [(Reduce::Apply, "max-temperature"), (Reduce::Aggregate { flush_at: 2 }, "max-temperature-agg")]
    {
        let (got, late) = run(spec, 0, 2_000, reduce, &batches, &mut instance(name, vec![]));
        assert_eq!(late, 0);
        assert_eq!(got, expected, "{name}");
    }
}

/// One event of key 1 on partition 0.
fn one(ts: i64, temp: f64) -> Batch {
    let mut b = Batch::new(&[Field { name: "temperature".into(), ty: FieldType::F64 }]);
    b.partitions.push(0);
    b.offsets.push(0);
    b.keys.push(Some(Key::Int(1)));
    b.timestamps.push(ts);
    b.columns = vec![Column::F64(vec![temp])];
    b
}

#[test]
fn a_late_event_refires_its_session_and_a_later_one_is_late() {
    let mut op = WindowOperator::new(
        WindowSpec::Session { gap: 100 },
        50,
        Reduce::Apply,
        vec![FieldType::F64],
        vec![0],
    );
    let mut function = NativeMax::new();
    let mut out: Vec<(i64, i64, f64, i64, bool)> = vec![];
    let mut collect = |firing: Firing<'_>| match firing {
        Firing::Rows { window, rows, refire, .. } => {
            let (Column::F64(m), Column::I64(c)) = (&rows.columns[0], &rows.columns[1]) else { panic!() };
            out.push((window.start, window.end, m[rows.start], c[rows.start], refire));
        }
        Firing::Failed { error, .. } => panic!("{error}"),
    };
    let mut feed = |op: &mut WindowOperator, ts: i64, temp: f64| -> bool {
        if op.is_late(0, &Key::Int(1), ts) {
            return false;
        }
        op.process(&one(ts, temp), 0..1, &mut function);
        true
    };
    assert!(feed(&mut op, 1000, 1.0));
    assert!(feed(&mut op, 1050, 2.0));
    op.advance(Some(0), 1149, &mut NativeMax::new(), &mut collect); // session [1000, 1150) fires
    // Within lateness and inside the fired session: it fires again.
    assert!(feed(&mut op, 1010, 5.0));
    op.advance(Some(0), 1160, &mut NativeMax::new(), &mut collect);
    // Within lateness but extending the session to [1000, 1220): a new,
    // longer window, which fires when the watermark reaches 1219.
    assert!(feed(&mut op, 1120, 3.0));
    op.advance(Some(0), 1200, &mut NativeMax::new(), &mut collect);
    op.advance(Some(0), 1300, &mut NativeMax::new(), &mut collect); // fires, and 1219 + 50 < 1300 expires it
    assert!(!feed(&mut op, 1150, 9.0), "too late: its session expired");
    // A new session after the expired one starts fresh.
    assert!(feed(&mut op, 1400, 4.0));
    op.advance(Some(0), i64::MAX, &mut NativeMax::new(), &mut collect);
    assert_eq!(
        out,
        vec![
            (1000, 1150, 2.0, 2, false),
            (1000, 1150, 5.0, 3, true),
            (1000, 1220, 5.0, 4, false),
            (1400, 1500, 4.0, 1, false)
        ]
    );
}

#[test]
fn refires_come_first_then_windows_in_end_order_across_partitions() {
    // Keys 1, 2, 3 on partitions 0, 1, 2; tumbling 100 ms, lateness 1 s.
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(
        WindowSpec::Tumbling { size: 100 },
        1000,
        Reduce::Apply,
        vec![FieldType::F64],
        vec![0],
    );
    let mut function = NativeMax::new();
    let batch = |events: &[(i32, i64, i64)]| {
        let mut b = Batch::new(&fields);
        for &(partition, key, ts) in events {
            b.partitions.push(partition);
            b.offsets.push(0);
            b.keys.push(Some(Key::Int(key)));
            b.timestamps.push(ts);
            let Column::F64(t) = &mut b.columns[0] else { unreachable!() };
            t.push(1.0);
        }
        b
    };
    let advance = |op: &mut WindowOperator, watermark: i64, function: &mut NativeMax| {
        let mut fired: Vec<(i64, i64, bool)> = vec![];
        op.advance(None, watermark, function, &mut |firing| {
            if let Firing::Rows { key: Key::Int(k), window, refire, .. } = firing {
                fired.push((*k, window.end, refire));
            }
        });
        fired
    };
    // Partition 2's windows end first in time but its events come last in
    // the batch; partition 0 has windows ending at 200 and 400.
    op.process(&batch(&[(0, 1, 150), (0, 1, 350), (1, 2, 250), (2, 3, 50)]), 0..4, &mut function);
    let fired = advance(&mut op, 1000, &mut function);
    assert_eq!(fired, [(3, 100, false), (1, 200, false), (2, 300, false), (1, 400, false)]);
    // Late events (within lateness) for fired windows, and new windows: the
    // re-fires come first, then the new windows in end order.
    op.process(&batch(&[(2, 3, 1150), (0, 1, 1050), (1, 2, 260), (0, 1, 120)]), 0..4, &mut function);
    let fired = advance(&mut op, 1200, &mut function);
    let (refires, firsts) = fired.split_at(2);
    let mut refires = refires.to_vec();
    refires.sort();
    assert_eq!(refires, [(1, 200, true), (2, 300, true)]);
    assert_eq!(firsts, [(1, 1100, false), (3, 1200, false)]);
}

#[test]
fn unfired_offsets_point_at_the_oldest_event_a_window_still_needs() {
    // After each batch: per partition, the lowest offset among accepted
    // events that belong to a window not yet fired (end - 1 > watermark).
    for (spec, lateness) in [CASES[0], CASES[3], (WindowSpec::Session { gap: 40 }, 0)] {
        let batches = scenario(31, 2000, 300);
        let op = WindowOperator::new(spec, lateness, Reduce::Apply, vec![FieldType::F64], vec![0]);
        let mut driver = Driver::new(op, 300);
        let mut function = NativeMax::new();
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut accepted: Vec<(Event, i64)> = vec![];
        for events in &batches {
            for e in events {
                let offset = offsets.entry(e.partition).or_insert(0);
                *offset += 1;
                if driver.feed(e, *offset, &mut function, &mut |_| {}) {
                    accepted.push((*e, *offset));
                }
            }
            driver.end_batch(&mut function);
            let wm = |p: i32| driver.watermark(p);
            // A session's end is only known from all its events: for
            // sessions the oracle asks whether an event's own span, merged
            // with its neighbours', still ends after the watermark.
            let needed = |e: &Event| match spec {
                WindowSpec::Session { gap } => {
                    let mut end = e.ts + gap;
                    loop {
                        let grown = accepted
                            .iter()
                            .filter(|(x, _)| x.key == e.key && x.partition == e.partition)
                            .filter(|(x, _)| x.ts < end && x.ts + gap > end)
                            .map(|(x, _)| x.ts + gap)
                            .max();
                        match grown {
                            Some(g) => end = g,
                            None => break,
                        }
                    }
                    end - 1 > wm(e.partition)
                }
                _ => windows_of(spec, e.ts).iter().any(|&(_, end)| end - 1 > wm(e.partition)),
            };
            let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
            for (e, offset) in &accepted {
                if needed(e) {
                    let lowest = expected.entry(e.partition).or_insert(i64::MAX);
                    *lowest = (*lowest).min(*offset);
                }
            }
            let got: BTreeMap<i32, i64> = driver.op.unfired_offsets().collect();
            assert_eq!(got, expected, "{spec} after {} events", accepted.len());
        }
    }
}

/// Like [`run`], but after batch `cut` the operator's state is snapshot per
/// partition and restored into a new operator, which goes on.
fn run_with_restore(
    spec: WindowSpec,
    lateness: i64,
    bound: i64,
    reduce: Reduce,
    batches: &[Vec<Event>],
    cut: usize,
) -> Vec<Emission> {
    let new_operator = || WindowOperator::new(spec, lateness, reduce, vec![FieldType::F64], vec![0]);
    let mut driver = Driver::new(new_operator(), bound);
    let mut function = NativeMax::new();
    let mut out = vec![];
    let mut collect = |firing: Firing<'_>| {
        if let Firing::Rows { key: Key::Int(k), window, rows, .. } = firing {
            out.push((*k, window.start, window.end, max_and_count(rows)));
        }
    };
    for (i, events) in batches.iter().enumerate() {
        if i == cut {
            let op = &driver.op;
            let mut restored = new_operator();
            for partition in op.partitions() {
                let mut bytes = vec![];
                op.snapshot_partition(partition, &mut bytes);
                restored.restore_partition(partition, &bytes).unwrap();
                let mut again = vec![];
                restored.snapshot_partition(partition, &mut again);
                assert!(again == bytes, "a restored partition snapshots to the same bytes");
                assert_eq!(restored.watermark(partition), op.watermark(partition));
                // What the snapshot leaves out is rebuilt exactly.
                assert_eq!(restored.bookkeeping(partition), op.bookkeeping(partition));
            }
            assert_eq!(restored.open_state().0, op.open_state().0, "the same open panes and sessions");
            driver.replace(restored);
        }
        for e in events {
            driver.feed(e, 0, &mut function, &mut collect);
        }
        driver.end_batch(&mut function);
    }
    driver.finish(&mut function, &mut collect);
    out.sort();
    out
}

#[test]
fn a_snapshot_restored_into_a_new_operator_goes_on_exactly_as_the_original() {
    let cases = [CASES[1], CASES[3], (WindowSpec::Session { gap: 40 }, 300)];
    for (seed, (spec, lateness)) in cases.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 40, 2500, 300);
        for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 3 }] {
            let (expected, _) = run(spec, lateness, 300, reduce, &batches, &mut NativeMax::new());
            for cut in [1, batches.len() / 3, batches.len() - 1] {
                let got = run_with_restore(spec, lateness, 300, reduce, &batches, cut);
                assert_eq!(
                    got, expected,
                    "{spec} lateness {lateness} {reduce:?}, restored after batch {cut}"
                );
            }
        }
    }
}

#[test]
fn a_damaged_snapshot_is_refused_with_a_reason() {
    let mut op = WindowOperator::new(
        WindowSpec::Tumbling { size: 100 },
        0,
        Reduce::Apply,
        vec![FieldType::F64],
        vec![0],
    );
    op.process(&one(1000, 5.0), 0..1, &mut NativeMax::new());
    let mut bytes = vec![];
    op.snapshot_partition(0, &mut bytes);
    let mut fresh = WindowOperator::new(
        WindowSpec::Tumbling { size: 100 },
        0,
        Reduce::Apply,
        vec![FieldType::F64],
        vec![0],
    );
    for cut in 0..bytes.len() {
        assert!(fresh.restore_partition(0, &bytes[..cut]).is_err(), "cut at {cut} was accepted");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(fresh.restore_partition(0, &longer).unwrap_err().to_string().contains("after the end"));
    let mut newer = bytes.clone();
    newer[0] = 9;
    assert!(fresh.restore_partition(0, &newer).unwrap_err().to_string().contains("version 9"));
    fresh.restore_partition(0, &bytes).unwrap();
    assert_eq!(fresh.open_state().0, op.open_state().0);
}

#[test]
fn snapshots_keep_string_keys_and_every_column_type() {
    let types = vec![FieldType::I64, FieldType::String, FieldType::Bool, FieldType::F64];
    let fields: Vec<Field> =
        types.iter().enumerate().map(|(i, &ty)| Field { name: format!("f{i}"), ty }).collect();
    let spec = WindowSpec::Session { gap: 50 };
    let mut op = WindowOperator::new(spec, 10, Reduce::Apply, types.clone(), vec![0, 1, 2, 3]);
    let mut batch = Batch::new(&fields);
    for i in 0..40i64 {
        batch.partitions.push((i % 2) as i32);
        batch.offsets.push(i);
        batch.keys.push(Some(Key::Str(format!("device-{}", i % 5))));
        batch.timestamps.push(1_000 + 7 * i);
        let [Column::I64(a), Column::String(b), Column::Bool(c), Column::F64(d)] = &mut batch.columns[..]
        else {
            unreachable!()
        };
        a.push(i * 3);
        b.push(format!("s{i}é"));
        c.push(i % 3 == 0);
        d.push(i as f64 / 3.0);
    }
    op.process(&batch, 0..batch.len(), &mut NativeMax::new());
    op.advance(None, 1_100, &mut NativeMax::new(), &mut |_| {});
    let mut restored = WindowOperator::new(spec, 10, Reduce::Apply, types, vec![0, 1, 2, 3]);
    assert_eq!(op.partitions(), [0, 1]);
    for partition in op.partitions() {
        let mut bytes = vec![];
        op.snapshot_partition(partition, &mut bytes);
        restored.restore_partition(partition, &bytes).unwrap();
        let mut again = vec![];
        restored.snapshot_partition(partition, &mut again);
        assert!(again == bytes);
    }
    assert_eq!(restored.open_state().0, op.open_state().0);
    assert_eq!(restored.unfired_offsets().collect::<Vec<_>>(), op.unfired_offsets().collect::<Vec<_>>());
}

/// A firing as an emission.
fn emission(firing: Firing<'_>) -> Option<Emission> {
    match firing {
        Firing::Rows { key: Key::Int(k), window, rows, .. } => {
            Some((*k, window.start, window.end, max_and_count(rows)))
        }
        _ => None,
    }
}

/// Snapshots `op`'s partition 0, restores it into a new operator like it,
/// and checks the copy: the same bytes again, the same bookkeeping.
fn restored_copy(
    op: &WindowOperator,
    new_operator: impl Fn() -> WindowOperator,
) -> (Vec<u8>, WindowOperator) {
    let mut bytes = vec![];
    op.snapshot_partition(0, &mut bytes);
    let mut restored = new_operator();
    restored.restore_partition(0, &bytes).unwrap();
    let mut again = vec![];
    restored.snapshot_partition(0, &mut again);
    assert!(again == bytes, "a restored partition snapshots to the same bytes");
    assert_eq!(restored.bookkeeping(0), op.bookkeeping(0));
    (bytes, restored)
}

#[test]
fn cleanups_that_differ_from_the_oldest_window_survive_a_snapshot() {
    // Panes arriving newest first leave the newer pane's cleanup in the set
    // besides the key's own; a session that grew keeps its earlier cleanup.
    for spec in [WindowSpec::Tumbling { size: 100 }, WindowSpec::Session { gap: 100 }] {
        let new_operator = || WindowOperator::new(spec, 50, Reduce::Apply, vec![FieldType::F64], vec![0]);
        let mut op = new_operator();
        for ts in [1_500, 1_100, 1_150, 1_180] {
            op.process(&one(ts, 1.0), 0..1, &mut NativeMax::new());
        }
        let (_, mut restored) = restored_copy(&op, new_operator);
        let (mut a, mut b) = (vec![], vec![]);
        for wm in [1_210, 1_300, 1_700, i64::MAX] {
            op.advance(None, wm, &mut NativeMax::new(), &mut |f| a.extend(emission(f)));
            restored.advance(None, wm, &mut NativeMax::new(), &mut |f| b.extend(emission(f)));
            assert_eq!(restored.bookkeeping(0), op.bookkeeping(0), "{spec} at {wm}");
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 2, "{spec}: {a:?}");
    }
}

#[test]
fn a_snapshot_of_other_windows_or_columns_is_refused() {
    let tumbling = WindowSpec::Tumbling { size: 100 };
    let mut op = WindowOperator::new(tumbling, 0, Reduce::Apply, vec![FieldType::F64], vec![0]);
    op.process(&one(1000, 5.0), 0..1, &mut NativeMax::new());
    let mut bytes = vec![];
    op.snapshot_partition(0, &mut bytes);
    let mut sliding = WindowOperator::new(
        WindowSpec::Sliding { size: 100, slide: 50 },
        0,
        Reduce::Apply,
        vec![FieldType::F64],
        vec![0],
    );
    let error = sliding.restore_partition(0, &bytes).unwrap_err().to_string();
    assert!(error.contains("holds tumbling"), "{error}");
    let mut ints = WindowOperator::new(tumbling, 0, Reduce::Apply, vec![FieldType::I64], vec![0]);
    let error = ints.restore_partition(0, &bytes).unwrap_err().to_string();
    assert!(error.contains("columns"), "{error}");
    // A version 2 snapshot (the fixed-width one) is refused by its version.
    let mut old = bytes.clone();
    old[..4].copy_from_slice(&2u32.to_le_bytes());
    let error = op.restore_partition(0, &old).unwrap_err().to_string();
    assert!(error.contains("version 2; this weir reads version 3"), "{error}");
}

#[test]
fn a_fired_aggregate_kept_for_late_events_takes_few_bytes() {
    let spec = WindowSpec::Tumbling { size: 1000 };
    let reduce = Reduce::Aggregate { flush_at: 1 };
    let new_operator = || WindowOperator::new(spec, 60_000, reduce, vec![FieldType::F64], vec![0]);
    let mut op = new_operator();
    let keys = 1000;
    let fields = [Field { name: "t".into(), ty: FieldType::F64 }];
    let mut batch = Batch::new(&fields);
    for k in 0..keys {
        batch.partitions.push(0);
        batch.offsets.push(k);
        batch.keys.push(Some(Key::Int(k)));
        batch.timestamps.push(10_000 + k % 7);
        let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
        t.push(k as f64);
    }
    op.process(&batch, 0..batch.len(), &mut NativeMax::new());
    op.advance(None, 11_000, &mut NativeMax::new(), &mut |_| {});
    let (bytes, _) = restored_copy(&op, new_operator);
    let per_state = bytes.len() / keys as usize;
    // Beyond the accumulator itself, a few bytes of key, start and offset.
    assert!(per_state <= 8 + 16, "{per_state} bytes a state");
}
