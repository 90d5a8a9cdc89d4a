//! Tests of the plugin runtime against the real guest components built by
//! `build.rs`: the bundled functions' results, checked against values
//! computed here, and the hostile guests, each contained.

use super::builtin::guests_dir;
use super::*;
use crate::testing::engine;
use crate::types::{Accumulators, Column, Events, FunctionKind, Param, RowRange, Rows, Value, Window};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn guest(file: &str) -> Plugin {
    engine().load_file(&guests_dir().join(file)).unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

fn instance(file: &str, limits: PluginLimits) -> PluginInstance {
    guest(file).instantiate(vec![], limits).expect("instantiate")
}

/// Deterministic temperatures in [333, 383), as the readings generator makes them.
fn temperatures(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            333.0 + 50.0 * ((x >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn events(temps: &[f64]) -> Events {
    Events {
        timestamps: (0..temps.len() as i64).map(|i| 1_000 + 5 * i).collect(),
        columns: vec![Column::F64(temps.to_vec())],
    }
}

const KEY: Value = Value::I64(7);
const WINDOW: Window = Window { start: 1_000, end: 2_000 };

/// The expected max and count, computed the plain way.
fn expected_max(temps: &[f64]) -> Rows {
    let mut max = f64::MIN;
    for &t in temps {
        if t > max {
            max = t;
        }
    }
    Rows { len: 1, columns: vec![Column::F64(vec![max]), Column::I64(vec![temps.len() as i64])] }
}

/// The error of a call that must fail, without printing a huge success.
fn expect_err<T>(result: Result<T, PluginError>) -> PluginError {
    match result {
        Ok(_) => panic!("the call succeeded but must fail"),
        Err(e) => e,
    }
}

/// Collects what a guest writes to stdout and stderr.
fn capture(instance: &mut PluginInstance) -> Arc<Mutex<Vec<CallLog>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    instance.set_log_sink(Box::new(move |_, log| sink.lock().unwrap().push(log.clone())));
    logs
}

#[test]
fn max_temperature_matches_an_independent_max() {
    let mut max = instance("max_temperature.wasm", PluginLimits::default());
    for (n, seed) in [(1, 1), (200, 2), (10_000, 3)] {
        let temps = temperatures(n, seed);
        let rows = max.apply(&KEY, WINDOW, &events(&temps)).unwrap();
        assert_eq!(rows, expected_max(&temps), "window of {n}");
    }
    assert_eq!(max.plugin().kind(), FunctionKind::Window);
}

#[test]
fn max_temperature_agg_gives_the_same_result_incrementally() {
    let mut agg = instance("max_temperature_agg.wasm", PluginLimits::default());
    let temps = temperatures(1_000, 4);
    let (first, second) = temps.split_at(300);
    let empty = agg.create_accumulator().unwrap();
    assert_eq!(agg.get_result(&KEY, WINDOW, &empty).unwrap().len, 0, "no rows for an empty window");

    // Two panes, built in batches, then merged: as a sliding window does.
    let mut a = agg.create_accumulator().unwrap();
    for batch in first.chunks(128) {
        a = agg.add(&KEY, &a, &events(batch)).unwrap();
    }
    let b = agg.add(&KEY, &empty, &events(second)).unwrap();
    let merged = agg.merge(&KEY, &a, &b).unwrap();
    assert_eq!(agg.get_result(&KEY, WINDOW, &merged).unwrap(), expected_max(&temps));
    assert_eq!(agg.get_result(&KEY, WINDOW, &a).unwrap(), expected_max(first));

    let err = agg.add(&KEY, b"short", &events(first)).map(|_| ()).unwrap_err();
    assert!(matches!(err.failure, Failure::Returned(ref m) if m.contains("16 bytes")), "{err}");
}

#[test]
fn kelvin_to_celsius_maps_every_record() {
    let mut k2c = instance("kelvin_to_celsius.wasm", PluginLimits::default());
    let kelvin = [0.0, 273.15, 300.0, 373.15, 351.2];
    let mapped = k2c.map(&events(&kelvin)).unwrap();
    assert_eq!(mapped.rows, vec![0, 1, 2, 3, 4]);
    let Column::F64(celsius) = &mapped.columns[0] else { panic!("not f64: {:?}", mapped.columns) };
    let expected = [-273.15, 0.0, 26.85, 100.0, 78.05];
    for (got, want) in celsius.iter().zip(expected) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
}

#[test]
fn percentile_uses_nearest_rank_and_its_parameter() {
    let plugin = engine().load_ref("percentile").unwrap();
    assert_eq!(plugin.descriptor().params[0].name, "p");
    let mut p50 = plugin
        .instantiate(vec![Param { name: "p".into(), value: Value::F64(0.5) }], PluginLimits::default())
        .unwrap();
    let temps = temperatures(101, 5);
    let mut sorted = temps.clone();
    sorted.sort_by(f64::total_cmp);
    let rows = p50.apply(&KEY, WINDOW, &events(&temps)).unwrap();
    // Nearest rank of p = 0.5 over 101 values is the 51st smallest.
    assert_eq!(rows.columns[0], Column::F64(vec![sorted[50]]));

    let bad =
        plugin.instantiate(vec![Param { name: "p".into(), value: Value::F64(2.0) }], PluginLimits::default());
    let err = bad.err().expect("p = 2 must be refused");
    assert!(matches!(err.failure, Failure::Configure(ref m) if m.contains("p must be in (0, 1]")), "{err}");
}

#[test]
fn every_builtin_loads_with_its_world() {
    let expected = [
        ("max-temperature", FunctionKind::Window),
        ("max-temperature-agg", FunctionKind::Aggregate),
        ("kelvin-to-celsius", FunctionKind::Map),
        ("percentile", FunctionKind::Window),
    ];
    for (name, kind) in expected {
        let plugin = engine().load_ref(name).unwrap();
        assert_eq!((plugin.name(), plugin.kind()), (name, kind));
    }
    let err = engine().load_ref("min-temperature").err().expect("unknown built-in");
    assert!(err.to_string().contains("max-temperature, max-temperature-agg"), "{err}");
}

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline_and_the_host_recovers() {
    let limits = PluginLimits { deadline: Duration::from_millis(100), ..PluginLimits::default() };
    let mut spin = instance("spin.wasm", limits);
    let started = Instant::now();
    let err = spin.apply(&KEY, WINDOW, &events(&[1.0, 2.0])).map(|_| ()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.failure, Failure::Deadline(Duration::from_millis(100)));
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "stopped after {took:?}");
    assert_eq!(
        err.to_string(),
        "plugin 'spin' failed in apply (key 7, window [1000, 2000)): ran past its wall-time deadline of 100ms and was stopped"
    );
    // The same instance serves the next call from a fresh wasm instance.
    let rows = spin.apply(&KEY, WINDOW, &events(&[1.0])).unwrap();
    assert_eq!(rows.columns, vec![Column::F64(vec![1.0])]);
    assert_eq!(spin.stats().reinstantiations, 1);
}

#[test]
fn a_memory_bomb_is_refused_at_its_cap_and_the_host_recovers() {
    let limits = PluginLimits { memory: 16 << 20, ..PluginLimits::default() };
    let mut bomb = instance("memory_bomb.wasm", limits);
    let err = bomb.apply(&KEY, WINDOW, &events(&[1.0, 2.0])).map(|_| ()).unwrap_err();
    match err.failure {
        Failure::Memory { limit, requested } => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit, "asked for {requested}");
        }
        ref other => panic!("expected a memory failure, got {other:?} ({err})"),
    }
    assert!(err.to_string().contains("exceeded its memory limit of 16777216 bytes"), "{err}");
    assert_eq!(bomb.apply(&KEY, WINDOW, &events(&[1.0])).unwrap().len, 1);
}

