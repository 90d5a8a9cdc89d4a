//! Kafka I/O end to end: the sink and the source against the embedded mock
//! cluster (with injected faults), the CLI against `weir dev-broker`, and a
//! round trip through a real, separate broker process (tansu).
//!
//! Every check compares with what the readings generator says, computed here
//! independently of the broker: each reading must come back exactly once,
//! byte for byte, keyed by its device, in order within its partition.

mod support;
use support::{Child, free_port, start_tansu, weir};

use serde_json::Value;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use weir::kafka::{ApiKey, Cluster, KafkaConfig, KafkaError, RespErr};
use weir::sink::kafka::KafkaSink;
use weir::sink::{Sink, SinkError};
use weir::source::kafka::{KafkaSource, KafkaSourceOptions, StartFrom};
use weir::source::{CommitError, Poll, Source, SourceError};
use weir_devtools::readings::{Reading, START_MS, STEP_MS};

const DEVICES: u64 = 10;

/// One message as read back.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn config() -> KafkaConfig {
    KafkaConfig { request_timeout: Duration::from_secs(10), ..KafkaConfig::default() }
}

fn embedded(topic: &str, partitions: i32) -> Cluster {
    let cluster = Cluster::embedded(config()).expect("start the embedded cluster");
    cluster.create_topic(topic, partitions, 1).expect("create the topic");
    cluster
}

/// Sends readings `range` with the sink and flushes; returns the sink's
/// delivered count.
fn produce(cluster: &Cluster, topic: &str, range: std::ops::Range<u64>, devices: u64) -> u64 {
    let mut sink = KafkaSink::open(cluster, topic).expect("open the sink");
    send(&mut sink, range, devices);
    sink.flush().expect("flush");
    sink.delivered()
}

fn send(sink: &mut KafkaSink, range: std::ops::Range<u64>, devices: u64) {
    let (mut payload, mut key) = (Vec::new(), Vec::new());
    for i in range {
        let r = Reading::generate(i, devices);
        payload.clear();
        r.write_json(&mut payload);
        key.clear();
        r.write_key(&mut key);
        sink.send(Some(&key), &payload).expect("send");
    }
}

/// Polls a bounded source until it ends; fails the test past `limit`.
fn read_to_end(source: &mut KafkaSource, limit: Duration) -> Vec<Read> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let poll = source
            .poll_records(500, Duration::from_millis(200), &mut |r| {
                out.push(Read {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.map(<[u8]>::to_vec),
                    payload: r.payload.to_vec(),
                })
            })
            .expect("poll");
        if poll == Poll::End {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the bounded source did not end within {limit:?}; read {}",
            out.len()
        );
    }
}

fn open_bounded(cluster: &Cluster, topic: &str) -> KafkaSource {
    let options = KafkaSourceOptions { until_end: true, ..KafkaSourceOptions::new(topic) };
    KafkaSource::open(cluster, &options).expect("open the source")
}

/// The reading number of a generated payload, from its event time.
fn index_of(payload: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(payload).expect("a JSON payload");
    let t = v["execution_time"].as_i64().expect("execution_time");
    u64::try_from((t - START_MS) / STEP_MS).expect("a reading number")
}

/// Asserts that `reads` are exactly readings `range`: each once, byte for
/// byte, keyed by device; offsets dense and readings in order within each
/// partition; each device in one partition.
fn assert_exactly(reads: &[Read], range: std::ops::Range<u64>, devices: u64) {
    let mut seen = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    let mut partition_of_device = BTreeMap::new();
    for r in reads {
        let i = index_of(&r.payload);
        let expected = Reading::generate(i, devices);
        assert_eq!(String::from_utf8_lossy(&r.payload), expected.to_json(), "payload of reading {i}");
        assert_eq!(r.key.as_deref(), Some(expected.device_id.to_string().as_bytes()), "key of reading {i}");
        *seen.entry(i).or_insert(0) += 1;
        by_partition.entry(r.partition).or_default().push((r.offset, i));
        let p = *partition_of_device.entry(expected.device_id).or_insert(r.partition);
        assert_eq!(p, r.partition, "device {} is in two partitions", expected.device_id);
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(i, _)| *i).collect();
    assert!(duplicated.is_empty(), "readings read more than once: {duplicated:?}");
    let missing: Vec<_> = range.clone().filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} readings missing, the first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.len() as u64, range.end - range.start, "readings outside {range:?}");
    for (p, mut list) in by_partition {
        list.sort();
        for pair in list.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1, "partition {p}: offsets not dense");
            assert!(pair[1].1 > pair[0].1, "partition {p}: readings out of order at offset {}", pair[1].0);
        }
    }
}

