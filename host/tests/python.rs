//! Python functions: the Python guests in `guest-functions/` built with the
//! real `weir plugin build` (componentize-py, in a venv weir makes when it
//! is missing), run with `weir plugin test` and `weir run`, and compared
//! record for record with the Rust guests on the same input. Then the
//! hostile Python guest, contained like the Rust ones.
//!
//! Builds are slow (componentize-py, then compiling an 18 MB component), so
//! each component is built once and kept under the tests' temp folder,
//! keyed by a hash of its sources. A machine where componentize-py cannot
//! be set up fails these tests, naming what is missing.

mod support;
use support::{readings_in, root, stdout_records, weir, weir_command};

use serde_json::Value;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use weir::plugin::{EngineConfig, Failure, PluginEngine, PluginError, PluginLimits};
use weir::types::{Column, Events, Param, Value as WasmValue, Window};

const SAMPLE: &str = "examples/readings.jsonl";

/// The component built from `module` (relative to the repository), for
/// `world`: built with the CLI the first time, reused after.
fn python_guest(module: &str, world: &str) -> PathBuf {
    // One build at a time: they share the venv and two cores.
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in [module, "guest-functions/python/weir_guest/__init__.py", "wit/weir.wit"] {
        std::fs::read(root().join(file)).unwrap().hash(&mut hasher);
    }
    world.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-guests");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = Path::new(module).file_stem().unwrap().to_string_lossy().into_owned();
    let wasm = dir.join(format!("{stem}-{:016x}.wasm", hasher.finish()));
    if wasm.is_file() {
        return wasm;
    }
    let partial = dir.join(format!("{stem}.partial.wasm"));
    let started = Instant::now();
    let out = weir(&["plugin", "build", module, "--world", world, "-o", partial.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "weir plugin build {module} failed (Python 3 and componentize-py are needed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("built {module} in {:.1?}", started.elapsed());
    std::fs::rename(&partial, &wasm).unwrap();
    wasm
}

fn max_temperature_py() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        python_guest("guest-functions/max-temperature-py/max_temperature.py", "window-function")
    })
    .clone()
}

fn kelvin_to_celsius_py() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        python_guest("guest-functions/kelvin-to-celsius-py/kelvin_to_celsius.py", "map-function")
    })
    .clone()
}

fn hostile_py() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| python_guest("guest-functions/hostile-py/hostile.py", "window-function")).clone()
}

/// The engine the CLI uses, with the tests' component cache, so a
/// component the CLI compiled loads from it.
fn engine() -> PluginEngine {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    PluginEngine::new(EngineConfig { cache_dir: Some(cache), ..EngineConfig::default() }).unwrap()
}

/// The output records, sorted: a multiset to compare whole.
fn records(out: &Output) -> Vec<String> {
    let mut records: Vec<String> = stdout_records(out).iter().map(Value::to_string).collect();
    records.sort();
    records
}

fn plugin_test(plugin: &str, window: &str) -> Output {
    weir(&[
        "plugin",
        "test",
        plugin,
        "--input",
        SAMPLE,
        "--key",
        "device_id",
        "--fields",
        "temperature:f64",
        "--timestamp",
        "execution_time",
        "--window",
        window,
    ])
}

/// (device, event time, temperature) of every sample reading.
fn readings() -> Vec<(i64, i64, f64)> {
    readings_in(&root().join(SAMPLE))
}

