//! Whole jobs over files: job file → pipeline → output files, compared with
//! results computed here by brute force.

use super::*;
use crate::sink::file::FileSink;
use crate::source::file::FileSource;
use crate::testing::{Lcg, engine};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A reading: device, event time, kelvin.
type Reading = (i64, i64, f64);

/// Readings with event times jittered by up to `jitter` ms out of order.
fn readings(n: usize, jitter: i64, seed: u64) -> Vec<Reading> {
    let mut rng = Lcg(seed);
    let mut next = || rng.next();
    (0..n as i64)
        .map(|i| {
            let device = 1 + (next() % 10) as i64;
            let ts = 1_700_000_000_000 + 5 * i - (next() % (jitter as u64 + 1)) as i64;
            (device, ts, 333.0 + (next() % 5000) as f64 / 100.0)
        })
        .collect()
}

fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    std::fs::write(path, text).unwrap();
}

fn reading_line(r: &Reading) -> String {
    format!(
        r#"{{"device_id": {}, "temperature": {}, "execution_time": {}, "site": "plant-{}"}}"#,
        r.0,
        r.2,
        r.1,
        r.0 % 3
    )
}

fn read_json(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => vec![],
    }
}

struct Run {
    summary: RunSummary,
    output: Vec<Value>,
    dead: Vec<Value>,
    late: Vec<Value>,
}

/// Writes `job` (TOML, with {dir} for the temp folder) and runs it.
fn run_job(dir: &Path, job: &str) -> Result<Run, PipelineError> {
    let text = job.replace("{dir}", &dir.display().to_string());
    let job = Job::parse(&text, "test.toml", dir)?;
    let (input, output, dead, late) = match (&job.source, &job.sink) {
        (
            crate::job::SourceSpec::File { path },
            crate::job::SinkSpec::File { path: out, dead_letter, late_output },
        ) => (path.clone(), out.clone(), dead_letter.clone(), late_output.clone()),
        _ => panic!("file jobs only"),
    };
    let mut pipeline = Pipeline::build(job, engine())?;
    let mut source = FileSource::open(&input)?;
    let open = |p: &Option<PathBuf>| -> Option<Box<dyn Sink>> {
        p.as_ref().map(|p| Box::new(FileSink::create(p).unwrap()) as Box<dyn Sink>)
    };
    let mut sinks =
        Sinks { output: Box::new(FileSink::create(&output)?), dead_letter: open(&dead), late: open(&late) };
    let summary = pipeline.run(&mut source, &mut sinks, &RunOptions::default(), &mut |_| {})?;
    drop(sinks);
    Ok(Run {
        summary,
        output: read_json(&output),
        dead: dead.map(|p| read_json(&p)).unwrap_or_default(),
        late: late.map(|p| read_json(&p)).unwrap_or_default(),
    })
}

fn window_job(window: &str, plugin: &str, extra_time: &str) -> String {
    format!(
        r#"
name = "test"
[source]
type = "file"
path = "{{dir}}/in.jsonl"
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
max_out_of_orderness = "500ms"
late_output = "{{dir}}/late.jsonl"
{extra_time}
[window]
{window}
[function]
plugin = "{plugin}"
[sink]
type = "file"
path = "{{dir}}/out.jsonl"
dead_letter = "{{dir}}/dead.jsonl"
"#
    )
}

/// (device, start, end, max as bits, count) of every output record,
/// sorted: a multiset, so a duplicated or extra record shows.
type Results = Vec<(i64, i64, i64, u64, i64)>;

fn results(output: &[Value]) -> Results {
    let mut all: Results = output
        .iter()
        .map(|r| {
            let int = |f: &str| r[f].as_i64().unwrap();
            let max = r["max_temperature"].as_f64().unwrap().to_bits();
            (int("device_id"), int("window_start"), int("window_end"), max, int("count"))
        })
        .collect();
    all.sort();
    all
}

/// Expected windows, one each, as a sorted multiset.
fn sorted(windows: BTreeMap<(i64, i64, i64), (f64, i64)>) -> Results {
    windows.into_iter().map(|((d, s, e), (max, count))| (d, s, e, max.to_bits(), count)).collect()
}

/// Brute force: for each reading, every window (start multiple of slide,
/// covering it) gets it.
fn expected_sliding(input: &[Reading], size: i64, slide: i64) -> Results {
    let mut out = BTreeMap::new();
    for &(d, ts, t) in input {
        let mut s = ts - ts.rem_euclid(slide);
        while s + size > ts {
            let e = out.entry((d, s, s + size)).or_insert((f64::MIN, 0));
            e.0 = e.0.max(t);
            e.1 += 1;
            s -= slide;
        }
    }
    sorted(out)
}

