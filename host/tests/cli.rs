//! End-to-end tests of the `weir` binary's plugin commands, over the sample
//! readings in `examples/`, checked against results computed here by brute
//! force from the same file.

mod support;
use support::{readings_in, root, stdout_records, weir};

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SAMPLE: &str = "examples/readings.jsonl";

/// (device, start, end) → (max, count), the plain way.
type Expected = BTreeMap<(i64, i64, i64), (f64, i64)>;

fn add(expected: &mut Expected, key: (i64, i64, i64), t: f64) {
    let e = expected.entry(key).or_insert((f64::MIN, 0));
    e.0 = e.0.max(t);
    e.1 += 1;
}

fn actual(records: &[Value], value_field: &str) -> Expected {
    records
        .iter()
        .map(|r| {
            let key = (
                r["device_id"].as_i64().unwrap(),
                r["window_start"].as_i64().unwrap(),
                r["window_end"].as_i64().unwrap(),
            );
            (key, (r[value_field].as_f64().unwrap(), r["count"].as_i64().unwrap()))
        })
        .collect()
}

#[test]
fn tumbling_max_temperature_matches_brute_force() {
    let out = weir(&[
        "plugin",
        "test",
        "max-temperature",
        "--input",
        SAMPLE,
        "--key",
        "device_id",
        "--fields",
        "temperature:f64",
        "--timestamp",
        "execution_time",
        "--window",
        "tumbling:1s",
    ]);
    let records = stdout_records(&out);
    let mut expected = Expected::new();
    for (device, ts, t) in readings_in(&root().join(SAMPLE)) {
        let start = ts / 1000 * 1000;
        add(&mut expected, (device, start, start + 1000), t);
    }
    assert_eq!(records.len(), expected.len());
    assert_eq!(actual(&records, "max_temperature"), expected);
    // Windows fire in end order.
    let ends: Vec<i64> = records.iter().map(|r| r["window_end"].as_i64().unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "{ends:?}");
}

#[test]
fn sliding_aggregate_matches_brute_force() {
    let out = weir(&[
        "plugin",
        "test",
        "max-temperature-agg",
        "--input",
        SAMPLE,
        "--key",
        "device_id",
        "--fields",
        "temperature:f64",
        "--timestamp",
        "execution_time",
        "--window",
        "sliding:2s/500ms",
    ]);
    let mut expected = Expected::new();
    for (device, ts, t) in readings_in(&root().join(SAMPLE)) {
        // Every window [s, s + 2000) with s a multiple of 500 that holds ts.
        let mut s = ts / 500 * 500;
        while s > ts - 2000 {
            add(&mut expected, (device, s, s + 2000), t);
            s -= 500;
        }
    }
    assert_eq!(actual(&stdout_records(&out), "max_temperature"), expected);
}

#[test]
fn session_percentile_matches_brute_force() {
    let gap = 60;
    let out = weir(&[
        "plugin",
        "test",
        "percentile",
        "--input",
        SAMPLE,
        "--key",
        "device_id",
        "--fields",
        "temperature:f64",
        "--timestamp",
        "execution_time",
        "--window",
        "session:60ms",
        "--bind",
        "value=temperature",
        "--param",
        "p=0.5",
    ]);
    let mut by_device: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
    for (device, ts, t) in readings_in(&root().join(SAMPLE)) {
        by_device.entry(device).or_default().push((ts, t));
    }
    let mut expected = Expected::new();
    for (device, mut events) in by_device {
        events.sort_by_key(|e| e.0);
        // Split wherever the next event is a full gap after the previous.
        let mut sessions: Vec<Vec<(i64, f64)>> = vec![];
        for e in events {
            match sessions.last_mut() {
                Some(s) if e.0 < s.last().unwrap().0 + gap => s.push(e),
                _ => sessions.push(vec![e]),
            }
        }
        for s in sessions {
            let mut temps: Vec<f64> = s.iter().map(|e| e.1).collect();
            temps.sort_by(f64::total_cmp);
            let rank = (temps.len() as f64 * 0.5).ceil() as usize;
            let key = (device, s[0].0, s.last().unwrap().0 + gap);
            expected.insert(key, (temps[rank - 1], temps.len() as i64));
        }
    }
    assert_eq!(actual(&stdout_records(&out), "percentile"), expected);
}

#[test]
fn kelvin_to_celsius_converts_every_record_and_keeps_the_rest() {
    let out =
        weir(&["plugin", "test", "kelvin-to-celsius", "--input", SAMPLE, "--fields", "temperature:f64"]);
    let records = stdout_records(&out);
    let input = readings_in(&root().join(SAMPLE));
    assert_eq!(records.len(), input.len());
    for (r, (device, ts, kelvin)) in records.iter().zip(input) {
        assert_eq!(r["device_id"].as_i64(), Some(device));
        assert_eq!(r["execution_time"].as_i64(), Some(ts));
        assert_eq!(r["temperature"].as_f64(), Some(kelvin - 273.15));
    }
}

