//! Job files: reading, validating and resolving a job before it runs.
//! Errors name the file, the field and the problem, as in
//! `jobs/max.toml: window.size: expected a duration like 1s, …, got 'abc'`.

pub mod config;

pub use config::{
    CheckpointConfig, CheckpointMode, DEFAULT_CLEANUP_DELAY, ExactlyOnce, FormatConfig, FunctionConfig,
    JobConfig, OnFailure, PropertyValue, RestartConfig, RestartStrategyKind, SinkConfig, SinkKind,
    SourceConfig, SourceKind, StartFrom, TimeConfig, WindowConfig, WindowKind,
};

use crate::decode::RecordSchema;
use crate::types::{Field, FieldType};
use crate::window::WindowSpec;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A job file that cannot be run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// The job file.
    pub file: String,
    /// The field at fault (`window.size`), empty for the whole file.
    pub field: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field.is_empty() {
            true => write!(f, "{}: {}", self.file, self.message),
            false => write!(f, "{}: {}: {}", self.file, self.field, self.message),
        }
    }
}

impl std::error::Error for JobError {}

/// A checked job, ready for the pipeline to build.
#[derive(Debug, Clone)]
pub struct Job {
    /// The configuration as written.
    pub config: JobConfig,
    /// Where the job file is: relative paths in it are relative to here.
    pub base_dir: PathBuf,
    /// The job file, for messages.
    pub origin: String,
    /// The declared fields, in column order.
    pub fields: Vec<Field>,
    /// The window, if any.
    pub window: Option<WindowSpec>,
    /// Where records come from, resolved.
    pub source: SourceSpec,
    /// Where results go, resolved.
    pub sink: SinkSpec,
}

/// Embedded-broker topics get this many partitions unless the job says.
pub const DEFAULT_PARTITIONS: i32 = 4;

/// A checked `[source]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A Kafka topic.
    Kafka {
        /// `embedded` or a bootstrap list.
        brokers: String,
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
        /// Where to start.
        start: StartFrom,
        /// Partitions for an embedded topic.
        partitions: i32,
        /// Extra librdkafka properties for the source's clients, checked.
        properties: BTreeMap<String, String>,
    },
    /// A file, resolved against the job file's folder.
    File {
        /// The path.
        path: PathBuf,
    },
}

