//! Components built for the 0.1.0 contract, which still load and run.
//!
//! 0.2.0 changed three things: the descriptor has a `state-version`,
//! `apply-many` and `get-results` take overlapping `ranges` instead of
//! partitioning `ends`, and aggregates export `migrate`. Every other type
//! has the same shape in both, so an older component is called through
//! typed functions with the current types: its descriptor is read in the
//! old shape (state version 0), and ranges are turned into ends by copying
//! each window's rows, which is what the host did for every call before
//! 0.2.0. Such a component cannot `migrate`.

use super::bindings::map::exports::weir::functions::map::Mapped;
use super::store::StoreState;
use crate::types::{
    Accumulators, Descriptor, Events, Field, FunctionKind, Param, ParamSpec, RowRange, Rows, RowsMany, Value,
    Window,
};
use crate::window::state::{append_range, empty_events};
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, ComponentType, Func, Instance, Lift, Lower};

/// The older contract version that still loads.
pub const LEGACY_VERSION: &str = "0.1.0";

/// The 0.1.0 descriptor: the current one without `state-version`.
#[derive(ComponentType, Lift, Debug, Clone)]
#[component(record)]
pub(crate) struct DescriptorV1 {
    name: String,
    version: String,
    kind: FunctionKind,
    description: String,
    inputs: Vec<Field>,
    outputs: Vec<Field>,
    params: Vec<ParamSpec>,
}

impl From<DescriptorV1> for Descriptor {
    fn from(d: DescriptorV1) -> Descriptor {
        Descriptor {
            name: d.name,
            version: d.version,
            kind: d.kind,
            description: d.description,
            inputs: d.inputs,
            outputs: d.outputs,
            params: d.params,
            state_version: 0,
        }
    }
}

/// The functions of a live 0.1.0 instance, found by name.
pub(crate) struct LegacyLive {
    instance: Instance,
}

/// The result of a guest call that may fail with the guest's message.
type Call<R> = wasmtime::Result<Result<R, String>>;

impl LegacyLive {
    pub(crate) fn new(instance: Instance) -> LegacyLive {
        LegacyLive { instance }
    }

    /// The exported function `name` of `interface`.
    fn func(&self, store: &mut Store<StoreState>, interface: &str, name: &str) -> wasmtime::Result<Func> {
        let export = format!("weir:functions/{interface}@{LEGACY_VERSION}");
        let missing = || wasmtime::format_err!("missing function `{name}` in export `{export}`");
        let iface = self.instance.get_export_index(&mut *store, None, &export).ok_or_else(missing)?;
        let index = self.instance.get_export_index(&mut *store, Some(&iface), name).ok_or_else(missing)?;
        self.instance.get_func(&mut *store, index).ok_or_else(missing)
    }

