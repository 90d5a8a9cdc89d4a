//! The job file (TOML): what to read, how to window it, which function to
//! run, and where results go. Every field is documented here; see
//! `examples/*.toml` for complete jobs.

use crate::plugin::PluginLimits;
pub use crate::source::kafka::StartFrom;
pub use crate::window::WindowKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The job's name, shown in logs and used for the default consumer group.
    pub name: String,
    /// Worker threads: the source's partitions are spread over them, each
    /// with its own window state and its own instance of the function. By
    /// default the machine's cores; never more than the source has
    /// partitions, and one for a source that cannot be split (a single
    /// file, and for now a Kafka topic: its consumer is not split yet).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Where records come from.
    pub source: SourceConfig,
    /// How records are decoded.
    pub format: FormatConfig,
    /// Event time: watermarks, idleness and lateness.
    #[serde(default)]
    pub time: TimeConfig,
    /// The window; required for window and aggregate functions, absent for
    /// map functions.
    #[serde(default)]
    pub window: Option<WindowConfig>,
    /// The user function.
    pub function: FunctionConfig,
    /// Where results go.
    pub sink: SinkConfig,
    /// `[checkpoint]`: take checkpoints and restore from them; without it a
    /// job keeps no state across runs.
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
    /// `[restart]`: what to do when a run fails (Flink's restart
    /// strategies); without it a failure ends the job.
    #[serde(default)]
    pub restart: Option<RestartConfig>,
}

/// `[restart]`: restarts after a failure (a source, sink or storage that
/// fails, or the function with `on_failure = "fail"`). Each restart builds
/// the job afresh and, with `[checkpoint]`, resumes from its newest
/// checkpoint.
///
/// ```toml
/// [restart]
/// strategy = "exponential-delay"
/// initial = "1s"
/// max = "1m"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// `none`, `fixed-delay` or `exponential-delay`.
    pub strategy: RestartStrategyKind,
    /// fixed-delay: restarts allowed before the job fails (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// fixed-delay: the wait before each restart (default 10s).
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub delay: Option<Duration>,
    /// exponential-delay: the first wait (default 1s).
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub initial: Option<Duration>,
    /// exponential-delay: the longest wait (default 5m).
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub max: Option<Duration>,
    /// exponential-delay: each wait is the last times this (default 2).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// exponential-delay: each wait varies randomly by up to this share of
    /// it, so that many jobs do not retry at once (default 0.1).
    #[serde(default)]
    pub jitter: Option<f64>,
    /// exponential-delay: a run that lasted this long starts the waits over
    /// from `initial` (default 1h).
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub reset_after: Option<Duration>,
}

/// `[restart] strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyKind {
    /// A failure ends the job.
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay,
    /// Restarts without end, waiting longer each time up to `max`.
    ExponentialDelay,
}

/// `[checkpoint]`: what a job keeps so that, restarted, it goes on where it
/// stopped. A checkpoint holds, per source partition, the next offset, the
/// watermark and the window state, and each sink's state (a file's length;
/// a sequenced Kafka sink's numbers and offsets); on start a job restores
/// its newest complete checkpoint.
///
/// ```toml
/// [checkpoint]
/// storage = "file:///var/lib/weir/checkpoints"
/// interval = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Where checkpoints go: `file:///absolute/path`.
    pub storage: String,
    /// How often a checkpoint is taken (at the end of a poll).
    #[serde(default = "default_checkpoint_interval", with = "crate::duration::serde_text")]
    pub interval: Duration,
    /// The least time between the end of one checkpoint and the start of
    /// the next.
    #[serde(default, with = "crate::duration::serde_text")]
    pub min_pause: Duration,
    /// How long writing a checkpoint may take; one that takes longer
    /// failed.
    #[serde(default = "default_checkpoint_timeout", with = "crate::duration::serde_text")]
    pub timeout: Duration,
    /// How many checkpoints in a row may fail (a storage error or the
    /// timeout) while the job goes on; one more fails the run (then
    /// `[restart]` applies). Flink's `tolerable-failed-checkpoints`.
    #[serde(default = "default_tolerable_failures")]
    pub tolerable_failures: u32,
    /// How long one call to the storage may take (HDFS: the client does
    /// not give up on a dead NameNode by itself) before it fails, and with
    /// it the checkpoint (default 30s).
    #[serde(default = "default_storage_timeout", with = "crate::duration::serde_text")]
    pub storage_timeout: Duration,
    /// How many complete checkpoints to keep; older ones are removed.
    #[serde(default = "default_retain")]
    pub retain: u32,
    /// `at-least-once` (the default): after a restore, output since the
    /// checkpoint may be written again to Kafka sinks (file sinks are cut
    /// back to the checkpoint). `exactly-once`: output is written once:
    /// with a file source and file sinks, or with Kafka sinks (see
    /// `[sink] exactly_once`).
    #[serde(default)]
    pub mode: CheckpointMode,
    /// `[source] scale_out` only: how old a member's newest checkpoint
    /// must be before the group removes that member's checkpoints, once
    /// other checkpoints hold each of its partitions at least as far along
    /// (a member that died or left). Default 10m; at least twice the
    /// interval.
    #[serde(default, with = "crate::duration::serde_text_opt", skip_serializing_if = "Option::is_none")]
    pub cleanup_delay: Option<Duration>,
}

