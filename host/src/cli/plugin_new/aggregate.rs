//! An incremental aggregate: the maximum `temperature` and the number of
//! readings in each window, per key. The host keeps an accumulator (opaque
//! bytes: here 16) per key and window pane instead of the window's events;
//! `add` folds events into one, `merge` combines two, `get-result` turns one
//! into the window's output rows.

wit_bindgen::generate!({ world: "aggregate-function", path: "wit" });

use exports::weir::functions::{aggregate, plugin};
use weir::functions::types::{
    Accumulators, Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows,
    RowsMany, Value, Window,
};

/// The accumulator: the maximum so far and the number of readings, as 16
/// little-endian bytes.
#[derive(Clone, Copy)]
struct Acc {
    max: f64,
    count: i64,
}

impl Acc {
    const EMPTY: Acc = Acc { max: f64::NEG_INFINITY, count: 0 };

    fn decode(bytes: &[u8]) -> Result<Acc, String> {
        let (max, count) = bytes
            .split_first_chunk::<8>()
            .and_then(|(m, rest)| Some((m, rest.first_chunk::<8>()?)))
            .ok_or_else(|| format!("accumulator must be 16 bytes, got {}", bytes.len()))?;
        Ok(Acc { max: f64::from_le_bytes(*max), count: i64::from_le_bytes(*count) })
    }

    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.max.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out
    }

    fn add(self, temps: &[f64]) -> Acc {
        Acc { max: self.max.max(guest_support::max_of(temps)), count: self.count + temps.len() as i64 }
    }

    fn merge(self, other: Acc) -> Acc {
        Acc { max: self.max.max(other.max), count: self.count + other.count }
    }
}

/// The temperatures of a batch of events.
fn temperatures(events: &Events) -> Result<&[f64], String> {
    match events.columns.first() {
        Some(Column::F64(temps)) => Ok(temps),
        _ => Err("expected one f64 column 'temperature'".into()),
    }
}

struct Function;

impl plugin::Guest for Function {
    fn describe() -> Descriptor {
        Descriptor {
            // The accumulator's layout: raise it when the layout changes,
            // and teach `migrate` the old one.
            state_version: 0,
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Aggregate,
            description: "Maximum temperature and reading count per window, incrementally".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![
                Field { name: "max_temperature".into(), ty: FieldType::F64 },
                Field { name: "count".into(), ty: FieldType::I64 },
            ],
            params: vec![],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        match params.first() {
            Some(p) => Err(format!("{} takes no parameters, got '{}'", env!("CARGO_PKG_NAME"), p.name)),
            None => Ok(()),
        }
    }
}

impl aggregate::Guest for Function {
    fn create_accumulator() -> Vec<u8> {
        Acc::EMPTY.encode()
    }

    fn add(accumulator: Vec<u8>, events: Events) -> Result<Vec<u8>, String> {
        Ok(Acc::decode(&accumulator)?.add(temperatures(&events)?).encode())
    }

    fn merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(Acc::decode(&a)?.merge(Acc::decode(&b)?).encode())
    }

    fn get_result(accumulator: Vec<u8>, _key: Value, _window: Window) -> Result<Rows, String> {
        let acc = Acc::decode(&accumulator)?;
        if acc.count == 0 {
            // No events, no output row.
            return Ok(Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] });
        }
        Ok(Rows { len: 1, columns: vec![Column::F64(vec![acc.max]), Column::I64(vec![acc.count])] })
    }

    /// `add` for many accumulators at once: accumulator `i` takes the
    /// events up to `ends[i]` (from where accumulator `i - 1`'s ended).
    fn add_many(accumulators: Accumulators, ends: Vec<u32>, events: Events) -> Result<Accumulators, String> {
        let temps = temperatures(&events)?;
        if accumulators.ends.len() != ends.len() {
            return Err("one end per accumulator".into());
        }
        let mut out =
            Accumulators { bytes: Vec::with_capacity(16 * ends.len()), ends: Vec::with_capacity(ends.len()) };
        let mut start = 0usize;
        for (i, &end) in ends.iter().enumerate() {
            let bytes = guest_support::accumulator(&accumulators.bytes, &accumulators.ends, i)
                .ok_or("bad accumulator ends")?;
            let slice = temps.get(start..end as usize).ok_or("ends do not fit the batch")?;
            start = end as usize;
            out.bytes.extend_from_slice(&Acc::decode(bytes)?.add(slice).encode());
            out.ends.push(out.bytes.len() as u32);
        }
        Ok(out)
    }

    /// `get-result` for many windows at once: window `i` is the merge of
    /// the accumulators in `ranges[i]` (a sliding window's panes).
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
                merged = merged.merge(Acc::decode(bytes)?);
            }
            if merged.count > 0 {
                maxes.push(merged.max);
                counts.push(merged.count);
            }
            row_ends.push(maxes.len() as u32);
        }
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }

    fn migrate(_accumulator: Vec<u8>, from_version: u32) -> Result<Vec<u8>, String> {
        // State version 0 is the first: there is nothing older.
        Err(format!("{} has no state version {from_version} to migrate from", env!("CARGO_PKG_NAME")))
    }
}

export!(Function);