#[test]
fn generator_matches_the_sample_file() {
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/readings.jsonl"))
            .expect("examples/readings.jsonl");
    let lines: Vec<&str> = sample.lines().collect();
    assert_eq!(lines.len(), 2000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(Reading::generate(i as u64, DEVICES).to_json(), *line, "reading {i}");
    }
}

#[test]
fn round_trip_through_the_embedded_broker() {
    const N: u64 = 6000;
    let cluster = embedded("readings", 4);
    assert_eq!(produce(&cluster, "readings", 0..N, DEVICES), N);

    let info = cluster.describe_topic("readings").unwrap();
    assert_eq!(info.partitions.len(), 4);
    assert_eq!(info.messages(), N as i64);

    let mut source = open_bounded(&cluster, "readings");
    assert_eq!(source.partitions(), [0, 1, 2, 3]);
    let ends = source.end_offsets().unwrap();
    assert_eq!(ends, info.partitions.iter().map(|p| (p.id, p.high)).collect::<Vec<_>>());
    let reads = read_to_end(&mut source, Duration::from_secs(60));
    assert_exactly(&reads, 0..N, DEVICES);
    // 10 devices over 4 partitions: more than one partition holds data.
    assert!(reads.iter().map(|r| r.partition).collect::<BTreeSet<_>>().len() > 1);
    assert_eq!(source.positions(), ends.iter().copied().filter(|&(_, e)| e > 0).collect::<Vec<_>>());
    // Once ended, it stays ended.
    assert_eq!(
        source.poll(10, Duration::from_millis(10), &mut |_| panic!("a record after the end")).unwrap(),
        Poll::End
    );
}

#[test]
fn bounded_mode_ends_at_the_end_offsets_seen_at_start() {
    let cluster = embedded("readings", 3);
    assert_eq!(produce(&cluster, "readings", 0..3000, DEVICES), 3000);
    let mut source = open_bounded(&cluster, "readings");
    let ends = source.end_offsets().unwrap();
    assert_eq!(ends.iter().map(|e| e.1).sum::<i64>(), 3000);

    // More arrives after the source opened, before and while it reads.
    assert_eq!(produce(&cluster, "readings", 3000..4000, DEVICES), 1000);
    let mut sink = KafkaSink::open(&cluster, "readings").unwrap();
    let mut reads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 4000;
    loop {
        send(&mut sink, next..next + 50, DEVICES);
        next += 50;
        let poll = source
            .poll_records(200, Duration::from_millis(100), &mut |r| {
                reads.push(Read {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.map(<[u8]>::to_vec),
                    payload: r.payload.to_vec(),
                })
            })
            .unwrap();
        if poll == Poll::End {
            break;
        }
        assert!(Instant::now() < deadline, "no end; read {}", reads.len());
    }
    sink.flush().unwrap();
    assert_exactly(&reads, 0..3000, DEVICES);
    for r in &reads {
        let end = ends.iter().find(|e| e.0 == r.partition).unwrap().1;
        assert!(r.offset < end, "offset {} of partition {} is past its end {end}", r.offset, r.partition);
    }

    // A new bounded source sees everything now there.
    let mut later = open_bounded(&cluster, "readings");
    assert_exactly(&read_to_end(&mut later, Duration::from_secs(60)), 0..next, DEVICES);
}