#[test]
fn a_trap_is_reported_with_its_context_and_the_host_recovers() {
    let mut trap = instance("trap.wasm", PluginLimits::default());
    let logs = capture(&mut trap);
    let key = Value::String("sensor-9".into());
    let err =
        trap.apply(&key, Window { start: 0, end: 1_000 }, &events(&[1.0, 2.0])).map(|_| ()).unwrap_err();
    assert_eq!(err.plugin, "trap");
    assert_eq!(
        err.call,
        CallSite {
            function: "apply",
            key: Some("\"sensor-9\"".into()),
            window: Some(Window { start: 0, end: 1_000 })
        }
    );
    let Failure::Trap(message) = &err.failure else { panic!("expected a trap, got {err}") };
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("panicked on purpose"), "the guest's panic message is kept: {message}");
    let text: String = logs.lock().unwrap().iter().map(|l| l.text.clone()).collect();
    assert!(text.contains("hostile trap guest: about to panic"), "stderr reaches the log: {text}");
    assert_eq!(trap.apply(&key, WINDOW, &events(&[1.0])).unwrap().len, 1);
}

#[test]
fn huge_output_and_log_floods_are_capped() {
    let limits = PluginLimits { log: 4 << 10, output: 1 << 20, ..PluginLimits::default() };
    let mut huge = instance("huge_output.wasm", limits);
    let logs = capture(&mut huge);
    let err = expect_err(huge.apply(&KEY, WINDOW, &events(&[1.0])));
    let expected_size = (1_000_000 + 1) * 8;
    assert_eq!(err.failure, Failure::OutputTooLarge { size: expected_size, limit: 1 << 20 });
    let logs = logs.lock().unwrap();
    let kept: usize = logs.iter().map(|l| l.text.len()).sum();
    let dropped: u64 = logs.iter().map(|l| l.dropped_bytes).sum();
    // The guest printed 4096 lines of 501 bytes; 4 KiB were kept.
    assert_eq!(kept, 4 << 10);
    assert_eq!(dropped as usize, 4096 * 501 - (4 << 10));
    assert_eq!(huge.stats().log_dropped_bytes, dropped);
}