#[test]
fn the_python_window_function_gives_the_rust_guests_records_for_every_window_type() {
    let py = max_temperature_py();
    for window in ["tumbling:1s", "sliding:2s/500ms", "session:60ms"] {
        let python = records(&plugin_test(py.to_str().unwrap(), window));
        let rust = records(&plugin_test("max-temperature", window));
        assert!(!rust.is_empty(), "{window}: no windows");
        assert_eq!(python.len(), rust.len(), "{window}: record counts differ");
        assert!(python == rust, "{window}: the Python guest's records differ from the Rust guest's");
    }
    // And against a count made here: tumbling windows of 1 s.
    let mut expected: BTreeMap<(i64, i64), (f64, i64)> = BTreeMap::new();
    for (device, ts, t) in readings() {
        let e = expected.entry((device, ts / 1000 * 1000)).or_insert((f64::MIN, 0));
        e.0 = e.0.max(t);
        e.1 += 1;
    }
    let out = plugin_test(py.to_str().unwrap(), "tumbling:1s");
    let actual: BTreeMap<(i64, i64), (f64, i64)> = records(&out)
        .iter()
        .map(|r| {
            let r: Value = serde_json::from_str(r).unwrap();
            let key = (r["device_id"].as_i64().unwrap(), r["window_start"].as_i64().unwrap());
            (key, (r["max_temperature"].as_f64().unwrap(), r["count"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(actual, expected);
}

fn max_temperature_agg_py() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        python_guest("guest-functions/max-temperature-agg-py/max_temperature_agg.py", "aggregate-function")
    })
    .clone()
}

#[test]
fn the_python_aggregate_gives_the_rust_aggregates_records_for_every_window_type() {
    let py = max_temperature_agg_py();
    for window in ["tumbling:1s", "sliding:2s/500ms", "session:60ms"] {
        let python = records(&plugin_test(py.to_str().unwrap(), window));
        let rust = records(&plugin_test("max-temperature-agg", window));
        assert!(!rust.is_empty(), "{window}: no windows");
        assert_eq!(python.len(), rust.len(), "{window}: record counts differ");
        assert!(python == rust, "{window}: the Python aggregate's records differ from the Rust guest's");
    }
}

#[test]
fn the_python_map_function_gives_the_rust_guests_records() {
    let py = kelvin_to_celsius_py();
    let args =
        |plugin: &str| weir(&["plugin", "test", plugin, "--input", SAMPLE, "--fields", "temperature:f64"]);
    let python = records(&args(py.to_str().unwrap()));
    let rust = records(&args("kelvin-to-celsius"));
    assert_eq!(python.len(), readings().len());
    assert!(python == rust, "the Python map's records differ from the Rust guest's");
}

/// A job file over the sample readings with `plugin` and `window`, writing
/// to `out.jsonl` in `dir`.
fn job(dir: &Path, name: &str, plugin: &Path, window: &str, keyed: bool) -> PathBuf {
    let input = root().join(SAMPLE);
    let format = if keyed {
        "key = \"device_id\"\ntimestamp = \"execution_time\"\nfields = { temperature = \"f64\" }\n"
    } else {
        "fields = { temperature = \"f64\" }\n"
    };
    let window = if window.is_empty() { String::new() } else { format!("[window]\n{window}\n") };
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"{}\"\n[format]\n{format}{window}\
         [function]\nplugin = \"{}\"\n[sink]\ntype = \"file\"\npath = \"{name}-out.jsonl\"\n\
         dead_letter = \"{name}-dead.jsonl\"\n",
        input.display(),
        plugin.display()
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs a job to the end of its file and returns its output, sorted.
fn run_job(dir: &Path, job: &Path, name: &str) -> Vec<String> {
    let out = weir_command(dir).args(["run", job.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "weir run {}: {}", job.display(), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.join(format!("{name}-out.jsonl"))).unwrap();
    let mut records: Vec<String> =
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().to_string()).collect();
    records.sort();
    records
}

#[test]
fn weir_run_jobs_with_python_functions_match_the_same_jobs_with_rust_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let windows = [
        ("tumbling", "type = \"tumbling\"\nsize = \"1s\""),
        ("sliding", "type = \"sliding\"\nsize = \"2s\"\nslide = \"500ms\""),
        ("session", "type = \"session\"\ngap = \"60ms\""),
    ];
    let py = max_temperature_py();
    for (kind, window) in windows {
        let python = run_job(d, &job(d, &format!("py-{kind}"), &py, window, true), &format!("py-{kind}"));
        let rust_job = job(d, &format!("rs-{kind}"), Path::new("max-temperature"), window, true);
        let rust = run_job(d, &rust_job, &format!("rs-{kind}"));
        assert!(!rust.is_empty(), "{kind}: no output");
        assert!(python == rust, "{kind}: weir run gave different records with the Python guest");
    }
    // The aggregate, on the window type that merges panes.
    let sliding = windows[1].1;
    let python = run_job(d, &job(d, "py-agg", &max_temperature_agg_py(), sliding, true), "py-agg");
    let rust_job = job(d, "rs-agg", Path::new("max-temperature-agg"), sliding, true);
    let rust = run_job(d, &rust_job, "rs-agg");
    assert!(!rust.is_empty());
    assert!(python == rust, "weir run gave different records with the Python aggregate");
    let python = run_job(d, &job(d, "py-map", &kelvin_to_celsius_py(), "", false), "py-map");
    let rust = run_job(d, &job(d, "rs-map", Path::new("kelvin-to-celsius"), "", false), "rs-map");
    assert_eq!(python.len(), readings().len());
    assert!(python == rust, "weir run gave different records with the Python map");
}

fn hostile(mode: &str, limits: PluginLimits) -> Result<weir::plugin::PluginInstance, PluginError> {
    let plugin = engine().load_file(&hostile_py()).unwrap();
    let params = vec![Param { name: "mode".into(), value: WasmValue::String(mode.into()) }];
    plugin.instantiate(params, limits)
}

fn events(n: usize) -> Events {
    Events {
        timestamps: (0..n as i64).map(|i| 1_000 + i).collect(),
        columns: vec![Column::F64((0..n).map(|i| 300.0 + i as f64).collect())],
    }
}

const KEY: WasmValue = WasmValue::I64(7);
const WINDOW: Window = Window { start: 1_000, end: 2_000 };

fn expect_err<T>(result: Result<T, PluginError>) -> PluginError {
    match result {
        Ok(_) => panic!("the call succeeded but must fail"),
        Err(e) => e,
    }
}

#[test]
fn a_raising_python_guest_traps_with_its_exception_and_is_replaced() {
    let mut raising = hostile("raise", PluginLimits::default()).unwrap();
    for _ in 0..2 {
        let err = expect_err(raising.apply(&KEY, WINDOW, &events(3)));
        let Failure::Trap(message) = &err.failure else { panic!("not a trap: {err}") };
        assert!(
            message.contains("Python exception: KeyError: 'missing-sensor' (at hostile.py, line"),
            "{err}"
        );
        assert!(err.to_string().contains("in apply (key 7, window [1000, 2000))"), "{err}");
    }
    // The second call ran on a fresh instance.
    assert_eq!(raising.stats().reinstantiations, 1);
    // A returned error is not a trap, and the instance stays.
    let mut refusing = hostile("refuse", PluginLimits::default()).unwrap();
    let err = expect_err(refusing.apply(&KEY, WINDOW, &events(3)));
    assert_eq!(err.failure, Failure::Returned("refusing window 1000 of key 7".into()));
    // A well-behaved instance of the same component is untouched.
    let mut fine = hostile("count", PluginLimits::default()).unwrap();
    let rows = fine.apply(&KEY, WINDOW, &events(5)).unwrap();
    assert_eq!(rows.columns, vec![Column::I64(vec![5])]);
}

#[test]
fn a_spinning_python_guest_is_stopped_at_its_deadline() {
    let limits = PluginLimits { deadline: Duration::from_millis(100), ..PluginLimits::default() };
    let mut spin = hostile("spin", limits).unwrap();
    let started = Instant::now();
    let err = expect_err(spin.apply(&KEY, WINDOW, &events(3)));
    assert_eq!(err.failure, Failure::Deadline(Duration::from_millis(100)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_hoarding_python_guest_is_stopped_at_its_memory_limit() {
    let limits = PluginLimits { memory: 48 << 20, ..PluginLimits::default() };
    let mut hoard = hostile("allocate", limits).unwrap();
    let err = expect_err(hoard.apply(&KEY, WINDOW, &events(3)));
    let Failure::Memory { limit, requested } = err.failure else { panic!("not the memory limit: {err}") };
    assert_eq!(limit, 48 << 20);
    assert!(requested > limit, "{err}");
}

#[test]
fn a_memory_limit_below_cpythons_image_is_refused_saying_so() {
    let limits = PluginLimits { memory: 4 << 20, ..PluginLimits::default() };
    let err = expect_err(hostile("count", limits));
    let Failure::Instantiate(message) = &err.failure else { panic!("not at instantiation: {err}") };
    assert!(message.contains("over its memory limit of 4194304 bytes"), "{err}");
    assert!(message.contains("raise [function.limits] memory"), "{err}");
}

#[test]
fn the_cli_reports_a_python_exception_in_the_dead_letter_reason() {
    let out = weir(&[
        "plugin",
        "test",
        hostile_py().to_str().unwrap(),
        "--input",
        SAMPLE,
        "--key",
        "device_id",
        "--fields",
        "temperature:f64",
        "--timestamp",
        "execution_time",
        "--window",
        "tumbling:10s",
        "--param",
        "mode=raise",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rejected: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rejected: ")).collect();
    assert!(!rejected.is_empty(), "{stderr}");
    for line in rejected {
        assert!(line.contains("Python exception: KeyError: 'missing-sensor'"), "{line}");
    }
}

#[test]
fn many_python_instances_run_at_once() {
    let plugin = engine().load_file(&max_temperature_py()).unwrap();
    let mut instances: Vec<_> =
        (0..16).map(|_| plugin.instantiate(vec![], PluginLimits::default()).unwrap()).collect();
    for (i, instance) in instances.iter_mut().enumerate() {
        let rows = instance.apply(&KEY, WINDOW, &events(i + 1)).unwrap();
        assert_eq!(rows.columns, vec![Column::F64(vec![300.0 + i as f64]), Column::I64(vec![i as i64 + 1])]);
    }
}

#[test]
fn plugin_build_of_a_python_module_outside_the_repository_leaves_its_folder_clean() {
    // A module in a folder of its own, built from there: the build needs
    // nothing from the repository, and leaves no __pycache__ behind.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let module = src.join("kelvin_to_celsius.py");
    std::fs::copy(root().join("guest-functions/kelvin-to-celsius-py/kelvin_to_celsius.py"), &module).unwrap();
    let out = weir_command(dir.path())
        .args(["plugin", "build", "src/kelvin_to_celsius.py", "--world", "map-function", "-o", "k.wasm"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin   kelvin-to-celsius-py"));
    let names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kelvin_to_celsius.py"]);
    assert!(std::fs::read(dir.path().join("k.wasm")).unwrap().starts_with(b"\0asm"));
}

#[test]
fn plugin_build_of_a_python_module_checks_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let module = "guest-functions/max-temperature-py/max_temperature.py";
    let out = weir(&["plugin", "build", module, "-o", dir.path().join("x.wasm").to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs --world window-function, map-function or aggregate-function"), "{stderr}");
    let out = weir(&["plugin", "build", module, "--world", "window-function"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs -o <file.wasm>"));
    assert!(!root().join("x.wasm").exists());
}

#[test]
fn every_slot_of_the_instance_pool_can_hold_a_python_instance() {
    // CPython is 14 core instances per component: the pool budgets for it
    // in every slot, so an engine of 4 slots runs 4 Python instances.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let small = PluginEngine::new(EngineConfig { cache_dir: Some(cache), max_instances: 4 }).unwrap();
    let plugin = small.load_file(&max_temperature_py()).unwrap();
    let mut live: Vec<_> =
        (0..4).map(|_| plugin.instantiate(vec![], PluginLimits::default()).unwrap()).collect();
    for instance in &mut live {
        let rows = instance.apply(&KEY, WINDOW, &events(3)).unwrap();
        assert_eq!(rows.columns, vec![Column::F64(vec![302.0]), Column::I64(vec![3])]);
    }
    // A fifth is refused, and the others go on.
    let err = expect_err(plugin.instantiate(vec![], PluginLimits::default()));
    assert!(err.to_string().contains("maximum concurrent limit of 4"), "{err}");
    drop(live.pop());
    let mut again = plugin.instantiate(vec![], PluginLimits::default()).unwrap();
    assert_eq!(again.apply(&KEY, WINDOW, &events(1)).unwrap().len, 1);
}

#[test]
fn without_python_the_build_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let module = root().join("guest-functions/max-temperature-py/max_temperature.py");
    let build = |cmd: &mut std::process::Command| {
        cmd.args(["plugin", "build", module.to_str().unwrap(), "--world", "window-function", "-o"])
            .arg(dir.path().join("x.wasm"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // No python3 on PATH, and no venv yet in this cache folder.
    let out = build(
        weir_command(dir.path())
            .env("PATH", dir.path())
            .env("XDG_CACHE_HOME", dir.path())
            .env_remove("WEIR_COMPONENTIZE_PY"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("python3 is not installed"), "{stderr}");
    assert!(stderr.contains("apt-get install python3 python3-venv"), "{stderr}");
    assert!(!dir.path().join("weir/componentize-py-0.25.1").exists(), "a half-made venv was left");
    // A componentize-py named by the environment that is not there.
    let missing = dir.path().join("no-such-componentize-py");
    let out = build(weir_command(dir.path()).env("WEIR_COMPONENTIZE_PY", &missing));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run componentize-py"));
    assert!(!dir.path().join("x.wasm").exists());
}
