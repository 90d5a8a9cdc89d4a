//! Exactly-once delivery to Kafka.
//!
//! `sequence`: a job restored from an older checkpoint replays output the
//! run after that checkpoint already wrote; the sink reads it back and
//! skips it, so the topics hold exactly one run's output. On the embedded
//! mock cluster and on a real broker process (tansu). And the case that
//! makes numbering per (source partition, output partition) necessary: a
//! crash that leaves one pair's records written and a later-numbered
//! pair's records missing on another partition.
//!
//! `transactions`: the protocol steps on the mock cluster (which answers
//! them but writes no transaction markers, so what read_committed readers
//! would see is not checked here), and fencing of an older producer.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use weir::job::Job;
use weir::kafka::{ApiKey, Cluster, KafkaConfig, RespErr};
use weir::pipeline::{Pipeline, RestoreFrom, RunOptions, RunSummary, connect};
use weir::plugin::{EngineConfig, PluginEngine};
use weir::sink::kafka::{Delivery, KafkaSink, SEQUENCE_HEADER, SOURCE_PARTITION_HEADER};
use weir::sink::{Sink, SinkError};
use weir_devtools::readings::{Reading, START_MS, STEP_MS};

const DEVICES: u64 = 10;

/// One record read back with its headers.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    key: Option<Vec<u8>>,
    payload: String,
    /// (source partition, sequence number), if the record has them.
    sequence: Option<(i32, u64)>,
}

fn config() -> KafkaConfig {
    KafkaConfig { request_timeout: Duration::from_secs(10), ..KafkaConfig::default() }
}

/// Every record of `topic` (all partitions, from the start), with headers.
fn read_all(cluster: &Cluster, topic: &str) -> Vec<Record> {
    let info = cluster.describe_topic(topic).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", "exactly-once-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    let mut left: BTreeMap<i32, i64> = BTreeMap::new();
    for p in &info.partitions {
        if p.high > p.low {
            list.add_partition_offset(topic, p.id, Offset::Offset(p.low)).unwrap();
            left.insert(p.id, p.high);
        }
    }
    let mut out = Vec::new();
    if left.is_empty() {
        return out;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} took too long; left {left:?}");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.unwrap();
        let mut sequence = (None, None);
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                let text = std::str::from_utf8(h.value.unwrap_or_default()).unwrap().to_string();
                match h.key {
                    SOURCE_PARTITION_HEADER => sequence.0 = Some(text.parse().unwrap()),
                    SEQUENCE_HEADER => sequence.1 = Some(text.parse().unwrap()),
                    _ => {}
                }
            }
        }
        out.push(Record {
            partition: message.partition(),
            key: message.key().map(<[u8]>::to_vec),
            payload: String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap(),
            sequence: sequence.0.zip(sequence.1),
        });
        if left.get(&message.partition()).is_some_and(|&end| message.offset() + 1 >= end) {
            left.remove(&message.partition());
        }
    }
    out
}

/// The payloads of `records`, counted.
fn multiset(records: &[Record]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry(r.payload.clone()).or_insert(0) += 1;
    }
    out
}

/// Asserts that every (source partition, output partition) pair of
/// `records` is numbered 1, 2, … n in offset order, each once, and that
/// each record is on the partition its pair names.
fn assert_dense_sequences(records: &[Record]) {
    let mut pairs: BTreeMap<(i32, i32), Vec<u64>> = BTreeMap::new();
    for r in records {
        let (source, seq) = r.sequence.unwrap_or_else(|| panic!("a record without sequence headers: {r:?}"));
        pairs.entry((source, r.partition)).or_default().push(seq);
    }
    assert!(!pairs.is_empty());
    for (pair, seqs) in pairs {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "pair {pair:?}: numbers not 1..n in order");
    }
}

