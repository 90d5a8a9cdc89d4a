//! Job files: reading, validating and resolving a job before it runs.
//! Errors name the file, the field and the problem, as in
//! `jobs/max.toml: window.size: expected a duration like 1s, …, got 'abc'`.

pub mod config;

pub use config::{
    FormatConfig, FunctionConfig, JobConfig, PropertyValue, SinkConfig, SinkKind, SourceConfig, SourceKind,
    StartFrom, TimeConfig, WindowConfig, WindowKind,
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
        let error = |field: &str, message: String| JobError {
            file: origin.to_string(),
            field: field.to_string(),
            message,
        };
        if config.name.trim().is_empty() {
            return Err(error("name", "must not be empty".into()));
        }
        let mut fields = Vec::with_capacity(config.format.fields.len());
        for (name, ty) in &config.format.fields {
            let ty = FieldType::parse(ty).ok_or_else(|| {
                error(
                    &format!("format.fields.{name}"),
                    format!("unknown type '{ty}' (use f64, i64, string or bool)"),
                )
            })?;
            fields.push(Field { name: name.clone(), ty });
        }
        for (what, name) in
            [("format.key", &config.format.key), ("format.timestamp", &config.format.timestamp)]
        {
            if let Some(name) = name
                && config.format.fields.contains_key(name)
            {
                return Err(error(what, format!("'{name}' is also in format.fields; list it in one place")));
            }
        }
        let window = match &config.window {
            None => None,
            Some(w) => Some(
                WindowSpec::new(w.kind, w.size, w.slide, w.gap)
                    .map_err(|p| error(&format!("window.{}", p.length), p.message))?,
            ),
        };
        if window.is_some() && config.format.key.is_none() {
            return Err(error(
                "format.key",
                "required: windows are computed per key (e.g. key = \"device_id\")".into(),
            ));
        }
        // `[source.kafka]` and `[sink.kafka]`: librdkafka properties, each
        // checked now so a typo fails before anything connects.
        let properties = |side: &str, table: &BTreeMap<String, PropertyValue>| {
            let mut checked = BTreeMap::new();
            for (name, PropertyValue(value)) in table {
                crate::kafka::check_property(name, value)
                    .map_err(|e| error(&format!("{side}.kafka.{name}"), e.to_string()))?;
                checked.insert(name.clone(), value.clone());
            }
            Ok::<_, JobError>(checked)
        };
        let src = &config.source;
        let source = match src.kind {
            SourceKind::Kafka => {
                if src.path.is_some() {
                    return Err(error(
                        "source.path",
                        "only for file sources; a Kafka source reads `topic`".into(),
                    ));
                }
                let partitions = src.partitions.unwrap_or(DEFAULT_PARTITIONS);
                if partitions < 1 {
                    return Err(error("source.partitions", "must be at least 1".into()));
                }
                SourceSpec::Kafka {
                    brokers: src.brokers.clone().unwrap_or_else(|| "embedded".into()),
                    topic: src
                        .topic
                        .clone()
                        .ok_or_else(|| error("source.topic", "required for a kafka source".into()))?,
                    group: src.group.clone().unwrap_or_else(|| format!("weir-{}", config.name)),
                    start: src.start,
                    partitions,
                    properties: properties("source", &src.kafka)?,
                }
            }
            SourceKind::File => {
                for (field, set) in [
                    ("source.brokers", src.brokers.is_some()),
                    ("source.topic", src.topic.is_some()),
                    ("source.group", src.group.is_some()),
                    ("source.partitions", src.partitions.is_some()),
                    ("source.kafka", !src.kafka.is_empty()),
                ] {
                    if set {
                        return Err(error(field, "only for kafka sources".into()));
                    }
                }
                let path = src
                    .path
                    .as_ref()
                    .ok_or_else(|| error("source.path", "required for a file source".into()))?;
                SourceSpec::File { path: resolve(base_dir, path) }
            }
        };
        let snk = &config.sink;
        let late = config.time.late_output.clone();
        let sink = match snk.kind {
            SinkKind::Kafka => {
                if snk.path.is_some() {
                    return Err(error(
                        "sink.path",
                        "only for file sinks; a Kafka sink writes `topic`".into(),
                    ));
                }
                let brokers = match (&snk.brokers, &source) {
                    (Some(b), _) => b.clone(),
                    (None, SourceSpec::Kafka { brokers, .. }) => brokers.clone(),
                    (None, SourceSpec::File { .. }) => "embedded".into(),
                };
                SinkSpec::Kafka {
                    brokers,
                    topic: snk
                        .topic
                        .clone()
                        .ok_or_else(|| error("sink.topic", "required for a kafka sink".into()))?,
                    dead_letter: snk.dead_letter.clone(),
                    late_output: late,
                    properties: properties("sink", &snk.kafka)?,
                }
            }
            SinkKind::File => {
                for (field, set) in [
                    ("sink.brokers", snk.brokers.is_some()),
                    ("sink.topic", snk.topic.is_some()),
                    ("sink.kafka", !snk.kafka.is_empty()),
                ] {
                    if set {
                        return Err(error(field, "only for kafka sinks".into()));
                    }
                }
                let path =
                    snk.path.as_ref().ok_or_else(|| error("sink.path", "required for a file sink".into()))?;
                SinkSpec::File {
                    path: resolve(base_dir, path),
                    dead_letter: snk.dead_letter.as_ref().map(|p| resolve(base_dir, Path::new(p))),
                    late_output: late.as_ref().map(|p| resolve(base_dir, Path::new(p))),
                }
            }
        };
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

#[cfg(test)]
mod tests;
