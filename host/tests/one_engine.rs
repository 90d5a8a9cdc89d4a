//! `weir run` and `weir plugin test` are one engine: the same input and
//! settings give byte-identical output. And a function that refuses some
//! batches, run as a job, fails exactly the windows that hold what it
//! refused: each lands in the dead letters once, with its key and true
//! bounds, every other window is exact, and the summary counts it all.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};

mod support;

use support::{Lcg, weir_command};

/// Runs `weir` in `dir`; it must succeed.
fn weir(dir: &Path, args: &[&str]) -> Output {
    let out = weir_command(dir).args(args).stdin(Stdio::null()).output().expect("run weir");
    assert!(out.status.success(), "weir {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// (device, event time, temperature).
type Reading = (i64, i64, f64);

/// Readings 5 ms apart, jittered up to `jitter` ms out of order, with about
/// one in 60 far behind (late), and a bad line every 300.
fn input(dir: &Path, seed: u64, n: usize, jitter: u64) -> (String, Vec<Reading>) {
    let mut rng = Lcg(seed);
    let mut lines = String::new();
    let mut readings = vec![];
    for i in 0..n as i64 {
        let device = 1 + rng.below(8) as i64;
        let mut ts = 1_700_000_000_000 + 5 * i - rng.below(jitter + 1) as i64;
        if rng.below(60) == 0 {
            ts -= 3_000;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        lines.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}, \"site\": \"s{device}\"}}\n"
        ));
        readings.push((device, ts, temp));
        if i % 300 == 7 {
            lines.push_str("{\"device_id\": 1, \"temperature\": \"hot\"}\n");
        }
    }
    let path = dir.join(format!("input-{seed}.jsonl"));
    std::fs::write(&path, lines).unwrap();
    (path.display().to_string(), readings)
}

#[test]
fn plugin_test_and_run_give_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("max-temperature", "tumbling:1s", "type = \"tumbling\"\nsize = \"1s\""),
        ("max-temperature-agg", "sliding:2s/500ms", "type = \"sliding\"\nsize = \"2s\"\nslide = \"500ms\""),
        ("max-temperature", "session:40ms", "type = \"session\"\ngap = \"40ms\""),
        ("max-temperature-agg", "session:40ms", "type = \"session\"\ngap = \"40ms\""),
    ];
    for (seed, (plugin, window, window_toml)) in cases.into_iter().enumerate() {
        let (input, _) = input(dir.path(), seed as u64, 4000, 200);
        let job = format!(
            "name = \"same\"\n[source]\ntype = \"file\"\npath = \"{input}\"\n[format]\nkey = \"device_id\"\n\
             timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
             max_out_of_orderness = \"150ms\"\nallowed_lateness = \"1s\"\nlate_output = \"late-{seed}.jsonl\"\n\
             [window]\n{window_toml}\n[function]\nplugin = \"{plugin}\"\n[sink]\ntype = \"file\"\n\
             path = \"out-{seed}.jsonl\"\ndead_letter = \"dead-{seed}.jsonl\"\n"
        );
        let job_path = dir.path().join(format!("job-{seed}.toml"));
        std::fs::write(&job_path, job).unwrap();
        weir(dir.path(), &["run", job_path.to_str().unwrap(), "--until-end"]);
        let ran = std::fs::read(dir.path().join(format!("out-{seed}.jsonl"))).unwrap();
        let late = std::fs::read_to_string(dir.path().join(format!("late-{seed}.jsonl"))).unwrap();
        let tested = weir(
            dir.path(),
            &[
                "plugin",
                "test",
                plugin,
                "--input",
                &input,
                "--key",
                "device_id",
                "--fields",
                "temperature:f64",
                "--timestamp",
                "execution_time",
                "--window",
                window,
                "--max-out-of-orderness",
                "150ms",
                "--allowed-lateness",
                "1s",
            ],
        );
        assert!(ran.len() > 1000, "{plugin} {window}: the job wrote output");
        assert!(ran == tested.stdout, "{plugin} {window}: weir run and weir plugin test differ");
        // The same late events, reported on stderr.
        let stderr = String::from_utf8_lossy(&tested.stderr);
        let late_lines = late.lines().count();
        assert!(late_lines > 0, "{plugin} {window}: the input has late events");
        assert_eq!(stderr.lines().filter(|l| l.starts_with("late: ")).count(), late_lines, "{stderr}");
        assert!(stderr.contains(&format!(", {late_lines} late,")), "{stderr}");
    }
}