#[test]
fn a_guest_cannot_reach_host_files_environment_or_network() {
    let mut snoop = instance("snoop.wasm", PluginLimits::default());
    let err = snoop.apply(&KEY, WINDOW, &events(&[1.0])).map(|_| ()).unwrap_err();
    let Failure::Returned(report) = &err.failure else { panic!("expected the guest's report, got {err}") };
    for denied in [
        "denied /etc/passwd",
        "denied /etc/hostname",
        "denied Cargo.toml",
        "denied listing /",
        "no environment",
        "denied connect",
    ] {
        assert!(report.contains(denied), "expected '{denied}' in: {report}");
    }
    for leak in ["READ", "LISTED", "ENV", "CONNECTED"] {
        assert!(!report.contains(leak), "the guest got through ({leak}): {report}");
    }
}

#[test]
fn a_guest_with_mistyped_exports_is_rejected_naming_them() {
    let err = engine().load_file(&guests_dir().join("wrong_world.wasm")).err().expect("must be rejected");
    let LoadError::WorldMismatch { world, detail, .. } = &err else {
        panic!("expected a world mismatch, got {err}")
    };
    assert_eq!(*world, FunctionKind::Window);
    assert!(detail.contains("describe"), "names the mistyped export: {err}");
    assert!(err.to_string().contains("does not match the window-function world"), "{err}");
}

#[test]
fn files_that_are_not_components_are_rejected_naming_the_problem() {
    let core_module = b"\0asm\x01\0\0\0";
    let err = engine().load(core_module, "core.wasm").err().expect("core module");
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("core.wasm is a core WebAssembly module, not a component"), "{err}");

    let err = engine().load(b"fn main() {}", "main.rs").err().expect("text file");
    assert_eq!(
        err.to_string(),
        "main.rs is not a WebAssembly file (it does not start with the \\0asm magic bytes)"
    );

    let mut truncated = std::fs::read(guests_dir().join("max_temperature.wasm")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = engine().load(&truncated, "half.wasm").err().expect("truncated component");
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wasm");
    let err = engine().load_file(&missing).err().expect("missing file");
    assert!(err.to_string().starts_with(&format!("cannot read plugin {}", missing.display())), "{err}");
}

#[test]
fn a_mismatched_world_call_is_an_error_not_a_panic() {
    let mut k2c = instance("kelvin_to_celsius.wasm", PluginLimits::default());
    let err = k2c.apply(&KEY, WINDOW, &events(&[1.0])).map(|_| ()).unwrap_err();
    assert!(matches!(err.failure, Failure::Returned(ref m) if m == "not a window-function"), "{err}");
}

