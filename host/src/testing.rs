//! What the unit tests share: one plugin engine per test binary, a seeded
//! random number generator, and `NativeMax`, a window function and
//! aggregate in plain Rust that can be told to refuse, so the window
//! operator can be tested without building any guest.

use crate::plugin::{
    CallSite, EngineConfig, Failure, PluginEngine, PluginError, PluginInstance, PluginLimits,
};
use crate::types::{Accumulators, Column, Events, RowRange, Rows, RowsMany, Value, Window};
use crate::window::WindowFunction;
use std::sync::OnceLock;

/// One engine for the whole test binary, as in the host: engines reserve a
/// pool of address space each.
pub fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        PluginEngine::new(EngineConfig { max_instances: 64, cache_dir: None }).expect("engine")
    })
}

/// An instance of a built-in function, or of a test guest's `.wasm` file.
pub fn instance(name: &str, params: Vec<crate::types::Param>) -> PluginInstance {
    let plugin = match name.ends_with(".wasm") {
        true => engine().load_file(&crate::plugin::builtin::guests_dir().join(name)),
        false => engine().load_ref(name),
    };
    plugin
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
        .instantiate(params, PluginLimits::default())
        .expect("instantiate")
}

/// A 64-bit linear congruential generator: the same numbers for the same
/// seed, with no crate needed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// A number in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Max temperature and count per window, as the bundled `max-temperature`
/// and `max-temperature-agg` guests compute them, in plain Rust. It refuses
/// (returns an error for) any `apply` or `add` whose events hold a reading
/// above `limit`, and every `merge` when `refuse_merge` is set; a batched
/// call fails whole if any of its items is refused, as one built from the
/// single calls does.
pub struct NativeMax {
    /// Readings above this are refused.
    pub limit: f64,
    /// Refuse every `merge`.
    pub refuse_merge: bool,
    /// Batched calls made (`apply-many`, `add-many`, `get-results`).
    pub batched_calls: usize,
}

impl NativeMax {
    /// A function that refuses nothing.
    pub fn new() -> NativeMax {
        NativeMax::refusing_above(f64::INFINITY)
    }

    /// A function that refuses readings above `limit`.
    pub fn refusing_above(limit: f64) -> NativeMax {
        NativeMax { limit, refuse_merge: false, batched_calls: 0 }
    }

    fn refuse(
        &self,
        function: &'static str,
        key: Option<&Value>,
        window: Option<Window>,
        why: String,
    ) -> PluginError {
        PluginError {
            plugin: "native-max".into(),
            call: CallSite { function, key: key.map(|k| k.to_string()), window },
            failure: Failure::Returned(why),
        }
    }

    fn temps<'a>(&self, events: &'a Events) -> &'a [f64] {
        match events.columns.first() {
            Some(Column::F64(t)) => t,
            _ => &[],
        }
    }

    fn check(
        &self,
        function: &'static str,
        key: &Value,
        window: Option<Window>,
        temps: &[f64],
    ) -> Result<(), PluginError> {
        match temps.iter().find(|&&t| t > self.limit) {
            Some(bad) => {
                Err(self.refuse(function, Some(key), window, format!("reading {bad} above {}", self.limit)))
            }
            None => Ok(()),
        }
    }
}

fn acc(max: f64, count: i64) -> Vec<u8> {
    let mut out = max.to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out
}

fn unacc(bytes: &[u8]) -> (f64, i64) {
    let max = f64::from_le_bytes(bytes[..8].try_into().expect("16-byte accumulator"));
    let count = i64::from_le_bytes(bytes[8..16].try_into().expect("16-byte accumulator"));
    (max, count)
}

fn rows(max: f64, count: i64) -> Rows {
    let n = u32::from(count > 0);
    let take = if count > 0 { 1 } else { 0 };
    Rows { len: n, columns: vec![Column::F64(vec![max; take]), Column::I64(vec![count; take])] }
}

