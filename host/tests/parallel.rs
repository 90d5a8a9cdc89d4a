//! `parallelism`: a job's partitions spread over worker threads, each with
//! its own window state and function instance. Every partition's records
//! are read, windowed and written by one worker, in order, so a run on any
//! number of workers writes what a run on one writes: per partition, the
//! same records in the same order (only how partitions interleave in a
//! shared file differs). And a checkpoint taken on some number of workers
//! restores on any other.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{Lcg, weir_command};

/// Readings of devices `devices` (a key lives in one file, as a keyed
/// producer keeps a key in one partition), 5 ms apart from `start`, up to
/// 150 ms out of order, one in 90 far behind (late), a bad line every 700.
fn write_part(path: &Path, seed: u64, devices: std::ops::Range<u64>, start: i64, n: usize) {
    let mut rng = Lcg(seed);
    let mut text = String::with_capacity(n * 80);
    for i in 0..n as i64 {
        let device = devices.start + rng.below(devices.end - devices.start);
        let mut ts = start + 5 * i - rng.below(151) as i64;
        if rng.below(90) == 0 {
            ts -= 2_000;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        if i % 700 == 5 {
            text.push_str("{\"device_id\": 1, \"temperature\": \"hot\"}\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Each file's devices, clock and length (thousands of readings).
const FILES: [(std::ops::Range<u64>, i64, usize); 5] =
    [(0..4, 0, 6), (4..7, 40_000, 9), (7..12, -20_000, 3), (12..13, 5_000, 5), (13..20, 0, 7)];

/// Files of different lengths and clocks in `dir/parts`, so that the
/// partitions' watermarks differ all through a run.
fn write_parts(dir: &Path, scale: usize) {
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    for (i, (devices, start, n)) in FILES.into_iter().enumerate() {
        let path = dir.join(format!("parts/{i}.jsonl"));
        write_part(&path, 21 + i as u64, devices, 1_700_000_000_000 + start, n * scale);
    }
}

fn job(dir: &Path, name: &str, plugin: &str, parallelism: usize, checkpoint: &str) -> String {
    let text = format!(
        "name = \"{name}\"\nparallelism = {parallelism}\n[source]\ntype = \"file\"\npath = \"parts\"\n[format]\n\
         key = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"200ms\"\nallowed_lateness = \"300ms\"\nlate_output = \"{name}-late.jsonl\"\n\
         [window]\ntype = \"sliding\"\nsize = \"1s\"\nslide = \"100ms\"\n[function]\nplugin = \"{plugin}\"\n\
         [sink]\ntype = \"file\"\npath = \"{name}-out.jsonl\"\ndead_letter = \"{name}-dead.jsonl\"\n{checkpoint}"
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// Runs `job` to the end of its input; its stderr.
fn run(dir: &Path, job: &str) -> String {
    let out = weir_command(dir).args(["run", job, "--until-end"]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "weir run {job}: {stderr}");
    stderr
}

/// The partition a record came from: its own field (late records and dead
/// letters), or the file its device lives in (results).
fn partition_of(record: &Value) -> Option<i64> {
    if let Some(partition) = record["partition"].as_i64() {
        return Some(partition);
    }
    let device = record["device_id"].as_u64()?;
    FILES.iter().position(|(devices, _, _)| devices.contains(&device)).map(|i| i as i64)
}

/// The records of `file`, per partition in the order written.
fn per_partition(dir: &Path, file: &str) -> BTreeMap<i64, Vec<String>> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut partitions: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let partition = partition_of(&record).unwrap_or_else(|| panic!("{file}: no partition in {line}"));
        partitions.entry(partition).or_default().push(line.to_string());
    }
    partitions
}

fn assert_same(dir: &Path, name: &str, like: &str) {
    for kind in ["out", "late", "dead"] {
        let expected = per_partition(dir, &format!("{like}-{kind}.jsonl"));
        let got = per_partition(dir, &format!("{name}-{kind}.jsonl"));
        assert!(expected.len() >= 3, "{like} wrote {kind} records for {} partitions only", expected.len());
        for (partition, records) in &expected {
            let mine = got.get(partition).map(Vec::as_slice).unwrap_or_default();
            assert!(
                mine == records.as_slice(),
                "{name} {kind}, partition {partition}: {} records, one worker {} (or in another order)",
                mine.len(),
                records.len()
            );
        }
        assert_eq!(got.len(), expected.len(), "{name} {kind}: records of partitions one worker never wrote");
    }
}

#[test]
fn any_number_of_workers_writes_per_partition_what_one_worker_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parts(d, 1_000);
    for plugin in ["max-temperature-agg", "max-temperature"] {
        let one = format!("one-{plugin}");
        let stderr = run(d, &job(d, &one, plugin, 1, ""));
        assert!(!stderr.contains("workers"), "{stderr}");
        for workers in [2, 3] {
            let name = format!("p{workers}-{plugin}");
            let stderr = run(d, &job(d, &name, plugin, workers, ""));
            assert!(stderr.contains(&format!("on {workers} workers")), "{stderr}");
            assert_same(d, &name, &one);
        }
        // More workers than partitions: one per partition.
        let name = format!("p9-{plugin}");
        let stderr = run(d, &job(d, &name, plugin, 9, ""));
        assert!(stderr.contains("on 5 workers"), "{stderr}");
        assert_same(d, &name, &one);
    }
}

/// A job on the trap guest (it fails every window of more than one event)
/// with 10 ms tumbling windows, which hold one event or several; `extra`
/// goes into `[function]`.
fn trap_job(dir: &Path, name: &str, parallelism: usize, extra: &str) -> String {
    let trap = weir::plugin::builtin::guests_dir().join("trap.wasm");
    let file = job(dir, name, &trap.display().to_string(), parallelism, "");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            "type = \"sliding\"\nsize = \"1s\"\nslide = \"100ms\"",
            "type = \"tumbling\"\nsize = \"10ms\"",
        )
        .replace("[sink]", &format!("{extra}\n[sink]"));
    std::fs::write(&file, text).unwrap();
    file
}

/// A function that fails on some windows, in several workers at once:
/// each worker dead-letters its failed windows and goes on, and the
/// results, dead letters and late records are, per partition, what one
/// worker writes.
#[test]
fn windows_a_function_fails_on_are_dead_lettered_per_partition_as_on_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parts(d, 200);
    run(d, &trap_job(d, "trap-one", 1, ""));
    let failed = std::fs::read_to_string(d.join("trap-one-dead.jsonl")).unwrap();
    let failed = failed.lines().filter(|l| l.contains("failed in apply")).count();
    assert!(failed > 100, "{failed} windows failed: the trap guest proved nothing");
    for workers in [2, 3] {
        let name = format!("trap-p{workers}");
        let stderr = run(d, &trap_job(d, &name, workers, ""));
        assert!(stderr.contains(&format!("on {workers} workers")), "{stderr}");
        assert_same(d, &name, "trap-one");
    }
}

/// With `on_failure = "fail"`, a function's failure in the workers fails
/// the run with the function's error, and the command ends: a worker left
/// waiting at a barrier or parked for the others would hang it.
#[test]
fn a_function_failing_the_run_stops_every_worker_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parts(d, 200);
    let file = trap_job(d, "trap-fail", 3, "on_failure = \"fail\"");
    let mut child = weir_command(d)
        .args(["run", &file, "--until-end"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).map(|_| text)
    });
    // A bound on the wait, so that a worker left running fails the test
    // instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run did not end after its function failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap().unwrap();
    assert!(!status.success(), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(error.contains("plugin 'trap' failed in apply") && error.contains("trapped"), "{stderr}");
}

#[test]
fn parallelism_zero_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parts(d, 10);
    let file = job(d, "zero", "max-temperature-agg", 0, "");
    let out = weir_command(d).args(["run", &file]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "parallelism = 0 ran");
    assert!(stderr.contains("parallelism"), "{stderr}");
}