/// Readings `range`, keyed by device, into `topic`, with an undecodable
/// record every 250.
fn produce(cluster: &Cluster, topic: &str, range: std::ops::Range<u64>) -> u64 {
    let mut sink = KafkaSink::open(cluster, topic).unwrap();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut bad = 0;
    for i in range {
        let r = Reading::generate(i, DEVICES);
        key.clear();
        value.clear();
        r.write_key(&mut key);
        r.write_json(&mut value);
        sink.send(Some(&key), &value).unwrap();
        if i % 250 == 3 {
            sink.send(Some(b"1"), format!("{{\"device_id\": 1, \"bad\": {i}").as_bytes()).unwrap();
            bad += 1;
        }
    }
    sink.flush().unwrap();
    bad
}

/// A map job from `in` to `<name>-out` and `<name>-dlq`, with `checkpoint`
/// lines.
fn job(brokers: &str, name: &str, checkpoint: &str) -> Job {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"in\"\n\
         [format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n\
         [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"kafka\"\ntopic = \"{name}-out\"\n\
         dead_letter = \"{name}-dlq\"\n{checkpoint}"
    );
    Job::parse(&text, &format!("{name}.toml"), Path::new(".")).unwrap()
}

/// Runs `job` to the end of its input, sharing `embedded` if given.
fn run(job: &Job, embedded: Option<&Cluster>, restore: RestoreFrom) -> RunSummary {
    let engine = PluginEngine::new(EngineConfig { max_instances: 2, cache_dir: None }).unwrap();
    let mut pipeline = Pipeline::build(job.clone(), &engine).unwrap();
    let mut io = connect::open_with(job, true, embedded.cloned(), &config()).unwrap();
    let options = RunOptions { restore, ..RunOptions::default() };
    pipeline.run(io.source.as_mut(), &mut io.sinks, &options, &mut |_| {}).unwrap()
}

/// The sequence scenario on `cluster`, whose jobs name their brokers
/// `brokers`: a clean run, and a checkpointed run in two parts, then
/// restored from the first part's checkpoint and replayed.
fn restored_from_an_older_checkpoint_writes_each_record_once(cluster: &Cluster, brokers: &str) {
    const FIRST: u64 = 3_000;
    const ALL: u64 = 5_000;
    let embedded = cluster.embedded_cluster().map(|_| cluster);
    cluster.create_topic("in", 1, 1).unwrap();
    for topic in ["clean-out", "crash-out"] {
        cluster.create_topic(topic, 3, 1).unwrap();
    }
    for topic in ["clean-dlq", "crash-dlq"] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let storage = tempfile::tempdir().unwrap();
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1h\"\nretain = 5\nmode = \"exactly-once\"\n",
        storage.path().display()
    );
    let crash = job(brokers, "crash", &checkpoint);
    assert!(matches!(
        crash.sink,
        weir::job::SinkSpec::Kafka { exactly_once: Some(weir::job::ExactlyOnce::Sequence), .. }
    ));

    let mut bad = produce(cluster, "in", 0..FIRST);
    let first = run(&crash, embedded, RestoreFrom::Latest);
    // A fresh run checkpoints its empty start (1) before it sends anything,
    // and its end (2).
    assert_eq!((first.restored, first.checkpoints, first.skipped), (None, 2, 0));
    assert_eq!(first.outputs, FIRST);
    bad += produce(cluster, "in", FIRST..ALL);
    let second = run(&crash, embedded, RestoreFrom::Latest);
    assert_eq!((second.restored, second.skipped), (Some(2), 0));
    assert_eq!((second.outputs, second.dead_letters), (ALL - FIRST, bad - first.dead_letters));
    // As if the second run had crashed after writing everything but before
    // its checkpoint: restored from checkpoint 2, the job replays all it
    // wrote, and the sinks skip every record of it.
    let replay = run(&crash, embedded, RestoreFrom::Checkpoint(2));
    assert_eq!(replay.restored, Some(2));
    assert_eq!(replay.outputs, second.outputs);
    assert_eq!(replay.skipped, second.outputs + second.dead_letters, "every replayed record is skipped");
    // As if the first run had crashed before its first regular checkpoint:
    // its empty start (1) is there to read back from.
    let from_start = run(&crash, embedded, RestoreFrom::Checkpoint(1));
    assert_eq!(from_start.restored, Some(1));
    assert_eq!(from_start.skipped, ALL + bad, "every record of both runs is skipped");

    let clean = run(&job(brokers, "clean", ""), embedded, RestoreFrom::Latest);
    assert_eq!((clean.outputs, clean.dead_letters), (ALL, bad));

    let (crash_out, clean_out) = (read_all(cluster, "crash-out"), read_all(cluster, "clean-out"));
    assert_eq!(crash_out.len() as u64, ALL);
    assert_eq!(multiset(&crash_out), multiset(&clean_out), "output differs from one clean run");
    // Each reading once, told apart by its event time.
    let times: BTreeSet<i64> = crash_out
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["execution_time"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(times, (0..ALL as i64).map(|i| START_MS + i * STEP_MS).collect());
    assert!(crash_out.iter().map(|r| r.partition).collect::<BTreeSet<_>>().len() > 1, "one output partition");
    assert_dense_sequences(&crash_out);
    let (crash_dlq, clean_dlq) = (read_all(cluster, "crash-dlq"), read_all(cluster, "clean-dlq"));
    assert_eq!(crash_dlq.len() as u64, bad);
    assert_eq!(multiset(&crash_dlq), multiset(&clean_dlq), "dead letters differ from one clean run");
    assert_dense_sequences(&crash_dlq);
}

