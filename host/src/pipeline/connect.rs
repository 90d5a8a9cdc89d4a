//! Opening a job's source and sinks: files, or Kafka topics on an external
//! cluster or on the embedded in-process broker.

use super::{PipelineError, Sinks};
use crate::job::{Job, SinkSpec, SourceSpec, StartOffset};
use crate::kafka::{BrokerSpec, Cluster, KafkaConfig, KafkaError};
use crate::sink::Sink;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::source::Source;
use crate::source::file::FileSource;
use crate::source::kafka::{KafkaSource, KafkaSourceOptions, StartFrom};

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
        SourceSpec::Kafka { brokers, topic, group, start, partitions } => {
            let cluster = cluster(brokers, &mut embedded, &config)?;
            if cluster.embedded_cluster().is_some() {
                cluster.ensure_topic(topic, *partitions, 1)?;
            }
            let start = match start {
                StartOffset::Earliest => StartFrom::Earliest,
                StartOffset::Latest => StartFrom::Latest,
                StartOffset::Committed => StartFrom::Committed,
            };
            let options =
                KafkaSourceOptions { topic: topic.clone(), group: Some(group.clone()), start, until_end };
            let source = KafkaSource::open(&cluster, &options)?;
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
        SinkSpec::Kafka { brokers, topic, dead_letter, late_output } => {
            let cluster = cluster(brokers, &mut embedded, &config)?;
            let partitions = match &job.source {
                SourceSpec::Kafka { partitions, .. } => *partitions,
                SourceSpec::File { .. } => crate::job::DEFAULT_PARTITIONS,
            };
            // Output topics are ours to create: made when missing.
            let topic_sink = |t: &str| -> Result<Box<dyn Sink>, PipelineError> {
                cluster.ensure_topic(t, partitions, 1)?;
                Ok(Box::new(KafkaSink::open(&cluster, t)?))
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