/// Runs killed at random moments, each on a different number of workers
/// than the one before, each restoring the checkpoint the one before took:
/// the output is, per partition, exactly one clean run's.
#[test]
fn runs_killed_again_and_again_restore_on_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_parts(d, 40_000);
    run(d, &job(d, "clean", "max-temperature-agg", 1, ""));
    let clean = std::fs::metadata(d.join("clean-out.jsonl")).unwrap().len();
    let storage = d.join("checkpoints");
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"200ms\"\nmode = \"exactly-once\"\n",
        storage.display()
    );
    let count = 8;
    let mut rng = Lcg(5);
    let (mut kills, mut restored) = (0, 0);
    for i in 0..=count {
        let workers = [2, 1, 3, 2, 5][i % 5];
        let file = job(d, "crash", "max-temperature-agg", workers, &checkpoint);
        let log = d.join(format!("run-{i}.log"));
        let mut child = weir_command(d)
            .args(["run", &file, "--until-end"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if i < count {
            // Killed once its output passes the next share of a clean
            // run's, and a random moment more: wherever the checkpoints
            // happen to be.
            let target = clean * (i as u64 + 1) / (count as u64 + 3);
            let started = Instant::now();
            loop {
                assert!(child.try_wait().unwrap().is_none(), "run {i} ended before its kill");
                let written = std::fs::metadata(d.join("crash-out.jsonl")).map_or(0, |m| m.len());
                if written >= target {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(120), "run {i} makes no progress");
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
        }
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        restored += usize::from(stderr.contains("restored checkpoint"));
        if i == count {
            assert!(status.success(), "the last run: {stderr}");
            assert!(workers == 1 || stderr.contains(&format!("on {workers} workers")), "{stderr}");
        }
    }
    eprintln!("{kills} kills, {restored} restores of a checkpoint; a clean run writes {clean} bytes");
    assert!(kills >= count - 1, "only {kills} kills");
    assert!(restored >= count / 2, "{restored} of {count} restarts restored a checkpoint");
    assert_same(d, "crash", "clean");
}
