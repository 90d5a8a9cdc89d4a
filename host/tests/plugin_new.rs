//! `weir plugin new` end to end, in both languages: a project made in a
//! folder outside the repository builds with `weir plugin build` as it is,
//! and its function gives, through `weir plugin test` and through its own
//! job file, what a plain computation over its sample input gives. The
//! Python projects are built with the real componentize-py (in the venv
//! weir makes when it is missing), as in `tests/python.rs`.

mod support;
use support::weir_command;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn records(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// One target dir for the three projects' builds: they lock the same
/// dependency versions, so wit-bindgen compiles once.
fn guest_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-new-guests")
}

/// A project made by `weir plugin new` in a fresh temporary folder, built
/// into `<name>.wasm` inside it.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    wasm: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Rust,
    Python,
}

fn new_and_build(name: &str, world: &str, lang: Lang) -> Project {
    match lang {
        Lang::Rust => new_and_build_rust(name, world),
        Lang::Python => new_and_build_python(name, world),
    }
}

fn new_and_build_rust(name: &str, world: &str) -> Project {
    let tmp = tempfile::tempdir().unwrap();
    let out = weir_command(tmp.path()).args(["plugin", "new", name, "--world", world]).output().unwrap();
    let said = ok(&out, "weir plugin new");
    assert!(said.contains(&format!("created {name} ({world}, Rust)")), "{said}");
    let dir = tmp.path().join(name);
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "wit/weir.wit",
        "guest-support/src/lib.rs",
        "README.md",
        "sample.jsonl",
        "job.toml",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // The marker says what the project is.
    let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().parse().unwrap();
    let marker = &manifest["package"]["metadata"]["weir"];
    assert_eq!(marker["world"].as_str(), Some(world));
    assert_eq!(marker["lang"].as_str(), Some("rust"));
    // The vendored contract is the one the host implements.
    let wit = std::fs::read_to_string(dir.join("wit/weir.wit")).unwrap();
    assert_eq!(wit, std::fs::read_to_string(support::root().join("wit/weir.wit")).unwrap());

    let lock_before = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    let wasm = format!("{name}.wasm");
    let out = weir_command(&dir)
        .args(["plugin", "build", ".", "-o", &wasm])
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .output()
        .unwrap();
    let described = ok(&out, "weir plugin build");
    assert!(described.contains(&format!("plugin   {name} 0.1.0")), "{described}");
    assert!(described.contains(&format!("world    {world} (weir:functions@0.2.0)")), "{described}");
    // cargo found the lock complete: it built with the guests' versions.
    assert_eq!(std::fs::read_to_string(dir.join("Cargo.lock")).unwrap(), lock_before);
    assert!(std::fs::read(dir.join(&wasm)).unwrap().starts_with(b"\0asm"));
    Project { _tmp: tmp, dir, wasm }
}

fn new_and_build_python(name: &str, world: &str) -> Project {
    let tmp = tempfile::tempdir().unwrap();
    let out = weir_command(tmp.path())
        .args(["plugin", "new", name, "--world", world, "--lang", "python"])
        .output()
        .unwrap();
    let said = ok(&out, "weir plugin new --lang python");
    assert!(said.contains(&format!("created {name} ({world}, Python)")), "{said}");
    let dir = tmp.path().join(name);
    let module = format!("{}.py", name.replace('-', "_"));
    for file in [
        module.as_str(),
        "pyproject.toml",
        "weir_guest/__init__.py",
        "wit/weir.wit",
        "README.md",
        "sample.jsonl",
        "job.toml",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // The marker says what the project is and which module to build.
    let manifest: toml::Table = std::fs::read_to_string(dir.join("pyproject.toml")).unwrap().parse().unwrap();
    assert_eq!(manifest["project"]["name"].as_str(), Some(name));
    let marker = &manifest["tool"]["weir"];
    assert_eq!(marker["world"].as_str(), Some(world));
    assert_eq!(marker["lang"].as_str(), Some("python"));
    assert_eq!(marker["module"].as_str(), Some(module.as_str()));
    // The vendored contract and helper are the ones this checkout has.
    for (vendored, original) in [
        ("wit/weir.wit", "wit/weir.wit"),
        ("weir_guest/__init__.py", "guest-functions/python/weir_guest/__init__.py"),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(vendored)).unwrap(),
            std::fs::read_to_string(support::root().join(original)).unwrap(),
            "{vendored}"
        );
    }

    // With no -o, the component goes to <folder>/<name>.wasm.
    let wasm = format!("{name}.wasm");
    let out = weir_command(&dir).args(["plugin", "build", "."]).output().unwrap();
    let described = ok(&out, "weir plugin build (Python project)");
    assert!(described.contains(&format!("plugin   {name} 0.1.0")), "{described}");
    assert!(described.contains(&format!("world    {world} (weir:functions@0.2.0)")), "{described}");
    assert!(std::fs::read(dir.join(&wasm)).unwrap().starts_with(b"\0asm"));
    assert!(!dir.join("__pycache__").exists(), "the build left __pycache__ in the project");
    Project { _tmp: tmp, dir, wasm }
}