/// A checked `[sink]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    /// A Kafka topic.
    Kafka {
        /// `embedded` or a bootstrap list.
        brokers: String,
        /// The topic.
        topic: String,
        /// The dead-letter topic.
        dead_letter: Option<String>,
        /// The late-output topic.
        late_output: Option<String>,
        /// Extra librdkafka properties for the sink's producers, checked.
        properties: BTreeMap<String, String>,
        /// How records are kept from repeating after a restore: `None`
        /// unless `[checkpoint] mode = "exactly-once"`.
        exactly_once: Option<ExactlyOnce>,
    },
    /// Files, resolved against the job file's folder.
    File {
        /// The output file.
        path: PathBuf,
        /// The dead-letter file.
        dead_letter: Option<PathBuf>,
        /// The late-output file.
        late_output: Option<PathBuf>,
    },
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Job {
    /// Reads and checks a job file.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| JobError {
            file: origin.clone(),
            field: String::new(),
            message: format!("cannot read the job file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Job::parse(&text, &origin, &base)
    }

    /// Checks a job given as TOML text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Job, JobError> {
        let error = |field: &str, message: String| JobError {
            file: origin.to_string(),
            field: field.to_string(),
            message,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| error("", format!("not valid TOML: {e}")))?;
        let config: JobConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            // toml's message carries the line and a snippet; keep the
            // first line, which says what is wrong.
            let inner = e.into_inner().message().to_string();
            error(&field, inner)
        })?;
        Job::from_config(config, origin, base_dir)
    }

    /// Checks a job given as a configuration (a job file already read, or
    /// one built by a command); `origin` names it in messages.
    pub fn from_config(config: JobConfig, origin: &str, base_dir: &Path) -> Result<Job, JobError> {
        let check = Check { origin, base_dir };
        if config.name.trim().is_empty() {
            return Err(check.error("name", "must not be empty"));
        }
        if config.parallelism == Some(0) {
            return Err(check.error("parallelism", "must be at least 1 (or left out: one worker per core)"));
        }
        let fields = check.fields(&config.format)?;
        let window = match &config.window {
            None => None,
            Some(w) => Some(
                WindowSpec::new(w.kind, w.size, w.slide, w.gap)
                    .map_err(|p| check.error(&format!("window.{}", p.length), p.message))?,
            ),
        };
        if window.is_some() && config.format.key.is_none() {
            return Err(check
                .error("format.key", "required: windows are computed per key (e.g. key = \"device_id\")"));
        }
        let source = check.source(&config.source, &config.name)?;
        let mut sink = check.sink(&config.sink, &source, config.time.late_output.as_deref())?;
        if let Some(checkpoint) = &config.checkpoint {
            check.checkpoint(checkpoint, &source, &sink)?;
        }
        check.exactly_once(&config, &mut sink)?;
        if config.source.scale_out {
            check.scale_out(&config, &source, &sink)?;
        }
        check.cleanup_delay(&config)?;
        if let Some(restart) = &config.restart {
            crate::pipeline::RestartStrategy::new(restart)
                .map_err(|(field, message)| check.error(&format!("restart.{field}"), message))?;
        }
        Ok(Job {
            config,
            base_dir: base_dir.to_path_buf(),
            origin: origin.to_string(),
            fields,
            window,
            source,
            sink,
        })
    }

    /// An error about this job's field `field`.
    pub fn error(&self, field: &str, message: impl Into<String>) -> JobError {
        JobError { file: self.origin.clone(), field: field.to_string(), message: message.into() }
    }

    /// A path from the job file, relative to the job file's folder.
    pub fn path(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// What to decode from each record.
    pub fn record_schema(&self) -> RecordSchema {
        RecordSchema {
            key: self.config.format.key.clone(),
            timestamp: self.config.format.timestamp.clone(),
            fields: self.fields.clone(),
            max_record_bytes: self.config.format.max_record_bytes,
        }
    }

    /// Allowed lateness in ms.
    pub fn allowed_lateness(&self) -> i64 {
        millis(self.config.time.allowed_lateness)
    }
}

/// The checks of [`Job::from_config`], one section at a time; every error
/// names the job file and the field.
struct Check<'a> {
    origin: &'a str,
    base_dir: &'a Path,
}

