//! MaxTemperature in plain Rust: the built-in native counterpart of the
//! `max-temperature` and `max-temperature-agg` guests, with the same results
//! (the max and the count of each window), the same accumulator bytes and
//! the same eight-wide max.
//!
//! It exists to measure what the WebAssembly sandbox costs: the pipeline
//! benchmark runs the same case with it and with the guests. It is not
//! offered to job files, whose functions are always sandboxed.

use crate::plugin::{CallSite, Failure, PluginError};
use crate::types::{Accumulators, Column, Events, RowRange, Rows, RowsMany, Value, Window};
use crate::window::WindowFunction;

/// The max temperature and reading count of each window, as a window
/// function (`apply`) and as an aggregate (16-byte accumulators: the max,
/// then the count, little-endian, as the guest writes them).
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeMaxTemperature;

/// An accumulator: the max so far and the number of readings.
#[derive(Clone, Copy)]
struct Acc {
    max: f64,
    count: i64,
}

impl Acc {
    const EMPTY: Acc = Acc { max: f64::NEG_INFINITY, count: 0 };

    fn decode(bytes: &[u8]) -> Option<Acc> {
        let (max, rest) = bytes.split_first_chunk::<8>()?;
        let count = rest.first_chunk::<8>()?;
        Some(Acc { max: f64::from_le_bytes(*max), count: i64::from_le_bytes(*count) })
    }

    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.max.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
    }

    fn with(self, temps: &[f64]) -> Acc {
        Acc { max: self.max.max(max_of(temps)), count: self.count + temps.len() as i64 }
    }

    fn merge(self, other: Acc) -> Acc {
        Acc { max: self.max.max(other.max), count: self.count + other.count }
    }
}

/// The maximum of `values` (`-inf` for none), eight lanes at a time like
/// the guests' wasm SIMD: a plain `f64::max` fold does not vectorise,
/// because of its NaN rules; a compare-and-select (the guests' `pmax`) does.
pub fn max_of(values: &[f64]) -> f64 {
    let mut lanes = [f64::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if *lane < v { v } else { *lane };
        }
    }
    let mut max = lanes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for &x in rest {
        max = max.max(x);
    }
    max
}

impl NativeMaxTemperature {
    fn error(function: &'static str, why: &str) -> PluginError {
        PluginError {
            plugin: "native-max-temperature".into(),
            call: CallSite { function, key: None, window: None },
            failure: Failure::Returned(why.into()),
        }
    }

    fn temps<'a>(function: &'static str, events: &'a Events) -> Result<&'a [f64], PluginError> {
        match events.columns.first() {
            Some(Column::F64(temps)) => Ok(temps),
            _ => Err(Self::error(function, "expected one f64 column 'temperature'")),
        }
    }

    fn rows(acc: Acc) -> Rows {
        let take = usize::from(acc.count > 0);
        Rows {
            len: take as u32,
            columns: vec![Column::F64(vec![acc.max; take]), Column::I64(vec![acc.count; take])],
        }
    }
}

impl WindowFunction for NativeMaxTemperature {
    fn apply(&mut self, _key: &Value, _window: Window, events: &Events) -> Result<Rows, PluginError> {
        Ok(Self::rows(Acc::EMPTY.with(Self::temps("apply", events)?)))
    }

