//! The window operator with functions that fail: a window that holds what
//! the function refused fails, once per firing, with its key and true
//! bounds; every other window stays exact; nothing is dropped silently.
//! The oracles are those of `tests.rs`, told which windows must fail.

use super::tests::{
    CASES, Emission, Event, Outcome, never, oracle, run, run_with, scenario, session_scenario,
    sessions_oracle,
};
use super::{Firing, Reduce, WindowOperator, WindowSpec};
use crate::decode::Batch;
use crate::record::Key;
use crate::testing::{NativeMax, instance};
use crate::types::{Column, Field, FieldType, Param, Value};

/// Readings above this are refused: about 1 in 110 of the scenario's.
const LIMIT: f64 = 399.0;

fn above_limit(events: &[Event]) -> bool {
    events.iter().any(|e| e.temp > LIMIT)
}

/// Both outcomes must occur, or the case tests nothing.
fn assert_mixed(expected: &[Emission], what: &str) {
    let failed = expected.iter().filter(|e| e.3 == Outcome::Failed).count();
    assert!(failed > 0 && failed < expected.len(), "{what}: {failed} of {} windows fail", expected.len());
}

fn refuse_guest(limit: f64, bad_ends: bool) -> crate::plugin::PluginInstance {
    instance(
        "refuse.wasm",
        vec![
            Param { name: "limit".into(), value: Value::F64(limit) },
            Param { name: "bad_ends".into(), value: Value::Bool(bad_ends) },
        ],
    )
}

#[test]
fn refused_readings_fail_only_the_windows_that_hold_them() {
    for (seed, (spec, lateness)) in CASES.into_iter().enumerate() {
        let batches = scenario(seed as u64 + 11, 3000, 300);
        let (expected, _) = oracle(spec, lateness, 300, &batches, &above_limit);
        assert_mixed(&expected, &spec.to_string());
        for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 3 }] {
            let mut function = NativeMax::refusing_above(LIMIT);
            let (got, _) = run(spec, lateness, 300, reduce, &batches, &mut function);
            assert_eq!(got, expected, "{spec} lateness {lateness} {reduce:?}");
            assert!(function.batched_calls > 0, "windows still go in batched calls");
        }
    }
    let (batches, kept) = session_scenario(7);
    let expected = sessions_oracle(40, &kept, &above_limit);
    assert_mixed(&expected, "sessions");
    for reduce in [Reduce::Apply, Reduce::Aggregate { flush_at: 2 }] {
        let mut function = NativeMax::refusing_above(LIMIT);
        let (got, _) = run(WindowSpec::Session { gap: 40 }, 0, 2_000, reduce, &batches, &mut function);
        assert_eq!(got, expected, "sessions {reduce:?}");
    }
}

#[test]
fn a_guest_aggregate_that_refuses_batches_fails_only_their_windows() {
    let (spec, lateness) = CASES[3];
    let batches = scenario(14, 3000, 300);
    let (expected, _) = oracle(spec, lateness, 300, &batches, &above_limit);
    assert_mixed(&expected, "sliding");
    let mut guest = refuse_guest(LIMIT, false);
    let (got, _) = run(spec, lateness, 300, Reduce::Aggregate { flush_at: 3 }, &batches, &mut guest);
    assert_eq!(got, expected);
    let (batches, kept) = session_scenario(8);
    let expected = sessions_oracle(40, &kept, &above_limit);
    let mut guest = refuse_guest(LIMIT, false);
    let spec = WindowSpec::Session { gap: 40 };
    let (got, _) = run(spec, 0, 2_000, Reduce::Aggregate { flush_at: 2 }, &batches, &mut guest);
    assert_eq!(got, expected, "sessions");
}

#[test]
fn malformed_batched_output_is_caught_and_each_window_retried() {
    // `get-results` returns one `ends` entry too few: the host's check
    // rejects the call, and every window is fired again on its own, exact.
    let (spec, lateness) = CASES[2];
    let batches = scenario(21, 2000, 300);
    let (expected, _) = oracle(spec, lateness, 300, &batches, &never);
    let mut guest = refuse_guest(f64::MAX, true);
    let (got, _) = run(spec, lateness, 300, Reduce::Aggregate { flush_at: 3 }, &batches, &mut guest);
    assert_eq!(got, expected);
    assert!(guest.stats().failures > 0, "the malformed calls were rejected");
}

#[test]
fn a_guest_that_traps_fails_only_the_windows_it_traps_on() {
    // The trap guest panics in `apply` for a window of more than one event.
    // Its `apply-many` is built from `apply`, so most rounds trap whole; the
    // retry window by window pins the traps.
    let spec = WindowSpec::Tumbling { size: 20 };
    let batches = scenario(5, 1500, 30);
    let (expected, _) = oracle(spec, 0, 30, &batches, &|events| events.len() > 1);
    assert_mixed(&expected, "trap");
    let mut guest = instance("trap.wasm", vec![]);
    // The trap guest's one output is a constant: compare outcomes only.
    let ran = |rows: crate::window::RowsRef<'_>| {
        assert_eq!(rows.len, 1);
        Outcome::Rows { max: 0, count: 0 }
    };
    let (got, _) = run_with(spec, 0, 30, Reduce::Apply, &batches, &mut guest, &ran);
    let expected: Vec<Emission> = expected
        .into_iter()
        .map(|(k, s, e, o)| {
            (k, s, e, if o == Outcome::Failed { o } else { Outcome::Rows { max: 0, count: 0 } })
        })
        .collect();
    assert_eq!(got, expected);
    assert!(guest.stats().reinstantiations > 0, "the guest trapped and was replaced");
}

#[test]
fn a_refused_merge_fails_the_merged_session_and_nothing_else() {
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(
        WindowSpec::Session { gap: 100 },
        0,
        Reduce::Aggregate { flush_at: 1 },
        vec![FieldType::F64],
        vec![0],
    );
    let mut function = NativeMax::new();
    function.refuse_merge = true;
    let mut batch = Batch::new(&fields);
    // Key 1: two sessions, [0, 100) and [150, 250), then an event whose
    // span [60, 160) bridges them. Key 2: one session that grows without
    // merging another.
    for (key, ts, temp) in [(1, 0, 1.0), (1, 150, 2.0), (2, 0, 5.0), (2, 50, 6.0), (1, 60, 3.0)] {
        batch.partitions.push(0);
        batch.offsets.push(0);
        batch.keys.push(Some(Key::Int(key)));
        batch.timestamps.push(ts);
        let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
        t.push(temp);
    }
    op.process(&batch, 0..batch.len(), &mut function);
    let mut got = vec![];
    op.advance(None, i64::MAX, &mut function, &mut |firing| match firing {
        Firing::Rows { key, window, rows, .. } => {
            let Column::I64(c) = &rows.columns[1] else { panic!() };
            got.push((key.clone(), window.start, window.end, Some(c[rows.start])));
        }
        Firing::Failed { key, window, error, .. } => {
            assert_eq!(error.call.function, "merge", "{error}");
            got.push((key.clone(), window.start, window.end, None));
        }
    });
    got.sort();
    assert_eq!(got, [(Key::Int(1), 0, 250, None), (Key::Int(2), 0, 150, Some(2))]);
    assert_eq!(op.stats().failed, 1);
}
