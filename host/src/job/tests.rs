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
            "jobs/max.toml: sink.colour: unknown field `colour`, expected one of `type`, `brokers`, `topic`, `path`, `dead_letter`",
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
