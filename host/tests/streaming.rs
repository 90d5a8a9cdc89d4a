//! Whole streaming jobs through Kafka: readings produced to a
//! multi-partition topic (with bad records among them), the job run over
//! them, and the output and dead-letter topics read back and compared with
//! results computed here from the generator. On the embedded mock cluster
//! and on a real broker process (tansu).

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir::job::Job;
use weir::kafka::{Cluster, KafkaConfig};
use weir::pipeline::{Pipeline, RunOptions, RunSummary, io};
use weir::plugin::{EngineConfig, PluginEngine};
use weir::sink::Sink;
use weir::sink::kafka::KafkaSink;
use weir::source::Source;
use weir::source::kafka::{KafkaSource, KafkaSourceOptions};
use weir_devtools::readings::Reading;

const DEVICES: u64 = 10;

fn engine() -> PluginEngine {
    PluginEngine::new(EngineConfig { max_instances: 8, cache_dir: None }).unwrap()
}

/// Records no job can decode, each with the reason it must be given.
const BAD: [(&str, &str); 4] = [
    ("{\"device_id\": 3, \"temperature\": ", "malformed JSON"),
    ("{\"device_id\": 3, \"execution_time\": 1700000000000}", "missing field 'temperature'"),
    ("{\"device_id\": \"3\", \"temperature\": \"hot\", \"execution_time\": 1700000000000}", "expected f64"),
    ("[1, 2, 3]", "not a JSON object"),
];

/// Produces readings `0..n` keyed by device, with the bad records spread
/// among them.
fn produce(cluster: &Cluster, topic: &str, n: u64) {
    let mut sink = KafkaSink::open(cluster, topic).unwrap();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        key.clear();
        value.clear();
        r.write_key(&mut key);
        r.write_json(&mut value);
        sink.send(Some(&key), &value).unwrap();
        if i % (n / BAD.len() as u64) == 7 {
            let (bad, _) = BAD[(i / (n / BAD.len() as u64)) as usize % BAD.len()];
            sink.send(Some(b"3"), bad.as_bytes()).unwrap();
        }
    }
    sink.flush().unwrap();
}

/// Every record of `topic`, as JSON.
fn read_topic(cluster: &Cluster, topic: &str) -> Vec<Value> {
    let options = KafkaSourceOptions { until_end: true, ..KafkaSourceOptions::new(topic) };
    let mut source = KafkaSource::open(cluster, &options).unwrap();
    let mut out = vec![];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let polled = source
            .poll(1000, Duration::from_millis(100), &mut |r| {
                out.push(serde_json::from_slice(r.payload).unwrap())
            })
            .unwrap();
        if polled == weir::source::Poll::End {
            return out;
        }
        assert!(Instant::now() < deadline, "reading {topic} took too long");
    }
}

fn job(brokers: &str, window: &str, plugin: &str) -> Job {
    let text = format!(
        r#"
name = "max-temperature"
[source]
type = "kafka"
brokers = "{brokers}"
topic = "readings"
partitions = 4
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
max_out_of_orderness = "500ms"
idle_timeout = "1s"
late_output = "readings-late"
[window]
{window}
[function]
plugin = "{plugin}"
[sink]
type = "kafka"
topic = "max-temperature"
dead_letter = "readings-dlq"
"#
    );
    Job::parse(&text, "test.toml", Path::new(".")).unwrap()
}

/// Runs the job to the end of what is in the topic.
fn run(job: Job, cluster: Option<Cluster>) -> RunSummary {
    let engine = engine();
    let mut pipeline = Pipeline::build(job, &engine).unwrap();
    let mut io = io::open(pipeline.job(), true, cluster).unwrap();
    pipeline.run(io.source.as_mut(), &mut io.sinks, &RunOptions::default(), &mut |_| {}).unwrap()
}

/// (device, start, end) → (max, count), from the generator.
type Results = BTreeMap<(i64, i64, i64), (f64, i64)>;

fn expected(n: u64, size: i64, slide: i64) -> Results {
    let mut out = Results::new();
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        let ts = r.execution_time;
        let mut s = ts - ts.rem_euclid(slide);
        while s + size > ts {
            let e = out.entry((r.device_id as i64, s, s + size)).or_insert((f64::MIN, 0));
            e.0 = e.0.max(r.temperature);
            e.1 += 1;
            s -= slide;
        }
    }
    out
}

fn results(records: &[Value]) -> Results {
    records
        .iter()
        .map(|r| {
            let key = (
                r["device_id"].as_i64().unwrap(),
                r["window_start"].as_i64().unwrap(),
                r["window_end"].as_i64().unwrap(),
            );
            (key, (r["max_temperature"].as_f64().unwrap(), r["count"].as_i64().unwrap()))
        })
        .collect()
}