#[test]
fn bad_lines_are_reported_with_reasons_and_the_rest_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root().join(SAMPLE)).unwrap();
    let bad_lines = [
        "{not json",
        r#"{"device_id": 1, "execution_time": 1700000000000}"#,
        r#"{"device_id": 1.5, "temperature": 340.0, "execution_time": 1700000000000}"#,
        r#"{"device_id": 1, "temperature": "hot", "execution_time": 1700000000000}"#,
        r#"{"device_id": 1, "temperature": 340.0, "execution_time": "noon"}"#,
        "[1, 2, 3]",
    ];
    // One bad line after each of the first good ones.
    let mut mixed = String::new();
    for (i, line) in good.lines().enumerate() {
        mixed.push_str(line);
        mixed.push('\n');
        if let Some(bad) = bad_lines.get(i) {
            mixed.push_str(bad);
            mixed.push('\n');
        }
    }
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(&path, mixed).unwrap();
    let args = |input: &str| {
        weir(&[
            "plugin",
            "test",
            "max-temperature",
            "--input",
            input,
            "--key",
            "device_id",
            "--fields",
            "temperature:f64",
            "--timestamp",
            "execution_time",
            "--window",
            "tumbling:1s",
        ])
    };
    let clean = stdout_records(&args(SAMPLE));
    let out = args(path.to_str().unwrap());
    assert_eq!(stdout_records(&out), clean, "bad lines must not change the output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for reason in [
        "malformed JSON",
        "missing field 'temperature'",
        "field 'device_id': expected an integer or a string",
        "field 'temperature': expected f64",
        "field 'execution_time': expected an integer of milliseconds",
        "not a JSON object",
    ] {
        assert!(stderr.contains(reason), "expected '{reason}' in:\n{stderr}");
    }
    assert!(stderr.contains(", 6 rejected,"), "{stderr}");
}

#[test]
fn inspect_shows_the_descriptor_and_rejects_bad_plugins_by_name() {
    let out = weir(&["plugin", "inspect", "max-temperature-agg"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for line in [
        "plugin   max-temperature-agg 0.1.0",
        "world    aggregate-function (weir:functions@0.2.0)",
        "state    version 0",
        "inputs   temperature: f64",
        "outputs  max_temperature: f64, count: i64",
        "params   (none)",
    ] {
        assert!(text.contains(line), "expected '{line}' in:\n{text}");
    }
    // A component built for the older contract says so.
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/legacy_max_temperature.wasm");
    let out = weir(&["plugin", "inspect", legacy.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("world    window-function (weir:functions@0.1.0)"), "{text}");

    let wrong = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/wrong_world.wasm");
    let out = weir(&["plugin", "inspect", wrong.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match the window-function world: function `describe`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn job_mistakes_are_named_before_any_data_flows() {
    let base =
        ["plugin", "test", "percentile", "--input", SAMPLE, "--key", "device_id", "--window", "tumbling:1s"];
    let cases: [(&[&str], &str); 4] = [
        (&["--fields", "temperature:f64"], "reads input 'value' (f64), but the job has no such field"),
        (
            &["--fields", "temperature:f64", "--bind", "value=temperature", "--param", "q=1"],
            "takes no parameter 'q'",
        ),
        (
            &["--fields", "temperature:f64", "--bind", "value=temperature", "--param", "p=2"],
            "p must be in (0, 1]",
        ),
        (&["--fields", "temperature:float"], "unknown type 'float'"),
    ];
    for (extra, message) in cases {
        let out = weir(&[&base[..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "expected '{message}' in:\n{stderr}");
    }
    let out = weir(&[
        "plugin",
        "test",
        "max-temperature",
        "--input",
        SAMPLE,
        "--fields",
        "temperature:f64",
        "--window",
        "tumbling:abc",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("got 'abc'"));
}

#[test]
fn plugin_build_compiles_a_guest_crate_into_a_loadable_component() {
    let dir = tempfile::tempdir().unwrap();
    let out_wasm = dir.path().join("max.wasm");
    let target = root().join("target/wasm-guests");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["plugin", "build", "guest-functions/max-temperature", "-o", out_wasm.to_str().unwrap()])
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target)
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("world    window-function"));
    assert!(std::fs::read(&out_wasm).unwrap().starts_with(b"\0asm"));

    let out = weir(&["plugin", "build", "examples"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("examples has no Cargo.toml"));
}

/// `weir … | head`: a reader that closes the pipe before the command
/// prints ends it quietly, with no panic about a broken pipe.
#[test]
fn a_closed_stdout_pipe_ends_a_printing_command_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", dir.path().display());
    let mut child = support::weir_command(dir.path())
        .args(["checkpoints", "list", &storage])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}