#[test]
fn empty_partitions_count_as_done() {
    // One device: every reading has the same key, so one partition of three
    // holds all of them and two stay empty.
    let cluster = embedded("one-device", 3);
    assert_eq!(produce(&cluster, "one-device", 0..500, 1), 500);
    let mut source = open_bounded(&cluster, "one-device");
    let ends = source.end_offsets().unwrap();
    assert_eq!(ends.iter().filter(|e| e.1 == 0).count(), 2, "{ends:?}");
    // The empty ones are finished before anything is read.
    let empty: Vec<i32> = ends.iter().filter(|e| e.1 == 0).map(|e| e.0).collect();
    assert_eq!(source.finished_partitions(), empty);
    assert_exactly(&read_to_end(&mut source, Duration::from_secs(30)), 0..500, 1);

    // A topic with no data at all ends at once.
    cluster.create_topic("empty", 2, 1).unwrap();
    let mut empty = open_bounded(&cluster, "empty");
    assert_eq!(empty.poll(10, Duration::from_secs(5), &mut |_| panic!("a record")).unwrap(), Poll::End);
}

#[test]
fn committed_offsets_resume_where_the_group_left_off() {
    let cluster = embedded("readings", 2);
    assert_eq!(produce(&cluster, "readings", 0..1000, DEVICES), 1000);
    let options = KafkaSourceOptions {
        topic: "readings".into(),
        group: Some("g".into()),
        start: StartFrom::Committed,
        until_end: true,
        scale_out: false,
    };
    let mut first = KafkaSource::open(&cluster, &options).unwrap();
    let mut head = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while head.len() < 300 {
        first
            .poll_records(300 - head.len(), Duration::from_millis(200), &mut |r| {
                head.push(Read {
                    partition: r.partition,
                    offset: r.offset,
                    key: None,
                    payload: r.payload.to_vec(),
                })
            })
            .unwrap();
        assert!(Instant::now() < deadline);
    }
    first.commit_positions().unwrap();
    let committed = first.positions();
    drop(first);

    let mut second = KafkaSource::open(&cluster, &options).unwrap();
    let tail = read_to_end(&mut second, Duration::from_secs(30));
    // The second run starts exactly at the committed offsets.
    for (p, next) in &committed {
        let lowest = tail.iter().filter(|r| r.partition == *p).map(|r| r.offset).min();
        assert!(lowest.is_none_or(|o| o == *next), "partition {p}: resumed at {lowest:?}, committed {next}");
    }
    let mut all: Vec<Read> = head.into_iter().map(|r| Read { key: None, ..r }).collect();
    all.extend(tail.into_iter().map(|r| Read { key: None, ..r }));
    let indices: BTreeSet<u64> = all.iter().map(|r| index_of(&r.payload)).collect();
    assert_eq!(all.len(), 1000, "a reading was read twice or not at all");
    assert_eq!(indices, (0..1000).collect());

    // Committing needs a group, and committed starts need one too.
    let mut anonymous = open_bounded(&cluster, "readings");
    assert!(matches!(
        anonymous.commit_positions().unwrap_err(),
        SourceError::Commit { source: CommitError::NoGroup, .. }
    ));
    let no_group = KafkaSourceOptions { group: None, ..options };
    assert!(KafkaSource::open(&cluster, &no_group).is_err());
}

