//! Opening a job's source and sinks: files, or Kafka topics on an external
//! cluster or on the embedded in-process broker.

use super::{PipelineError, Sinks};
use crate::job::{ExactlyOnce, Job, SinkSpec, SourceSpec};
use crate::kafka::{BrokerSpec, Cluster, KafkaConfig, KafkaError, Lease};
use crate::sink::file::FileSink;
use crate::sink::kafka::{Delivery, KafkaSink};
use crate::sink::{Sink, SinkError};
use crate::source::file::FileSource;
use crate::source::kafka::{KafkaSource, KafkaSourceOptions};
use crate::source::{Source, SourceError};
use std::collections::BTreeMap;

/// A job's open source and sinks, and the clusters they use (kept so an
/// embedded broker lives as long as the job).
pub struct JobIo {
    /// Where records come from.
    pub source: Box<dyn Source>,
    /// Where results, dead letters and late events go.
    pub sinks: Sinks,
    /// The Kafka clusters in use.
    pub clusters: Vec<Cluster>,
    /// The lease a member of a consumer group writes under
    /// (`[source] scale_out` with Kafka sinks).
    pub lease: Option<Lease>,
}

/// Connects to `brokers`, or starts the embedded broker, for clients with
/// the extra librdkafka `properties` (applied before connecting, so that
/// settings such as security ones serve the first request too). `embedded`,
/// when given, is the embedded cluster to share (so source and sink meet).
fn cluster(
    brokers: &str,
    embedded: &mut Option<Cluster>,
    config: &KafkaConfig,
    properties: &BTreeMap<String, String>,
) -> Result<Cluster, KafkaError> {
    let spec: BrokerSpec = brokers.parse()?;
    Ok(match spec {
        BrokerSpec::Embedded => match embedded {
            Some(c) => c.with_properties(properties),
            None => {
                let c = Cluster::embedded(config.clone())?;
                *embedded = Some(c.clone());
                c.with_properties(properties)
            }
        },
        BrokerSpec::List(list) => {
            let mut config = config.clone();
            config.properties.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
            Cluster::external(&list, config)?
        }
    })
}

/// Opens the job's source and sinks. With `until_end`, a Kafka source ends
/// at the end offsets it finds at start. `embedded` is an embedded cluster
/// already running in this process (`weir demo` starts one and produces
/// into it), shared with the job.
pub fn open(job: &Job, until_end: bool, embedded: Option<Cluster>) -> Result<JobIo, PipelineError> {
    open_with(job, until_end, embedded, &KafkaConfig::default())
}

/// [`open`], with Kafka clients made from `config` (plus the job's
/// `[source.kafka]` and `[sink.kafka]` properties).
pub fn open_with(
    job: &Job,
    until_end: bool,
    embedded: Option<Cluster>,
    config: &KafkaConfig,
) -> Result<JobIo, PipelineError> {
    let mut embedded = embedded;
    let (source, mut clusters) = source_of(job, until_end, &mut embedded, config)?;
    let mut lease = None;
    let sinks = match &job.sink {
        SinkSpec::File { path, dead_letter, late_output } => {
            // With checkpoints, files keep what they hold until the run
            // knows whether it restores one: then it cuts them back to the
            // checkpoint, or to nothing.
            let keep = job.config.checkpoint.is_some();
            let file = |p: &std::path::Path| -> Result<Box<dyn Sink>, PipelineError> {
                Ok(Box::new(if keep { FileSink::open_keeping(p)? } else { FileSink::create(p)? }))
            };
            Sinks {
                output: file(path)?,
                dead_letter: dead_letter.as_deref().map(file).transpose()?,
                late: late_output.as_deref().map(file).transpose()?,
            }
        }
        SinkSpec::Kafka { brokers, topic, dead_letter, late_output, properties, exactly_once } => {
            let cluster = cluster(brokers, &mut embedded, config, properties)
                .map_err(|e| SinkError::OpenTopic { topic: topic.clone(), source: Box::new(e) })?;
            let partitions = match &job.source {
                SourceSpec::Kafka { partitions, .. } => *partitions,
                SourceSpec::File { .. } => crate::job::DEFAULT_PARTITIONS,
            };
            // A member of a consumer group writes under a lease (see
            // `kafka::lease`), one for all its sinks.
            lease = member_lease(job);
            let topic_sink = |t: &str| -> Result<Box<dyn Sink>, PipelineError> {
                let delivery = delivery(&job.config.name, t, *exactly_once);
                Ok(Box::new(kafka_sink(&cluster, t, partitions, &delivery, lease.as_ref())?))
            };
            let sinks = Sinks {
                output: topic_sink(topic)?,
                dead_letter: dead_letter.as_deref().map(topic_sink).transpose()?,
                late: late_output.as_deref().map(topic_sink).transpose()?,
            };
            clusters.push(cluster);
            sinks
        }
    };
    Ok(JobIo { source, sinks, clusters, lease })
}

