//! What running a user function as WebAssembly costs, against plain Rust:
//!
//! - `window_max`: the max of a window of temperatures through the bundled
//!   `max-temperature` window function (`apply`), for windows of 1, 200 and
//!   10,000 values, against two native folds: `native_simd`, written the way
//!   the guest computes it (`guest_support::max_of`: four two-lane SIMD
//!   accumulators), which is like for like, and `native_scalar`, the plain
//!   `f64::max` fold, which cannot vectorise. `python` is the same window
//!   through `max-temperature-py`, the function in Python (componentize-py;
//!   built with `weir plugin build` on first run).
//! - `aggregate_add`: `add` of the bundled `max-temperature-agg` over
//!   batches of the same sizes, feeding each accumulator back in, and of
//!   its Python twin `max-temperature-agg-py` (`python/N`).
//! - `instantiate`: a fresh instance through the linker, on demand and
//!   pooled, against one from the pre-linked component (pooled). The last
//!   is what a worker does after a trap: it includes the guest's
//!   `configure` call and dropping the instance.
//! - `epoch_deadline`: the 200- and 10,000-value `apply` with the wall-time
//!   deadline checks compiled in and without them.
//!
//! Run with `cargo bench -p weir-benches --bench plugin_overhead`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use weir::plugin::{Plugin, PluginEngine, PluginInstance, PluginLimits};
use weir::types::{Column, Rows, Value, Window};
use weir_benches::{WINDOW_MILLIS, engine, events, max_scalar, max_simd, python_guest, temperatures};

/// Window and batch sizes, in values.
const SIZES: [usize; 3] = [1, 200, 10_000];
const KEY: Value = Value::I64(7);
const WINDOW: Window = Window { start: 0, end: WINDOW_MILLIS };

fn load(engine: &PluginEngine, name: &str) -> Plugin {
    engine.load_ref(name).unwrap_or_else(|e| panic!("loading '{name}': {e}"))
}

fn instance(plugin: &Plugin) -> PluginInstance {
    plugin
        .instantiate(vec![], PluginLimits::default())
        .unwrap_or_else(|e| panic!("instantiating '{}': {e}", plugin.name()))
}

/// Checks the guest and the SIMD fold against the scalar max before
/// timing them, so that a fast wrong answer cannot pass for a result.
fn check_apply(instance: &mut PluginInstance, temps: &[f64]) {
    let max = max_scalar(temps);
    assert_eq!(max_simd(temps), max, "the native SIMD max disagrees over {} values", temps.len());
    let rows = instance.apply(&KEY, WINDOW, &events(temps)).expect("apply");
    let expected =
        Rows { len: 1, columns: vec![Column::F64(vec![max]), Column::I64(vec![temps.len() as i64])] };
    assert_eq!(rows, expected, "max-temperature disagrees with the native max over {} values", temps.len());
}

fn window_max(c: &mut Criterion) {
    let engine = engine(true, true).expect("engine");
    let mut wasm = instance(&load(&engine, "max-temperature"));
    let python = python_guest("guest-functions/max-temperature-py/max_temperature.py", "window-function");
    let mut python = instance(&load(&engine, python.to_str().expect("a UTF-8 path")));
    let mut group = c.benchmark_group("window_max");
    for n in SIZES {
        let temps = temperatures(n, n as u64);
        let batch = events(&temps);
        check_apply(&mut wasm, &temps);
        check_apply(&mut python, &temps);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("native_simd", n), &temps, |b, temps| {
            b.iter(|| max_simd(black_box(temps)))
        });
        group.bench_with_input(BenchmarkId::new("native_scalar", n), &temps, |b, temps| {
            b.iter(|| max_scalar(black_box(temps)))
        });
        group.bench_with_input(BenchmarkId::new("wasm", n), &batch, |b, batch| {
            b.iter(|| wasm.apply(&KEY, WINDOW, black_box(batch)).expect("apply"))
        });
        group.bench_with_input(BenchmarkId::new("python", n), &batch, |b, batch| {
            b.iter(|| python.apply(&KEY, WINDOW, black_box(batch)).expect("apply"))
        });
    }
    group.finish();
}

fn aggregate_add(c: &mut Criterion) {
    let engine = engine(true, true).expect("engine");
    let python =
        python_guest("guest-functions/max-temperature-agg-py/max_temperature_agg.py", "aggregate-function");
    let mut functions = [
        ("wasm", instance(&load(&engine, "max-temperature-agg"))),
        ("python", instance(&load(&engine, python.to_str().expect("a UTF-8 path")))),
    ];
    let mut group = c.benchmark_group("aggregate_add");
    for n in SIZES {
        let temps = temperatures(n, n as u64);
        let batch = events(&temps);
        group.throughput(Throughput::Elements(n as u64));
        for (label, agg) in &mut functions {
            let empty = agg.create_accumulator().expect("create-accumulator");
            // One add before timing, so the check below holds even when a
            // filter skips this benchmark.
            let mut acc = agg.add(&KEY, &empty, &batch).expect("add");
            group.bench_with_input(BenchmarkId::new(*label, n), &batch, |b, batch| {
                b.iter(|| {
                    acc = agg.add(&KEY, &acc, black_box(batch)).expect("add");
                })
            });
            let rows = agg.get_result(&KEY, WINDOW, &acc).expect("get-result");
            assert_eq!(
                rows.columns.first(),
                Some(&Column::F64(vec![max_scalar(&temps)])),
                "{label} aggregate max over {n} values"
            );
        }
    }
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let mut group = c.benchmark_group("instantiate");
    {
        let on_demand = engine(false, true).expect("engine without pooling");
        let plugin = load(&on_demand, "max-temperature");
        group.bench_function("fresh_linker_on_demand", |b| {
            b.iter(|| PluginInstance::instantiate_unlinked(&plugin).expect("instantiate"))
        });
    }
    let pooled = engine(true, true).expect("engine");
    let plugin = load(&pooled, "max-temperature");
    group.bench_function("fresh_linker_pooling", |b| {
        b.iter(|| PluginInstance::instantiate_unlinked(&plugin).expect("instantiate"))
    });
    group.bench_function("instance_pre_pooling", |b| b.iter(|| instance(&plugin)));
    group.finish();
}

fn epoch_deadline(c: &mut Criterion) {
    let mut group = c.benchmark_group("epoch_deadline");
    for (label, epochs) in [("on", true), ("off", false)] {
        let engine = engine(true, epochs).expect("engine");
        let mut wasm = instance(&load(&engine, "max-temperature"));
        for n in [200, 10_000] {
            let temps = temperatures(n, n as u64);
            let batch = events(&temps);
            check_apply(&mut wasm, &temps);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(label, n), &batch, |b, batch| {
                b.iter(|| wasm.apply(&KEY, WINDOW, black_box(batch)).expect("apply"))
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = plugin_overhead;
    config = config();
    targets = window_max, aggregate_add, instantiate, epoch_deadline
}
criterion_main!(plugin_overhead);