fn check_dead_letters(cluster: &Cluster) {
    let dead = read_topic(cluster, "readings-dlq");
    assert_eq!(dead.len(), BAD.len(), "{dead:?}");
    for (payload, reason) in BAD {
        let letter =
            dead.iter().find(|d| d["payload"] == payload).unwrap_or_else(|| panic!("{payload} lost"));
        assert!(letter["reason"].as_str().unwrap().contains(reason), "{letter}");
        assert_eq!(letter["source"], "readings");
        assert!(letter["partition"].as_i64().is_some() && letter["offset"].as_i64().is_some());
    }
}

#[test]
fn jobs_through_the_embedded_broker_match_the_generator() {
    let n = 12_000;
    let cases = [
        ("type = \"tumbling\"\nsize = \"1s\"", "max-temperature", 1000, 1000),
        ("type = \"sliding\"\nsize = \"2s\"\nslide = \"500ms\"", "max-temperature-agg", 2000, 500),
    ];
    for (window, plugin, size, slide) in cases {
        let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
        cluster.create_topic("readings", 4, 1).unwrap();
        produce(&cluster, "readings", n);
        let summary = run(job("embedded", window, plugin), Some(cluster.clone()));
        assert_eq!(summary.events, n);
        assert_eq!(summary.dead_letters, BAD.len() as u64);
        assert_eq!(summary.late, 0);
        let output = read_topic(&cluster, "max-temperature");
        assert_eq!(results(&output), expected(n, size, slide), "{window} {plugin}");
        assert_eq!(output.len() as u64, summary.outputs);
        check_dead_letters(&cluster);
    }
}

#[test]
fn sessions_through_the_embedded_broker_match_the_generator() {
    let n = 6_000;
    let gap = 40;
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    cluster.create_topic("readings", 4, 1).unwrap();
    produce(&cluster, "readings", n);
    run(job("embedded", "type = \"session\"\ngap = \"40ms\"", "max-temperature"), Some(cluster.clone()));
    let mut by_device: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        by_device.entry(r.device_id as i64).or_default().push(r);
    }
    let mut expected = Results::new();
    for (d, readings) in by_device {
        let mut session: Vec<&Reading> = vec![];
        let mut close = |s: &[&Reading]| {
            let max = s.iter().map(|r| r.temperature).fold(f64::MIN, f64::max);
            expected
                .insert((d, s[0].execution_time, s[s.len() - 1].execution_time + gap), (max, s.len() as i64));
        };
        for r in &readings {
            if session.last().is_some_and(|l| r.execution_time >= l.execution_time + gap) {
                close(&session);
                session.clear();
            }
            session.push(r);
        }
        close(&session);
    }
    assert_eq!(results(&read_topic(&cluster, "max-temperature")), expected);
}

#[test]
fn idle_partitions_do_not_hold_the_watermark_back() {
    // One device, so one of the four partitions gets every reading: the
    // three others never speak. Unbounded, windows must still fire once
    // they go idle (after 1 s), long before anything ends the run.
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    cluster.create_topic("readings", 4, 1).unwrap();
    let mut sink = KafkaSink::open(&cluster, "readings").unwrap();
    let mut value = Vec::new();
    for i in 0..2_000 {
        value.clear();
        Reading::generate(i, 1).write_json(&mut value);
        sink.send(Some(b"1"), &value).unwrap();
    }
    sink.flush().unwrap();
    let engine = engine();
    let mut pipeline =
        Pipeline::build(job("embedded", "type = \"tumbling\"\nsize = \"1s\"", "max-temperature"), &engine)
            .unwrap();
    let mut io = io::open(pipeline.job(), false, Some(cluster.clone())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let options = RunOptions { stop: stop.clone(), ..RunOptions::default() };
    let mut windows = vec![];
    pipeline
        .run(io.source.as_mut(), &mut io.sinks, &options, &mut |e| {
            windows.push((e.record["window_start"].as_i64().unwrap(), e.record["count"].as_i64().unwrap()));
            // 2,000 readings 5 ms apart: 10 windows, 9 of them complete
            // (the watermark trails the last event by the bound).
            if windows.len() == 9 {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    drop(watchdog);
    assert_eq!(windows.len(), 9, "windows fired before the stop: {windows:?}");
    for (i, (start, count)) in windows.iter().enumerate() {
        assert_eq!((*start, *count), (1_700_000_000_000 + 1000 * i as i64, 200));
    }
}

#[test]
fn the_job_through_a_real_broker_process_matches_the_generator() {
    let tansu = support::start_tansu();
    let config = KafkaConfig { connect_attempts: 12, ..KafkaConfig::default() };
    let cluster = Cluster::external(&tansu.bootstrap, config).expect("tansu answers");
    cluster.create_topic("readings", 3, 1).unwrap();
    let n = 6_000;
    produce(&cluster, "readings", n);
    let summary = run(job(&tansu.bootstrap, "type = \"tumbling\"\nsize = \"1s\"", "max-temperature"), None);
    assert_eq!((summary.events, summary.dead_letters), (n, BAD.len() as u64));
    assert_eq!(results(&read_topic(&cluster, "max-temperature")), expected(n, 1000, 1000));
    check_dead_letters(&cluster);
}