/// Reads part of `topic` in group `group`, commits offsets in the middle of
/// what was read (through [`Source::commit`], as a job does), and checks
/// that a source reopened with `start = committed` hands over exactly the
/// records at and after those offsets: the uncommitted rest, each once.
/// The expectation comes from a full read of the topic without a group,
/// itself checked against the generator.
fn commit_then_resume_reads_exactly_the_uncommitted_rest(cluster: &Cluster, topic: &str, n: u64) {
    let everything = read_to_end(&mut open_bounded(cluster, topic), Duration::from_secs(60));
    assert_exactly(&everything, 0..n, DEVICES);

    let options = KafkaSourceOptions {
        topic: topic.into(),
        group: Some(format!("{topic}-group")),
        start: StartFrom::Committed,
        until_end: true,
        scale_out: false,
    };
    let mut first = KafkaSource::open(cluster, &options).unwrap();
    assert!(first.committed().is_empty(), "a new group has no commits");
    let mut head: Vec<Read> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while head.len() < (n / 2) as usize {
        first
            .poll_records(100, Duration::from_millis(200), &mut |r| {
                head.push(Read {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.map(<[u8]>::to_vec),
                    payload: r.payload.to_vec(),
                })
            })
            .unwrap();
        assert!(Instant::now() < deadline, "read only {} records", head.len());
    }
    // Commit half way through what each partition handed over: the records
    // read but not committed must come again, the committed ones must not.
    let mut read_per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &head {
        read_per_partition.entry(r.partition).or_default().push(r.offset);
    }
    let commits: Vec<(i32, i64)> =
        read_per_partition.iter().map(|(&p, offsets)| (p, offsets[offsets.len() / 2] + 1)).collect();
    let source: &mut dyn Source = &mut first;
    source.commit(&commits).unwrap();
    // Commits only move forward: an older offset is skipped.
    source.commit(&commits.iter().map(|&(p, o)| (p, o - 1)).collect::<Vec<_>>()).unwrap();
    assert_eq!(first.committed(), commits);
    drop(first);

    let mut second = KafkaSource::open(cluster, &options).unwrap();
    assert_eq!(second.committed(), commits, "the broker kept the commits");
    let tail = read_to_end(&mut second, Duration::from_secs(60));
    let resume: HashMap<i32, i64> = commits.iter().copied().collect();
    let multiset = |reads: &mut dyn Iterator<Item = &Read>| {
        let mut m: BTreeMap<(i32, i64, Vec<u8>), usize> = BTreeMap::new();
        for r in reads {
            *m.entry((r.partition, r.offset, r.payload.clone())).or_default() += 1;
        }
        m
    };
    let expected = multiset(
        &mut everything.iter().filter(|r| r.offset >= resume.get(&r.partition).copied().unwrap_or(0)),
    );
    assert_eq!(tail.len(), expected.values().sum::<usize>(), "records after the commit");
    assert_eq!(multiset(&mut tail.iter()), expected);
}

#[test]
fn commits_through_the_source_trait_resume_exactly_after_them() {
    let cluster = embedded("readings", 3);
    assert_eq!(produce(&cluster, "readings", 0..2000, DEVICES), 2000);
    commit_then_resume_reads_exactly_the_uncommitted_rest(&cluster, "readings", 2000);

    // A source without a group cannot commit, and says so.
    let mut anonymous = open_bounded(&cluster, "readings");
    let source: &mut dyn Source = &mut anonymous;
    let err = source.commit(&[(0, 1)]).unwrap_err();
    assert!(
        matches!(&err, SourceError::Commit { topic, source: CommitError::NoGroup, .. } if topic == "readings")
    );
    assert!(err.to_string().starts_with("source topic 'readings' on "), "{err}");
    // Nor can it commit a partition the topic does not have.
    let mut grouped = KafkaSource::open(
        &cluster,
        &KafkaSourceOptions { group: Some("g".into()), ..KafkaSourceOptions::new("readings") },
    )
    .unwrap();
    let err = Source::commit(&mut grouped, &[(7, 1)]).unwrap_err();
    assert!(matches!(err, SourceError::Commit { source: CommitError::UnknownPartition(7), .. }), "{err:?}");
}