impl Project {
    /// `weir plugin test` of the component on the sample input: its stdout.
    fn plugin_test(&self, flags: &[&str]) -> String {
        let out = weir_command(&self.dir)
            .args(["plugin", "test", &self.wasm, "--input", "sample.jsonl", "--fields", "temperature:f64"])
            .args(flags)
            .output()
            .unwrap();
        ok(&out, "weir plugin test")
    }

    /// `weir run` of the project's job file: the output file it writes.
    fn run_job(&self) -> String {
        let out = weir_command(&self.dir).args(["run", "job.toml", "--until-end"]).output().unwrap();
        ok(&out, "weir run");
        assert_eq!(std::fs::read_to_string(self.dir.join("dead-letters.jsonl")).unwrap_or_default(), "");
        std::fs::read_to_string(self.dir.join("output.jsonl")).unwrap()
    }

    /// (device, event time, temperature) of every sample record.
    fn sample(&self) -> Vec<(i64, i64, f64)> {
        let text = std::fs::read_to_string(self.dir.join("sample.jsonl")).unwrap();
        records(&text)
            .iter()
            .map(|r| {
                (
                    r["device_id"].as_i64().unwrap(),
                    r["execution_time"].as_i64().unwrap(),
                    r["temperature"].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

/// (device, window start, window end) → (max, count).
type Windows = BTreeMap<(i64, i64, i64), (f64, i64)>;

/// The windows in output records, checking there is one record per window.
fn windows(text: &str) -> Windows {
    let records = records(text);
    let windows: Windows = records
        .iter()
        .map(|r| {
            let key = (
                r["device_id"].as_i64().unwrap(),
                r["window_start"].as_i64().unwrap(),
                r["window_end"].as_i64().unwrap(),
            );
            (key, (r["max_temperature"].as_f64().unwrap(), r["count"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(windows.len(), records.len(), "a window came out twice: {text}");
    windows
}

/// The max and count of each window, the plain way: `starts` gives the
/// starts of the windows an event time falls in.
fn expected_windows(sample: &[(i64, i64, f64)], size: i64, starts: impl Fn(i64) -> Vec<i64>) -> Windows {
    let mut expected = Windows::new();
    for &(device, ts, t) in sample {
        for start in starts(ts) {
            let e = expected.entry((device, start, start + size)).or_insert((f64::MIN, 0));
            e.0 = e.0.max(t);
            e.1 += 1;
        }
    }
    expected
}

fn window_function_gives_each_windows_max_and_count(lang: Lang) {
    let project = new_and_build("max-per-second", "window-function", lang);
    let tested = project.plugin_test(&[
        "--key",
        "device_id",
        "--timestamp",
        "execution_time",
        "--window",
        "tumbling:1s",
    ]);
    let expected = expected_windows(&project.sample(), 1000, |ts| vec![ts / 1000 * 1000]);
    assert!(expected.len() > 5, "the sample should span several windows");
    assert_eq!(windows(&tested), expected);
    // The job file runs the same windows, with byte-identical output.
    assert_eq!(project.run_job(), tested);
}

fn aggregate_function_gives_each_sliding_windows_max_and_count(lang: Lang) {
    let project = new_and_build("sliding-max", "aggregate-function", lang);
    let tested = project.plugin_test(&[
        "--key",
        "device_id",
        "--timestamp",
        "execution_time",
        "--window",
        "sliding:2s/1s",
    ]);
    // Two-second windows starting every second: each event is in the one
    // starting at its second and the one starting a second before.
    let expected = expected_windows(&project.sample(), 2000, |ts| {
        let second = ts / 1000 * 1000;
        vec![second - 1000, second]
    });
    assert_eq!(windows(&tested), expected);
    assert_eq!(project.run_job(), tested);
}

fn map_function_converts_every_record_to_celsius(lang: Lang) {
    let project = new_and_build("to-celsius", "map-function", lang);
    let tested = project.plugin_test(&[]);
    let out = records(&tested);
    let sample = project.sample();
    assert_eq!(out.len(), sample.len());
    for (r, (device, ts, kelvin)) in out.iter().zip(sample) {
        assert_eq!(r["device_id"].as_i64(), Some(device));
        assert_eq!(r["execution_time"].as_i64(), Some(ts));
        assert_eq!(r["temperature"].as_f64(), Some(kelvin - 273.15));
    }
    assert_eq!(project.run_job(), tested);
}

#[test]
fn a_new_rust_window_function_builds_and_gives_each_windows_max_and_count() {
    window_function_gives_each_windows_max_and_count(Lang::Rust);
}

#[test]
fn a_new_python_window_function_builds_and_gives_each_windows_max_and_count() {
    window_function_gives_each_windows_max_and_count(Lang::Python);
}

#[test]
fn a_new_rust_aggregate_function_builds_and_gives_each_sliding_windows_max_and_count() {
    aggregate_function_gives_each_sliding_windows_max_and_count(Lang::Rust);
}

#[test]
fn a_new_python_aggregate_function_builds_and_gives_each_sliding_windows_max_and_count() {
    aggregate_function_gives_each_sliding_windows_max_and_count(Lang::Python);
}

#[test]
fn a_new_rust_map_function_builds_and_converts_every_record_to_celsius() {
    map_function_converts_every_record_to_celsius(Lang::Rust);
}

#[test]
fn a_new_python_map_function_builds_and_converts_every_record_to_celsius() {
    map_function_converts_every_record_to_celsius(Lang::Python);
}

#[test]
fn a_folder_that_is_not_empty_a_bad_world_a_bad_language_and_a_bad_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], reason: &str| {
        let out = weir_command(tmp.path()).args(["plugin", "new"]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(reason), "{args:?}: expected '{reason}' in: {stderr}");
    };

    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "mine").unwrap();
    refused(&["full", "--world", "map-function"], "full is not empty");
    // Nothing was written into it.
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);

    std::fs::write(tmp.path().join("plain"), "a file").unwrap();
    refused(&["plain", "--world", "map-function"], "plain is there and is not a folder");

    refused(&["fresh", "--world", "reduce-function"], "invalid value 'reduce-function' for '--world");
    refused(&["fresh", "--world", "reduce-function"], "window-function, aggregate-function, map-function");
    refused(&["fresh", "--world", "map-function", "--lang", "go"], "unknown language 'go'");
    refused(&["fresh", "--world", "map-function", "--lang", "go"], "--lang rust or --lang python");
    refused(
        &["1st", "--world", "map-function"],
        "'1st' cannot be a crate name (it must start with a letter)",
    );
    refused(&["fn", "--world", "map-function"], "'fn' cannot be a crate name (it is a Rust keyword)");
    refused(&["my.fn", "--world", "map-function"], "only ASCII letters, digits, - and _ are allowed");
    // Python names: the module is the folder's name with _ for -.
    let python = |dir: &str, reason: &str| {
        refused(&[dir, "--world", "window-function", "--lang", "python"], reason);
    };
    python("lambda", "'lambda' cannot name a Python function's module (it is a Python keyword)");
    python("weir-guest", "(the build or the weir_guest helper imports a module of that name)");
    python("json", "(the build or the weir_guest helper imports a module of that name)");
    python("2fast", "(it must start with a letter)");
    for dir in ["fresh", "1st", "fn", "my.fn", "lambda", "weir-guest", "json", "2fast"] {
        assert!(!tmp.path().join(dir).exists(), "{dir} was created");
    }

    // An empty folder is fine, and `.` takes its name.
    let empty = tmp.path().join("empty-one");
    std::fs::create_dir(&empty).unwrap();
    let out = weir_command(&empty).args(["plugin", "new", ".", "--world", "map-function"]).output().unwrap();
    ok(&out, "weir plugin new .");
    let manifest = std::fs::read_to_string(empty.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"empty-one\""), "{manifest}");
}

#[test]
fn a_python_project_that_does_not_say_what_to_build_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let build_fails = |pyproject: &str, reason: &str| {
        let dir = tmp.path().join("project");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("pyproject.toml"), pyproject).unwrap();
        std::fs::write(dir.join("f.py"), "").unwrap();
        let out = weir_command(tmp.path()).args(["plugin", "build", "project"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{pyproject:?} was built");
        assert!(stderr.contains(reason), "{pyproject:?}: expected '{reason}' in: {stderr}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "the failed build wrote into the project");
    };
    build_fails("[project]\nname = \"f\"\n", "has no [tool.weir] table");
    build_fails("[tool.weir]\nmodule = \"f.py\"\n", "[tool.weir] needs world = \"…\"");
    build_fails(
        "[tool.weir]\nworld = \"reduce-function\"\nmodule = \"f.py\"\n",
        "world = \"reduce-function\" is not a world",
    );
    build_fails("[tool.weir]\nworld = \"map-function\"\n", "[tool.weir] needs module = \"…\"");
    build_fails(
        "[tool.weir]\nworld = \"map-function\"\nmodule = \"../f.py\"\n",
        "must name a .py file in the project's folder",
    );
    build_fails(
        "[tool.weir]\nworld = \"map-function\"\nmodule = \"f.py\"\nlang = \"rust\"\n",
        "lang = \"rust\" is not \"python\"",
    );
    build_fails("[tool.weir\n", "is not valid TOML");
}
