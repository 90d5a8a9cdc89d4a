// The body of the test guests `max-temperature-agg` 0.2.0 and 0.3.0,
// included by each with its `IGNORE_ABOVE`.

wit_bindgen::generate!({ world: "aggregate-function", path: "../../../wit" });

use exports::weir::functions::{aggregate, plugin};
use std::sync::atomic::{AtomicU8, Ordering};
use weir::functions::types::{
    Accumulators, Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, ParamSpec, RowRange,
    Rows, RowsMany, Value, Window,
};

/// How `migrate` fails: not at all, by refusing, or by trapping.
static MIGRATE_FAILS: AtomicU8 = AtomicU8::new(NO);
const NO: u8 = 0;
const REFUSE: u8 = 1;
const TRAP: u8 = 2;

/// The accumulator: the number of readings and the maximum so far, as
/// 16 little-endian bytes (state version 1).
#[derive(Clone, Copy)]
struct Acc {
    max: f64,
    count: i64,
}

impl Acc {
    const EMPTY: Acc = Acc { max: f64::NEG_INFINITY, count: 0 };

    /// Adds the readings this version counts (those up to `IGNORE_ABOVE`).
    fn add(&mut self, temps: &[f64]) {
        for &t in temps.iter().filter(|&&t| t <= IGNORE_ABOVE) {
            self.max = self.max.max(t);
            self.count += 1;
        }
    }

    fn decode(bytes: &[u8]) -> Result<Acc, String> {
        let (count, max) = halves(bytes)?;
        Ok(Acc { max: f64::from_le_bytes(*max), count: i64::from_le_bytes(*count) })
    }

    /// The window's output: none for an empty window.
    fn rows(self) -> Rows {
        if self.count == 0 {
            return Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] };
        }
        Rows { len: 1, columns: vec![Column::F64(vec![self.max]), Column::I64(vec![self.count])] }
    }

    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        out
    }
}

/// The two 8-byte halves of a 16-byte accumulator.
fn halves(bytes: &[u8]) -> Result<(&[u8; 8], &[u8; 8]), String> {
    bytes
        .split_first_chunk::<8>()
        .and_then(|(a, rest)| Some((a, rest.first_chunk::<8>()?)))
        .filter(|_| bytes.len() == 16)
        .ok_or_else(|| format!("accumulator must be 16 bytes, got {}", bytes.len()))
}

struct MaxTemperatureAgg;

impl plugin::Guest for MaxTemperatureAgg {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 1,
            name: "max-temperature-agg".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Aggregate,
            description: "Maximum temperature and reading count per window, incrementally".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![
                Field { name: "max_temperature".into(), ty: FieldType::F64 },
                Field { name: "count".into(), ty: FieldType::I64 },
            ],
            params: vec![ParamSpec {
                name: "migrate_fails".into(),
                ty: FieldType::String,
                required: false,
                default: Some(Value::String("no".into())),
                description: "for tests: make migrate fail (no, refuse or trap)".into(),
            }],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        for p in params {
            let how = match (p.name.as_str(), &p.value) {
                ("migrate_fails", Value::String(how)) => how.as_str(),
                (name, _) => return Err(format!("unexpected parameter '{name}'")),
            };
            let fails = match how {
                "no" => NO,
                "refuse" => REFUSE,
                "trap" => TRAP,
                other => return Err(format!("migrate_fails must be no, refuse or trap, got '{other}'")),
            };
            MIGRATE_FAILS.store(fails, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl aggregate::Guest for MaxTemperatureAgg {
    fn create_accumulator() -> Vec<u8> {
        Acc::EMPTY.encode()
    }

    fn add(accumulator: Vec<u8>, events: Events) -> Result<Vec<u8>, String> {
        let mut acc = Acc::decode(&accumulator)?;
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        acc.add(&temps);
        Ok(acc.encode())
    }

    fn merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
        let (a, b) = (Acc::decode(&a)?, Acc::decode(&b)?);
        Ok(Acc { max: a.max.max(b.max), count: a.count + b.count }.encode())
    }

    fn get_result(accumulator: Vec<u8>, _key: Value, _window: Window) -> Result<Rows, String> {
        Ok(Acc::decode(&accumulator)?.rows())
    }

    fn add_many(accumulators: Accumulators, ends: Vec<u32>, events: Events) -> Result<Accumulators, String> {
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        if accumulators.ends.len() != ends.len() {
            return Err("one end per accumulator".into());
        }
        let mut out =
            Accumulators { bytes: Vec::with_capacity(16 * ends.len()), ends: Vec::with_capacity(ends.len()) };
        let (mut start, mut acc_start) = (0usize, 0usize);
        for (&end, &acc_end) in ends.iter().zip(&accumulators.ends) {
            let bytes = accumulators.bytes.get(acc_start..acc_end as usize).ok_or("bad accumulator ends")?;
            acc_start = acc_end as usize;
            let mut acc = Acc::decode(bytes)?;
            let slice = temps.get(start..end as usize).ok_or("ends do not fit the batch")?;
            start = end as usize;
            acc.add(slice);
            out.bytes.extend_from_slice(&acc.encode());
            out.ends.push(out.bytes.len() as u32);
        }
        Ok(out)
    }

    fn get_results(
        keys: Vec<Value>,
        _windows: Vec<Window>,
        ranges: Vec<RowRange>,
        accumulators: Accumulators,
    ) -> Result<RowsMany, String> {
        let (mut maxes, mut counts) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
        let mut row_ends = Vec::with_capacity(keys.len());
        for range in &ranges {
            let mut merged = Acc::EMPTY;
            for i in range.start as usize..range.end as usize {
                let bytes = guest_support::accumulator(&accumulators.bytes, &accumulators.ends, i)
                    .ok_or("a range does not fit the accumulators")?;
                let acc = Acc::decode(bytes)?;
                merged = Acc { max: merged.max.max(acc.max), count: merged.count + acc.count };
            }
            if merged.count > 0 {
                maxes.push(merged.max);
                counts.push(merged.count);
            }
            row_ends.push(maxes.len() as u32);
        }
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }

    fn migrate(accumulator: Vec<u8>, from_version: u32) -> Result<Vec<u8>, String> {
        match MIGRATE_FAILS.load(Ordering::Relaxed) {
            REFUSE => return Err("migrate_fails = refuse: this migration refuses".into()),
            TRAP => panic!("migrate_fails = trap"),
            _ => {}
        }
        match from_version {
            // 0.1.0's layout: the maximum first, then the count.
            0 => {
                let (max, count) = halves(&accumulator)?;
                Ok(Acc { max: f64::from_le_bytes(*max), count: i64::from_le_bytes(*count) }.encode())
            }
            _ => Err(format!("max-temperature-agg has no state version {from_version} to migrate from")),
        }
    }
}

export!(MaxTemperatureAgg);
