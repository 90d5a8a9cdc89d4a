//! Whole streaming jobs through Kafka: readings produced to a
//! multi-partition topic (with bad records among them), the job run over
//! them, and the output and dead-letter topics read back and compared with
//! results computed here from the generator. On the embedded mock cluster
//! and on a real broker process (tansu).

mod support;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use weir::job::Job;
use weir::kafka::{Cluster, KafkaConfig};
use weir::pipeline::{Pipeline, RunOptions, RunSummary, connect};
use weir::plugin::{EngineConfig, PluginEngine};
use weir::sink::Sink;
use weir::sink::kafka::KafkaSink;
use weir::source::Source;
use weir::source::kafka::{KafkaSource, KafkaSourceOptions};
use weir_devtools::readings::{Reading, START_MS, splitmix64};

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
    let mut io = connect::open(pipeline.job(), true, cluster).unwrap();
    pipeline.run(io.source.as_mut(), &mut io.sinks, &RunOptions::default(), &mut |_| {}).unwrap()
}

/// One window's result: (device, start, end, max temperature as bits,
/// count). The max is compared exactly: it is one of the inputs.
type Row = (i64, i64, i64, u64, i64);

/// Window results as a multiset: each distinct result and how often it was
/// written, so a duplicate or a missing record fails the comparison.
type Results = BTreeMap<Row, usize>;

fn row(device: i64, start: i64, end: i64, max: f64, count: i64) -> Row {
    (device, start, end, max.to_bits(), count)
}

fn multiset(rows: impl IntoIterator<Item = Row>) -> Results {
    let mut out = Results::new();
    for r in rows {
        *out.entry(r).or_default() += 1;
    }
    out
}

/// Tumbling or sliding windows over readings `0..n`, by brute force.
fn expected(n: u64, size: i64, slide: i64) -> Results {
    let mut windows: BTreeMap<(i64, i64, i64), (f64, i64)> = BTreeMap::new();
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        let ts = r.execution_time;
        let mut s = ts - ts.rem_euclid(slide);
        while s + size > ts {
            let e = windows.entry((r.device_id as i64, s, s + size)).or_insert((f64::MIN, 0));
            e.0 = e.0.max(r.temperature);
            e.1 += 1;
            s -= slide;
        }
    }
    multiset(windows.into_iter().map(|((d, s, e), (max, count))| row(d, s, e, max, count)))
}

fn results(records: &[Value]) -> Results {
    multiset(records.iter().map(|r| {
        row(
            r["device_id"].as_i64().unwrap(),
            r["window_start"].as_i64().unwrap(),
            r["window_end"].as_i64().unwrap(),
            r["max_temperature"].as_f64().unwrap(),
            r["count"].as_i64().unwrap(),
        )
    }))
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
            let end = s[s.len() - 1].execution_time + gap;
            *expected.entry(row(d, s[0].execution_time, end, max, s.len() as i64)).or_default() += 1;
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
    let mut io = connect::open(pipeline.job(), false, Some(cluster.clone())).unwrap();
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
            let record = e.json().unwrap();
            windows.push((record["window_start"].as_i64().unwrap(), record["count"].as_i64().unwrap()));
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
fn a_partition_fetched_late_is_behind_not_idle() {
    // Two brokers; the one leading partition 0 answers 1.5 s late, so the
    // job reads the other partitions to their end long before partition 0's
    // first records arrive. Partition 0 is not quiet (its records wait in
    // the broker): it must not be moved on after the 1 s idle timeout,
    // which would make its own records late.
    let n = 4_000;
    let cluster = Cluster::embedded(KafkaConfig { embedded_brokers: 2, ..KafkaConfig::default() }).unwrap();
    cluster.create_topic("readings", 4, 1).unwrap();
    produce(&cluster, "readings", n);
    let leaders: Vec<i32> =
        cluster.describe_topic("readings").unwrap().partitions.iter().map(|p| p.leader).collect();
    assert!(leaders.iter().any(|&l| l != leaders[0]), "the partitions share one leader: {leaders:?}");
    let mock = cluster.embedded_cluster().unwrap();
    mock.set_round_trip(leaders[0], Duration::from_millis(1500)).unwrap();
    let summary =
        run(job("embedded", "type = \"tumbling\"\nsize = \"1s\"", "max-temperature"), Some(cluster.clone()));
    mock.set_round_trip(leaders[0], Duration::ZERO).unwrap();
    assert_eq!((summary.events, summary.late), (n, 0), "{summary:?}");
    assert_eq!(results(&read_topic(&cluster, "max-temperature")), expected(n, 1000, 1000));
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

    // The same jobs as on the embedded broker, through tansu.
    out_of_order_within_the_bound(&cluster, &tansu.bootstrap, None);
    map_job_through(&cluster, &tansu.bootstrap, None);
    late_events_through(&cluster, &tansu.bootstrap, None);
    processing_time_sessions_through(&cluster, &tansu.bootstrap, None);
}

// ---------------------------------------------------------------------------
// Out-of-order input, lateness, map jobs and processing time, through the
// broker. The input is produced with a plain rdkafka producer, not weir's
// sink, and every output topic is compared whole, as a multiset.

/// A keyed rdkafka producer, independent of weir's sink.
struct Producer {
    inner: BaseProducer,
    topic: String,
}

impl Producer {
    fn new(bootstrap: &str, topic: &str) -> Producer {
        let inner = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()
            .unwrap();
        Producer { inner, topic: topic.to_string() }
    }

    fn send(&self, key: &str, payload: &str) {
        loop {
            match self.inner.send(BaseRecord::to(&self.topic).key(key).payload(payload)) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("cannot produce: {e}"),
            }
        }
    }

    fn send_reading(&self, r: &Reading) {
        self.send(&r.device_id.to_string(), &r.to_json());
    }

    /// Waits until everything sent is acknowledged.
    fn flush(&self) {
        self.inner.flush(Duration::from_secs(30)).unwrap();
    }
}