    fn apply_many(
        &mut self,
        keys: &[Value],
        _windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Result<RowsMany, PluginError> {
        let temps = Self::temps("apply-many", events)?;
        let (mut maxes, mut counts) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
        for r in ranges {
            let slice = temps
                .get(r.start as usize..r.end as usize)
                .ok_or_else(|| Self::error("apply-many", "a range does not fit the batch"))?;
            maxes.push(max_of(slice));
            counts.push(slice.len() as i64);
        }
        // One row per window, as the guest returns them.
        let row_ends = (1..=ranges.len() as u32).collect();
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }

    fn create_accumulator(&mut self) -> Result<Vec<u8>, PluginError> {
        let mut out = Vec::with_capacity(16);
        Acc::EMPTY.write(&mut out);
        Ok(out)
    }

    fn add(&mut self, _key: &Value, accumulator: &[u8], events: &Events) -> Result<Vec<u8>, PluginError> {
        let acc =
            Acc::decode(accumulator).ok_or_else(|| Self::error("add", "accumulator must be 16 bytes"))?;
        let mut out = Vec::with_capacity(16);
        acc.with(Self::temps("add", events)?).write(&mut out);
        Ok(out)
    }

    fn merge(&mut self, _key: &Value, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginError> {
        let bad = || Self::error("merge", "accumulator must be 16 bytes");
        let (a, b) = (Acc::decode(a).ok_or_else(bad)?, Acc::decode(b).ok_or_else(bad)?);
        let mut out = Vec::with_capacity(16);
        a.merge(b).write(&mut out);
        Ok(out)
    }

    fn get_result(&mut self, _key: &Value, _window: Window, accumulator: &[u8]) -> Result<Rows, PluginError> {
        let acc = Acc::decode(accumulator)
            .ok_or_else(|| Self::error("get-result", "accumulator must be 16 bytes"))?;
        Ok(Self::rows(acc))
    }

    fn add_many(
        &mut self,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Result<Accumulators, PluginError> {
        let temps = Self::temps("add-many", events)?;
        if accumulators.ends.len() != ends.len() {
            return Err(Self::error("add-many", "one end per accumulator"));
        }
        let mut out =
            Accumulators { bytes: Vec::with_capacity(16 * ends.len()), ends: Vec::with_capacity(ends.len()) };
        let (mut start, mut acc_start) = (0, 0);
        for (&end, &acc_end) in ends.iter().zip(&accumulators.ends) {
            let acc = accumulators
                .bytes
                .get(acc_start..acc_end as usize)
                .and_then(Acc::decode)
                .ok_or_else(|| Self::error("add-many", "bad accumulator ends"))?;
            let slice = temps
                .get(start..end as usize)
                .ok_or_else(|| Self::error("add-many", "ends do not fit the batch"))?;
            (start, acc_start) = (end as usize, acc_end as usize);
            acc.with(slice).write(&mut out.bytes);
            out.ends.push(out.bytes.len() as u32);
        }
        Ok(out)
    }

    fn get_results(
        &mut self,
        keys: &[Value],
        _windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Result<RowsMany, PluginError> {
        let (mut maxes, mut counts) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
        let mut row_ends = Vec::with_capacity(keys.len());
        for r in ranges {
            let mut merged = Acc::EMPTY;
            for i in r.start as usize..r.end as usize {
                let start = if i == 0 { Some(0) } else { accumulators.ends.get(i - 1).map(|&e| e as usize) };
                let end = accumulators.ends.get(i).map(|&e| e as usize);
                let acc = start
                    .zip(end)
                    .and_then(|(start, end)| accumulators.bytes.get(start..end))
                    .and_then(Acc::decode)
                    .ok_or_else(|| Self::error("get-results", "a range does not fit the accumulators"))?;
                merged = merged.merge(acc);
            }
            if merged.count > 0 {
                maxes.push(merged.max);
                counts.push(merged.count);
            }
            row_ends.push(maxes.len() as u32);
        }
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::instance;

    fn range(start: u32, end: u32) -> RowRange {
        RowRange { start, end }
    }

    fn events(temps: &[f64]) -> Events {
        Events { timestamps: (0..temps.len() as i64).collect(), columns: vec![Column::F64(temps.to_vec())] }
    }

    /// The native function gives what the guests give, call by call: the
    /// benchmark compares their speed, so they must do the same work.
    #[test]
    fn gives_the_guests_results_and_accumulators() {
        let mut native = NativeMaxTemperature;
        let (mut window, mut agg) =
            (instance("max-temperature", vec![]), instance("max-temperature-agg", vec![]));
        let temps: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1013) as f64 / 3.0 - 40.0).collect();
        let ends = [0u32, 1, 9, 17, 500, 1000];
        let keys: Vec<Value> = (0..ends.len() as i64).map(Value::I64).collect();
        let windows: Vec<Window> = (0..ends.len() as i64).map(|i| Window { start: i, end: i + 1 }).collect();
        let all = events(&temps);
        // Overlapping ranges, as sliding windows have them.
        let ranges = [range(0, 1), range(0, 9), range(5, 17), range(9, 500), range(17, 1000)];
        let (k, w) = (&keys[1..], &windows[1..]);
        assert_eq!(
            native.apply_many(k, w, &ranges, &all).expect("native"),
            window.apply_many(k, w, &ranges, &all).expect("guest")
        );
        let key = Value::I64(3);
        let win = Window { start: 0, end: 10 };
        let some = events(&temps[3..40]);
        assert_eq!(
            native.apply(&key, win, &some).expect("native"),
            window.apply(&key, win, &some).expect("guest")
        );

        let empty = native.create_accumulator().expect("native");
        assert_eq!(empty, agg.create_accumulator().expect("guest"));
        let accs = Accumulators {
            bytes: empty.repeat(ends.len()),
            ends: (1..=ends.len() as u32).map(|i| 16 * i).collect(),
        };
        let added = native.add_many(&accs, &ends, &all).expect("native");
        assert_eq!(added, agg.add_many(&accs, &ends, &all).expect("guest"));
        let one = native.add(&key, &empty, &some).expect("native");
        assert_eq!(one, agg.add(&key, &empty, &some).expect("guest"));
        let merged = native.merge(&key, &one, &added.bytes[64..80]).expect("native");
        assert_eq!(merged, agg.merge(&key, &one, &added.bytes[64..80]).expect("guest"));
        assert_eq!(
            native.get_result(&key, win, &merged).expect("native"),
            agg.get_result(&key, win, &merged).expect("guest")
        );
        // Windows of panes that overlap, one of them with only the empty
        // first pane.
        let panes = [range(0, 1), range(0, 3), range(1, 5), range(3, 6)];
        let (k, w) = (&keys[..4], &windows[..4]);
        assert_eq!(
            native.get_results(k, w, &panes, &added).expect("native"),
            agg.get_results(k, w, &panes, &added).expect("guest")
        );
    }

    #[test]
    fn max_of_is_the_max() {
        for n in [0usize, 1, 7, 8, 9, 64, 1001] {
            let values: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
            assert_eq!(max_of(&values), values.iter().copied().fold(f64::NEG_INFINITY, f64::max), "n = {n}");
        }
    }

    #[test]
    fn a_malformed_accumulator_is_an_error_not_a_panic() {
        let mut native = NativeMaxTemperature;
        let error = native.merge(&Value::I64(1), &[1, 2, 3], &[0; 16]).expect_err("3 bytes");
        assert!(error.to_string().contains("16 bytes"), "{error}");
    }
}
