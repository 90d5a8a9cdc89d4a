//! MaxTemperature as an incremental aggregate: the same results as the
//! `max-temperature` window function, but the host keeps only a 16-byte
//! accumulator per key and window pane instead of the window's events.

wit_bindgen::generate!({ world: "aggregate-function", path: "../../wit" });

use exports::weir::functions::{aggregate, plugin};
use weir::functions::types::{
    Accumulators, Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows,
    RowsMany, Value, Window,
};

/// The accumulator: the maximum so far and the number of readings, as
/// 16 little-endian bytes.
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

    /// The window's output: none for an empty window.
    fn rows(self) -> Rows {
        if self.count == 0 {
            return Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] };
        }
        Rows { len: 1, columns: vec![Column::F64(vec![self.max]), Column::I64(vec![self.count])] }
    }

    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.max.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out
    }
}

struct MaxTemperatureAgg;

impl plugin::Guest for MaxTemperatureAgg {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "max-temperature-agg".into(),
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
            Some(p) => Err(format!("max-temperature-agg takes no parameters, got '{}'", p.name)),
            None => Ok(()),
        }
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
        acc.max = acc.max.max(guest_support::max_of(&temps));
        acc.count += temps.len() as i64;
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
            acc.max = acc.max.max(guest_support::max_of(slice));
            acc.count += slice.len() as i64;
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

    fn migrate(_accumulator: Vec<u8>, from_version: u32) -> Result<Vec<u8>, String> {
        // State version 0 is the first: there is nothing older.
        Err(format!("max-temperature-agg has no state version {from_version} to migrate from"))
    }
}

export!(MaxTemperatureAgg);