#[test]
fn tumbling_and_sliding_jobs_match_brute_force_with_out_of_order_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = readings(5_000, 400, 1);
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let cases = [
        ("type = \"tumbling\"\nsize = \"1s\"", "max-temperature", 1000, 1000),
        ("type = \"tumbling\"\nsize = \"1s\"", "max-temperature-agg", 1000, 1000),
        ("type = \"sliding\"\nsize = \"2s\"\nslide = \"500ms\"", "max-temperature", 2000, 500),
        ("type = \"sliding\"\nsize = \"1s\"\nslide = \"100ms\"", "max-temperature-agg", 1000, 100),
    ];
    for (window, plugin, size, slide) in cases {
        let run = run_job(dir.path(), &window_job(window, plugin, "")).unwrap();
        assert_eq!(run.summary.late, 0, "{window}: jitter is within the bound");
        assert_eq!(run.summary.records, 5_000);
        assert_eq!(results(&run.output), expected_sliding(&input, size, slide), "{window} {plugin}");
        assert_eq!(run.output.len() as u64, run.summary.windows, "one record per window and key");
        // Windows fire in watermark order: ends never go back by more than
        // the bound allows (they are per key, interleaved).
        assert!(run.dead.is_empty() && run.late.is_empty());
    }
}

#[test]
fn session_jobs_match_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    // Bursts: each device is quiet for a while, now and then.
    let input: Vec<Reading> =
        readings(4_000, 0, 2).into_iter().filter(|r| (r.1 / 700 + r.0) % 4 != 0).collect();
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let gap = 300;
    let mut by_device: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
    for r in &input {
        by_device.entry(r.0).or_default().push(*r);
    }
    let mut expected = BTreeMap::new();
    for (d, mut rs) in by_device {
        rs.sort_by_key(|r| r.1);
        let mut start = rs[0].1;
        let mut last = rs[0].1;
        let mut acc = (f64::MIN, 0);
        for r in rs {
            if r.1 >= last + gap {
                expected.insert((d, start, last + gap), acc);
                start = r.1;
                acc = (f64::MIN, 0);
            }
            last = r.1;
            acc = (acc.0.max(r.2), acc.1 + 1);
        }
        expected.insert((d, start, last + gap), acc);
    }
    let expected = sorted(expected);
    for plugin in ["max-temperature", "max-temperature-agg"] {
        let run =
            run_job(dir.path(), &window_job("type = \"session\"\ngap = \"300ms\"", plugin, "")).unwrap();
        assert_eq!(results(&run.output), expected, "{plugin}");
    }
}