/// How long a dead member's checkpoints stay, unless `cleanup_delay` says.
pub const DEFAULT_CLEANUP_DELAY: Duration = Duration::from_secs(600);

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_checkpoint_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_storage_timeout() -> Duration {
    crate::checkpoint::DEFAULT_CALL_TIMEOUT
}

fn default_tolerable_failures() -> u32 {
    10
}

fn default_retain() -> u32 {
    1
}

/// The delivery guarantee checkpoints give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Nothing is lost; some output may repeat after a restore.
    #[default]
    AtLeastOnce,
    /// Nothing is lost or repeated.
    ExactlyOnce,
}

/// `[source]`: `type = "kafka"` (with `topic`) or `type = "file"` (with
/// `path`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `kafka` or `file`.
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// Kafka: `"embedded"` (the default) for the in-process broker, or
    /// `"host:port,…"`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Kafka: the topic to read.
    #[serde(default)]
    pub topic: Option<String>,
    /// Kafka: the consumer group; by default `weir-<job name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Kafka: where to start: `earliest` (the default), `latest`, or
    /// `committed` (the consumer group's committed offsets; earliest where
    /// none).
    #[serde(default)]
    pub start: StartFrom,
    /// Kafka: partitions to create the topic with on the embedded broker.
    #[serde(default)]
    pub partitions: Option<i32>,
    /// File: the JSON-lines file (relative to the job file), or a folder
    /// (its files, hidden ones left out) or a glob (`data/*.jsonl`): then
    /// each file, in name order, is a partition of its own, with its own
    /// watermark and keyed state, as a topic's partitions are (so a key
    /// should live in one file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Kafka: extra librdkafka properties for the source's clients, as
    /// `"name" = value` (quote the dotted names):
    ///
    /// ```toml
    /// [source.kafka]
    /// "fetch.max.bytes" = 1048576
    /// "client.id" = "weir-max"
    /// ```
    ///
    /// The properties weir sets itself (the brokers, the group, offset
    /// commits, the start offset, …) are refused, with the reason.
    #[serde(default)]
    pub kafka: BTreeMap<String, PropertyValue>,
    /// Kafka: share the topic's partitions with every other process running
    /// this job, as the members of one consumer group (`group`, with
    /// librdkafka's cooperative-sticky assignor). Each process reads the
    /// partitions the group gives it; their window state moves between
    /// processes through the `[checkpoint]` storage, which must be one
    /// they all reach (hdfs:// or a shared folder). See docs/SCALING.md.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_out: bool,
}

/// A librdkafka property value in a job file: a string, integer, float or
/// boolean, passed to librdkafka as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PropertyValue(pub String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PropertyValue, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = PropertyValue;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a string, number or boolean (quote dotted librdkafka names, as in \"fetch.max.bytes\" = 1048576)",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<PropertyValue, E> {
                Ok(PropertyValue(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// A source's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A Kafka topic.
    Kafka,
    /// A JSON-lines file (bounded).
    File,
}

/// `[format]`: JSON records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// The field to key by (required for windows).
    #[serde(default)]
    pub key: Option<String>,
    /// The event-time field, integer milliseconds; omit for processing time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The fields to read, as `name = "type"` (f64, i64, string, bool).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Records larger than this go to the dead-letter output.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_max_record_bytes() -> usize {
    1 << 20
}

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// How far out of order events may arrive (the watermark's bound).
    #[serde(with = "crate::duration::serde_text")]
    pub max_out_of_orderness: Duration,
    /// A partition with no events for this long, and none waiting to be
    /// read, is idle: its watermark follows the highest partition's.
    #[serde(with = "crate::duration::serde_text")]
    pub idle_timeout: Duration,
    /// How long after a window fires late events still update it.
    #[serde(with = "crate::duration::serde_text")]
    pub allowed_lateness: Duration,
    /// How far past a window's end (minus 1 ms) a partition's watermark
    /// goes before the window fires: a round of firing, one batched
    /// plugin call, then covers every window that ends within this span
    /// of event time. `0s` fires each window end on its own.
    #[serde(with = "crate::duration::serde_text")]
    pub fire_delay: Duration,
    /// Where events too late for any window go: a topic, or a path for
    /// file sinks. Without it they are counted and logged only.
    pub late_output: Option<String>,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            max_out_of_orderness: Duration::ZERO,
            idle_timeout: Duration::from_secs(5),
            allowed_lateness: Duration::ZERO,
            fire_delay: Duration::from_secs(1),
            late_output: None,
        }
    }
}