#[test]
fn sequence_restored_from_an_older_checkpoint_writes_each_record_once_on_the_mock_cluster() {
    let cluster = Cluster::embedded(config()).unwrap();
    restored_from_an_older_checkpoint_writes_each_record_once(&cluster, "embedded");
}

#[test]
fn sequence_restored_from_an_older_checkpoint_writes_each_record_once_on_tansu() {
    let tansu = support::start_tansu();
    let cluster = Cluster::external(&tansu.bootstrap, config()).expect("tansu answers");
    restored_from_an_older_checkpoint_writes_each_record_once(&cluster, &tansu.bootstrap);
}

/// A window job (one source partition, in-order events, no lateness, so a
/// replay fires the same windows) checkpointing every poll, restored from
/// its first checkpoint past the start after it finished: everything after that
/// checkpoint is replayed and skipped, and the topic holds one clean run's
/// windows.
#[test]
fn sequence_window_job_restored_from_its_first_checkpoint_writes_each_window_once() {
    let cluster = Cluster::embedded(config()).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    for topic in ["wclean-out", "wcrash-out"] {
        cluster.create_topic(topic, 3, 1).unwrap();
    }
    produce(&cluster, "in", 0..6_000);
    let window = |name: &str, checkpoint: &str| {
        let text = format!(
            "name = \"{name}\"\n[source]\ntype = \"kafka\"\ntopic = \"in\"\n[format]\nkey = \"device_id\"\n\
             timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\ntype = \"tumbling\"\n\
             size = \"100ms\"\n[function]\nplugin = \"max-temperature\"\n[sink]\ntype = \"kafka\"\n\
             topic = \"{name}-out\"\n{checkpoint}"
        );
        Job::parse(&text, &format!("{name}.toml"), Path::new(".")).unwrap()
    };
    let storage = tempfile::tempdir().unwrap();
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1ms\"\nretain = 1000\nmode = \"exactly-once\"\n",
        storage.path().display()
    );
    let crash = window("wcrash", &checkpoint);
    let first = run(&crash, Some(&cluster), RestoreFrom::Latest);
    // Checkpoint 1 is the empty start; a poll reads at most 1,000 records,
    // so checkpoint 2 is mid-input.
    assert!(first.checkpoints >= 3, "{first:?}");
    let replay = run(&crash, Some(&cluster), RestoreFrom::Checkpoint(2));
    assert_eq!(replay.restored, Some(2));
    assert!(replay.outputs > 0 && replay.outputs < first.outputs, "{replay:?}");
    assert_eq!(replay.skipped, replay.outputs, "every replayed window is skipped");

    let clean = run(&window("wclean", ""), Some(&cluster), RestoreFrom::Latest);
    assert_eq!(clean.outputs, first.outputs);
    let (crash_out, clean_out) = (read_all(&cluster, "wcrash-out"), read_all(&cluster, "wclean-out"));
    assert_eq!(crash_out.len() as u64, clean.outputs);
    assert_eq!(multiset(&crash_out), multiset(&clean_out), "windows differ from one clean run");
    assert_dense_sequences(&crash_out);
}

