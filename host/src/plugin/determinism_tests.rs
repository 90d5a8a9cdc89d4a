//! The `clock-random` test guest reports what its clocks and random sources
//! said: these tests prove a replayed call sees the same, and that what it
//! sees is the documented event time.

use super::builtin::guests_dir;
use super::*;
use crate::testing::engine;
use crate::types::{Column, Events, Rows, RowsMany, Value, Window};

/// The guest's output columns, in order.
const WALL_MS: usize = 0;
const WALL_RESOLUTION_NS: usize = 1;
const MONOTONIC_NS: usize = 2;
const MONOTONIC_RESOLUTION_NS: usize = 3;
const ELAPSED_NS: usize = 4;
const SECURE: usize = 5;
const SECURE_BYTES: usize = 6;
const INSECURE: usize = 7;
const INSECURE_SEED: usize = 8;

fn clock_random() -> PluginInstance {
    let plugin = engine()
        .load_file(&guests_dir().join("clock_random.wasm"))
        .unwrap_or_else(|e| panic!("loading clock_random.wasm: {e}"));
    plugin.instantiate(vec![], PluginLimits::default()).expect("instantiate")
}

fn events(timestamps: &[i64]) -> Events {
    Events {
        timestamps: timestamps.to_vec(),
        columns: vec![Column::F64(timestamps.iter().map(|&t| t as f64 / 10.0).collect())],
    }
}

/// Row `row`'s value of column `column`.
fn cell(columns: &[Column], column: usize, row: usize) -> i64 {
    match &columns[column] {
        Column::I64(v) => v[row],
        other => panic!("column {column} is not i64: {other:?}"),
    }
}

const W1: Window = Window { start: 60_000, end: 120_000 };
const W2: Window = Window { start: 120_000, end: 180_000 };

/// Ranges that cut a batch at `ends`.
fn ranges(ends: &[u32]) -> Vec<crate::types::RowRange> {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts.zip(ends).map(|(start, &end)| crate::types::RowRange { start, end }).collect()
}

/// The same calls, in the same order, that a replay would make.
fn run(instance: &mut PluginInstance) -> (Vec<Rows>, RowsMany) {
    let singles = vec![
        instance.apply(&Value::I64(1), W1, &events(&[60_001, 60_500, 119_999])).unwrap(),
        instance.apply(&Value::String("sensor-2".into()), W1, &events(&[61_000])).unwrap(),
        instance.apply(&Value::I64(1), W2, &events(&[130_000, 150_000])).unwrap(),
    ];
    let many = instance
        .apply_many(
            &[Value::I64(1), Value::I64(2)],
            &[W1, W2],
            &ranges(&[2, 3]),
            &events(&[60_001, 60_002, 170_000]),
        )
        .unwrap();
    (singles, many)
}

#[test]
fn two_instances_given_the_same_calls_give_identical_rows() {
    let (mut a, mut b) = (clock_random(), clock_random());
    let first = run(&mut a);
    assert_eq!(first, run(&mut b));
    // A fresh instance after a trap starts over like a new one.
    let err = a.apply(&Value::String("trap".into()), W1, &events(&[60_001])).map(|_| ()).unwrap_err();
    assert!(matches!(err.failure, Failure::Trap(_)), "{err}");
    assert_eq!(run(&mut a), first);
    assert_eq!(a.stats().reinstantiations, 1);
}

#[test]
fn the_clocks_read_the_call_s_event_time_and_stand_still() {
    let mut guest = clock_random();
    let rows = guest.apply(&Value::I64(1), W1, &events(&[60_001, 119_999])).unwrap();
    let c = &rows.columns;
    // The watermark that fired the window: its end minus 1 ms.
    assert_eq!(cell(c, WALL_MS, 0), W1.end - 1);
    assert_eq!(cell(c, MONOTONIC_NS, 0), (W1.end - 1) * 1_000_000);
    assert_eq!(cell(c, WALL_RESOLUTION_NS, 0), 1_000_000);
    assert_eq!(cell(c, MONOTONIC_RESOLUTION_NS, 0), 1_000_000);
    assert_eq!(cell(c, ELAPSED_NS, 0), 0, "time does not pass within a call");

    // A batch fires at the latest watermark of its windows.
    let many = guest
        .apply_many(&[Value::I64(1), Value::I64(1)], &[W2, W1], &ranges(&[1, 2]), &events(&[1, 2]))
        .unwrap();
    assert_eq!(cell(&many.columns, WALL_MS, 0), W2.end - 1);
    assert_eq!(cell(&many.columns, WALL_MS, 1), W2.end - 1);
}