/// A job reading `{prefix}in` and writing `{prefix}out`, `{prefix}dlq` and
/// `{prefix}late`.
fn custom_job(brokers: &str, prefix: &str, event_time: bool, time: &str, window: &str, plugin: &str) -> Job {
    let timestamp = if event_time { "timestamp = \"execution_time\"" } else { "" };
    let text = format!(
        r#"
name = "{prefix}job"
[source]
type = "kafka"
brokers = "{brokers}"
topic = "{prefix}in"
[format]
key = "device_id"
{timestamp}
fields = {{ temperature = "f64" }}
[time]
{time}
late_output = "{prefix}late"
{window}
[function]
plugin = "{plugin}"
[sink]
type = "kafka"
topic = "{prefix}out"
dead_letter = "{prefix}dlq"
"#
    );
    Job::parse(&text, "test.toml", Path::new(".")).unwrap()
}

/// Readings `0..n` in an order shuffled within blocks of `block`
/// consecutive readings (deterministically), so each is at most
/// `block - 1` steps away from its place.
fn shuffled(n: u64, block: u64) -> Vec<Reading> {
    let mut out: Vec<Reading> = (0..n).map(|i| Reading::generate(i, DEVICES)).collect();
    for chunk in out.chunks_mut(block as usize) {
        for i in (1..chunk.len()).rev() {
            let j = (splitmix64(chunk[i].execution_time as u64) % (i as u64 + 1)) as usize;
            chunk.swap(i, j);
        }
    }
    out
}

/// Runs `job` unbounded while `script` feeds its input from another thread.
/// The script sees every emitted record (with its re-fire flag) through the
/// channel; the run stops when the script returns (or panics, which then
/// fails the test). Returns the summary and every emitted record.
fn run_live(
    job: Job,
    cluster: Option<Cluster>,
    script: impl FnOnce(&mpsc::Receiver<(Value, bool)>) + Send + 'static,
) -> (RunSummary, Vec<(Value, bool)>) {
    struct StopOnExit(Arc<AtomicBool>);
    impl Drop for StopOnExit {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let engine = engine();
    let mut pipeline = Pipeline::build(job, &engine).unwrap();
    let mut io = connect::open(pipeline.job(), false, cluster).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let feeder = {
        let guard = StopOnExit(stop.clone());
        std::thread::spawn(move || {
            let _guard = guard;
            script(&rx);
        })
    };
    let options = RunOptions { stop, ..RunOptions::default() };
    let mut emitted = vec![];
    let summary = pipeline.run(io.source.as_mut(), &mut io.sinks, &options, &mut |e| {
        let record = e.json().expect("an output record is JSON");
        emitted.push((record.clone(), e.refire));
        let _ = tx.send((record, e.refire));
    });
    if let Err(panic) = feeder.join() {
        std::panic::resume_unwind(panic);
    }
    (summary.unwrap(), emitted)
}

/// The next `n` emitted records; fails after 60 s without them.
fn next_emitted(rx: &mpsc::Receiver<(Value, bool)>, n: usize) -> Vec<(Value, bool)> {
    (0..n)
        .map(|k| {
            rx.recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("only {k} of {n} records were emitted"))
        })
        .collect()
}

