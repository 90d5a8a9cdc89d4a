//! The window operator against a brute-force oracle: random out-of-order
//! input over several partitions, with late events inside and beyond the
//! allowed lateness, through both a window function and an aggregate.

use super::{Output, Reduce, WindowOperator, WindowSpec};
use crate::decode::Batch;
use crate::plugin::types::{Column, Field, FieldType, Window};
use crate::plugin::{EngineConfig, PluginEngine, PluginInstance, PluginLimits};
use crate::record::Key;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        PluginEngine::new(EngineConfig { max_instances: 16, cache_dir: None }).expect("engine")
    })
}

fn plugin(name: &str) -> PluginInstance {
    engine().load_ref(name).unwrap().instantiate(vec![], PluginLimits::default()).unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Event {
    partition: i32,
    key: i64,
    ts: i64,
    temp: f64,
}

/// (key, window start, window end, max, count): one emitted result.
type Emission = (i64, i64, i64, u64, i64);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Batches of events: keys live on partition key % 3; time moves forward
/// with jitter up to `jitter` ms, and about 1 in 40 events is very late.
fn scenario(seed: u64, n: usize, jitter: i64) -> Vec<Vec<Event>> {
    let mut rng = Rng(seed);
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

/// The watermark after a batch, computed directly: per partition the max
/// time seen, minus the bound, minus 1; the minimum over partitions.
fn watermark_after(seen: &mut BTreeMap<i32, i64>, batch: &[Event], bound: i64) -> i64 {
    for e in batch {
        let m = seen.entry(e.partition).or_insert(i64::MIN);
        *m = (*m).max(e.ts);
    }
    if seen.len() < 3 {
        return i64::MIN;
    }
    seen.values().map(|m| m - bound - 1).min().unwrap_or(i64::MIN)
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

/// The oracle for tumbling and sliding windows: replays the batches,
/// deciding each event's lateness from the definition, and after each
/// batch emits every window that became complete, plus every completed
/// window that an accepted event changed, with max and count rescanned
/// from all accepted events.
fn oracle(spec: WindowSpec, lateness: i64, bound: i64, batches: &[Vec<Event>]) -> (Vec<Emission>, usize) {
    let mut accepted: Vec<Event> = vec![];
    let mut emitted: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
    let mut out = vec![];
    let mut late = 0;
    let mut wm = i64::MIN;
    let mut seen = BTreeMap::new();
    let expired = |end: i64, wm: i64| end.saturating_sub(1).saturating_add(lateness) <= wm;
    let result = |accepted: &[Event], key: i64, s: i64, e: i64| -> (u64, i64) {
        let temps: Vec<f64> =
            accepted.iter().filter(|x| x.key == key && s <= x.ts && x.ts < e).map(|x| x.temp).collect();
        (temps.iter().cloned().fold(f64::MIN, f64::max).to_bits(), temps.len() as i64)
    };
    let step = |accepted: &[Event],
                changed: &BTreeSet<(i64, i64, i64)>,
                wm: i64,
                emitted: &mut BTreeSet<(i64, i64, i64)>,
                out: &mut Vec<Emission>| {
        for &(k, s, e) in changed {
            let (m, c) = result(accepted, k, s, e);
            out.push((k, s, e, m, c));
        }
        let mut due: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
        for x in accepted {
            for (s, e) in windows_of(spec, x.ts) {
                if e - 1 <= wm && !emitted.contains(&(x.key, s, e)) && !changed.contains(&(x.key, s, e)) {
                    due.insert((x.key, s, e));
                }
            }
        }
        for (k, s, e) in due {
            let (m, c) = result(accepted, k, s, e);
            out.push((k, s, e, m, c));
            emitted.insert((k, s, e));
        }
    };
    for batch in batches {
        let mut changed = BTreeSet::new();
        for e in batch {
            let ws = windows_of(spec, e.ts);
            if ws.iter().all(|&(_, end)| expired(end, wm)) {
                late += 1;
                continue;
            }
            accepted.push(*e);
            for (s, end) in ws {
                if end - 1 <= wm && !expired(end, wm) {
                    changed.insert((e.key, s, end));
                    emitted.insert((e.key, s, end));
                }
            }
        }
        wm = wm.max(watermark_after(&mut seen, batch, bound));
        step(&accepted, &changed, wm, &mut emitted, &mut out);
    }
    step(&accepted, &BTreeSet::new(), i64::MAX, &mut emitted, &mut out);
    out.sort();
    (out, late)
}

/// Runs the operator over the batches, with the same watermarks.
fn run(
    spec: WindowSpec,
    lateness: i64,
    bound: i64,
    reduce: Reduce,
    batches: &[Vec<Event>],
    plugin_name: &str,
) -> (Vec<Emission>, usize) {
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(spec, lateness, reduce, vec![FieldType::F64], vec![0]);
    let mut plugin = plugin(plugin_name);
    let mut out = vec![];
    let mut late = 0;
    let mut seen = BTreeMap::new();
    let mut collect = |o: Output<'_>| match o {
        Output::Fired { key: Key::Int(k), window: Window { start, end }, rows, .. } => {
            let (Column::F64(m), Column::I64(c)) = (&rows.columns[0], &rows.columns[1]) else {
                panic!("columns")
            };
            out.push((*k, start, end, m[rows.start].to_bits(), c[rows.start]));
        }
        Output::Fired { .. } => panic!("string key"),
        Output::Failed { error, .. } => panic!("{error}"),
    };
    let mut batch = Batch::new(&fields);
    for events in batches {
        batch.clear();
        for e in events {
            if op.is_late(e.partition, &Key::Int(e.key), e.ts) {
                late += 1;
                continue;
            }
            batch.partitions.push(e.partition);
            batch.offsets.push(0);
            batch.keys.push(Some(Key::Int(e.key)));
            batch.timestamps.push(e.ts);
            let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
            t.push(e.temp);
        }
        op.process(&batch, &mut plugin, &mut collect);
        let wm = watermark_after(&mut seen, events, bound);
        op.advance(wm, &mut plugin, &mut collect);
    }
    op.advance(i64::MAX, &mut plugin, &mut collect);
    assert_eq!(op.open_state().0, 0, "all state is dropped at the end");
    out.sort();
    (out, late)
}

#[test]
fn tumbling_and_sliding_match_the_oracle_with_lateness() {
    let cases = [
        (WindowSpec::Tumbling { size: 1000 }, 0),
        (WindowSpec::Tumbling { size: 1000 }, 1500),
        (WindowSpec::Sliding { size: 1000, slide: 250 }, 0),
        (WindowSpec::Sliding { size: 1000, slide: 300 }, 700),
    ];
    for (seed, (spec, lateness)) in cases.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 11, 3000, 300);
        let (expected, expected_late) = oracle(spec, lateness, 300, &batches);
        assert!(expected_late > 0, "the scenario must have late events");
        for (reduce, name) in
            [(Reduce::Window, "max-temperature"), (Reduce::Aggregate { flush_at: 3 }, "max-temperature-agg")]
        {
            let (got, late) = run(spec, lateness, 300, reduce, &batches, name);
            assert_eq!(late, expected_late, "{spec} lateness {lateness} {name}: late events");
            assert_eq!(got.len(), expected.len(), "{spec} lateness {lateness} {name}: emissions");
            assert_eq!(got, expected, "{spec} lateness {lateness} {name}");
        }
    }
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
    let (got, late) = run(spec, 0, 10_000, Reduce::Window, &batches, "max-temperature");
    assert_eq!(late, 0);
    let (expected, _) = oracle(spec, 0, 10_000, &batches);
    assert_eq!(got, expected);
}

