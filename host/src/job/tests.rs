//! Job file parsing and validation.

use super::*;

const GOOD: &str = r#"
name = "max-temperature"
[source]
type = "kafka"
brokers = "embedded"
topic = "readings"
group = "weir-max-temperature"
start = "earliest"
[format]
key = "device_id"
timestamp = "execution_time"
fields = { temperature = "f64" }
[time]
max_out_of_orderness = "500ms"
idle_timeout = "5s"
allowed_lateness = "0s"
late_output = "readings-late"
[window]
type = "tumbling"
size = "1s"
[function]
plugin = "max-temperature"
[sink]
type = "kafka"
topic = "max-temperature"
dead_letter = "readings-dlq"
"#;

fn parse(text: &str) -> Result<Job, JobError> {
    Job::parse(text, "jobs/max.toml", Path::new("jobs"))
}

#[test]
fn the_issue_example_parses() {
    let job = parse(GOOD).unwrap();
    assert_eq!(job.window, Some(WindowSpec::Tumbling { size: 1000 }));
    assert_eq!(job.fields, vec![Field { name: "temperature".into(), ty: FieldType::F64 }]);
    assert_eq!(job.config.time.max_out_of_orderness, std::time::Duration::from_millis(500));
    assert!(
        matches!(job.source, SourceSpec::Kafka { ref topic, partitions: 4, ref group, .. } if topic == "readings" && group == "weir-max-temperature")
    );
    assert!(
        matches!(job.sink, SinkSpec::Kafka { ref late_output, .. } if late_output.as_deref() == Some("readings-late"))
    );
    assert_eq!(job.path(Path::new("out.jsonl")), Path::new("jobs/out.jsonl"));
}

#[test]
fn errors_name_the_file_the_field_and_the_problem() {
    let cases = [
        (
            GOOD.replace("size = \"1s\"", "size = \"abc\""),
            "jobs/max.toml: window.size: expected a duration like 1s, 500ms, 5m or 1h, got 'abc'",
        ),
        (
            GOOD.replace("temperature = \"f64\"", "temperature = \"float\""),
            "jobs/max.toml: format.fields.temperature: unknown type 'float' (use f64, i64, string or bool)",
        ),
        (
            GOOD.replace("type = \"tumbling\"", "type = \"hopping\""),
            "jobs/max.toml: window.type: unknown variant `hopping`, expected one of `tumbling`, `sliding`, `session`",
        ),
        (GOOD.replace("size = \"1s\"", "size = \"0s\""), "jobs/max.toml: window.size: must be at least 1 ms"),
        (
            GOOD.replace("key = \"device_id\"\n", ""),
            "jobs/max.toml: format.key: required: windows are computed per key (e.g. key = \"device_id\")",
        ),
        (
            GOOD.replace("start = \"earliest\"", "start = \"yesterday\""),
            "jobs/max.toml: source.start: unknown variant `yesterday`, expected one of `earliest`, `latest`, `committed`",
        ),
        (
            GOOD.replace("[sink]\ntype = \"kafka\"\n", "[sink]\ntype = \"kafka\"\ncolour = \"red\"\n"),
            "jobs/max.toml: sink.colour: unknown field `colour`, expected one of `type`, `brokers`, `topic`, `path`, `dead_letter`, `kafka`, `exactly_once`",
        ),
        (
            GOOD.replace("topic = \"readings\"\n", ""),
            "jobs/max.toml: source.topic: required for a kafka source",
        ),
        (
            GOOD.replace("size = \"1s\"", "gap = \"1s\""),
            "jobs/max.toml: window.gap: does not apply to a tumbling window",
        ),
        (
            GOOD.replace(
                "type = \"tumbling\"\nsize = \"1s\"",
                "type = \"sliding\"\nsize = \"1s\"\nslide = \"2s\"",
            ),
            "jobs/max.toml: window.slide: 2000 ms is longer than the size, 1000 ms",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(&text).unwrap_err().to_string(), expected);
    }
    let err = parse("name = ").unwrap_err().to_string();
    assert!(err.starts_with("jobs/max.toml: not valid TOML"), "{err}");
    let err = parse(&GOOD.replace("[function]\nplugin = \"max-temperature\"\n", "")).unwrap_err().to_string();
    assert!(err.contains("function"), "{err}");
}