#[test]
fn compiled_components_are_cached_on_disk_by_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let cached =
        PluginEngine::new(EngineConfig { max_instances: 4, cache_dir: Some(dir.path().to_path_buf()) })
            .unwrap();
    let first = cached.load_ref("max-temperature").unwrap();
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(first.sha256()) && files[0].ends_with(".cwasm"), "{files:?}");
    // The second load comes from the cache and works the same.
    let second = cached.load_ref("max-temperature").unwrap();
    let temps = temperatures(50, 9);
    let rows = second
        .instantiate(vec![], PluginLimits::default())
        .unwrap()
        .apply(&KEY, WINDOW, &events(&temps))
        .unwrap();
    assert_eq!(rows, expected_max(&temps));
}

#[test]
fn memory_limits_over_the_engine_maximum_are_refused() {
    let limits = PluginLimits { memory: MAX_PLUGIN_MEMORY + 1, ..PluginLimits::default() };
    let err = guest("max_temperature.wasm").instantiate(vec![], limits).err().expect("refused");
    assert!(matches!(err.failure, Failure::Instantiate(ref m) if m.contains("over weir's maximum")), "{err}");
}

#[test]
fn batched_calls_match_one_call_per_window() {
    let temps = [temperatures(7, 21), temperatures(200, 22), temperatures(1, 23)];
    let mut all = vec![];
    let mut ends = vec![];
    for t in &temps {
        all.extend_from_slice(t);
        ends.push(all.len() as u32);
    }
    let keys = [Value::I64(1), Value::I64(2), Value::String("x".into())];
    let windows = [WINDOW, Window { start: 2_000, end: 3_000 }, WINDOW];
    let mut max = instance("max_temperature.wasm", PluginLimits::default());
    let many = max.apply_many(&keys, &windows, &ranges(&ends), &events(&all)).unwrap();
    // One row per window, in order, each as `apply` gives it.
    assert_eq!(many.ends, vec![1, 2, 3]);
    for (i, t) in temps.iter().enumerate() {
        let single = max.apply(&keys[i], windows[i], &events(t)).unwrap();
        let row: Vec<Column> = many
            .columns
            .iter()
            .map(|c| match c {
                Column::F64(v) => Column::F64(vec![v[i]]),
                Column::I64(v) => Column::I64(vec![v[i]]),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(row, single.columns);
        assert_eq!(single, expected_max(t));
    }
    // Windows that overlap (a sliding window's) share the batch's rows.
    let overlapping = [RowRange { start: 0, end: 207 }, RowRange { start: 7, end: 208 }];
    let many = max.apply_many(&keys[..2], &windows[..2], &overlapping, &events(&all)).unwrap();
    let (a, b) = (expected_max(&all[..207]), expected_max(&all[7..]));
    assert_eq!(many.columns[0], Column::F64(vec![column_f64(&a), column_f64(&b)]));
    assert_eq!(many.columns[1], Column::I64(vec![207, 201]));
    // A range that does not fit the batch is the function's error.
    let err = expect_err(max.apply_many(&keys[..1], &windows[..1], &ranges(&[999]), &events(&all)));
    assert!(matches!(&err.failure, Failure::Returned(m) if m.contains("does not fit")), "{err}");

    let mut agg = instance("max_temperature_agg.wasm", PluginLimits::default());
    let empty = agg.create_accumulator().unwrap();
    let three_empty =
        Accumulators { bytes: [empty.clone(), empty.clone(), empty].concat(), ends: vec![16, 32, 48] };
    let accs = agg.add_many(&three_empty, &ends, &events(&all)).unwrap();
    assert_eq!(accs.ends, vec![16, 32, 48]);
    // Window 0 merges accumulators 0 and 1; window 1 is accumulator 2.
    let many = agg.get_results(&keys[..2], &windows[..2], &ranges(&[2, 3]), &accs).unwrap();
    let first_two: Vec<f64> = temps[0].iter().chain(&temps[1]).copied().collect();
    let (a, b) = (expected_max(&first_two), expected_max(&temps[2]));
    assert_eq!(many.ends, vec![1, 2]);
    assert_eq!(many.columns[0], Column::F64(vec![column_f64(&a), column_f64(&b)]));
    // Overlapping ranges share accumulators: 0 and 1, then 1 and 2.
    let overlapping = [RowRange { start: 0, end: 2 }, RowRange { start: 1, end: 3 }];
    let many = agg.get_results(&keys[..2], &windows[..2], &overlapping, &accs).unwrap();
    let last_two: Vec<f64> = temps[1].iter().chain(&temps[2]).copied().collect();
    assert_eq!(many.columns[0], Column::F64(vec![column_f64(&a), column_f64(&expected_max(&last_two))]));
}

/// Ranges that cut a batch at `ends`, as the partitioning `ends` of the
/// 0.1.0 contract did.
fn ranges(ends: &[u32]) -> Vec<RowRange> {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts.zip(ends).map(|(start, &end)| RowRange { start, end }).collect()
}

fn column_f64(rows: &Rows) -> f64 {
    match &rows.columns[0] {
        Column::F64(v) => v[0],
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_trap_inside_a_batched_call_is_contained() {
    let mut trap = instance("trap.wasm", PluginLimits::default());
    let err = expect_err(trap.apply_many(
        &[KEY, KEY],
        &[WINDOW, WINDOW],
        &ranges(&[1, 3]),
        &events(&[1.0, 2.0, 3.0]),
    ));
    assert_eq!(err.call.function, "apply-many");
    assert!(matches!(err.failure, Failure::Trap(_)), "{err}");
    // The next batched call works on a fresh instance.
    let ok = trap.apply_many(&[KEY], &[WINDOW], &ranges(&[1]), &events(&[1.0])).unwrap();
    assert_eq!(ok.ends, vec![1]);
}

/// A component built for the 0.1.0 contract loads and gives what the
/// current guests give, overlapping ranges included (the host cuts them
/// into the `ends` it understands); it has state version 0 and no
/// `migrate`.
#[test]
fn a_component_built_for_the_0_1_0_contract_loads_and_gives_the_same_results() {
    let all = temperatures(300, 31);
    let keys = [Value::I64(1), Value::I64(2), Value::I64(3)];
    let windows = [WINDOW, Window { start: 2_000, end: 3_000 }, WINDOW];
    let overlapping = [
        RowRange { start: 0, end: 120 },
        RowRange { start: 60, end: 300 },
        RowRange { start: 100, end: 101 },
    ];
    let (mut old, mut new) = (
        instance("legacy_max_temperature.wasm", PluginLimits::default()),
        instance("max_temperature.wasm", PluginLimits::default()),
    );
    assert_eq!(old.plugin().contract_version(), LEGACY_VERSION);
    assert_eq!(new.plugin().contract_version(), CONTRACT_VERSION);
    assert_eq!(old.plugin().descriptor().state_version, 0);
    let want = new.apply_many(&keys, &windows, &overlapping, &events(&all)).unwrap();
    assert_eq!(old.apply_many(&keys, &windows, &overlapping, &events(&all)).unwrap(), want);
    assert_eq!(old.apply(&KEY, WINDOW, &events(&all)).unwrap(), expected_max(&all));

    let (mut old, mut new) = (
        instance("legacy_max_temperature_agg.wasm", PluginLimits::default()),
        instance("max_temperature_agg.wasm", PluginLimits::default()),
    );
    let empty = new.create_accumulator().unwrap();
    assert_eq!(old.create_accumulator().unwrap(), empty);
    let four = Accumulators { bytes: empty.repeat(4), ends: vec![16, 32, 48, 64] };
    let ends = [50, 100, 200, 300];
    let accs = new.add_many(&four, &ends, &events(&all)).unwrap();
    assert_eq!(old.add_many(&four, &ends, &events(&all)).unwrap(), accs);
    let panes = [RowRange { start: 0, end: 3 }, RowRange { start: 1, end: 4 }, RowRange { start: 3, end: 4 }];
    let want = new.get_results(&keys, &windows, &panes, &accs).unwrap();
    assert_eq!(old.get_results(&keys, &windows, &panes, &accs).unwrap(), want);
    assert_eq!(
        want.columns[0],
        Column::F64(vec![
            column_f64(&expected_max(&all[..200])),
            column_f64(&expected_max(&all[50..])),
            column_f64(&expected_max(&all[200..])),
        ])
    );

    let refused = expect_err(old.migrate(&empty, 0));
    assert!(matches!(&refused.failure, Failure::Returned(m) if m.contains("0.1.0")), "{refused}");
    let refused = expect_err(new.migrate(&empty, 7));
    assert!(matches!(&refused.failure, Failure::Returned(m) if m.contains("state version 7")), "{refused}");
}