#[test]
fn the_sink_delivers_everything_once_through_broker_faults() {
    let config = KafkaConfig {
        backoff: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..config()
    };
    let cluster = Cluster::embedded(config).unwrap();
    cluster.create_topic("faults", 3, 1).unwrap();
    cluster.create_topic("readings", 3, 1).unwrap();
    let broker = cluster.embedded_cluster().unwrap();
    let mut sink = KafkaSink::open(&cluster, "faults").unwrap();

    // 1. Produce requests fail: retriable errors, and dropped connections.
    // librdkafka retries the pipelined requests; the mock cluster does not
    // always deduplicate those retries (seen on a loaded machine), so this
    // phase checks at-least-once: nothing lost, copies byte-identical, and
    // each partition in order.
    broker.track_requests();
    let injected = [
        RespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        RespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
    ];
    broker.push_request_errors(ApiKey::Produce, &injected);
    send(&mut sink, 0..2000, DEVICES);
    sink.flush().expect("delivered despite failing requests");
    assert!(
        broker.requests_seen(ApiKey::Produce) > injected.len(),
        "the injected errors were not all hit: {} produce requests",
        broker.requests_seen(ApiKey::Produce)
    );

    let mut source = open_bounded(&cluster, "faults");
    assert_at_least_once(&read_to_end(&mut source, Duration::from_secs(60)), 0..2000, DEVICES);
    let mut sink = KafkaSink::open(&cluster, "readings").unwrap();

    // 2. The broker goes down with messages queued, stays down for a while
    // (the producer's connection attempts fail meanwhile), then comes back.
    broker.broker_down(-1).unwrap();
    send(&mut sink, 2000..3000, DEVICES);
    assert!(sink.in_flight() > 0);
    std::thread::sleep(Duration::from_millis(1500)); // the outage
    broker.track_requests();
    broker.broker_up(-1).unwrap();
    sink.flush().expect("delivered after the broker came back");
    assert!(broker.requests_seen(ApiKey::ApiVersion) > 0, "the producer did not reconnect");
    assert_eq!(sink.delivered(), 1000);

    // Everything once, keyed, in order within each partition.
    let mut source = open_bounded(&cluster, "readings");
    assert_exactly(&read_to_end(&mut source, Duration::from_secs(60)), 2000..3000, DEVICES);
}

/// Asserts that every reading of `range` arrived, that every record is a
/// byte-identical copy of a generated reading with its key, and that within
/// each partition the first copies come in order.
fn assert_at_least_once(reads: &[Read], range: std::ops::Range<u64>, devices: u64) {
    let mut first_seen: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in reads {
        let i = index_of(&r.payload);
        let expected = Reading::generate(i, devices);
        assert_eq!(String::from_utf8_lossy(&r.payload), expected.to_json(), "payload of reading {i}");
        assert_eq!(r.key.as_deref(), Some(expected.device_id.to_string().as_bytes()), "key of reading {i}");
        if seen.insert(i) {
            first_seen.entry(r.partition).or_default().push(i);
        }
    }
    let missing: Vec<u64> = range.clone().filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} readings lost, the first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seen.len() as u64, range.end - range.start, "readings outside {range:?}");
    for (p, list) in first_seen {
        assert!(list.windows(2).all(|w| w[0] < w[1]), "partition {p}: readings out of order");
    }
}

#[test]
fn missing_topics_are_reported_with_advice() {
    let cluster = Cluster::embedded(config()).unwrap();
    let err = KafkaSource::open(&cluster, &KafkaSourceOptions::new("nope")).err().expect("an error");
    let SourceError::OpenTopic { topic, source } = &err else { panic!("{err:?}") };
    assert_eq!(topic, "nope");
    assert!(matches!(&**source, KafkaError::UnknownTopic { .. }), "{source}");
    assert!(
        source.to_string().contains("weir topic create") && source.to_string().contains("'nope'"),
        "{source}"
    );
    assert_eq!(err.to_string(), "source topic 'nope': cannot open it");
    let err = KafkaSink::open(&cluster, "nope").err().expect("an error");
    let SinkError::OpenTopic { topic, source } = &err else { panic!("{err:?}") };
    assert_eq!(topic, "nope");
    assert!(matches!(&**source, KafkaError::UnknownTopic { .. }), "{source}");
    assert_eq!(err.to_string(), "sink topic 'nope': cannot open it");
    cluster.create_topic("t", 1, 1).unwrap();
    assert!(matches!(cluster.create_topic("t", 1, 1), Err(KafkaError::TopicExists { .. })));
    assert!(!cluster.ensure_topic("t", 1, 1).unwrap());
    assert!(cluster.ensure_topic("u", 2, 1).unwrap());
    let names: Vec<String> = cluster.list_topics().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["t", "u"]);
}

