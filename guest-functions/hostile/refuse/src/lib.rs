//! An aggregate as a plugin author might write it: max temperature and
//! count, but `add` refuses (returns an error for) any batch that holds a
//! reading above the `limit` parameter. Its batched calls are built from
//! the single ones, so one refused batch fails a whole `add-many`, which is
//! what the host's failure isolation has to cope with.
//!
//! With `bad_ends = true`, `get-results` also returns one `ends` entry too
//! few, so the host's checks on plugin output have something to catch.

wit_bindgen::generate!({ world: "aggregate-function", path: "../../../wit" });

use exports::weir::functions::{aggregate, plugin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use weir::functions::types::{
    Accumulators, Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, ParamSpec, RowRange,
    Rows, RowsMany, Value, Window,
};

struct Refuse;

/// The configured limit, as f64 bits.
static LIMIT: AtomicU64 = AtomicU64::new(0);
static BAD_ENDS: AtomicBool = AtomicBool::new(false);

fn decode(bytes: &[u8]) -> Result<(f64, i64), String> {
    if bytes.len() != 16 {
        return Err(format!("accumulator must be 16 bytes, got {}", bytes.len()));
    }
    let mut max = [0u8; 8];
    let mut count = [0u8; 8];
    max.copy_from_slice(&bytes[..8]);
    count.copy_from_slice(&bytes[8..]);
    Ok((f64::from_le_bytes(max), i64::from_le_bytes(count)))
}

fn encode(max: f64, count: i64) -> Vec<u8> {
    let mut out = max.to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out
}

fn rows(max: f64, count: i64) -> Rows {
    match count {
        0 => Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] },
        _ => Rows { len: 1, columns: vec![Column::F64(vec![max]), Column::I64(vec![count])] },
    }
}

impl plugin::Guest for Refuse {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "refuse".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Aggregate,
            description: "test guest: refuses batches with a reading above `limit`".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![
                Field { name: "max_temperature".into(), ty: FieldType::F64 },
                Field { name: "count".into(), ty: FieldType::I64 },
            ],
            params: vec![
                ParamSpec {
                    name: "limit".into(),
                    ty: FieldType::F64,
                    required: true,
                    default: None,
                    description: "readings above this are refused".into(),
                },
                ParamSpec {
                    name: "bad_ends".into(),
                    ty: FieldType::Bool,
                    required: false,
                    default: Some(Value::Bool(false)),
                    description: "make get-results return malformed ends".into(),
                },
            ],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        for p in params {
            match (p.name.as_str(), p.value) {
                ("limit", Value::F64(x)) => LIMIT.store(x.to_bits(), Ordering::Relaxed),
                ("bad_ends", Value::Bool(b)) => BAD_ENDS.store(b, Ordering::Relaxed),
                (name, _) => return Err(format!("unexpected parameter '{name}'")),
            }
        }
        Ok(())
    }
}

impl aggregate::Guest for Refuse {
    fn create_accumulator() -> Vec<u8> {
        encode(f64::NEG_INFINITY, 0)
    }

    fn add(accumulator: Vec<u8>, events: Events) -> Result<Vec<u8>, String> {
        let (mut max, mut count) = decode(&accumulator)?;
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column".into());
        };
        let limit = f64::from_bits(LIMIT.load(Ordering::Relaxed));
        if let Some(bad) = temps.iter().find(|&&t| t > limit) {
            return Err(format!("reading {bad} is above the limit {limit}"));
        }
        for &t in temps {
            max = max.max(t);
        }
        count += temps.len() as i64;
        Ok(encode(max, count))
    }

    fn merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
        let ((ma, ca), (mb, cb)) = (decode(&a)?, decode(&b)?);
        Ok(encode(ma.max(mb), ca + cb))
    }

    fn get_result(accumulator: Vec<u8>, _key: Value, _window: Window) -> Result<Rows, String> {
        let (max, count) = decode(&accumulator)?;
        Ok(rows(max, count))
    }

    fn add_many(accumulators: Accumulators, ends: Vec<u32>, events: Events) -> Result<Accumulators, String> {
        let mut out = Accumulators { bytes: vec![], ends: vec![] };
        let (mut start, mut acc_start) = (0usize, 0usize);
        for (&end, &acc_end) in ends.iter().zip(&accumulators.ends) {
            let acc = accumulators.bytes.get(acc_start..acc_end as usize).ok_or("bad accumulator ends")?;
            acc_start = acc_end as usize;
            let range = start..end as usize;
            start = end as usize;
            let part = Events {
                timestamps: events.timestamps.get(range.clone()).ok_or("ends do not fit")?.to_vec(),
                columns: events
                    .columns
                    .iter()
                    .map(|c| match c {
                        Column::F64(v) => {
                            Ok(Column::F64(v.get(range.clone()).ok_or("ends do not fit")?.to_vec()))
                        }
                        _ => Err("expected one f64 column".to_string()),
                    })
                    .collect::<Result<_, _>>()?,
            };
            out.bytes.extend(Self::add(acc.to_vec(), part)?);
            out.ends.push(out.bytes.len() as u32);
        }
        Ok(out)
    }

    fn get_results(
        keys: Vec<Value>,
        windows: Vec<Window>,
        ranges: Vec<RowRange>,
        accumulators: Accumulators,
    ) -> Result<RowsMany, String> {
        let (mut maxes, mut counts, mut row_ends) = (vec![], vec![], vec![]);
        for ((key, window), range) in keys.into_iter().zip(windows).zip(&ranges) {
            let mut merged = Self::create_accumulator();
            for i in range.start as usize..range.end as usize {
                let start = match i {
                    0 => 0,
                    _ => *accumulators.ends.get(i - 1).ok_or("a range does not fit")? as usize,
                };
                let end = *accumulators.ends.get(i).ok_or("a range does not fit")? as usize;
                let acc = accumulators.bytes.get(start..end).ok_or("bad accumulator ends")?;
                merged = Self::merge(merged, acc.to_vec())?;
            }
            let r = Self::get_result(merged, key, window)?;
            if let (Column::F64(m), Column::I64(c)) = (&r.columns[0], &r.columns[1]) {
                maxes.extend(m);
                counts.extend(c);
            }
            row_ends.push(maxes.len() as u32);
        }
        if BAD_ENDS.load(Ordering::Relaxed) {
            row_ends.pop();
        }
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }

    fn migrate(_accumulator: Vec<u8>, from_version: u32) -> Result<Vec<u8>, String> {
        Err(format!("refuse has no state version {from_version} to migrate from"))
    }
}

export!(Refuse);
