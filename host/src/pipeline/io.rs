//! Opening a job's source and sinks: files, or Kafka topics on an external
//! cluster or on the embedded in-process broker.

use super::{PipelineError, Sinks};
use crate::job::{Job, SinkSpec, SourceSpec};
use crate::kafka::{BrokerSpec, Cluster, KafkaConfig, KafkaError};
use crate::sink::Sink;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::source::Source;
use crate::source::file::FileSource;
use crate::source::kafka::{KafkaSource, KafkaSourceOptions};

/// A job's open source and sinks, and the clusters they use (kept so an
/// embedded broker lives as long as the job).
pub struct JobIo {
    /// Where records come from.
    pub source: Box<dyn Source>,
    /// Where results, dead letters and late events go.
    pub sinks: Sinks,
    /// The Kafka clusters in use.
    pub clusters: Vec<Cluster>,
}

impl From<KafkaError> for PipelineError {
    fn from(e: KafkaError) -> Self {
        PipelineError::Source(crate::source::SourceError {
            source_name: "kafka".into(),
            message: e.to_string(),
        })
    }
}

/// Connects to `brokers`, or starts the embedded broker. `embedded`, when
/// given, is the embedded cluster to share (so source and sink meet).
fn cluster(
    brokers: &str,
    embedded: &mut Option<Cluster>,
    config: &KafkaConfig,
) -> Result<Cluster, PipelineError> {
    let spec: BrokerSpec = brokers.parse()?;
    Ok(match spec {
        BrokerSpec::Embedded => match embedded {
            Some(c) => c.clone(),
            None => {
                let c = Cluster::embedded(config.clone())?;
                *embedded = Some(c.clone());
                c
            }
        },
        BrokerSpec::List(list) => Cluster::external(&list, config.clone())?,
    })
}

/// Opens the job's source and sinks. With `until_end`, a Kafka source ends
/// at the end offsets it finds at start. `embedded` is an embedded cluster
/// already running in this process (`weir demo` starts one and produces
/// into it), shared with the job.
pub fn open(job: &Job, until_end: bool, embedded: Option<Cluster>) -> Result<JobIo, PipelineError> {
    let config = KafkaConfig::default();
    let mut embedded = embedded;
    let mut clusters = Vec::new();
    let source: Box<dyn Source> = match &job.source {
        SourceSpec::File { path } => Box::new(FileSource::open(path)?),
        SourceSpec::Kafka { .. } => {
            let (source, cluster) = kafka_source(job, until_end, &mut embedded, &config)?;
            clusters.push(cluster);
            Box::new(source)
        }
    };
    let sinks = match &job.sink {
        SinkSpec::File { path, dead_letter, late_output } => {
            let file = |p: &std::path::Path| -> Result<Box<dyn Sink>, PipelineError> {
                Ok(Box::new(FileSink::create(p)?))
            };
            Sinks {
                output: file(path)?,
                dead_letter: dead_letter.as_deref().map(file).transpose()?,
                late: late_output.as_deref().map(file).transpose()?,
            }
        }
        SinkSpec::Kafka { brokers, topic, dead_letter, late_output, properties } => {
            let cluster = cluster(brokers, &mut embedded, &config)?.with_properties(properties);
            let partitions = match &job.source {
                SourceSpec::Kafka { partitions, .. } => *partitions,
                SourceSpec::File { .. } => crate::job::DEFAULT_PARTITIONS,
            };
            let topic_sink = |t: &str| -> Result<Box<dyn Sink>, PipelineError> {
                Ok(Box::new(kafka_sink(&cluster, t, partitions)?))
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
    Ok(JobIo { source, sinks, clusters })
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
    let cluster = cluster(brokers, embedded, config)?.with_properties(properties);
    if cluster.embedded_cluster().is_some() {
        cluster.ensure_topic(topic, *partitions, 1)?;
    }
    let options =
        KafkaSourceOptions { topic: topic.clone(), group: Some(group.clone()), start: *start, until_end };
    let source = KafkaSource::open(&cluster, &options)?;
    Ok((source, cluster))
}

/// Opens a sink on `topic`, creating the topic when missing: output topics
/// are ours to create.
fn kafka_sink(cluster: &Cluster, topic: &str, partitions: i32) -> Result<KafkaSink, PipelineError> {
    cluster.ensure_topic(topic, partitions, 1)?;
    Ok(KafkaSink::open(cluster, topic)?)
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
        let mut embedded = None;
        let config = KafkaConfig::default();
        let (source, _) = kafka_source(&job, true, &mut embedded, &config).unwrap();
        assert_eq!(source.client_property("fetch.wait.max.ms").as_deref(), Some("123"));
        assert_eq!(source.client_property("client.id").as_deref(), Some("reader"));
        // The sink's table is not the source's.
        assert_eq!(
            source.client_property("linger.ms"),
            KafkaSource::open(embedded.as_ref().unwrap(), &KafkaSourceOptions::new("in"),)
                .unwrap()
                .client_property("linger.ms")
        );

        let SinkSpec::Kafka { properties, .. } = &job.sink else { panic!("a kafka sink") };
        let cluster = embedded.as_ref().unwrap().with_properties(properties);
        let sink = kafka_sink(&cluster, "out", 2).unwrap();
        assert_eq!(sink.client_property("linger.ms").as_deref(), Some("42"));
        assert_eq!(sink.client_property("client.id").as_deref(), Some("weir"));
        assert_ne!(sink.client_property("fetch.wait.max.ms").as_deref(), Some("123"));
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
        let err = io.sinks.output.flush().unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        assert!(err.contains("out") && err.contains("timed out"), "{err}");
    }
}