/// Parses JSON lines.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn weir_run_fails_only_the_windows_a_refusing_aggregate_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let guest = weir::plugin::builtin::guests_dir().join("refuse.wasm");
    let limit = 382.0;
    // In order (no jitter, no late ones), so every window fires once.
    let (input, readings) = {
        let (path, readings) = input(dir.path(), 42, 6000, 0);
        let kept: Vec<Reading> = readings.into_iter().filter(|r| r.1 % 5 == 0).collect();
        (path, kept)
    };
    let job = format!(
        "name = \"refuse\"\n[source]\ntype = \"file\"\npath = \"{input}\"\n[format]\nkey = \"device_id\"\n\
         timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\nmax_out_of_orderness = \"3s\"\n\
         [window]\ntype = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"\n[function]\nplugin = \"{}\"\n\
         params = {{ limit = {limit} }}\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\ndead_letter = \"dead.jsonl\"\n",
        guest.display()
    );
    let job_path = dir.path().join("job.toml");
    std::fs::write(&job_path, job).unwrap();
    let out = weir(dir.path(), &["run", job_path.to_str().unwrap(), "--until-end"]);

    // The oracle: every (device, window) from the readings; it fails if it
    // holds a reading above the limit.
    let mut windows: BTreeMap<(i64, i64, i64), Vec<f64>> = BTreeMap::new();
    for &(device, ts, temp) in &readings {
        let mut start = ts - ts.rem_euclid(250);
        while start > ts - 1000 {
            windows.entry((device, start, start + 1000)).or_default().push(temp);
            start -= 250;
        }
    }
    let mut expected_out = vec![];
    let mut expected_failed = vec![];
    for ((device, start, end), temps) in &windows {
        if temps.iter().any(|&t| t > limit) {
            expected_failed.push((*device, *start, *end));
        } else {
            let max = temps.iter().copied().fold(f64::MIN, f64::max);
            expected_out.push((*device, *start, *end, max.to_bits(), temps.len() as i64));
        }
    }
    assert!(expected_failed.len() > 10 && expected_out.len() > 10, "the case has both kinds of window");

    let mut got_out: Vec<(i64, i64, i64, u64, i64)> = records(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| {
            let int = |f: &str| r[f].as_i64().unwrap();
            (
                int("device_id"),
                int("window_start"),
                int("window_end"),
                r["max_temperature"].as_f64().unwrap().to_bits(),
                int("count"),
            )
        })
        .collect();
    got_out.sort();
    assert_eq!(got_out, expected_out, "every window that holds no refused reading is exact, once");

    let dead = records(&dir.path().join("dead.jsonl"));
    let mut got_failed = vec![];
    let mut bad_lines = 0;
    for letter in &dead {
        match letter["kind"].as_str() {
            Some("window") => {
                let reason = letter["reason"].as_str().unwrap();
                assert!(reason.contains("above the limit 382"), "{reason}");
                let int = |f: &str| letter[f].as_i64().unwrap();
                got_failed.push((int("device_id"), int("window_start"), int("window_end")));
            }
            Some("record") => bad_lines += 1,
            other => panic!("unexpected dead letter kind {other:?}: {letter}"),
        }
    }
    got_failed.sort();
    assert_eq!(
        got_failed, expected_failed,
        "each refused window lands in the dead letters once, with its bounds"
    );
    assert_eq!(bad_lines, 20, "the bad lines are dead letters too");

    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = format!(
        "{} dead letters, {} windows or batches the function failed on",
        expected_failed.len() + 20,
        expected_failed.len()
    );
    assert!(stderr.contains(&summary), "expected '{summary}' in:\n{stderr}");
}