/// At-least-once with checkpoints: the same restore from an older
/// checkpoint writes the replayed records again, with no headers: the
/// difference `sequence` makes.
#[test]
fn at_least_once_restored_from_an_older_checkpoint_repeats_the_replay() {
    let cluster = Cluster::embedded(config()).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    cluster.create_topic("alo-out", 3, 1).unwrap();
    cluster.create_topic("alo-dlq", 1, 1).unwrap();
    let storage = tempfile::tempdir().unwrap();
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1h\"\nretain = 5\n",
        storage.path().display()
    );
    let alo = job("embedded", "alo", &checkpoint);
    produce(&cluster, "in", 0..1_000);
    run(&alo, Some(&cluster), RestoreFrom::Latest);
    produce(&cluster, "in", 1_000..1_600);
    let second = run(&alo, Some(&cluster), RestoreFrom::Latest);
    let replay = run(&alo, Some(&cluster), RestoreFrom::Checkpoint(1));
    assert_eq!((second.outputs, replay.outputs, replay.skipped), (600, 600, 0));
    let out = read_all(&cluster, "alo-out");
    assert_eq!(out.len(), 1_600 + 600);
    let repeated = multiset(&out).values().filter(|&&n| n == 2).count();
    assert_eq!(repeated, 600, "exactly the replayed records are there twice");
    assert!(out.iter().all(|r| r.sequence.is_none()));
}

/// A job with `exactly_once = "transactions"` commits once per completed
/// checkpoint, after it.
#[test]
fn a_transactional_job_commits_at_each_checkpoint() {
    let cluster = Cluster::embedded(config()).unwrap();
    let mock = cluster.embedded_cluster().unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let storage = tempfile::tempdir().unwrap();
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1h\"\nmode = \"exactly-once\"\n",
        storage.path().display()
    );
    let tx = job(
        "embedded",
        "tx",
        &checkpoint.replace("[checkpoint]", "exactly_once = \"transactions\"\n[checkpoint]"),
    );
    produce(&cluster, "in", 0..1_000);
    mock.track_requests();
    let first = run(&tx, Some(&cluster), RestoreFrom::Latest);
    assert_eq!((first.checkpoints, first.outputs), (1, 1_000));
    // Output and dead letters: one producer each, one commit each.
    assert_eq!(mock.requests_seen(ApiKey::InitProducerId), 2);
    assert_eq!(mock.requests_seen(ApiKey::EndTxn), 2);
    let out = read_all(&cluster, "tx-out");
    assert_eq!(out.len(), 1_000);
}