/// `GOOD` with `[source.kafka]` and `[sink.kafka]` tables.
fn with_properties(source: &str, sink: &str) -> String {
    format!("{GOOD}[source.kafka]\n{source}\n[sink.kafka]\n{sink}\n")
}

#[test]
fn kafka_properties_pass_through_checked() {
    let job = parse(&with_properties(
        "\"fetch.max.bytes\" = 1048576\n\"check.crcs\" = true\n\"client.id\" = \"max\"",
        "\"compression.type\" = \"lz4\"\n\"linger.ms\" = 20",
    ))
    .unwrap();
    let SourceSpec::Kafka { properties, .. } = &job.source else { panic!("a kafka source") };
    let expected: BTreeMap<String, String> =
        [("check.crcs", "true"), ("client.id", "max"), ("fetch.max.bytes", "1048576")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(properties, &expected);
    let SinkSpec::Kafka { properties, .. } = &job.sink else { panic!("a kafka sink") };
    let expected: BTreeMap<String, String> = [("compression.type", "lz4"), ("linger.ms", "20")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(properties, &expected);
    // Without the tables, nothing extra.
    let job = parse(GOOD).unwrap();
    assert!(matches!(job.source, SourceSpec::Kafka { ref properties, .. } if properties.is_empty()));
    assert!(matches!(job.sink, SinkSpec::Kafka { ref properties, .. } if properties.is_empty()));
}

#[test]
fn refused_and_unknown_kafka_properties_name_the_field() {
    let cases = [
        (
            with_properties("\"group.id\" = \"other\"", ""),
            "jobs/max.toml: source.kafka.group.id: weir controls this property: weir sets it from source.group",
        ),
        (
            with_properties("", "\"enable.idempotence\" = false"),
            "jobs/max.toml: sink.kafka.enable.idempotence: weir controls this property: the sink's producer \
             is always idempotent, so that retries never duplicate or reorder a record",
        ),
        (
            with_properties("\"enable.auto.commit\" = true", ""),
            "jobs/max.toml: source.kafka.enable.auto.commit: weir controls this property: weir commits \
             offsets itself, and only after the sinks have written the results",
        ),
        (
            with_properties("", "\"request.required.acks\" = 1"),
            "jobs/max.toml: sink.kafka.request.required.acks: weir controls this property: every in-sync \
             replica must acknowledge a write (acks = all), so none is lost",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(&text).unwrap_err().to_string(), expected);
    }
    // Unknown names and bad values: librdkafka's own reason, after the field.
    let err = parse(&with_properties("\"fetch.max.bytez\" = 1", "")).unwrap_err().to_string();
    assert!(
        err.starts_with("jobs/max.toml: source.kafka.fetch.max.bytez: librdkafka refuses it: ")
            && err.contains("No such configuration property"),
        "{err}"
    );
    let err = parse(&with_properties("", "\"linger.ms\" = \"soon\"")).unwrap_err().to_string();
    assert!(err.starts_with("jobs/max.toml: sink.kafka.linger.ms: librdkafka refuses it: "), "{err}");
    // An unquoted dotted name is a nested TOML table: say to quote it.
    let err = parse(&with_properties("fetch.max.bytes = 1", "")).unwrap_err().to_string();
    assert!(err.starts_with("jobs/max.toml: source.kafka.fetch: ") && err.contains("quote dotted"), "{err}");
    // Only Kafka sources and sinks take them.
    let file_job = GOOD
        .replace(
            "type = \"kafka\"\nbrokers = \"embedded\"\ntopic = \"readings\"\ngroup = \"weir-max-temperature\"\nstart = \"earliest\"",
            "type = \"file\"\npath = \"in.jsonl\"",
        )
        .replace("type = \"kafka\"\ntopic = \"max-temperature\"", "type = \"file\"\npath = \"out.jsonl\"");
    parse(&file_job).unwrap();
    let err = parse(&format!("{file_job}[source.kafka]\n\"client.id\" = \"x\"\n")).unwrap_err().to_string();
    assert_eq!(err, "jobs/max.toml: source.kafka: only for kafka sources");
    let err = parse(&format!("{file_job}[sink.kafka]\n\"client.id\" = \"x\"\n")).unwrap_err().to_string();
    assert_eq!(err, "jobs/max.toml: sink.kafka: only for kafka sinks");
}

/// `GOOD` with a `[checkpoint]` in `mode` and `[sink]` lines added.
fn with_checkpoint(mode: &str, sink: &str) -> String {
    let text =
        GOOD.replace("dead_letter = \"readings-dlq\"\n", &format!("dead_letter = \"readings-dlq\"\n{sink}"));
    format!("{text}[checkpoint]\nstorage = \"file:///tmp/weir-checkpoints\"\nmode = \"{mode}\"\n")
}

fn exactly_once_of(job: &Job) -> Option<ExactlyOnce> {
    match &job.sink {
        SinkSpec::Kafka { exactly_once, .. } => *exactly_once,
        SinkSpec::File { .. } => panic!("a kafka sink"),
    }
}

#[test]
fn exactly_once_kafka_sinks_sequence_by_default_and_transact_when_asked() {
    assert_eq!(
        exactly_once_of(&parse(&with_checkpoint("exactly-once", "")).unwrap()),
        Some(ExactlyOnce::Sequence)
    );
    let transactions = parse(&with_checkpoint("exactly-once", "exactly_once = \"transactions\"\n")).unwrap();
    assert_eq!(exactly_once_of(&transactions), Some(ExactlyOnce::Transactions));
    // At-least-once: the plain idempotent producer.
    assert_eq!(exactly_once_of(&parse(&with_checkpoint("at-least-once", "")).unwrap()), None);
    assert_eq!(exactly_once_of(&parse(GOOD).unwrap()), None);
}

#[test]
fn exactly_once_errors_name_the_field_and_what_fits() {
    let cases = [
        (
            with_checkpoint("exactly-once", "exactly_once = \"twice\"\n"),
            "jobs/max.toml: sink.exactly_once: unknown variant `twice`, expected `sequence` or `transactions`",
        ),
        (
            with_checkpoint("at-least-once", "exactly_once = \"sequence\"\n"),
            "jobs/max.toml: sink.exactly_once: only with [checkpoint] mode = \"exactly-once\" (at-least-once needs no setting)",
        ),
        (
            GOOD.replace(
                "dead_letter = \"readings-dlq\"\n",
                "dead_letter = \"readings-dlq\"\nexactly_once = \"sequence\"\n",
            ),
            "jobs/max.toml: sink.exactly_once: only with [checkpoint] mode = \"exactly-once\" (at-least-once needs no setting)",
        ),
        (
            with_checkpoint("exactly-once", "").replace("timestamp = \"execution_time\"\n", ""),
            "jobs/max.toml: sink.exactly_once: \"sequence\" needs event time: set format.timestamp, since a \
             processing-time job cannot replay the same records after a restore (or use exactly_once = \
             \"transactions\", or [checkpoint] mode = \"at-least-once\")",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(&text).unwrap_err().to_string(), expected);
    }
    // A processing-time job may use transactions.
    let text = with_checkpoint("exactly-once", "exactly_once = \"transactions\"\n")
        .replace("timestamp = \"execution_time\"\n", "");
    assert_eq!(exactly_once_of(&parse(&text).unwrap()), Some(ExactlyOnce::Transactions));
    // File sinks are cut back instead.
    let file = "name = \"f\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[format]\ntimestamp = \"t\"\n\
                [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n\
                exactly_once = \"sequence\"\n[checkpoint]\nstorage = \"file:///tmp/c\"\nmode = \"exactly-once\"\n";
    assert_eq!(
        parse(file).unwrap_err().to_string(),
        "jobs/max.toml: sink.exactly_once: only for kafka sinks (file sinks are cut back to the checkpoint instead)"
    );
}

#[test]
fn the_storage_timeout_defaults_to_30_seconds_and_is_read_from_the_job_file() {
    let parse = |text: &str| Job::parse(text, "jobs/max.toml", std::path::Path::new("jobs")).unwrap();
    let default = parse(&with_checkpoint("at-least-once", ""));
    let config = default.config.checkpoint.as_ref().unwrap();
    assert_eq!(config.storage_timeout, std::time::Duration::from_secs(30));
    let set = parse(&(with_checkpoint("at-least-once", "") + "storage_timeout = \"5s\"\n"));
    let config = set.config.checkpoint.as_ref().unwrap();
    assert_eq!(config.storage_timeout, std::time::Duration::from_secs(5));
}

/// Every `.toml` under `dir` and its subfolders, in name order.
fn job_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(job_files_under(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files
}

/// The examples are checked with the parser `weir run` and `weir serve`
/// use, so one that drifts from the job-file schema fails here. This reads
/// and checks each file (every section and field, durations, windows,
/// Kafka properties, checkpoint storage URLs, restart strategies); it does
/// not load plugins, which the parser leaves as names: a built-in, a
/// `.wasm` path, or a host's `name@version` (examples/compose) are resolved
/// only when a job is built or submitted, so they are not checked here.
#[test]
fn every_example_job_file_is_a_valid_job() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let files = job_files_under(&examples);
    assert!(
        files.iter().any(|f| f.ends_with("compose/max-temperature.toml")),
        "expected the examples, including examples/compose, under {}; found {files:?}",
        examples.display()
    );
    let errors: Vec<String> =
        files.iter().filter_map(|file| Job::load(file).err()).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "examples that are not valid jobs:\n{}", errors.join("\n"));
}

/// `GOOD` as a `[source] scale_out` job with checkpoints, `checkpoint`
/// lines added to its `[checkpoint]`.
fn scale_out_with(checkpoint: &str) -> String {
    let text = with_checkpoint("exactly-once", "")
        .replace("start = \"earliest\"\n", "start = \"earliest\"\nscale_out = true\n");
    format!("{text}interval = \"1s\"\n{checkpoint}")
}

#[test]
fn scale_out_refusals_name_the_field_and_what_to_do() {
    let ok = parse(&scale_out_with("")).unwrap();
    assert!(ok.config.source.scale_out);
    assert_eq!(ok.config.checkpoint.as_ref().and_then(|c| c.cleanup_delay), None, "10m unless set");
    let with_delay = parse(&scale_out_with("cleanup_delay = \"2s\"\n")).unwrap();
    assert_eq!(
        with_delay.config.checkpoint.and_then(|c| c.cleanup_delay),
        Some(std::time::Duration::from_secs(2))
    );
    let file_sink = scale_out_with("").replace(
        "[sink]\ntype = \"kafka\"\ntopic = \"max-temperature\"\ndead_letter = \"readings-dlq\"\n",
        "[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n",
    );
    let cases = [
        (
            scale_out_with("").split("[checkpoint]").next().unwrap_or_default().to_string(),
            "source.scale_out: needs a [checkpoint] section whose storage every process reaches (hdfs:// or a \
             shared folder): window state moves between the processes through it",
        ),
        (
            file_sink,
            "source.scale_out: needs a kafka sink: each process would write a file of its own (set [sink] type = \
             \"kafka\")",
        ),
        (
            format!("parallelism = 2\n{}", scale_out_with("")),
            "parallelism: with source.scale_out each process runs one worker: run more processes instead, or \
             leave parallelism out",
        ),
        (
            scale_out_with("").replace(
                "dead_letter = \"readings-dlq\"\n",
                "dead_letter = \"readings-dlq\"\nexactly_once = \"transactions\"\n",
            ),
            "sink.exactly_once: \"transactions\" is not built for source.scale_out (docs/SCALING.md says why): use \
             \"sequence\" (the default)",
        ),
        (
            scale_out_with("cleanup_delay = \"1500ms\"\n"),
            "checkpoint.cleanup_delay: must be at least twice checkpoint.interval (1s): a live member's newest \
             checkpoint is never that old",
        ),
        (
            with_checkpoint("exactly-once", "") + "cleanup_delay = \"1h\"\n",
            "checkpoint.cleanup_delay: only for jobs with [source] scale_out = true, whose members leave \
             checkpoints behind",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(err, format!("jobs/max.toml: {expected}"), "{text}");
    }
}
