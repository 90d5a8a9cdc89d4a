//! Reports what the clocks and random sources say during `apply`: one row
//! per window holding the wall clock, the monotonic clock, the time that
//! passed inside the call, both random streams, the insecure seed and a
//! std `HashMap` hash (std seeds it from WASI randomness). A test calls it
//! twice with the same windows and compares the rows byte for byte. The key
//! `"trap"` makes it panic, to test a fresh instance after a trap.

wit_bindgen::generate!({
    world: "weir-test:clock-random/clock-random",
    path: ["../../../wit", "wit"],
    generate_all,
});

use exports::weir::functions::{plugin, window};
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasi::clocks::{monotonic_clock, wall_clock};
use wasi::random::{insecure, insecure_seed, random};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows, RowsMany, Value,
    Window,
};

/// The output columns, in order.
const OUTPUTS: [&str; 10] = [
    "wall_ms",
    "wall_resolution_ns",
    "monotonic_ns",
    "monotonic_resolution_ns",
    "elapsed_ns",
    "secure",
    "secure_bytes",
    "insecure",
    "insecure_seed",
    "std_hash",
];

struct ClockRandom;

impl plugin::Guest for ClockRandom {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "clock-random".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Window,
            description: "test guest: reports clocks and random values".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: OUTPUTS.iter().map(|n| Field { name: n.to_string(), ty: FieldType::I64 }).collect(),
            params: vec![],
        }
    }

    fn configure(_params: Vec<Param>) -> Result<(), String> {
        Ok(())
    }
}

/// The first eight bytes as a number.
fn first_u64(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(bytes) {
        *d = *s;
    }
    i64::from_le_bytes(b)
}

impl window::Guest for ClockRandom {
    fn apply(key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        // A way for a test to kill the instance and get a fresh one.
        if matches!(&key, Value::String(s) if s == "trap") {
            panic!("asked to trap");
        }
        let started = Instant::now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(-1);
        // Some work, so that a real clock would move.
        let sum: f64 =
            events.columns.iter().map(|c| if let Column::F64(v) = c { v.iter().sum() } else { 0.0 }).sum();
        let std_hash = std::collections::hash_map::RandomState::new().hash_one(sum.to_bits()) as i64;
        let values = [
            wall,
            {
                let r = wall_clock::resolution();
                (r.seconds * 1_000_000_000 + u64::from(r.nanoseconds)) as i64
            },
            monotonic_clock::now() as i64,
            monotonic_clock::resolution() as i64,
            started.elapsed().as_nanos() as i64,
            random::get_random_u64() as i64,
            first_u64(&random::get_random_bytes(16)),
            insecure::get_insecure_random_u64() as i64,
            insecure_seed::insecure_seed().0 as i64,
            std_hash,
        ];
        Ok(Rows { len: 1, columns: values.iter().map(|&v| Column::I64(vec![v])).collect() })
    }

    guest_support::apply_many_by_window!();
}

export!(ClockRandom);