/// Opens the job's source alone (a shadow run reads the job's input but
/// writes nothing, so it opens no sinks), with the clusters it uses.
pub fn open_source(
    job: &Job,
    embedded: Option<Cluster>,
) -> Result<(Box<dyn Source>, Vec<Cluster>), PipelineError> {
    let mut embedded = embedded;
    source_of(job, false, &mut embedded, &KafkaConfig::default())
}

fn source_of(
    job: &Job,
    until_end: bool,
    embedded: &mut Option<Cluster>,
    config: &KafkaConfig,
) -> Result<(Box<dyn Source>, Vec<Cluster>), PipelineError> {
    Ok(match &job.source {
        SourceSpec::File { path } => (open_files(path)?, Vec::new()),
        SourceSpec::Kafka { .. } => {
            let (source, cluster) = kafka_source(job, until_end, embedded, config)?;
            (Box::new(source), vec![cluster])
        }
    })
}

/// Opens the job's Kafka source, with its `[source.kafka]` properties.
fn kafka_source(
    job: &Job,
    until_end: bool,
    embedded: &mut Option<Cluster>,
    config: &KafkaConfig,
) -> Result<(KafkaSource, Cluster), PipelineError> {
    let SourceSpec::Kafka { brokers, topic, group, start, partitions, properties } = &job.source else {
        return Err(job.error("source.type", "not a kafka source").into());
    };
    let fail = |e: KafkaError| SourceError::OpenTopic { topic: topic.clone(), source: Box::new(e) };
    let cluster = cluster(brokers, embedded, config, properties).map_err(fail)?;
    if cluster.embedded_cluster().is_some() {
        cluster.ensure_topic(topic, *partitions, 1).map_err(fail)?;
    }
    let options = KafkaSourceOptions {
        topic: topic.clone(),
        group: Some(group.clone()),
        start: *start,
        until_end,
        scale_out: job.config.source.scale_out,
    };
    let source = KafkaSource::open(&cluster, &options)?;
    Ok((source, cluster))
}

/// How the sink on `topic` of job `job` delivers. A transactional id
/// names the job and the topic: stable across runs, so that a restarted
/// job fences its previous instance, and distinct per topic, since each
/// topic has its own producer.
fn delivery(job: &str, topic: &str, exactly_once: Option<ExactlyOnce>) -> Delivery {
    match exactly_once {
        None => Delivery::Idempotent,
        Some(ExactlyOnce::Sequence) => Delivery::Sequence,
        Some(ExactlyOnce::Transactions) => Delivery::Transactions { id: format!("weir-{job}-{topic}") },
    }
}

/// Opens a sink on `topic`, creating the topic when missing: output topics
/// are ours to create.
fn kafka_sink(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    delivery: &Delivery,
    lease: Option<&Lease>,
) -> Result<KafkaSink, SinkError> {
    cluster
        .ensure_topic(topic, partitions, 1)
        .map_err(|e| SinkError::OpenTopic { topic: topic.to_string(), source: Box::new(e) })?;
    KafkaSink::open_leased(cluster, topic, delivery, lease)
}

/// The session timeout and heartbeat of a `[source] scale_out` job's
/// consumer (its `[source.kafka]` properties, or librdkafka's defaults).
pub(super) fn member_session(job: &Job) -> Option<(std::time::Duration, std::time::Duration)> {
    match &job.source {
        SourceSpec::Kafka { properties, .. } if job.config.source.scale_out => {
            Some(Lease::session_of(properties))
        }
        _ => None,
    }
}

/// The lease a `[source] scale_out` job's sinks write under.
fn member_lease(job: &Job) -> Option<Lease> {
    member_session(job).map(|(session, heartbeat)| Lease::for_session(session, heartbeat))
}