#[test]
fn different_calls_get_different_random_and_one_fixed_seed() {
    let mut guest = clock_random();
    let ts = [60_001, 60_500];
    let base = guest.apply(&Value::I64(1), W1, &events(&ts)).unwrap();
    let others = [
        guest.apply(&Value::I64(2), W1, &events(&ts)).unwrap(),
        guest.apply(&Value::I64(1), W2, &events(&ts)).unwrap(),
        guest.apply(&Value::I64(1), W1, &events(&[60_001, 60_501])).unwrap(),
        guest.apply(&Value::I64(1), W1, &events(&[60_001])).unwrap(),
    ];
    for (i, other) in others.iter().enumerate() {
        for column in [SECURE, SECURE_BYTES, INSECURE] {
            assert_ne!(
                cell(&base.columns, column, 0),
                cell(&other.columns, column, 0),
                "call {i}, column {column}"
            );
        }
        assert_eq!(cell(&base.columns, INSECURE_SEED, 0), cell(&other.columns, INSECURE_SEED, 0));
    }
    let b = &base.columns;
    assert_ne!(cell(b, SECURE, 0), cell(b, INSECURE, 0), "the two streams differ");
    assert_ne!(cell(b, SECURE, 0), cell(b, SECURE_BYTES, 0), "a stream moves on");
    // The same call again, on the same instance, gets the same random.
    let again = guest.apply(&Value::I64(1), W1, &events(&ts)).unwrap();
    for column in [SECURE, SECURE_BYTES, INSECURE] {
        assert_eq!(cell(&base.columns, column, 0), cell(&again.columns, column, 0));
    }
}

/// Runs the window operator with the guest over `n` seeded events in
/// batches, firing as the watermark passes, and returns every emission as
/// text: key, window and each output row's values.
fn operator_output(n: usize) -> Vec<String> {
    use crate::decode::Batch;
    use crate::record::Key;
    use crate::types::{Field, FieldType};
    use crate::window::{Firing, Reduce, WindowOperator, WindowSpec};

    let mut function = clock_random();
    let spec = WindowSpec::Sliding { size: 1_000, slide: 250 };
    let mut op = WindowOperator::new(spec, 0, Reduce::Apply, vec![FieldType::F64], vec![0]);
    let mut out = Vec::new();
    let mut collect = |firing: Firing<'_>| match firing {
        Firing::Rows { key, window, rows, .. } => {
            let values: Vec<String> =
                rows.columns.iter().map(|c| format!("{:?}", c.get(rows.start))).collect();
            out.push(format!("{key:?} {window:?} {}", values.join(" ")));
        }
        Firing::Failed { error, .. } => panic!("a window failed: {error}"),
    };
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut batch = Batch::new(&fields);
    let mut rng = crate::testing::Lcg(42);
    let mut ts = 10_000;
    for _ in 0..n / 50 {
        batch.clear();
        for _ in 0..50 {
            ts += rng.below(40) as i64;
            batch.partitions.push(0);
            batch.offsets.push(0);
            batch.keys.push(Some(Key::Int(rng.below(3) as i64)));
            batch.timestamps.push(ts);
            let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
            t.push(rng.below(1_000) as f64);
        }
        op.process(&batch, 0..batch.len(), &mut function);
        op.advance(Some(0), ts - 1, &mut function, &mut collect);
    }
    op.advance(None, i64::MAX, &mut function, &mut collect);
    out
}

#[test]
fn the_window_operator_gives_the_same_output_twice() {
    let first = operator_output(2_000);
    assert!(first.len() > 100, "only {} windows", first.len());
    assert_eq!(first, operator_output(2_000));
}