/// Rows of many windows joined, as a batched call returns them.
fn join(all: Vec<Rows>) -> RowsMany {
    let (mut maxes, mut counts, mut ends) = (vec![], vec![], vec![]);
    for r in all {
        if let (Column::F64(m), Column::I64(c)) = (&r.columns[0], &r.columns[1]) {
            maxes.extend_from_slice(m);
            counts.extend_from_slice(c);
        }
        ends.push(maxes.len() as u32);
    }
    RowsMany { ends, columns: vec![Column::F64(maxes), Column::I64(counts)] }
}

/// The events at rows `[start, end)`.
fn slice(events: &Events, start: usize, end: usize) -> Events {
    let columns = events
        .columns
        .iter()
        .map(|c| match c {
            Column::F64(v) => Column::F64(v[start..end].to_vec()),
            other => other.clone(),
        })
        .collect();
    Events { timestamps: events.timestamps[start..end].to_vec(), columns }
}

impl WindowFunction for NativeMax {
    fn apply(&mut self, key: &Value, window: Window, events: &Events) -> Result<Rows, PluginError> {
        let temps = self.temps(events);
        self.check("apply", key, Some(window), temps)?;
        Ok(rows(temps.iter().copied().fold(f64::MIN, f64::max), temps.len() as i64))
    }

    fn apply_many(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Result<RowsMany, PluginError> {
        self.batched_calls += 1;
        let mut all = vec![];
        for ((key, &window), r) in keys.iter().zip(windows).zip(ranges) {
            all.push(self.apply(key, window, &slice(events, r.start as usize, r.end as usize))?);
        }
        Ok(join(all))
    }

    fn create_accumulator(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(acc(f64::MIN, 0))
    }

    fn add(&mut self, key: &Value, accumulator: &[u8], events: &Events) -> Result<Vec<u8>, PluginError> {
        let temps = self.temps(events);
        self.check("add", key, None, temps)?;
        let (max, count) = unacc(accumulator);
        Ok(acc(temps.iter().copied().fold(max, f64::max), count + temps.len() as i64))
    }

    fn merge(&mut self, key: &Value, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginError> {
        if self.refuse_merge {
            return Err(self.refuse("merge", Some(key), None, "merge refused".into()));
        }
        let ((ma, ca), (mb, cb)) = (unacc(a), unacc(b));
        Ok(acc(ma.max(mb), ca + cb))
    }

    fn get_result(&mut self, _key: &Value, _window: Window, accumulator: &[u8]) -> Result<Rows, PluginError> {
        let (max, count) = unacc(accumulator);
        Ok(rows(max, count))
    }

    fn add_many(
        &mut self,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Result<Accumulators, PluginError> {
        self.batched_calls += 1;
        let key = Value::String("(batched)".into());
        let mut out = Accumulators { bytes: vec![], ends: vec![] };
        let (mut start, mut acc_start) = (0, 0);
        for (&end, &acc_end) in ends.iter().zip(&accumulators.ends) {
            let a = &accumulators.bytes[acc_start..acc_end as usize];
            out.bytes.extend(self.add(&key, a, &slice(events, start, end as usize))?);
            out.ends.push(out.bytes.len() as u32);
            (start, acc_start) = (end as usize, acc_end as usize);
        }
        Ok(out)
    }

    fn get_results(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Result<RowsMany, PluginError> {
        self.batched_calls += 1;
        let mut all = vec![];
        for ((key, &window), r) in keys.iter().zip(windows).zip(ranges) {
            let mut merged = acc(f64::MIN, 0);
            for index in r.start as usize..r.end as usize {
                let byte_start = if index == 0 { 0 } else { accumulators.ends[index - 1] as usize };
                let acc_end = accumulators.ends[index] as usize;
                let (max, count) = unacc(&accumulators.bytes[byte_start..acc_end]);
                let (m, c) = unacc(&merged);
                merged = acc(m.max(max), c + count);
            }
            all.push(self.get_result(key, window, &merged)?);
        }
        Ok(join(all))
    }
}

/// A throwaway HDFS for tests: see [`weir_devtools::hdfs`].
pub use weir_devtools::hdfs::HdfsCluster;