#[test]
fn hostile_guests_in_a_job_fail_their_windows_and_the_job_goes_on() {
    // Three devices, tumbling 100 ms windows: device 1 has one reading per
    // window, device 2 two, device 3 alternately one and three. The hostile
    // guests answer a window of one event and misbehave on more.
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let mut windows: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for w in 0..8i64 {
        let base = 1_700_000_000_000 + 100 * w;
        let counts = [(1, 1), (2, 2), (3, if w % 2 == 0 { 1 } else { 3 })];
        for (device, count) in counts {
            for i in 0..count {
                let ts = base + 10 * device + i;
                lines.push_str(&format!(
                    "{{\"device_id\": {device}, \"temperature\": 350.5, \"execution_time\": {ts}}}\n"
                ));
            }
            windows.insert((device, base), count);
        }
    }
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines).unwrap();
    for (guest, reason, every_window) in [
        ("trap.wasm", "trapped", false),
        ("spin.wasm", "deadline", false),
        ("memory_bomb.wasm", "memory limit", false),
        ("huge_output.wasm", "output", true),
    ] {
        let path = weir::plugin::builtin::guests_dir().join(guest);
        let job = format!(
            "name = \"hostile\"\n[source]\ntype = \"file\"\npath = \"{}\"\n[format]\nkey = \"device_id\"\n\
             timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\ntype = \"tumbling\"\n\
             size = \"100ms\"\n[function]\nplugin = \"{}\"\n[function.limits]\ndeadline = \"50ms\"\nmemory = \"16MiB\"\noutput = \"1MiB\"\n\
             [sink]\ntype = \"file\"\npath = \"out-{guest}.jsonl\"\ndead_letter = \"dead-{guest}.jsonl\"\n",
            input.display(),
            path.display()
        );
        let job_path = dir.path().join(format!("{guest}.toml"));
        std::fs::write(&job_path, job).unwrap();
        let out = weir(dir.path(), &["run", job_path.to_str().unwrap(), "--until-end"]);
        let fails = |count: i64| every_window || count > 1;
        let mut expected_out: Vec<(i64, i64)> =
            windows.iter().filter(|(_, c)| !fails(**c)).map(|(&(d, s), _)| (d, s)).collect();
        let mut expected_dead: Vec<(i64, i64)> =
            windows.iter().filter(|(_, c)| fails(**c)).map(|(&(d, s), _)| (d, s)).collect();
        expected_out.sort();
        expected_dead.sort();
        let mut got_out: Vec<(i64, i64)> = records(&dir.path().join(format!("out-{guest}.jsonl")))
            .iter()
            .map(|r| (r["device_id"].as_i64().unwrap(), r["window_start"].as_i64().unwrap()))
            .collect();
        got_out.sort();
        let mut got_dead = vec![];
        for letter in records(&dir.path().join(format!("dead-{guest}.jsonl"))) {
            assert_eq!(letter["kind"], "window", "{guest}: {letter}");
            let why = letter["reason"].as_str().unwrap();
            assert!(why.contains(reason), "{guest}: expected '{reason}' in {why}");
            assert_eq!(
                letter["window_end"].as_i64().unwrap() - letter["window_start"].as_i64().unwrap(),
                100
            );
            got_dead.push((letter["device_id"].as_i64().unwrap(), letter["window_start"].as_i64().unwrap()));
        }
        got_dead.sort();
        assert_eq!(got_out, expected_out, "{guest}: the windows it answers");
        assert_eq!(got_dead, expected_dead, "{guest}: each failed window once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let summary = format!(
            "{} dead letters, {} windows or batches the function failed on",
            expected_dead.len(),
            expected_dead.len()
        );
        assert!(stderr.contains(&summary), "{guest}: expected '{summary}' in:\n{stderr}");
    }
}

#[test]
fn plugin_test_reads_stdin_as_it_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = input(dir.path(), 9, 2000, 100);
    let args = |from: &str| {
        [
            "plugin",
            "test",
            "max-temperature-agg",
            "--input",
            from,
            "--key",
            "device_id",
            "--fields",
            "temperature:f64",
            "--timestamp",
            "execution_time",
            "--window",
            "sliding:1s/250ms",
            "--max-out-of-orderness",
            "100ms",
        ]
        .map(String::from)
    };
    let from_file = weir(dir.path(), &args(&input).each_ref().map(String::as_str));
    let from_stdin = weir_command(dir.path())
        .args(args("-"))
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .expect("run weir");
    assert!(from_stdin.status.success(), "{}", String::from_utf8_lossy(&from_stdin.stderr));
    assert!(from_file.stdout.len() > 1000);
    assert!(from_stdin.stdout == from_file.stdout, "stdin and the file give the same output");
}