/// A crashed run wrote, after the checkpoint, every record of one (source,
/// output partition) pair but only the first two of another pair, though
/// it sent that pair's others before later records of the first. The
/// restored sink skips exactly what was written and writes the rest.
#[test]
fn sequence_skips_per_source_and_output_partition_pair() {
    let cluster = Cluster::embedded(config()).unwrap();
    cluster.create_topic("gap", 2, 1).unwrap();
    // (source partition, key, payload): two source partitions, ten keys.
    let records: Vec<(i32, String, String)> =
        (0..200i32).map(|i| (i % 2, format!("k{}", i % 10), format!("r{i}"))).collect();
    let (before, after) = records.split_at(80);

    let mut crashed = KafkaSink::open_with(&cluster, "gap", &Delivery::Sequence).unwrap();
    crashed.restore(None).unwrap();
    for (source, key, payload) in before {
        crashed.send_from(*source, Some(key.as_bytes()), payload.as_bytes()).unwrap();
    }
    let state = crashed.checkpoint_state().unwrap();
    until_durable(&mut crashed);
    // Where each key went.
    let partition_of: BTreeMap<Vec<u8>, i32> =
        read_all(&cluster, "gap").into_iter().map(|r| (r.key.unwrap(), r.partition)).collect();
    assert_eq!(partition_of.values().collect::<BTreeSet<_>>().len(), 2, "keys on both partitions");
    let pair_of = |(source, key, _): &(i32, String, String)| (*source, partition_of[key.as_bytes()]);
    // The pair that loses records: source 1's on partition 1, all but its
    // first two after the checkpoint.
    let gap = (1, 1);
    let mut kept = 0;
    let mut written = Vec::new();
    for record in after {
        if pair_of(record) == gap {
            kept += 1;
            if kept > 2 {
                continue;
            }
        }
        written.push(record.clone());
    }
    assert!(kept > 10, "the pair has records to lose");
    for (source, key, payload) in &written {
        crashed.send_from(*source, Some(key.as_bytes()), payload.as_bytes()).unwrap();
    }
    crashed.flush().unwrap();
    drop(crashed);
    // A later-numbered record of another pair on the other partition is
    // written while the gap pair's records are missing: numbering over all
    // records would skip those.
    let written_total = written.len() as u64;

    let mut restored = KafkaSink::open_with(&cluster, "gap", &Delivery::Sequence).unwrap();
    restored.restore(Some(&state)).unwrap();
    for (source, key, payload) in after {
        restored.send_from(*source, Some(key.as_bytes()), payload.as_bytes()).unwrap();
    }
    restored.flush().unwrap();
    assert_eq!(restored.skipped(), written_total, "skips exactly what the crashed run wrote");

    let topic = read_all(&cluster, "gap");
    let expected: BTreeMap<String, usize> = records.iter().map(|(_, _, p)| (p.clone(), 1)).collect();
    assert_eq!(multiset(&topic), expected, "each record once");
    assert_dense_sequences(&topic);
}