/// Out-of-order input within the watermark's bound: nothing is late, and
/// the windows are exactly those of the in-order data.
fn out_of_order_within_the_bound(cluster: &Cluster, brokers: &str, embedded: Option<Cluster>) {
    let n = 8_000;
    cluster.create_topic("ooo-in", 3, 1).unwrap();
    let producer = Producer::new(cluster.bootstrap(), "ooo-in");
    // Blocks of 40 readings span 200 ms, under the 500 ms bound.
    for r in shuffled(n, 40) {
        producer.send_reading(&r);
    }
    producer.flush();
    // The input really is out of order within its partitions.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut backwards = 0;
    let options = KafkaSourceOptions { until_end: true, ..KafkaSourceOptions::new("ooo-in") };
    let mut source = KafkaSource::open(cluster, &options).unwrap();
    loop {
        let polled = source
            .poll(1000, Duration::from_millis(100), &mut |r| {
                let v: Value = serde_json::from_slice(r.payload).unwrap();
                let ts = v["execution_time"].as_i64().unwrap();
                if last.insert(r.partition, ts).is_some_and(|before| before > ts) {
                    backwards += 1;
                }
            })
            .unwrap();
        if polled == weir::source::Poll::End {
            break;
        }
    }
    assert!(backwards > n / 10, "only {backwards} readings came before an earlier one");

    let time = "max_out_of_orderness = \"500ms\"\nidle_timeout = \"1s\"";
    let job = custom_job(
        brokers,
        "ooo-",
        true,
        time,
        "[window]\ntype = \"tumbling\"\nsize = \"1s\"",
        "max-temperature",
    );
    let summary = run(job, embedded);
    assert_eq!((summary.events, summary.late, summary.dead_letters, summary.refired), (n, 0, 0, 0));
    let output = read_topic(cluster, "ooo-out");
    assert_eq!(output.len() as u64, summary.outputs);
    assert_eq!(results(&output), expected(n, 1000, 1000));
}

#[test]
fn out_of_order_input_through_the_embedded_broker_matches_the_in_order_windows() {
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    out_of_order_within_the_bound(&cluster, "embedded", Some(cluster.clone()));
}

/// One reading with a chosen device, time (ms after the first reading)
/// and temperature.
fn reading(device: u64, at: i64, temperature: f64) -> Reading {
    Reading { device_id: device, temperature, execution_time: START_MS + at }
}

#[test]
fn late_events_refire_their_window_or_go_to_the_late_topic() {
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    late_events_through(&cluster, "embedded", Some(cluster.clone()));
}

/// Late events through the broker, in a live run fed phase by phase: one
/// within the allowed lateness re-fires its window, ones past it go to the
/// late topic.
fn late_events_through(cluster: &Cluster, brokers: &str, embedded: Option<Cluster>) {
    // One partition, so the script knows what the job has read when a
    // window fires. Tumbling 1 s windows, a 100 ms bound, 1 s of lateness:
    // window [0, 1000) is fired when the watermark reaches 999 and kept
    // until it passes 1999.
    cluster.create_topic("late-in", 1, 1).unwrap();
    let time = "max_out_of_orderness = \"100ms\"\nallowed_lateness = \"1s\"";
    let job = custom_job(
        brokers,
        "late-",
        true,
        time,
        "[window]\ntype = \"tumbling\"\nsize = \"1s\"",
        "max-temperature",
    );
    let too_late = [reading(1, 600, 399.0), reading(2, 1999, 398.0)];
    let bootstrap = cluster.bootstrap().to_string();
    let (summary, emitted) = run_live(job, embedded, move |rx| {
        let producer = Producer::new(&bootstrap, "late-in");
        let phase = |readings: &[Reading]| {
            for r in readings {
                producer.send_reading(r);
            }
            producer.flush();
        };
        // 1. Window [0, 1000) of both devices, then events that move the
        // watermark to 1499: the window fires.
        phase(&[
            reading(1, 100, 300.0),
            reading(1, 400, 310.0),
            reading(2, 200, 305.0),
            reading(2, 900, 301.0),
            reading(1, 1500, 320.0),
            reading(2, 1600, 330.0),
        ]);
        next_emitted(rx, 2);
        // 2. A late event within the lateness: the window fires again.
        phase(&[reading(1, 700, 350.0)]);
        next_emitted(rx, 1);
        // 3. The watermark moves to 3099: [1000, 2000) fires, and
        // [0, 1000) closes for good.
        phase(&[reading(2, 3200, 340.0)]);
        next_emitted(rx, 2);
        // 4. Events for closed windows go to the late topic; one for
        // [2000, 3000), which is complete but still open, is counted.
        let mut last = too_late.to_vec();
        last.push(reading(1, 2500, 360.0));
        phase(&last);
        next_emitted(rx, 1);
    });
    let w = |device: i64, start: i64, max: f64, count: i64| {
        row(device, START_MS + start, START_MS + start + 1000, max, count)
    };
    let expected = multiset([
        w(1, 0, 310.0, 2),
        w(2, 0, 305.0, 2),
        w(1, 0, 350.0, 3),
        w(1, 1000, 320.0, 1),
        w(2, 1000, 330.0, 1),
        w(1, 2000, 360.0, 1),
    ]);
    let output = read_topic(cluster, "late-out");
    assert_eq!(results(&output), expected);
    assert_eq!(results(&emitted.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>()), expected);
    // The second firing of [0, 1000) for device 1 is the re-fire.
    let firings: Vec<bool> = emitted
        .iter()
        .filter(|(v, _)| v["device_id"] == 1 && v["window_start"] == START_MS)
        .map(|(_, refire)| *refire)
        .collect();
    assert_eq!(firings, [false, true]);
    assert_eq!((summary.late, summary.dead_letters, summary.outputs), (2, 0, 6));

    // The late topic holds exactly the two closed-window events, byte for
    // byte.
    let late = read_topic(cluster, "late-late");
    let mut payloads: Vec<String> = late.iter().map(|l| l["payload"].as_str().unwrap().to_string()).collect();
    payloads.sort();
    let mut expected_payloads: Vec<String> = too_late.iter().map(Reading::to_json).collect();
    expected_payloads.sort();
    assert_eq!(payloads, expected_payloads);
    for l in &late {
        assert_eq!(l["source"], "late-in");
        assert_eq!(l["watermark"], START_MS + 3099, "{l}");
        assert!(l["reason"].as_str().unwrap().starts_with("late"), "{l}");
    }
}