// ---------------------------------------------------------------------------
// The CLI against `weir dev-broker` in its own process.

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "weir failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for a file a child writes; fails if the child dies first.
fn wait_for_file(path: &Path, child: &mut Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text.trim().to_string();
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the process exited ({status}) before writing {}", path.display());
        }
        assert!(Instant::now() < deadline, "{} not written within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_dev_broker(dir: &Path, args: &[&str]) -> (Child, String, PathBuf) {
    let address_file = dir.join("broker.addr");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["dev-broker", "--listen", "127.0.0.1:0", "--address-file"])
        .arg(&address_file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir dev-broker");
    let mut child = Child(child);
    let address = wait_for_file(&address_file, &mut child, Duration::from_secs(30));
    (child, address, address_file)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// Consumed lines as reads.
fn reads_of(lines: &[Value]) -> Vec<Read> {
    lines
        .iter()
        .map(|v| Read {
            partition: v["partition"].as_i64().unwrap() as i32,
            offset: v["offset"].as_i64().unwrap(),
            key: v["key"].as_str().map(|k| k.as_bytes().to_vec()),
            // The value is printed as parsed JSON; rebuild the producer's
            // bytes from it to compare exactly.
            payload: Reading {
                device_id: v["value"]["device_id"].as_u64().unwrap(),
                temperature: v["value"]["temperature"].as_f64().unwrap(),
                execution_time: v["value"]["execution_time"].as_i64().unwrap(),
            }
            .to_json()
            .into_bytes(),
        })
        .collect()
}

#[test]
fn cli_topic_produce_and_consume_through_the_dev_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, address, address_file) = start_dev_broker(dir.path(), &[]);
    let b = address.as_str();

    // topic create / create again / describe / list
    let out = ok(weir(&["topic", "create", "--brokers", b, "--topic", "readings", "--partitions", "3"]));
    assert!(out.contains("created topic 'readings' with 3 partition(s)"), "{out}");
    let again = weir(&["topic", "create", "--brokers", b, "--topic", "readings"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    ok(weir(&["topic", "create", "--brokers", b, "--topic", "readings", "--if-not-exists"]));
    let bad = weir(&["topic", "create", "--brokers", b, "--topic", "r3", "--replication", "3"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("replication"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    ok(weir(&["topic", "create", "--brokers", b, "--topic", "other", "--partitions", "1"]));

    let described: Value = serde_json::from_str(&ok(weir(&[
        "topic",
        "describe",
        "--brokers",
        b,
        "--topic",
        "readings",
        "--json",
    ])))
    .unwrap();
    let parts = described["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["id"], i as i64);
        assert_eq!(p["leader"], 1);
        assert_eq!((p["low"].as_i64(), p["high"].as_i64()), (Some(0), Some(0)));
    }
    let listed: Value =
        serde_json::from_str(&ok(weir(&["topic", "list", "--brokers", b, "--json"]))).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{"name": "other", "partitions": 1}, {"name": "readings", "partitions": 3}])
    );

    // produce, then the offsets add up
    ok(weir(&["produce", "--brokers", b, "--topic", "readings", "--count", "2500"]));
    let described: Value = serde_json::from_str(&ok(weir(&[
        "topic",
        "describe",
        "--brokers",
        b,
        "--topic",
        "readings",
        "--json",
    ])))
    .unwrap();
    let high: i64 =
        described["partitions"].as_array().unwrap().iter().map(|p| p["high"].as_i64().unwrap()).sum();
    assert_eq!(high, 2500);

    // consume everything, bounded
    let lines = json_lines(&ok(weir(&["consume", "--brokers", b, "--topic", "readings", "--until-end"])));
    assert_exactly(&reads_of(&lines), 0..2500, DEVICES);

    // a group: 100 now, the rest from the committed offsets
    let first = json_lines(&ok(weir(&[
        "consume",
        "--brokers",
        b,
        "--topic",
        "readings",
        "--group",
        "cli",
        "--count",
        "100",
    ])));
    assert_eq!(first.len(), 100);
    let rest = json_lines(&ok(weir(&[
        "consume",
        "--brokers",
        b,
        "--topic",
        "readings",
        "--group",
        "cli",
        "--from",
        "committed",
        "--until-end",
    ])));
    let mut both = reads_of(&first);
    both.extend(reads_of(&rest));
    assert_exactly(&both, 0..2500, DEVICES);

    // continuing the sequence, then an idle timeout ends a follow
    ok(weir(&["produce", "--brokers", b, "--topic", "readings", "--count", "500", "--first", "2500"]));
    let started = Instant::now();
    let all = json_lines(&ok(weir(&["consume", "--brokers", b, "--topic", "readings", "--timeout", "1s"])));
    assert_exactly(&reads_of(&all), 0..3000, DEVICES);
    assert!(started.elapsed() < Duration::from_secs(30));

    // embedded makes no sense for a separate process
    let embedded = weir(&["produce", "--brokers", "embedded", "--count", "1"]);
    assert!(!embedded.status.success());
    assert!(String::from_utf8_lossy(&embedded.stderr).contains("weir dev-broker"));

    // Ctrl-C (SIGINT) stops the broker cleanly and removes the address file.
    let pid = broker.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = broker.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev-broker did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!address_file.exists());
    let mut stderr = String::new();
    std::io::Read::read_to_string(broker.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("memory only") && stderr.contains("stopped"), "{stderr}");
}