/// A file source: one file, or several (a folder or a glob), each its own
/// partition.
fn open_files(path: &std::path::Path) -> Result<Box<dyn Source>, SourceError> {
    let text = path.to_string_lossy();
    if !path.is_dir() && !crate::source::files::is_glob(&text) {
        return Ok(Box::new(FileSource::open(path)?));
    }
    let files = crate::source::files::resolve(path)?;
    Ok(Box::new(crate::source::files::FilesSource::open(&text, &files)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn job(source_properties: &str, sink_properties: &str) -> Job {
        let text = format!(
            r#"
name = "props"
[source]
type = "kafka"
topic = "in"
partitions = 2
[format]
fields = {{ temperature = "f64" }}
[function]
plugin = "identity"
[sink]
type = "kafka"
topic = "out"
dead_letter = "dlq"
[source.kafka]
{source_properties}
[sink.kafka]
{sink_properties}
"#
        );
        Job::parse(&text, "job.toml", Path::new(".")).unwrap()
    }

    #[test]
    fn source_and_sink_properties_reach_their_own_clients() {
        let job = job("\"fetch.wait.max.ms\" = 123\n\"client.id\" = \"reader\"", "\"linger.ms\" = 42");
        let config = KafkaConfig::default();
        let mut embedded = None;
        let (source, _) = kafka_source(&job, true, &mut embedded, &config).unwrap();
        let shared = embedded.clone().unwrap();
        let plain = KafkaSource::open(&shared, &KafkaSourceOptions::new("in")).unwrap();
        // The same brokers named by address take the path of an external
        // cluster, where the properties also serve the connection check.
        let mut by_address = job.config.clone();
        by_address.source.brokers = Some(shared.bootstrap().to_string());
        let by_address =
            Job::parse(&toml::to_string(&by_address).unwrap(), "job.toml", Path::new(".")).unwrap();
        let (external, _) = kafka_source(&by_address, true, &mut None, &config).unwrap();
        for source in [&source, &external] {
            assert_eq!(source.client_property("fetch.wait.max.ms").as_deref(), Some("123"));
            assert_eq!(source.client_property("client.id").as_deref(), Some("reader"));
            // The sink's table is not the source's.
            assert_eq!(source.client_property("linger.ms"), plain.client_property("linger.ms"));
        }

        let SinkSpec::Kafka { brokers, properties, .. } = &job.sink else { panic!("a kafka sink") };
        let sink = kafka_sink(
            &cluster(brokers, &mut embedded, &config, properties).unwrap(),
            "out",
            2,
            &Delivery::Idempotent,
            None,
        )
        .unwrap();
        assert_eq!(sink.client_property("linger.ms").as_deref(), Some("42"));
        assert_eq!(sink.client_property("client.id").as_deref(), Some("weir"));
        assert_eq!(sink.client_property("fetch.wait.max.ms"), plain.client_property("fetch.wait.max.ms"));
    }

    #[test]
    fn a_sink_property_changes_how_the_job_writes() {
        // A short delivery timeout from `[sink.kafka]`: with the broker
        // down, flushing fails after about that long, not after the
        // default two minutes.
        let job = job("", "\"message.timeout.ms\" = 500");
        let mut io = open(&job, true, None).unwrap();
        let embedded = io.clusters[0].embedded_cluster().unwrap();
        embedded.broker_down(-1).unwrap();
        io.sinks.output.send(Some(b"k"), b"{}").unwrap();
        let started = Instant::now();
        let err = io.sinks.output.flush().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        // The sink says it is the sink, which topic, and why.
        assert!(matches!(&err, SinkError::Undelivered { topic, failed: 1, .. } if topic == "out"), "{err:?}");
        let text = chain(&err);
        assert!(text.starts_with("sink topic 'out' on ") && text.contains("timed out"), "{text}");
    }

    #[test]
    fn kafka_errors_say_which_side_failed() {
        // Nothing listens on port 1; one short attempt.
        let fast = KafkaConfig {
            connect_attempts: 1,
            request_timeout: Duration::from_millis(300),
            ..KafkaConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "").unwrap();
        let mut source_down = job("", "").config;
        source_down.source.brokers = Some("127.0.0.1:1".into());
        let mut sink_down = source_down.clone();
        sink_down.source = crate::job::SourceConfig {
            kind: crate::job::SourceKind::File,
            brokers: None,
            topic: None,
            group: None,
            start: Default::default(),
            partitions: None,
            path: Some(input),
            kafka: Default::default(),
            scale_out: false,
        };
        sink_down.sink.brokers = Some("127.0.0.1:1".into());
        for (config, side) in [(source_down, "source topic 'in': "), (sink_down, "sink topic 'out': ")] {
            let job = Job::parse(&toml::to_string(&config).unwrap(), "job.toml", Path::new(".")).unwrap();
            let err = open_with(&job, true, None, &fast).map(drop).unwrap_err();
            let text = chain(&err);
            assert!(text.starts_with(side) && text.contains("127.0.0.1:1"), "{text}");
            match side.starts_with("source") {
                true => {
                    assert!(matches!(err, PipelineError::Source(SourceError::OpenTopic { .. })), "{err:?}")
                }
                false => assert!(matches!(err, PipelineError::Sink(SinkError::OpenTopic { .. })), "{err:?}"),
            }
        }
    }

    /// An error and its causes, as the CLI prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}