/// A map job (kelvin to Celsius) over readings with bad records among
/// them: every good record comes out once with only its temperature
/// changed and its key kept; the bad ones go to the dead letters.
fn map_job_through(cluster: &Cluster, brokers: &str, embedded: Option<Cluster>) {
    let n = 3_000;
    cluster.create_topic("map-in", 3, 1).unwrap();
    let producer = Producer::new(cluster.bootstrap(), "map-in");
    for i in 0..n {
        producer.send_reading(&Reading::generate(i, DEVICES));
        if i % 1000 == 500 {
            producer.send("3", BAD[(i / 1000) as usize].0);
        }
    }
    producer.flush();
    let job = custom_job(brokers, "map-", true, "", "", "kelvin-to-celsius");
    let summary = run(job, embedded);
    assert_eq!((summary.events, summary.dead_letters, summary.outputs), (n, 3, n));

    let mut source = KafkaSource::open(
        cluster,
        &KafkaSourceOptions { until_end: true, ..KafkaSourceOptions::new("map-out") },
    )
    .unwrap();
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    loop {
        let polled = source
            .poll_records(1000, Duration::from_millis(100), &mut |r| {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let v: Value = serde_json::from_slice(r.payload).unwrap();
                *got.entry((key, v.to_string())).or_default() += 1;
            })
            .unwrap();
        if polled == weir::source::Poll::End {
            break;
        }
    }
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        let v = serde_json::json!({
            "device_id": r.device_id,
            "temperature": r.temperature - 273.15,
            "execution_time": r.execution_time,
        });
        *expected.entry((r.device_id.to_string(), v.to_string())).or_default() += 1;
    }
    assert_eq!(got, expected);
    let dead = read_topic(cluster, "map-dlq");
    assert_eq!(dead.len(), 3, "{dead:?}");
}

#[test]
fn a_map_job_through_the_embedded_broker_changes_only_the_mapped_field() {
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    map_job_through(&cluster, "embedded", Some(cluster.clone()));
}

#[test]
fn processing_time_sessions_through_the_embedded_broker() {
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    processing_time_sessions_through(&cluster, "embedded", Some(cluster.clone()));
}