/// Sessions per key by brute force: sort, split where the next event comes
/// a full gap after the previous one.
fn sessions_oracle(gap: i64, events: &[Event]) -> Vec<Emission> {
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
            let max = g.iter().map(|e| e.temp).fold(f64::MIN, f64::max);
            out.push((key, g[0].ts, g[g.len() - 1].ts + gap, max.to_bits(), g.len() as i64));
        }
    }
    out.sort();
    out
}

#[test]
fn sessions_match_the_oracle_for_out_of_order_input() {
    // Events arrive out of order within the bound (no late events), so
    // sessions merge as gaps fill in.
    let mut batches = scenario(7, 3000, 400);
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
    for (reduce, name) in
        [(Reduce::Window, "max-temperature"), (Reduce::Aggregate { flush_at: 2 }, "max-temperature-agg")]
    {
        let (got, late) = run(WindowSpec::Session { gap: 40 }, 0, 2_000, reduce, &batches, name);
        assert_eq!(late, 0);
        assert_eq!(got, sessions_oracle(40, &kept), "{name}");
    }
}

#[test]
fn a_late_event_refires_its_session_and_a_later_one_is_late() {
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(
        WindowSpec::Session { gap: 100 },
        50,
        Reduce::Window,
        vec![FieldType::F64],
        vec![0],
    );
    let mut plugin = plugin("max-temperature");
    let mut out: Vec<(i64, i64, f64, i64, bool)> = vec![];
    let mut collect = |o: Output<'_>| {
        if let Output::Fired { window, rows, refire, .. } = o {
            let (Column::F64(m), Column::I64(c)) = (&rows.columns[0], &rows.columns[1]) else { panic!() };
            out.push((window.start, window.end, m[rows.start], c[rows.start], refire));
        }
    };
    let feed = |op: &mut WindowOperator,
                ts: i64,
                temp: f64,
                plugin: &mut PluginInstance,
                collect: &mut dyn FnMut(Output<'_>)|
     -> bool {
        if op.is_late(0, &Key::Int(1), ts) {
            return false;
        }
        let mut b = Batch::new(&fields);
        b.partitions.push(0);
        b.offsets.push(0);
        b.keys.push(Some(Key::Int(1)));
        b.timestamps.push(ts);
        b.columns = vec![Column::F64(vec![temp])];
        op.process(&b, plugin, collect);
        true
    };
    assert!(feed(&mut op, 1000, 1.0, &mut plugin, &mut collect));
    assert!(feed(&mut op, 1050, 2.0, &mut plugin, &mut collect));
    op.advance(1149, &mut plugin, &mut collect); // session [1000, 1150) fires
    // Within lateness and inside the fired session: it fires again.
    assert!(feed(&mut op, 1010, 5.0, &mut plugin, &mut collect));
    op.advance(1160, &mut plugin, &mut collect);
    // Within lateness but extending the session to [1000, 1220): a new,
    // longer window, which fires when the watermark reaches 1219.
    assert!(feed(&mut op, 1120, 3.0, &mut plugin, &mut collect));
    op.advance(1200, &mut plugin, &mut collect);
    op.advance(1300, &mut plugin, &mut collect); // fires, and 1219 + 50 < 1300 expires it
    assert!(!feed(&mut op, 1150, 9.0, &mut plugin, &mut collect), "too late: its session expired");
    // A new session after the expired one starts fresh.
    assert!(feed(&mut op, 1400, 4.0, &mut plugin, &mut collect));
    op.advance(i64::MAX, &mut plugin, &mut collect);
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