#[test]
fn the_library_works_through_the_dev_broker_forwarder() {
    // The library's clients against `weir dev-broker`: clients that
    // bootstrap from its forwarder are sent back to it by metadata, and
    // topic creation goes through CreateTopics (not the mock's own call).
    let dir = tempfile::tempdir().unwrap();
    let (_broker, address, _) = start_dev_broker(dir.path(), &["--partitions", "2", "--topic", "pre"]);
    let cluster = Cluster::external(&address, config()).unwrap();
    assert!(cluster.embedded_cluster().is_none());
    cluster.create_topic("readings", 4, 1).unwrap();
    assert_eq!(cluster.describe_topic("pre").unwrap().partitions.len(), 2);
    assert_eq!(produce(&cluster, "readings", 0..3000, DEVICES), 3000);
    let mut source = open_bounded(&cluster, "readings");
    assert_eq!(source.partitions().len(), 4);
    assert_exactly(&read_to_end(&mut source, Duration::from_secs(60)), 0..3000, DEVICES);
}

// ---------------------------------------------------------------------------
// A real, separate broker: tansu.

#[test]
fn round_trip_through_a_real_broker_process() {
    let tansu = start_tansu();
    let config = KafkaConfig {
        connect_attempts: 12,
        backoff: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..config()
    };
    let cluster = Cluster::external(&tansu.bootstrap, config).expect("tansu answers");

    cluster.create_topic("readings", 3, 1).expect("create a topic on tansu");
    assert!(matches!(cluster.create_topic("readings", 3, 1), Err(KafkaError::TopicExists { .. })));
    assert!(cluster.list_topics().unwrap().iter().any(|t| t.name == "readings" && t.partitions == 3));

    assert_eq!(produce(&cluster, "readings", 0..3000, DEVICES), 3000);
    let info = cluster.describe_topic("readings").unwrap();
    assert_eq!(info.messages(), 3000, "{info:?}");

    let mut source = open_bounded(&cluster, "readings");
    assert_exactly(&read_to_end(&mut source, Duration::from_secs(60)), 0..3000, DEVICES);

    // Committed offsets through a consumer group.
    let options = KafkaSourceOptions {
        topic: "readings".into(),
        group: Some("weir-test".into()),
        start: StartFrom::Committed,
        until_end: true,
        scale_out: false,
    };
    let mut first = KafkaSource::open(&cluster, &options).unwrap();
    let mut head = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while head.len() < 1000 {
        first
            .poll_records(1000 - head.len(), Duration::from_millis(200), &mut |r| {
                head.push(index_of(r.payload))
            })
            .unwrap();
        assert!(Instant::now() < deadline);
    }
    first.commit_positions().unwrap();
    drop(first);
    let mut second = KafkaSource::open(&cluster, &options).unwrap();
    let tail = read_to_end(&mut second, Duration::from_secs(60));
    let mut all: Vec<u64> = head;
    all.extend(tail.iter().map(|r| index_of(&r.payload)));
    all.sort_unstable();
    assert_eq!(all, (0..3000).collect::<Vec<_>>());

    // Commits through the `Source` trait, as a job makes them.
    cluster.create_topic("commits", 3, 1).unwrap();
    assert_eq!(produce(&cluster, "commits", 0..2000, DEVICES), 2000);
    commit_then_resume_reads_exactly_the_uncommitted_rest(&cluster, "commits", 2000);
}