/// Processing-time sessions in a live run. Without a timestamp field,
/// events are stamped when read, and a session closes once the clock is
/// `gap` past its last event. The script sends a burst, waits for its
/// sessions to close, then sends the next: each burst of a device is one
/// session.
fn processing_time_sessions_through(cluster: &Cluster, brokers: &str, embedded: Option<Cluster>) {
    cluster.create_topic("pt-in", 2, 1).unwrap();
    let gap = 1500;
    let job = custom_job(
        brokers,
        "pt-",
        false,
        "",
        &format!("[window]\ntype = \"session\"\ngap = \"{gap}ms\""),
        "max-temperature",
    );
    let bursts: Vec<Vec<Reading>> = vec![
        (0..5)
            .map(|i| reading(1, 0, 300.0 + i as f64))
            .chain((0..3).map(|i| reading(2, 0, 350.0 - i as f64)))
            .collect(),
        (0..4).map(|i| reading(1, 0, 320.0 + 2.0 * i as f64)).collect(),
    ];
    let bootstrap = cluster.bootstrap().to_string();
    let sent = bursts.clone();
    let (summary, emitted) = run_live(job, embedded, move |rx| {
        let producer = Producer::new(&bootstrap, "pt-in");
        for burst in &sent {
            for r in burst {
                producer.send_reading(r);
            }
            producer.flush();
            let devices: std::collections::BTreeSet<u64> = burst.iter().map(|r| r.device_id).collect();
            next_emitted(rx, devices.len());
        }
    });
    // (device, max, count) per burst and device, computed from the bursts.
    let mut expected: BTreeMap<(i64, u64, i64), usize> = BTreeMap::new();
    for burst in &bursts {
        let mut by_device: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in burst {
            by_device.entry(r.device_id).or_default().push(r.temperature);
        }
        for (d, temps) in by_device {
            let max = temps.iter().copied().fold(f64::MIN, f64::max);
            *expected.entry((d as i64, max.to_bits(), temps.len() as i64)).or_default() += 1;
        }
    }
    let output = read_topic(cluster, "pt-out");
    let mut got: BTreeMap<(i64, u64, i64), usize> = BTreeMap::new();
    for r in &output {
        *got.entry((
            r["device_id"].as_i64().unwrap(),
            r["max_temperature"].as_f64().unwrap().to_bits(),
            r["count"].as_i64().unwrap(),
        ))
        .or_default() += 1;
        // A session spans at least the gap, and its times are the clock's.
        let (start, end) = (r["window_start"].as_i64().unwrap(), r["window_end"].as_i64().unwrap());
        assert!(end - start >= gap && start > START_MS + 1_000_000_000, "{r}");
    }
    assert_eq!(got, expected);
    assert_eq!(emitted.len(), output.len());
    assert_eq!((summary.events, summary.late, summary.outputs), (12, 0, 3));
    // Device 1's two sessions do not overlap.
    let mut sessions: Vec<(i64, i64)> = output
        .iter()
        .filter(|r| r["device_id"] == 1)
        .map(|r| (r["window_start"].as_i64().unwrap(), r["window_end"].as_i64().unwrap()))
        .collect();
    sessions.sort();
    assert_eq!(sessions.len(), 2);
    assert!(sessions[0].1 <= sessions[1].0, "{sessions:?}");
}

#[test]
fn a_stopped_job_commits_what_it_wrote_and_a_restart_resumes_with_nothing_lost_or_repeated() {
    // Run 1 is stopped after some windows fired: it flushes and commits
    // each partition's offsets up to the oldest record a window still to
    // fire holds. Run 2 starts from the committed offsets and reads to the
    // end. Together they wrote every window exactly once.
    let n = 8_000;
    let cluster = Cluster::embedded(KafkaConfig::default()).unwrap();
    cluster.create_topic("readings", 4, 1).unwrap();
    produce(&cluster, "readings", n);
    let window = "type = \"tumbling\"\nsize = \"1s\"";
    let committed_job = || {
        let mut job = job("embedded", window, "max-temperature-agg");
        match &mut job.source {
            weir::job::SourceSpec::Kafka { start, .. } => *start = weir::source::kafka::StartFrom::Committed,
            other => panic!("a Kafka job, not {other:?}"),
        }
        job
    };
    let engine = engine();
    let mut first = Pipeline::build(committed_job(), &engine).unwrap();
    let mut io = connect::open(first.job(), false, Some(cluster.clone())).unwrap();
    let options = RunOptions { commit_interval: Duration::from_secs(3600), ..RunOptions::default() };
    let stop = options.stop.clone();
    let mut written = 0;
    let summary1 = first
        .run(io.source.as_mut(), &mut io.sinks, &options, &mut |_| {
            written += 1;
            if written == 40 {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    drop(io);
    let total = expected(n, 1000, 1000).values().sum::<usize>() as u64;
    assert!(summary1.outputs >= 40 && summary1.outputs < total, "run 1 stopped part-way: {summary1:?}");

    let summary2 = run(committed_job(), Some(cluster.clone()));
    assert!(summary2.records < n, "run 2 resumed from the commits instead of the start: {summary2:?}");
    assert_eq!(results(&read_topic(&cluster, "max-temperature")), expected(n, 1000, 1000));
    assert_eq!(summary1.outputs + summary2.outputs, total);
}