    /// Calls `interface.name` with `params`.
    fn call<P, R>(
        &self,
        store: &mut Store<StoreState>,
        interface: &str,
        name: &str,
        params: P,
    ) -> wasmtime::Result<R>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        // Typed (checked) on every call: this is the compatibility path,
        // and a check is cheap next to the copies it makes.
        let func = self.func(store, interface, name)?;
        func.typed::<P, R>(&*store)?.call(&mut *store, params)
    }

    pub(crate) fn describe(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Descriptor> {
        let (d,): (DescriptorV1,) = self.call(store, "plugin", "describe", ())?;
        Ok(d.into())
    }

    pub(crate) fn configure(&self, store: &mut Store<StoreState>, params: &[Param]) -> Call<()> {
        Ok(self.call::<(&[Param],), (Result<(), String>,)>(store, "plugin", "configure", (params,))?.0)
    }

    pub(crate) fn apply(
        &self,
        store: &mut Store<StoreState>,
        key: &Value,
        window: Window,
        events: &Events,
    ) -> Call<Rows> {
        type P<'a> = (&'a Value, Window, &'a Events);
        Ok(self.call::<P, (Result<Rows, String>,)>(store, "window", "apply", (key, window, events))?.0)
    }

    pub(crate) fn apply_many(
        &self,
        store: &mut Store<StoreState>,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Call<RowsMany> {
        type P<'a> = (&'a [Value], &'a [Window], &'a [u32], &'a Events);
        let (ends, copied) = partition(ranges, events);
        let events = copied.as_ref().unwrap_or(events);
        Ok(self
            .call::<P, (Result<RowsMany, String>,)>(
                store,
                "window",
                "apply-many",
                (keys, windows, &ends, events),
            )?
            .0)
    }

    pub(crate) fn create_accumulator(&self, store: &mut Store<StoreState>) -> Call<Vec<u8>> {
        Ok(Ok(self.call::<(), (Vec<u8>,)>(store, "aggregate", "create-accumulator", ())?.0))
    }

    pub(crate) fn add(
        &self,
        store: &mut Store<StoreState>,
        accumulator: &[u8],
        events: &Events,
    ) -> Call<Vec<u8>> {
        type P<'a> = (&'a [u8], &'a Events);
        Ok(self.call::<P, (Result<Vec<u8>, String>,)>(store, "aggregate", "add", (accumulator, events))?.0)
    }

    pub(crate) fn merge(&self, store: &mut Store<StoreState>, a: &[u8], b: &[u8]) -> Call<Vec<u8>> {
        type P<'a> = (&'a [u8], &'a [u8]);
        Ok(self.call::<P, (Result<Vec<u8>, String>,)>(store, "aggregate", "merge", (a, b))?.0)
    }

    pub(crate) fn get_result(
        &self,
        store: &mut Store<StoreState>,
        accumulator: &[u8],
        key: &Value,
        window: Window,
    ) -> Call<Rows> {
        type P<'a> = (&'a [u8], &'a Value, Window);
        Ok(self
            .call::<P, (Result<Rows, String>,)>(store, "aggregate", "get-result", (accumulator, key, window))?
            .0)
    }

    pub(crate) fn add_many(
        &self,
        store: &mut Store<StoreState>,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Call<Accumulators> {
        type P<'a> = (&'a Accumulators, &'a [u32], &'a Events);
        let params = (accumulators, ends, events);
        Ok(self.call::<P, (Result<Accumulators, String>,)>(store, "aggregate", "add-many", params)?.0)
    }

    pub(crate) fn get_results(
        &self,
        store: &mut Store<StoreState>,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Call<RowsMany> {
        type P<'a> = (&'a [Value], &'a [Window], &'a [u32], &'a Accumulators);
        let (ends, accs) = partition_accumulators(ranges, accumulators);
        let accs = accs.as_ref().unwrap_or(accumulators);
        let params = (keys, windows, ends.as_slice(), accs);
        Ok(self.call::<P, (Result<RowsMany, String>,)>(store, "aggregate", "get-results", params)?.0)
    }

    pub(crate) fn map(&self, store: &mut Store<StoreState>, events: &Events) -> Call<Mapped> {
        Ok(self.call::<(&Events,), (Result<Mapped, String>,)>(store, "map", "map", (events,))?.0)
    }
}

/// The 0.1.0 form of `ranges`: ends that cut the rows into consecutive
/// windows. When the ranges already do (tumbling windows), the events go
/// as they are; otherwise each window's rows are copied out, in order.
fn partition(ranges: &[RowRange], events: &Events) -> (Vec<u32>, Option<Events>) {
    let n = events.timestamps.len();
    if let Some(ends) = consecutive(ranges, n) {
        return (ends, None);
    }
    let types: Vec<_> = events.columns.iter().map(|c| c.ty()).collect();
    let mut copied = empty_events(&types);
    let mut ends = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (start, end) = (r.start as usize, (r.end as usize).min(n));
        append_range(&mut copied, events, start.min(end)..end);
        ends.push(copied.timestamps.len() as u32);
    }
    (ends, Some(copied))
}

/// `ranges`' ends, if the ranges cut `0..n` into consecutive pieces.
fn consecutive(ranges: &[RowRange], n: usize) -> Option<Vec<u32>> {
    let mut at = 0u32;
    for r in ranges {
        if r.start != at || r.end < r.start {
            return None;
        }
        at = r.end;
    }
    (at as usize == n).then(|| ranges.iter().map(|r| r.end).collect())
}

/// [`partition`] for accumulators: ranges of accumulators become ends of
/// consecutive runs, copied out when they overlap.
fn partition_accumulators(ranges: &[RowRange], accs: &Accumulators) -> (Vec<u32>, Option<Accumulators>) {
    if let Some(ends) = consecutive(ranges, accs.ends.len()) {
        return (ends, None);
    }
    let mut out = Accumulators { bytes: Vec::new(), ends: Vec::new() };
    let mut ends = Vec::with_capacity(ranges.len());
    for r in ranges {
        for i in r.start as usize..r.end as usize {
            let start = if i == 0 { 0 } else { accs.ends.get(i - 1).map_or(0, |&e| e as usize) };
            let end = accs.ends.get(i).map_or(start, |&e| e as usize);
            if let Some(bytes) = accs.bytes.get(start..end) {
                out.bytes.extend_from_slice(bytes);
                out.ends.push(out.bytes.len() as u32);
            }
        }
        ends.push(out.ends.len() as u32);
    }
    (ends, Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Column;

    fn range(start: u32, end: u32) -> RowRange {
        RowRange { start, end }
    }

    #[test]
    fn consecutive_ranges_pass_the_events_as_they_are() {
        let events = Events { timestamps: vec![1, 2, 3], columns: vec![Column::F64(vec![1.0, 2.0, 3.0])] };
        let (ends, copied) = partition(&[range(0, 1), range(1, 3)], &events);
        assert_eq!((ends, copied), (vec![1, 3], None));
    }

    #[test]
    fn overlapping_ranges_are_copied_out_window_by_window() {
        let events = Events { timestamps: vec![1, 2, 3], columns: vec![Column::F64(vec![1.0, 2.0, 3.0])] };
        let (ends, copied) = partition(&[range(0, 2), range(1, 3)], &events);
        let want =
            Events { timestamps: vec![1, 2, 2, 3], columns: vec![Column::F64(vec![1.0, 2.0, 2.0, 3.0])] };
        assert_eq!((ends, copied), (vec![2, 4], Some(want)));

        let accs = Accumulators { bytes: vec![1, 2, 2, 3, 3, 3], ends: vec![1, 3, 6] };
        let (ends, copied) = partition_accumulators(&[range(0, 2), range(1, 3)], &accs);
        let want = Accumulators { bytes: vec![1, 2, 2, 2, 2, 3, 3, 3], ends: vec![1, 3, 5, 8] };
        assert_eq!((ends, copied), (vec![2, 4], Some(want)));
    }
}