/// Waits, as a checkpoint does before it completes, until what the sink
/// was sent before its checkpoint state is acknowledged.
fn until_durable(sink: &mut KafkaSink) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.checkpoint_pending().unwrap() {
        assert!(Instant::now() < deadline, "deliveries not acknowledged within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A checkpoint's barrier does not wait for the brokers: the sink's state
/// is taken at once, and the checkpoint is told to wait (`pending`) until
/// every record sent before the barrier is acknowledged, not those after.
/// Its read-back offsets are no later than the first record after it.
#[test]
fn a_barrier_does_not_wait_for_deliveries_but_the_checkpoint_does() {
    let cluster = Cluster::embedded(config()).unwrap();
    let mock = cluster.embedded_cluster().unwrap();
    cluster.create_topic("slow", 1, 1).unwrap();
    let mut sink = KafkaSink::open_with(&cluster, "slow", &Delivery::Sequence).unwrap();
    sink.restore(None).unwrap();
    for i in 0..100 {
        sink.send_from(0, Some(b"k"), format!("before {i}").as_bytes()).unwrap();
    }
    sink.flush().unwrap();
    for i in 100..200 {
        sink.send_from(0, Some(b"k"), format!("before {i}").as_bytes()).unwrap();
    }
    mock.set_round_trip(-1, Duration::from_millis(800)).unwrap();
    let started = Instant::now();
    let state = sink.checkpoint_state().unwrap();
    assert!(started.elapsed() < Duration::from_millis(400), "the barrier waited {:?}", started.elapsed());
    assert!(sink.checkpoint_pending().unwrap(), "records before the barrier are still in flight");
    for i in 0..100 {
        sink.send_from(0, Some(b"k"), format!("after {i}").as_bytes()).unwrap();
    }
    until_durable(&mut sink);
    assert!(sink.delivered() >= 200, "the 200 before the barrier are acknowledged: {}", sink.delivered());
    mock.set_round_trip(-1, Duration::ZERO).unwrap();
    sink.flush().unwrap();
    // The state reads back from offset 100 at the latest (what was
    // acknowledged at the barrier), so nothing after the barrier is missed.
    let from = i64::from_le_bytes(state[12..20].try_into().unwrap());
    assert!((0..=100).contains(&from), "reads back from {from}");
    let out = read_all(&cluster, "slow");
    assert_eq!(out.len(), 300);
    let first_after = out.iter().position(|r| r.payload == "after 0").unwrap() as i64;
    assert!(from <= first_after);
}

/// A restore with a state from another topic shape is refused, naming
/// the topic.
#[test]
fn sequence_refuses_a_state_it_cannot_use() {
    let cluster = Cluster::embedded(config()).unwrap();
    cluster.create_topic("two", 2, 1).unwrap();
    cluster.create_topic("three", 3, 1).unwrap();
    let mut two = KafkaSink::open_with(&cluster, "two", &Delivery::Sequence).unwrap();
    two.send_from(0, Some(b"k"), b"x").unwrap();
    let state = two.checkpoint_state().unwrap();
    let mut three = KafkaSink::open_with(&cluster, "three", &Delivery::Sequence).unwrap();
    let err = three.restore(Some(&state)).unwrap_err().to_string();
    assert!(err.starts_with("sink three: cannot restore") && err.contains("2 partitions"), "{err}");
    let err = three.restore(Some(&20u64.to_le_bytes())).unwrap_err().to_string();
    assert!(err.contains("not a sequenced Kafka sink's state"), "{err}");
}

/// The transactional protocol on the mock cluster: init at open, begin,
/// send, commit at a completed checkpoint, abort on restore, each seen by
/// the brokers; a second producer with the same id starts. The mock does
/// not fence (it gives the second producer a new producer id instead of
/// bumping the first's epoch), so the fencing a real broker answers the
/// first producer's commit with is injected: the sink reports it as a
/// fencing error and stops.
#[test]
fn transactions_commit_abort_and_fence_on_the_mock_cluster() {
    let cluster = Cluster::embedded(config()).unwrap();
    let mock = cluster.embedded_cluster().unwrap();
    cluster.create_topic("tx", 2, 1).unwrap();
    mock.track_requests();
    let delivery = Delivery::Transactions { id: "weir-test-tx".into() };
    let mut first = KafkaSink::open_with(&cluster, "tx", &delivery).unwrap();
    assert_eq!(mock.requests_seen(ApiKey::InitProducerId), 1);
    assert!(first.commits_at_checkpoints());
    assert_eq!(first.client_property("transactional.id").as_deref(), Some("weir-test-tx"));
    for i in 0..10 {
        first.send_from(0, Some(format!("k{i}").as_bytes()), format!("committed {i}").as_bytes()).unwrap();
    }
    assert_eq!(first.checkpoint_state().unwrap(), Vec::<u8>::new());
    assert!(mock.requests_seen(ApiKey::AddPartitionsToTxn) >= 1, "the partitions joined the transaction");
    assert_eq!(mock.requests_seen(ApiKey::EndTxn), 0, "nothing commits before the checkpoint completes");
    first.checkpoint_complete().unwrap();
    assert_eq!(mock.requests_seen(ApiKey::EndTxn), 1, "committed");
    for i in 0..5 {
        first.send_from(0, None, format!("aborted {i}").as_bytes()).unwrap();
    }
    first.flush().unwrap();
    first.restore(None).unwrap();
    assert_eq!(mock.requests_seen(ApiKey::EndTxn), 2, "aborted");
    first.send_from(0, None, b"in the next transaction").unwrap();
    first.flush().unwrap();
    assert_eq!(first.delivered(), 16);

    let mut second = KafkaSink::open_with(&cluster, "tx", &delivery).unwrap();
    assert_eq!(mock.requests_seen(ApiKey::InitProducerId), 2);
    second.send_from(0, None, b"from the second").unwrap();
    second.checkpoint_state().unwrap();
    second.checkpoint_complete().unwrap();
    assert_eq!(mock.requests_seen(ApiKey::EndTxn), 3);

    // What a broker answers a fenced producer's commit.
    mock.push_request_errors(ApiKey::EndTxn, &[RespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED]);
    first.checkpoint_state().unwrap();
    let err = first.checkpoint_complete().unwrap_err();
    assert!(err.is_fenced(), "not a fencing error: {err:?}");
    assert!(err.to_string().starts_with("sink topic 'tx' on "), "{err}");
    assert!(matches!(err, SinkError::Transaction { action: "commit", .. }), "{err:?}");
}
