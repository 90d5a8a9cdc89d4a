//! A file source given a folder or a glob reads each file as a partition of
//! its own, with its own watermark and keyed state, as a topic's partitions
//! are. So one run over the folder writes exactly what one run over each
//! file writes, put together: the same results, late records and dead
//! letters (as multisets), whatever order the files' records interleave in.

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;

mod support;

use support::{Lcg, weir_command};

/// Readings of devices `devices` (a key lives in one file, as Kafka's keyed
/// producers keep a key in one partition), 5 ms apart from `start`, up to
/// 150 ms out of order, one in 80 far behind (late), a bad line every 500.
fn write_part(path: &Path, seed: u64, devices: std::ops::Range<u64>, start: i64, n: usize) {
    let mut rng = Lcg(seed);
    let mut text = String::new();
    for i in 0..n as i64 {
        let device = devices.start + rng.below(devices.end - devices.start);
        let mut ts = start + 5 * i - rng.below(151) as i64;
        if rng.below(80) == 0 {
            ts -= 2_000;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        if i % 500 == 3 {
            text.push_str("{\"device_id\": 1, \"temperature\": \"hot\"}\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

fn job(dir: &Path, name: &str, path: &str) -> String {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"{path}\"\n[format]\nkey = \"device_id\"\n\
         timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"200ms\"\nallowed_lateness = \"300ms\"\nlate_output = \"{name}-late.jsonl\"\n\
         [window]\ntype = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"\n[function]\n\
         plugin = \"max-temperature-agg\"\n[sink]\ntype = \"file\"\npath = \"{name}-out.jsonl\"\n\
         dead_letter = \"{name}-dead.jsonl\"\n"
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

fn run(dir: &Path, job: &str) {
    let out = weir_command(dir).args(["run", job]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "weir run {job}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The records of `file` as a sorted multiset, with the fields that name
/// where a record came from (the source's name and its partition, which
/// differ between a run over one file and one over the folder) left out.
fn records(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut records: Vec<String> = text
        .lines()
        .map(|line| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            if let Some(fields) = record.as_object_mut() {
                fields.remove("source");
                fields.remove("partition");
            }
            record.to_string()
        })
        .collect();
    records.sort();
    records
}

fn check(dir: &Path, name: &str, path: &str, parts: &[&str]) {
    run(dir, &job(dir, name, path));
    for kind in ["out", "late", "dead"] {
        let mut expected: Vec<String> =
            parts.iter().flat_map(|part| records(dir, &format!("{part}-{kind}.jsonl"))).collect();
        expected.sort();
        let got = records(dir, &format!("{name}-{kind}.jsonl"));
        assert!(!expected.is_empty(), "the runs over single files wrote no {kind} records");
        assert!(got == expected, "{name} {kind}: {} records, the files alone {}", got.len(), expected.len());
    }
}

#[test]
fn a_folder_or_a_glob_of_files_writes_what_each_file_alone_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("parts")).unwrap();
    // Files of different lengths and clocks: the partitions' watermarks
    // differ all through the run.
    let files = [("a", 0..4, 0, 6_000), ("b", 4..7, 40_000, 9_000), ("c", 7..12, -20_000, 3_000)];
    for (i, (name, devices, start, n)) in files.iter().enumerate() {
        write_part(
            &d.join(format!("parts/{name}.jsonl")),
            11 + i as u64,
            devices.clone(),
            1_700_000_000_000 + start,
            *n,
        );
        run(d, &job(d, name, &format!("parts/{name}.jsonl")));
    }
    check(d, "folder", "parts", &["a", "b", "c"]);
    // A glob takes the files it matches only.
    std::fs::write(d.join("parts/notes.txt"), "not a reading\n").unwrap();
    check(d, "glob", "parts/*.jsonl", &["a", "b", "c"]);
    check(d, "two", "parts/[ab].jsonl", &["a", "b"]);
}

/// A glob that matches nothing, or an empty folder, is an error that names
/// it, before anything runs.
#[test]
fn a_glob_that_matches_nothing_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("empty")).unwrap();
    for (path, reason) in [("nothing/*.jsonl", "no file matches it"), ("empty", "the folder holds no files")]
    {
        let file = job(d, "none", path);
        let out = weir_command(d).args(["run", &file]).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a run over {path} succeeded");
        assert!(stderr.contains(path) && stderr.contains(reason), "{path}: {stderr}");
    }
}