#[test]
fn late_events_refire_within_lateness_and_go_to_late_output_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    let line = |d: i64, ts: i64, t: f64| reading_line(&(d, ts, t));
    let mut lines = vec![line(1, t0 + 100, 340.0), line(1, t0 + 900, 341.0)];
    // Watermark passes t0 + 999: window [t0, t0+1000) fires with max 341.
    lines.push(line(1, t0 + 1_600, 342.0));
    // 1.5 s late for the first window: within 1 s of lateness? No: the
    // watermark is t0+1099, the window closes for good at t0+999+1000.
    lines.push(line(1, t0 + 500, 350.0)); // re-fires [t0, t0+1000) with 350
    lines.push(line(1, t0 + 3_600, 343.0)); // watermark t0+3099: first window expired
    lines.push(line(1, t0 + 200, 360.0)); // too late: to the late output
    // Batches are up to 1,000 records, so make each line its own batch by
    // the watermark only moving between batches: use one line per batch.
    write_lines(&dir.path().join("in.jsonl"), lines);
    let job =
        window_job("type = \"tumbling\"\nsize = \"1s\"", "max-temperature", "allowed_lateness = \"1s\"");
    // One record per poll, so the watermark moves between records.
    let text = job.replace("{dir}", &dir.path().display().to_string());
    let job = Job::parse(&text, "test.toml", dir.path()).unwrap();
    let mut pipeline = Pipeline::build(job, engine()).unwrap();
    let mut source = OneAtATime(FileSource::open(&dir.path().join("in.jsonl")).unwrap());
    let mut sinks = Sinks {
        output: Box::new(FileSink::create(&dir.path().join("out.jsonl")).unwrap()),
        dead_letter: None,
        late: Some(Box::new(FileSink::create(&dir.path().join("late.jsonl")).unwrap())),
    };
    let mut refires = vec![];
    let summary = pipeline
        .run(&mut source, &mut sinks, &RunOptions::default(), &mut |e| refires.push(e.refire))
        .unwrap();
    drop(sinks);
    let out = read_json(&dir.path().join("out.jsonl"));
    let first: Vec<(f64, i64)> = out
        .iter()
        .filter(|r| r["window_start"] == t0)
        .map(|r| (r["max_temperature"].as_f64().unwrap(), r["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(first, vec![(341.0, 2), (350.0, 3)], "fired, then re-fired with the late event");
    assert_eq!(summary.refired, 1);
    assert_eq!(refires.iter().filter(|r| **r).count(), 1);
    let late = read_json(&dir.path().join("late.jsonl"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["event_time"], t0 + 200);
    assert!(late[0]["reason"].as_str().unwrap().starts_with("late: every window of event time"));
    assert!(late[0]["payload"].as_str().unwrap().contains("360"));
    assert_eq!(summary.late, 1);
}

/// Hands over one record per poll.
struct OneAtATime(FileSource);

impl Source for OneAtATime {
    fn partitions(&self) -> Vec<i32> {
        self.0.partitions()
    }
    fn poll(
        &mut self,
        _max: usize,
        wait: Duration,
        each: &mut dyn FnMut(crate::source::RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        self.0.poll(1, wait, each)
    }
    fn name(&self) -> &str {
        self.0.name()
    }

    fn commit(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.0.commit(next_offsets)
    }
    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.0.seek(next_offsets)
    }
}

#[test]
fn a_bad_input_corpus_lands_in_the_dead_letters_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let input = readings(2_000, 0, 3);
    let bad: Vec<(&str, &str)> = vec![
        ("{not json", "malformed JSON"),
        (r#"{"temperature": 340.0, "execution_time": 1700000000000}"#, "missing key field 'device_id'"),
        (r#"{"device_id": 3, "temperature": 340.0}"#, "missing timestamp field 'execution_time'"),
        (r#"{"device_id": 3, "execution_time": 1700000000000}"#, "missing field 'temperature'"),
        (
            r#"{"device_id": 3, "temperature": "warm", "execution_time": 1700000000000}"#,
            "field 'temperature': expected f64",
        ),
        (
            r#"{"device_id": [3], "temperature": 340.0, "execution_time": 1700000000000}"#,
            "field 'device_id': expected an integer or a string",
        ),
        (r#"{"device_id": 3, "temperature": 1e400, "execution_time": 1700000000000}"#, "malformed JSON"),
        (r#"{"device_id": 3, "temperature": NaN, "execution_time": 1700000000000}"#, "malformed JSON"),
        ("[340.0]", "malformed JSON: not a JSON object"),
    ];
    let oversized = format!(
        r#"{{"device_id": 3, "pad": "{}", "temperature": 340.0, "execution_time": 1700000000000}}"#,
        "x".repeat(2_000)
    );
    let mut lines: Vec<Vec<u8>> = input.iter().map(|r| reading_line(r).into_bytes()).collect();
    for (i, (text, _)) in bad.iter().enumerate() {
        lines.insert(100 * i + 7, text.as_bytes().to_vec());
    }
    lines.insert(50, oversized.into_bytes());
    lines.insert(60, b"{\"device_id\": 3, \"site\": \"\xff\xfe\"}".to_vec());
    let mut bytes = vec![];
    for l in &lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(dir.path().join("in.jsonl"), bytes).unwrap();
    let job = window_job("type = \"tumbling\"\nsize = \"1s\"", "max-temperature", "").replace(
        "fields = { temperature = \"f64\" }",
        "fields = { temperature = \"f64\" }\nmax_record_bytes = 1024",
    );
    let run = run_job(dir.path(), &job).unwrap();
    assert_eq!(run.dead.len(), bad.len() + 2, "every bad record is kept");
    assert_eq!(run.summary.dead_letters, bad.len() as u64 + 2);
    for (text, reason) in &bad {
        let letter = run
            .dead
            .iter()
            .find(|d| d["payload"] == *text)
            .unwrap_or_else(|| panic!("{text} not in dead letters"));
        assert!(letter["reason"].as_str().unwrap().contains(reason), "{letter}");
        assert!(letter["offset"].as_i64().is_some() && letter["partition"] == 0);
    }
    assert!(run.dead.iter().any(|d| d["reason"].as_str().unwrap().contains("over the 1024-byte limit")));
    assert!(
        run.dead.iter().any(|d| d["reason"] == "record is not valid UTF-8" && d["payload_utf8"] == false)
    );
    // The offset is the line number: the source can be replayed from it.
    let first_bad = run.dead.iter().find(|d| d["payload"] == "{not json").unwrap();
    assert_eq!(first_bad["offset"], 7);
    assert_eq!(results(&run.output), expected_sliding(&input, 1000, 1000), "output unchanged by bad records");
}

#[test]
fn kelvin_to_celsius_maps_every_record_keeping_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let input = readings(2_500, 0, 4);
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let job = r#"
name = "kelvin-to-celsius"
[source]
type = "file"
path = "{dir}/in.jsonl"
[format]
fields = { temperature = "f64" }
[function]
plugin = "kelvin-to-celsius"
[sink]
type = "file"
path = "{dir}/out.jsonl"
"#;
    let run = run_job(dir.path(), job).unwrap();
    assert_eq!(run.output.len(), input.len());
    for (out, (d, ts, k)) in run.output.iter().zip(&input) {
        assert_eq!(out["device_id"], *d);
        assert_eq!(out["execution_time"], *ts);
        assert_eq!(out["site"], format!("plant-{}", d % 3));
        assert_eq!(out["temperature"].as_f64(), Some(k - 273.15));
    }
}

#[test]
fn processing_time_windows_count_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = readings(3_000, 0, 5);
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let job = window_job("type = \"tumbling\"\nsize = \"50ms\"", "max-temperature-agg", "")
        .replace("timestamp = \"execution_time\"\n", "");
    let run = run_job(dir.path(), &job).unwrap();
    // Windows come from the wall clock, so check what must hold: aligned
    // 50 ms windows, and per device every event counted once, with the
    // overall max right.
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    let mut maxes: BTreeMap<i64, f64> = BTreeMap::new();
    for r in &run.output {
        let (s, e) = (r["window_start"].as_i64().unwrap(), r["window_end"].as_i64().unwrap());
        assert_eq!((s % 50, e - s), (0, 50));
        let d = r["device_id"].as_i64().unwrap();
        *counts.entry(d).or_default() += r["count"].as_i64().unwrap();
        let m = maxes.entry(d).or_insert(f64::MIN);
        *m = m.max(r["max_temperature"].as_f64().unwrap());
    }
    let mut expected_counts: BTreeMap<i64, i64> = BTreeMap::new();
    let mut expected_maxes: BTreeMap<i64, f64> = BTreeMap::new();
    for (d, _, t) in &input {
        *expected_counts.entry(*d).or_default() += 1;
        let m = expected_maxes.entry(*d).or_insert(f64::MIN);
        *m = m.max(*t);
    }
    assert_eq!(counts, expected_counts);
    assert_eq!(maxes, expected_maxes);
}

#[test]
fn jobs_that_do_not_fit_their_plugin_are_refused_before_any_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "").unwrap();
    let cases = [
        (
            window_job("type = \"tumbling\"\nsize = \"1s\"", "kelvin-to-celsius", ""),
            "test.toml: window: kelvin-to-celsius is a map-function: remove [window]",
        ),
        (
            window_job("type = \"tumbling\"\nsize = \"1s\"", "percentile", ""),
            "reads input 'value' (f64), but the job has no such field",
        ),
        (
            window_job("type = \"tumbling\"\nsize = \"1s\"", "max-temperature", "")
                .replace("temperature = \"f64\"", "temperature = \"i64\""),
            "reads input 'temperature' as f64, but the job declares field 'temperature' as i64",
        ),
        (window_job("type = \"tumbling\"\nsize = \"1s\"", "nope.wasm", ""), "cannot read plugin"),
    ];
    for (job, message) in cases {
        let err = run_job(dir.path(), &job).err().expect("must be refused").to_string();
        assert!(err.contains(message), "expected '{message}' in: {err}");
    }
}

/// Kelvin to Celsius in plain Rust, refusing any batch that holds a
/// reading above `limit`.
struct RefusingMap {
    limit: f64,
}

impl MapFunction for RefusingMap {
    fn map(&mut self, events: &crate::types::Events) -> Result<crate::plugin::Mapped, PluginError> {
        let Some(crate::types::Column::F64(kelvin)) = events.columns.first() else {
            panic!("one f64 column")
        };
        if let Some(bad) = kelvin.iter().find(|&&k| k > self.limit) {
            return Err(PluginError {
                plugin: "refusing-map".into(),
                call: crate::plugin::CallSite { function: "map", key: None, window: None },
                failure: crate::plugin::Failure::Returned(format!("reading {bad} above {}", self.limit)),
            });
        }
        Ok(crate::plugin::Mapped {
            rows: (0..kelvin.len() as u32).collect(),
            columns: vec![crate::types::Column::F64(kelvin.iter().map(|k| k - 273.15).collect())],
        })
    }
}

#[test]
fn a_map_record_the_function_refuses_goes_to_the_dead_letters_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = readings(5_500, 0, 6);
    // One reading above the limit in the second and fifth batches of 1,000.
    input[1_234].2 = 500.0;
    input[4_321].2 = 501.0;
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let text = r#"
name = "kelvin-to-celsius"
[source]
type = "file"
path = "{dir}/in.jsonl"
[format]
fields = { temperature = "f64" }
[function]
plugin = "kelvin-to-celsius"
[sink]
type = "file"
path = "{dir}/out.jsonl"
dead_letter = "{dir}/dead.jsonl"
"#
    .replace("{dir}", &dir.path().display().to_string());
    let job = Job::parse(&text, "test.toml", dir.path()).unwrap();
    let descriptor = crate::types::Descriptor {
        name: "refusing-map".into(),
        version: "0".into(),
        kind: FunctionKind::Map,
        description: String::new(),
        inputs: vec![crate::types::Field { name: "temperature".into(), ty: crate::types::FieldType::F64 }],
        outputs: vec![crate::types::Field { name: "temperature".into(), ty: crate::types::FieldType::F64 }],
        params: vec![],
        state_version: 0,
    };
    let stage = MapStage::new(
        RefusingMap { limit: 400.0 },
        vec![0],
        vec![crate::types::FieldType::F64],
        descriptor.outputs.clone(),
    );
    let facts = super::PluginFacts {
        name: descriptor.name.clone(),
        version: descriptor.version.clone(),
        world: FunctionKind::Map.world().into(),
        contract: crate::plugin::CONTRACT_VERSION.into(),
        inputs: vec!["temperature:f64".into()],
        state_version: 0,
        sha256: String::new(),
    };
    let mut pipeline = Pipeline { job, descriptor, facts, recipe: None, operator: Box::new(stage) };
    let mut source = FileSource::open(&dir.path().join("in.jsonl")).unwrap();
    let mut sinks = Sinks {
        output: Box::new(FileSink::create(&dir.path().join("out.jsonl")).unwrap()),
        dead_letter: Some(Box::new(FileSink::create(&dir.path().join("dead.jsonl")).unwrap())),
        late: None,
    };
    let summary = pipeline.run(&mut source, &mut sinks, &RunOptions::default(), &mut |_| {}).unwrap();
    drop(sinks);
    // The batches holding them are refused, then mapped record by record
    // (no retries here): only the two records fail; every other record is
    // mapped, once.
    let refused = |i: usize| i == 1_234 || i == 4_321;
    let mut expected_out: Vec<(i64, u64)> = input
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused(*i))
        .map(|(_, r)| (r.1, (r.2 - 273.15).to_bits()))
        .collect();
    let mut got_out: Vec<(i64, u64)> = read_json(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| (r["execution_time"].as_i64().unwrap(), r["temperature"].as_f64().unwrap().to_bits()))
        .collect();
    expected_out.sort();
    got_out.sort();
    assert_eq!(got_out, expected_out);
    let dead = read_json(&dir.path().join("dead.jsonl"));
    let mut got_dead: Vec<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    got_dead.sort();
    let expected_dead: Vec<i64> = (0..input.len() as i64).filter(|&i| refused(i as usize)).collect();
    assert_eq!(got_dead, expected_dead, "each record of a refused batch, once, by its offset");
    assert!(dead.iter().all(|d| {
        let reason = d["reason"].as_str().unwrap();
        d["kind"] == "record" && reason.contains("above 400") && reason.ends_with("(after 2 attempts)")
    }));
    assert_eq!((summary.failed, summary.dead_letters, summary.outputs), (2, 2, 5_498));
}

#[test]
fn map_calls_that_fail_for_a_while_are_retried_and_only_refused_records_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = readings(2_500, 0, 8);
    input[10].2 = 300.5;
    input[1_500].2 = 300.5;
    write_lines(&dir.path().join("in.jsonl"), input.iter().map(reading_line));
    let guest = crate::plugin::builtin::guests_dir().join("flaky_map.wasm");
    let job = |name: &str, fail_first: u32, retries: u32| {
        format!(
            "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"{{dir}}/in.jsonl\"\n[format]\n\
             fields = {{ temperature = \"f64\" }}\n[function]\nplugin = \"{}\"\nretries = {retries}\n\
             retry_backoff = \"20ms\"\nparams = {{ fail_first = {fail_first}, refuse = 300.5 }}\n[sink]\n\
             type = \"file\"\npath = \"{{dir}}/{name}-out.jsonl\"\ndead_letter = \"{{dir}}/{name}-dead.jsonl\"\n",
            guest.display()
        )
    };
    let celsius = |rows: &[Value]| -> Vec<(i64, u64)> {
        let mut out: Vec<_> = rows
            .iter()
            .map(|r| (r["execution_time"].as_i64().unwrap(), r["celsius"].as_f64().unwrap().to_bits()))
            .collect();
        out.sort();
        out
    };
    let offsets =
        |rows: &[Value]| -> Vec<i64> { rows.iter().map(|d| d["offset"].as_i64().unwrap()).collect() };
    let reasons = |rows: &[Value]| -> Vec<String> {
        rows.iter().map(|d| d["reason"].as_str().unwrap().to_string()).collect()
    };
    let mut kept: Vec<(i64, u64)> =
        input.iter().filter(|r| r.2 != 300.5).map(|r| (r.1, (r.2 - 273.15).to_bits())).collect();
    kept.sort();

    // Two failing calls, three retries: the first batch succeeds on its
    // third try. The batches holding 300.5 fail on every try, then record
    // by record only those two records fail.
    let started = std::time::Instant::now();
    let run = run_job(dir.path(), &job("retried", 2, 3)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20 + 40), "the retries waited, doubling");
    assert_eq!(celsius(&run.output), kept);
    assert_eq!(offsets(&run.dead), [10, 1_500]);
    for reason in reasons(&run.dead) {
        assert!(
            reason.contains("refusing reading 300.5") && reason.ends_with("(after 5 attempts)"),
            "{reason}"
        );
    }
    assert_eq!((run.summary.failed, run.summary.dead_letters, run.summary.outputs), (2, 2, 2_498));

    // Without retries, the first failure is pinned on a record too: the
    // narrowing's first call fails (the guest's second failure), and that
    // record is dead-lettered with the reason.
    let run = run_job(dir.path(), &job("once", 2, 0)).unwrap();
    assert_eq!(offsets(&run.dead), [0, 10, 1_500]);
    assert!(
        reasons(&run.dead)[0].contains("failing on purpose")
            && reasons(&run.dead)[0].ends_with("(after 2 attempts)")
    );
    let mut expected = kept.clone();
    expected.retain(|&(ts, _)| ts != input[0].1);
    assert_eq!(celsius(&run.output), expected);
}