#[test]
fn produce_retries_until_a_dev_broker_on_a_fixed_port_starts() {
    use std::io::BufRead;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut producer = Child(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["produce", "--brokers", &address, "--topic", "late", "--count", "300", "--retries", "6"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait until the producer has failed to connect once.
    let stderr = producer.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.iter().any(|l: &String| l.contains("attempt 1 of 6")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("no failed attempt reported: {log:?}"),
        }
    }

    // Now the broker comes up, on exactly that port.
    let dir = tempfile::tempdir().unwrap();
    let address_file = dir.path().join("addr");
    let mut broker = Child(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["dev-broker", "--listen", &address, "--address-file"])
            .arg(&address_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(wait_for_file(&address_file, &mut broker, Duration::from_secs(30)), address);

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = producer.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the producer did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    log.extend(rx.try_iter());
    assert!(status.success(), "{log:?}");
    let lines = json_lines(&ok(weir(&["consume", "--brokers", &address, "--topic", "late", "--until-end"])));
    assert_exactly(&reads_of(&lines), 0..300, DEVICES);
}

#[test]
fn produce_sends_a_file_or_stdin_line_by_line_keyed_by_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, address, _) = start_dev_broker(dir.path(), &[]);
    let b = address.as_str();
    // Out of order, with string and integer keys, a line without the key
    // and one that is not JSON: every line goes on the topic as it is.
    let mut lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "{{\"device_id\": {}, \"temperature\": {}, \"execution_time\": {}}}",
                i % 7,
                300 + i,
                10_000 - 13 * i
            )
        })
        .collect();
    lines.push("{\"device_id\": \"pump-3\", \"temperature\": 1.5, \"execution_time\": 5}".into());
    lines.push("{\"temperature\": 2.5, \"execution_time\": 6}".into());
    lines.push("{not json".into());
    let file = dir.path().join("data.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();
    let out = weir(&[
        "produce",
        "--brokers",
        b,
        "--topic",
        "data",
        "--input",
        file.to_str().unwrap(),
        "--key",
        "device_id",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sent 303 records") && stderr.contains("(2 without it, sent unkeyed)"),
        "{stderr}"
    );
    // Through stdin, to a second topic, unkeyed.
    let piped = support::weir_command(&support::root())
        .args(["produce", "--brokers", b, "--topic", "piped", "--input", "-"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));

    let consumed = |topic: &str| -> Vec<(Option<String>, String)> {
        let text = ok(weir(&["consume", "--brokers", b, "--topic", topic, "--until-end"]));
        let mut got: Vec<(Option<String>, String)> = json_lines(&text)
            .iter()
            .map(|v| {
                let value = match &v["value"] {
                    Value::String(raw) => raw.clone(),
                    parsed => parsed.to_string(),
                };
                (v["key"].as_str().map(str::to_string), value)
            })
            .collect();
        got.sort();
        got
    };
    let canonical = |line: &str| match serde_json::from_str::<Value>(line) {
        Ok(v) => v.to_string(),
        Err(_) => line.to_string(),
    };
    let key = |line: &str| match serde_json::from_str::<Value>(line).ok()?.get("device_id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut expected: Vec<(Option<String>, String)> = lines.iter().map(|l| (key(l), canonical(l))).collect();
    expected.sort();
    assert_eq!(consumed("data"), expected, "every line once, keyed by its device_id");
    // No transactions here: both isolation levels see the same records.
    let uncommitted = ok(weir(&[
        "consume",
        "--brokers",
        b,
        "--topic",
        "data",
        "--until-end",
        "--isolation",
        "read_uncommitted",
    ]));
    assert_eq!(json_lines(&uncommitted).len(), lines.len());
    assert!(!weir(&["consume", "--brokers", b, "--topic", "data", "--isolation", "dirty"]).status.success());
    let mut unkeyed: Vec<(Option<String>, String)> = lines.iter().map(|l| (None, canonical(l))).collect();
    unkeyed.sort();
    assert_eq!(consumed("piped"), unkeyed, "every line of stdin once");
}