/// `[window]`: `type = "tumbling"` with `size`, `"sliding"` with `size`
/// and `slide`, or `"session"` with `gap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `tumbling`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: WindowKind,
    /// Tumbling and sliding: the window length.
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub size: Option<Duration>,
    /// Sliding: how often a window starts.
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub slide: Option<Duration>,
    /// Session: the inactivity gap that closes a session.
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub gap: Option<Duration>,
}

impl From<crate::window::WindowSpec> for WindowConfig {
    /// The `[window]` section that gives `spec`.
    fn from(spec: crate::window::WindowSpec) -> WindowConfig {
        let (size, slide, gap) = spec.lengths();
        WindowConfig { kind: spec.kind(), size, slide, gap }
    }
}

/// `[function]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// A built-in function's name, or a path to a `.wasm` component
    /// (relative to the job file).
    pub plugin: String,
    /// Parameters, checked against what the plugin declares.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Plugin inputs fed from job fields of another name: `input = "field"`.
    #[serde(default)]
    pub bind: BTreeMap<String, String>,
    /// Limits on the plugin: deadline, memory, output, log.
    #[serde(default)]
    pub limits: PluginLimits,
    /// What a window (or map batch) the function fails on does:
    /// `dead-letter` (the default) sends it to the dead letters and goes on;
    /// `fail` stops the run with the error (then `[restart]` applies).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Map jobs: how many times a failed `map` call is tried again before
    /// the records it failed on go to the dead letters.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Map jobs: the wait before the first retry; it doubles for each
    /// further one.
    #[serde(default = "default_retry_backoff", with = "crate::duration::serde_text")]
    pub retry_backoff: Duration,
}

fn default_retries() -> u32 {
    3
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(100)
}

/// `[function] on_failure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// To the dead letters; the run goes on.
    #[default]
    DeadLetter,
    /// The run stops with the error.
    Fail,
}

/// `[sink]`: `type = "kafka"` (with `topic`) or `type = "file"` (with
/// `path`). For Kafka the message key is the record key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `kafka` or `file`.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Kafka: brokers; by default the source's.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Kafka: the topic to write.
    #[serde(default)]
    pub topic: Option<String>,
    /// File: the JSON-lines file (relative to the job file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Where undecodable records go, with their reason: a topic for Kafka
    /// sinks, a path for file sinks.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Kafka: extra librdkafka properties for the sink's producers (output,
    /// dead letters and late events), as for `[source.kafka]`:
    ///
    /// ```toml
    /// [sink.kafka]
    /// "compression.type" = "lz4"
    /// "linger.ms" = 20
    /// ```
    ///
    /// The settings exactly-once delivery relies on (idempotence, acks,
    /// retries, requests in flight, the partitioner) are refused.
    #[serde(default)]
    pub kafka: BTreeMap<String, PropertyValue>,
    /// Kafka, with `[checkpoint] mode = "exactly-once"`: how output is kept
    /// from repeating after a restore, `sequence` (the default) or
    /// `transactions`. See [`ExactlyOnce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exactly_once: Option<ExactlyOnce>,
}

/// `[sink] exactly_once`: how a Kafka sink writes each record once across
/// restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactlyOnce {
    /// Each record carries its source partition and a sequence number per
    /// (source partition, output partition) in Kafka headers; a restored
    /// sink reads back what was written after the checkpoint and skips
    /// records the replay makes again. Works on any Kafka-compatible
    /// broker; needs event time (`format.timestamp`), so that a replay
    /// makes the same records.
    #[default]
    Sequence,
    /// A transactional producer: a checkpoint's records are committed once
    /// the checkpoint is complete, and a restore aborts what was not.
    /// Needs brokers with transactions, and readers with
    /// `isolation.level = read_committed`.
    Transactions,
}

/// A sink's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Kafka topic.
    Kafka,
    /// A JSON-lines file.
    File,
}