/// A job over `{dir}/in.jsonl` with out-of-order input, lateness, a late
/// output and dead letters, and `checkpoint` appended.
fn checkpointed_job(dir: &Path, outputs: &str, checkpoint: &str) -> Job {
    let text = window_job(
        "type = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"",
        "max-temperature-agg",
        "allowed_lateness = \"300ms\"",
    )
    .replace("out.jsonl", &format!("{outputs}-out.jsonl"))
    .replace("dead.jsonl", &format!("{outputs}-dead.jsonl"))
    .replace("late.jsonl", &format!("{outputs}-late.jsonl"))
    .replace("max_out_of_orderness = \"500ms\"", "max_out_of_orderness = \"100ms\"")
        + checkpoint;
    Job::parse(&text.replace("{dir}", &dir.display().to_string()), "test.toml", dir).unwrap()
}

/// Runs `job` over files; `stop_after` outputs stops it (gracefully).
fn run_files(job: Job, stop_after: Option<u64>) -> RunSummary {
    let mut pipeline = Pipeline::build(job, engine()).unwrap();
    let mut io = connect::open(pipeline.job(), true, None).unwrap();
    let options = RunOptions::default();
    let stop = options.stop.clone();
    let mut written = 0;
    pipeline
        .run(io.source.as_mut(), &mut io.sinks, &options, &mut |_| {
            written += 1;
            if stop_after == Some(written) {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap()
}

#[test]
fn a_checkpointed_job_stopped_and_restarted_many_times_writes_exactly_what_one_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/checkpoints", dir.path().display());
    stop_and_resume_until_done(dir.path(), &url, 150);
    // Only `retain` (1) checkpoint is kept.
    let kept = std::fs::read_dir(dir.path().join("checkpoints/test")).unwrap().count();
    assert_eq!(kept, 1);
}

#[test]
fn the_same_with_checkpoints_in_a_real_hdfs() {
    let hdfs = crate::testing::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    stop_and_resume_until_done(dir.path(), &format!("{}/weir/checkpoints", hdfs.url), 600);
    // The NameNode itself lists the job's one retained checkpoint.
    let listed = hdfs.fs_shell(&["-ls", "-R", "/weir/checkpoints/test"]);
    let manifests = listed.lines().filter(|l| l.ends_with("/MANIFEST")).count();
    assert_eq!(manifests, 1, "{listed}");
    assert!(listed.contains("/partition-0"), "{listed}");
}

/// Runs a checkpointed job with storage `url`, stopping it every
/// `stop_every` outputs and starting it again until it ends; then checks
/// that it wrote exactly what one run writes, and nothing more when
/// started again.
fn stop_and_resume_until_done(dir: &Path, url: &str, stop_every: u64) {
    let mut input = readings(12_000, 250, 7);
    for r in input.iter_mut().step_by(500).skip(1) {
        r.1 -= 2_000;
    }
    let mut lines: Vec<String> = input.iter().map(reading_line).collect();
    for i in (50..lines.len()).step_by(997) {
        lines.insert(i, "{\"device_id\": 1, \"temperature\": \"warm\"}".into());
    }
    write_lines(&dir.join("in.jsonl"), lines);
    let clean = run_files(checkpointed_job(dir, "clean", ""), None);
    assert!(clean.late > 0 && clean.dead_letters > 0 && clean.refired > 0, "{clean:?}");

    let storage =
        format!("\n[checkpoint]\nstorage = \"{url}\"\ninterval = \"1ms\"\nmode = \"exactly-once\"\n");
    let mut runs = 0;
    let mut restored = 0;
    loop {
        runs += 1;
        assert!(runs < 200, "the job never finished");
        let summary = run_files(checkpointed_job(dir, "resumed", &storage), Some(stop_every));
        restored += u64::from(summary.restored.is_some());
        assert!(summary.checkpoints > 0);
        if summary.outputs < stop_every {
            break;
        }
    }
    assert!(runs >= 4 && restored == runs - 1, "{runs} runs, {restored} restored");
    for file in ["out", "dead", "late"] {
        let clean = std::fs::read(dir.join(format!("clean-{file}.jsonl"))).unwrap();
        let resumed = std::fs::read(dir.join(format!("resumed-{file}.jsonl"))).unwrap();
        assert!(!clean.is_empty(), "{file}");
        assert!(resumed == clean, "{file}: the resumed runs wrote other bytes than one run");
    }
    // Started again after the end, the job writes nothing new.
    let again = run_files(checkpointed_job(dir, "resumed", &storage), None);
    assert_eq!((again.outputs, again.dead_letters, again.late), (0, 0, 0));
    let resumed = std::fs::read(dir.join("resumed-out.jsonl")).unwrap();
    assert!(resumed == std::fs::read(dir.join("clean-out.jsonl")).unwrap());
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_one_before_and_a_changed_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.jsonl"), readings(24_000, 100, 8).iter().map(reading_line));
    let storage = format!(
        "\n[checkpoint]\nstorage = \"file://{}/checkpoints\"\ninterval = \"1ms\"\nretain = 3\nmode = \"exactly-once\"\n",
        dir.path().display()
    );
    // Three stopped runs: each ends with a checkpoint, so there are at
    // least three, whatever the writer thread managed in between.
    for _ in 0..3 {
        let run = run_files(checkpointed_job(dir.path(), "a", &storage), Some(300));
        assert!(run.checkpoints >= 1, "{run:?}");
    }
    let root = dir.path().join("checkpoints/test");
    let mut ids: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    ids.sort();
    assert_eq!(ids.len(), 3, "retain = 3 keeps three: {ids:?}");
    // Damage the newest: one byte of its partition file.
    let newest = root.join(&ids[2]).join("partition-0");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    let expected: u64 = ids[1].trim_start_matches("chk-").parse().unwrap();
    let second = run_files(checkpointed_job(dir.path(), "a", &storage), Some(100));
    assert_eq!(second.restored, Some(expected), "the one before the corrupt one");
    // The window changed: the state cannot follow, and the job says so.
    let mut job = checkpointed_job(dir.path(), "a", &storage);
    job.window = Some(crate::window::WindowSpec::Tumbling { size: 1000 });
    let mut pipeline = Pipeline::build(job, engine()).unwrap();
    let mut io = connect::open(pipeline.job(), true, None).unwrap();
    let err =
        pipeline.run(io.source.as_mut(), &mut io.sinks, &RunOptions::default(), &mut |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("was taken with window sliding:1s/250ms, but the job now has tumbling:1s"),
        "{message}"
    );
}

/// A source over lines that hands over only the lines the test has
/// released, and ends once all are released and handed over: a job that
/// runs as long as the test wants.
struct Gated {
    lines: Vec<String>,
    next: usize,
    released: Arc<std::sync::atomic::AtomicUsize>,
}

impl Source for Gated {
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(crate::source::RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        let until = self.released.load(Ordering::SeqCst).min(self.lines.len());
        if self.next >= until {
            if self.next == self.lines.len() {
                return Ok(Poll::End);
            }
            std::thread::sleep(wait);
            return Ok(Poll::Idle);
        }
        let n = (until - self.next).min(max);
        for i in self.next..self.next + n {
            each(crate::source::RawRecord {
                partition: 0,
                offset: i as i64,
                payload: self.lines[i].as_bytes(),
            });
        }
        self.next += n;
        Ok(Poll::Records(n))
    }

    fn name(&self) -> &str {
        "gated"
    }

    fn commit(&mut self, _: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.next = offsets.iter().find(|(p, _)| *p == 0).map_or(0, |&(_, o)| o as usize);
        Ok(())
    }
}

#[test]
fn a_namenode_restart_fails_some_checkpoints_and_the_job_goes_on_with_exact_output() {
    use crate::checkpoint::{latest_complete, open_storage};
    let hdfs = crate::testing::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = readings(9_000, 0, 11).iter().map(reading_line).collect();
    lines.insert(4_500, "{\"temperature\": \"warm\"}".into());
    let url = format!("{}/weir/outage", hdfs.url);
    let text = format!(
        "name = \"nn\"\n[source]\ntype = \"file\"\npath = \"{{dir}}/unused.jsonl\"\n[format]\n\
         fields = {{ temperature = \"f64\" }}\n[function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"file\"\n\
         path = \"{{dir}}/out.jsonl\"\ndead_letter = \"{{dir}}/dead.jsonl\"\n[checkpoint]\nstorage = \"{url}\"\n\
         interval = \"200ms\"\ntimeout = \"4s\"\ntolerable_failures = 100\nmode = \"exactly-once\"\n"
    )
    .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("unused.jsonl"), "").unwrap();
    let job = Job::parse(&text, "nn.toml", dir.path()).unwrap();

    let released = Arc::new(std::sync::atomic::AtomicUsize::new(3_000));
    let gate = released.clone();
    let source_lines = lines.clone();
    let runner = std::thread::spawn(move || {
        let mut pipeline = Pipeline::build(job, engine()).unwrap();
        let mut io = connect::open(pipeline.job(), true, None).unwrap();
        let mut source = Gated { lines: source_lines, next: 0, released: gate };
        pipeline.run(&mut source, &mut io.sinks, &RunOptions::default(), &mut |_| {})
    });
    let storage = open_storage(&url).unwrap();
    let checkpointed = |at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The job removes the one listed here once a newer one is
            // complete (retain = 1): a read that finds it gone looks again.
            let latest = match latest_complete(storage.as_ref(), "nn") {
                Ok(latest) => latest,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no checkpoint could be read within a minute: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let names: Vec<String> =
                latest.iter().flat_map(|c| c.files.iter().map(|f| f.0.clone())).collect();
            let offset = latest.and_then(|c| c.files.into_iter().find(|(name, _)| name == "partition-0"));
            // The partition file starts with its layout (4 bytes), then
            // the next offset.
            let next = offset.map_or(0, |(_, b)| i64::from_le_bytes(b[4..12].try_into().unwrap()));
            if next >= at_least as i64 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint past offset {at_least} within a minute: {next} {names:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    checkpointed(3_000);

    // The NameNode goes away while more records flow: checkpoints time out
    // (4 s) and are tolerated; the job keeps writing output.
    crate::testing::HdfsCluster::run(hdfs.dir(), "stop-namenode");
    released.store(6_000, Ordering::SeqCst);
    let down = Instant::now();
    let out = dir.path().join("out.jsonl");
    while std::fs::read_to_string(&out).unwrap_or_default().lines().count() < 5_999 {
        assert!(down.elapsed() < Duration::from_secs(30), "the job stopped writing while HDFS was down");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for at least two checkpoints to time out.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    assert!(!runner.is_finished(), "the job stopped while the NameNode was down");
    crate::testing::HdfsCluster::run(hdfs.dir(), "start-namenode");
    checkpointed(6_000);
    released.store(lines.len(), Ordering::SeqCst);
    let summary = runner.join().unwrap().unwrap_or_else(|e| panic!("the job failed: {e}"));
    assert!(summary.failed_checkpoints >= 2, "{summary:?}");
    // The run's last one, written after the NameNode came back (taken again
    // while failures are tolerated), holds the end of the input. The ones
    // seen in HDFS above may count as failed here: on a loaded machine
    // HDFS (and a NameNode just restarted) can take longer than the 4 s
    // timeout to take them, and their writers then finish late.
    assert!(summary.checkpoints >= 1, "{summary:?}");
    checkpointed(lines.len());

    // Every record mapped once, the bad line in the dead letters once.
    let mut expected: Vec<(i64, u64)> =
        readings(9_000, 0, 11).iter().map(|r| (r.1, (r.2 - 273.15).to_bits())).collect();
    expected.sort();
    let mut got: Vec<(i64, u64)> = read_json(&out)
        .iter()
        .map(|r| (r["execution_time"].as_i64().unwrap(), r["temperature"].as_f64().unwrap().to_bits()))
        .collect();
    got.sort();
    assert!(got == expected, "{} records written, {} expected", got.len(), expected.len());
    let dead = read_json(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect::<Vec<_>>(), [4_500]);
}