impl Check<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> JobError {
        JobError { file: self.origin.to_string(), field: field.to_string(), message: message.into() }
    }

    /// `[format]`: the declared fields, in column order.
    fn fields(&self, format: &FormatConfig) -> Result<Vec<Field>, JobError> {
        let mut fields = Vec::with_capacity(format.fields.len());
        for (name, ty) in &format.fields {
            let ty = FieldType::parse(ty).ok_or_else(|| {
                self.error(
                    &format!("format.fields.{name}"),
                    format!("unknown type '{ty}' (use f64, i64, string or bool)"),
                )
            })?;
            fields.push(Field { name: name.clone(), ty });
        }
        for (what, name) in [("format.key", &format.key), ("format.timestamp", &format.timestamp)] {
            if let Some(name) = name
                && format.fields.contains_key(name)
            {
                return Err(
                    self.error(what, format!("'{name}' is also in format.fields; list it in one place"))
                );
            }
        }
        Ok(fields)
    }

    /// `[source.kafka]` or `[sink.kafka]`: librdkafka properties, each
    /// checked now so a typo fails before anything connects.
    fn properties(
        &self,
        side: &str,
        table: &BTreeMap<String, PropertyValue>,
    ) -> Result<BTreeMap<String, String>, JobError> {
        let mut checked = BTreeMap::new();
        for (name, PropertyValue(value)) in table {
            crate::kafka::check_property(name, value)
                .map_err(|e| self.error(&format!("{side}.kafka.{name}"), e.to_string()))?;
            checked.insert(name.clone(), value.clone());
        }
        Ok(checked)
    }

    /// Fails on the first of `fields` that is set: it does not apply.
    fn unused(&self, fields: &[(&str, bool)], why: &str) -> Result<(), JobError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(self.error(field, why)),
            None => Ok(()),
        }
    }

    /// `[source]`.
    fn source(&self, src: &SourceConfig, job_name: &str) -> Result<SourceSpec, JobError> {
        Ok(match src.kind {
            SourceKind::Kafka => {
                self.unused(
                    &[("source.path", src.path.is_some())],
                    "only for file sources; a Kafka source reads `topic`",
                )?;
                let partitions = src.partitions.unwrap_or(DEFAULT_PARTITIONS);
                if partitions < 1 {
                    return Err(self.error("source.partitions", "must be at least 1"));
                }
                SourceSpec::Kafka {
                    brokers: src.brokers.clone().unwrap_or_else(|| "embedded".into()),
                    topic: src
                        .topic
                        .clone()
                        .ok_or_else(|| self.error("source.topic", "required for a kafka source"))?,
                    group: src.group.clone().unwrap_or_else(|| format!("weir-{job_name}")),
                    start: src.start,
                    partitions,
                    properties: self.properties("source", &src.kafka)?,
                }
            }
            SourceKind::File => {
                self.unused(
                    &[
                        ("source.brokers", src.brokers.is_some()),
                        ("source.topic", src.topic.is_some()),
                        ("source.group", src.group.is_some()),
                        ("source.partitions", src.partitions.is_some()),
                        ("source.kafka", !src.kafka.is_empty()),
                    ],
                    "only for kafka sources",
                )?;
                let path = src
                    .path
                    .as_ref()
                    .ok_or_else(|| self.error("source.path", "required for a file source"))?;
                SourceSpec::File { path: resolve(self.base_dir, path) }
            }
        })
    }

    /// `[checkpoint]`.
    fn checkpoint(&self, c: &CheckpointConfig, source: &SourceSpec, sink: &SinkSpec) -> Result<(), JobError> {
        crate::checkpoint::parse_storage_url(&c.storage)
            .map_err(|e| self.error("checkpoint.storage", e.reason()))?;
        if c.interval.is_zero() {
            return Err(self.error("checkpoint.interval", "must be longer than 0"));
        }
        if c.retain == 0 {
            return Err(self.error("checkpoint.retain", "must keep at least 1 checkpoint"));
        }
        if c.cleanup_delay.is_some_and(|delay| delay < c.interval * 2) {
            return Err(self.error(
                "checkpoint.cleanup_delay",
                format!(
                    "must be at least twice checkpoint.interval ({}): a live member's newest checkpoint is \
                     never that old",
                    crate::duration::format_duration(c.interval)
                ),
            ));
        }
        let _ = source;
        if c.mode == CheckpointMode::ExactlyOnce
            && !matches!(sink, SinkSpec::File { .. } | SinkSpec::Kafka { .. })
        {
            return Err(self.error(
                "checkpoint.mode",
                "exactly-once is built for file and Kafka sinks; use mode = \"at-least-once\"",
            ));
        }
        Ok(())
    }

    /// `[source] scale_out`: processes share a Kafka topic's partitions,
    /// and their window state moves through the checkpoint storage, so a
    /// Kafka source and sink, a `[checkpoint]`, and one worker per process.
    fn scale_out(&self, config: &JobConfig, source: &SourceSpec, sink: &SinkSpec) -> Result<(), JobError> {
        let field = "source.scale_out";
        if !matches!(source, SourceSpec::Kafka { .. }) {
            return Err(self.error(field, "only for kafka sources: the processes share a topic's partitions"));
        }
        if !matches!(sink, SinkSpec::Kafka { .. }) {
            return Err(self.error(
                field,
                "needs a kafka sink: each process would write a file of its own (set [sink] type = \"kafka\")",
            ));
        }
        let Some(checkpoint) = &config.checkpoint else {
            return Err(self.error(
                field,
                "needs a [checkpoint] section whose storage every process reaches (hdfs:// or a shared \
                 folder): window state moves between the processes through it",
            ));
        };
        if config.parallelism.is_some_and(|p| p > 1) {
            return Err(self.error(
                "parallelism",
                "with source.scale_out each process runs one worker: run more processes instead, or leave \
                 parallelism out",
            ));
        }
        if let SinkSpec::Kafka { exactly_once: Some(ExactlyOnce::Transactions), .. } = sink {
            return Err(self.error(
                "sink.exactly_once",
                "\"transactions\" is not built for source.scale_out (docs/SCALING.md says why): use \"sequence\" (the default)",
            ));
        }
        let _ = checkpoint;
        Ok(())
    }

    /// `[checkpoint] cleanup_delay` is for `[source] scale_out` jobs only.
    fn cleanup_delay(&self, config: &JobConfig) -> Result<(), JobError> {
        let set = config.checkpoint.as_ref().is_some_and(|c| c.cleanup_delay.is_some());
        if set && !config.source.scale_out {
            return Err(self.error(
                "checkpoint.cleanup_delay",
                "only for jobs with [source] scale_out = true, whose members leave checkpoints behind",
            ));
        }
        Ok(())
    }

    /// `[sink] exactly_once`: only for Kafka sinks of exactly-once
    /// checkpoints, where it defaults to `sequence`; `sequence` needs event
    /// time.
    fn exactly_once(&self, config: &JobConfig, sink: &mut SinkSpec) -> Result<(), JobError> {
        let exactly = config.checkpoint.as_ref().is_some_and(|c| c.mode == CheckpointMode::ExactlyOnce);
        let field = "sink.exactly_once";
        let SinkSpec::Kafka { exactly_once, .. } = sink else {
            return match config.sink.exactly_once {
                Some(_) => Err(self.error(
                    field,
                    "only for kafka sinks (file sinks are cut back to the checkpoint instead)",
                )),
                None => Ok(()),
            };
        };
        if !exactly {
            return match config.sink.exactly_once {
                Some(_) => Err(self.error(
                    field,
                    "only with [checkpoint] mode = \"exactly-once\" (at-least-once needs no setting)",
                )),
                None => Ok(()),
            };
        }
        let chosen = config.sink.exactly_once.unwrap_or_default();
        if chosen == ExactlyOnce::Sequence && config.format.timestamp.is_none() {
            return Err(self.error(
                field,
                "\"sequence\" needs event time: set format.timestamp, since a processing-time job \
                 cannot replay the same records after a restore (or use exactly_once = \"transactions\", \
                 or [checkpoint] mode = \"at-least-once\")",
            ));
        }
        *exactly_once = Some(chosen);
        Ok(())
    }

    /// `[sink]`, with `time.late_output`.
    fn sink(&self, snk: &SinkConfig, source: &SourceSpec, late: Option<&str>) -> Result<SinkSpec, JobError> {
        Ok(match snk.kind {
            SinkKind::Kafka => {
                self.unused(
                    &[("sink.path", snk.path.is_some())],
                    "only for file sinks; a Kafka sink writes `topic`",
                )?;
                let brokers = match (&snk.brokers, source) {
                    (Some(b), _) => b.clone(),
                    (None, SourceSpec::Kafka { brokers, .. }) => brokers.clone(),
                    (None, SourceSpec::File { .. }) => "embedded".into(),
                };
                SinkSpec::Kafka {
                    brokers,
                    topic: snk
                        .topic
                        .clone()
                        .ok_or_else(|| self.error("sink.topic", "required for a kafka sink"))?,
                    dead_letter: snk.dead_letter.clone(),
                    late_output: late.map(str::to_string),
                    properties: self.properties("sink", &snk.kafka)?,
                    // Set by `exactly_once` once the checkpoint is known.
                    exactly_once: None,
                }
            }
            SinkKind::File => {
                self.unused(
                    &[
                        ("sink.brokers", snk.brokers.is_some()),
                        ("sink.topic", snk.topic.is_some()),
                        ("sink.kafka", !snk.kafka.is_empty()),
                    ],
                    "only for kafka sinks",
                )?;
                let path =
                    snk.path.as_ref().ok_or_else(|| self.error("sink.path", "required for a file sink"))?;
                SinkSpec::File {
                    path: resolve(self.base_dir, path),
                    dead_letter: snk.dead_letter.as_ref().map(|p| resolve(self.base_dir, Path::new(p))),
                    late_output: late.map(|p| resolve(self.base_dir, Path::new(p))),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
