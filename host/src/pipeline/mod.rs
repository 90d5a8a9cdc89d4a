//! A running job: source → decode → window assign → keyed state → fire →
//! plugin → encode → sink, with dead letters and late events on the side.
//!
//! The pipeline runs on one thread (the plugin's calls are synchronous), in
//! a loop: poll up to a batch of records, decode them into columns (bad ones
//! to the dead-letter sink, too-late ones to the late sink), add them to
//! their windows, advance the watermark, fire. The watermark therefore
//! advances at least once per batch (at most 1,000 events) and on every idle
//! poll.

mod dead_letter;
pub mod io;
#[cfg(test)]
mod tests;

pub use dead_letter::{dead_letter_record, late_record};

use crate::decode::{Batch, JsonDecoder};
use crate::encode::window_records;
use crate::job::Job;
use crate::plugin::schema::{SchemaError, bind_inputs, resolve_params};
use crate::plugin::types::{Column, Events, FieldType, FunctionKind, Window};
use crate::plugin::{LoadError, Plugin, PluginEngine, PluginError, PluginInstance};
use crate::record::Key;
use crate::sink::{Sink, SinkError};
use crate::source::{Poll, Source, SourceError};
use crate::time::{Watermarks, now_ms};
use crate::window::{Output, Reduce, WindowOperator};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Records per poll: the watermark advances at least this often.
pub const BATCH_SIZE: usize = 1_000;

/// Aggregates add buffered events to their accumulator in batches of this
/// many, so an open pane holds little more than its accumulator.
pub const AGGREGATE_FLUSH: usize = 256;

/// Why a job could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The job does not fit the plugin.
    #[error("{origin}: {source}")]
    Schema {
        /// The job file.
        origin: String,
        /// The mismatch.
        source: SchemaError,
    },
    /// The job is wrong in another way.
    #[error(transparent)]
    Job(#[from] crate::job::JobError),
    /// The plugin failed to start.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from the source.
    pub records: u64,
    /// Records decoded and processed.
    pub events: u64,
    /// Records sent to the dead-letter output.
    pub dead_letters: u64,
    /// Events too late for any window.
    pub late: u64,
    /// Windows fired (first firings).
    pub windows: u64,
    /// Windows fired again for late events.
    pub refired: u64,
    /// Windows or batches the plugin failed on (sent to the dead letters).
    pub failed: u64,
    /// Output records written.
    pub outputs: u64,
    /// Wall time of the run, in ms.
    pub elapsed_ms: u64,
}

/// Where a job's records go.
pub struct Sinks {
    /// The results.
    pub output: Box<dyn Sink>,
    /// Undecodable records and failed windows; `None` logs and counts them.
    pub dead_letter: Option<Box<dyn Sink>>,
    /// Events too late for any window; `None` logs and counts them.
    pub late: Option<Box<dyn Sink>>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Set to stop the run (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// How long a poll waits for records.
    pub poll_wait: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { stop: Arc::new(AtomicBool::new(false)), poll_wait: Duration::from_millis(100) }
    }
}

/// One fired window or mapped record, as it was written.
pub struct Emitted<'a> {
    /// The record key, if any.
    pub key: Option<&'a Key>,
    /// The window, for window jobs.
    pub window: Option<Window>,
    /// The JSON written.
    pub record: &'a serde_json::Value,
    /// True when a late event made the window fire again.
    pub refire: bool,
}

/// A job whose plugin is loaded and checked against it.
pub struct Pipeline {
    job: Job,
    instance: PluginInstance,
    /// Batch column feeding each plugin input.
    inputs: Vec<usize>,
    input_types: Vec<FieldType>,
}

impl Pipeline {
    /// Loads the job's plugin and checks it against the job: its world
    /// against the window, its inputs against the fields, its parameters.
    pub fn build(job: Job, engine: &PluginEngine) -> Result<Pipeline, PipelineError> {
        let reference = &job.config.function.plugin;
        // A path is relative to the job file; a bare name is a built-in.
        let plugin: Plugin = if reference.ends_with(".wasm") {
            engine.load_file(&job.path(std::path::Path::new(reference)))?
        } else {
            engine.load_ref(reference)?
        };
        let d = plugin.descriptor().clone();
        let schema = |source| PipelineError::Schema { origin: job.origin.clone(), source };
        let inputs =
            bind_inputs(&d.name, &d.inputs, &job.fields, &job.config.function.bind).map_err(schema)?;
        let params = resolve_params(&d.name, &d.params, &job.config.function.params).map_err(schema)?;
        match (d.kind, &job.window) {
            (FunctionKind::Map, Some(_)) => {
                return Err(job
                    .error("window", format!("{} is a map-function: remove [window]", d.name))
                    .into());
            }
            (FunctionKind::Window | FunctionKind::Aggregate, None) => {
                return Err(job
                    .error(
                        "window",
                        format!("{} is a {}: add a [window] (tumbling, sliding or session)", d.name, d.kind),
                    )
                    .into());
            }
            _ => {}
        }
        let instance = plugin.instantiate(params, job.config.function.limits.clone())?;
        let input_types = d.inputs.iter().map(|f| f.ty).collect();
        Ok(Pipeline { job, instance, inputs, input_types })
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The plugin instance.
    pub fn plugin(&self) -> &PluginInstance {
        &self.instance
    }

    /// Runs the job over `source` into `sinks` until the input ends (with
    /// a bounded source) or `stop` is set. `on_emit` sees
    /// every output record as it is written.
    pub fn run(
        &mut self,
        source: &mut dyn Source,
        sinks: &mut Sinks,
        options: &RunOptions,
        on_emit: &mut dyn FnMut(Emitted<'_>),
    ) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let job = &self.job;
        let kind = self.instance.plugin().kind();
        let outputs = self.instance.plugin().descriptor().outputs.clone();
        let key_field = job.config.format.key.clone().unwrap_or_default();
        let event_time = job.config.format.timestamp.is_some();
        let source_name = source.name().to_string();
        let mut decoder = JsonDecoder::new(job.record_schema());
        let mut watermarks = Watermarks::new(
            &source.partitions(),
            job.config.time.max_out_of_orderness,
            Some(job.config.time.idle_timeout),
            Instant::now(),
        );
        let mut operator = job.window.map(|spec| {
            let reduce = match kind {
                FunctionKind::Aggregate => Reduce::Aggregate { flush_at: AGGREGATE_FLUSH },
                _ => Reduce::Window,
            };
            WindowOperator::new(
                spec,
                job.allowed_lateness(),
                reduce,
                self.input_types.clone(),
                self.inputs.clone(),
            )
        });
        let lateness = job.allowed_lateness();
        let mut batch = Batch::new(&job.fields);
        // Map jobs write the input record back out, changed: keep the raw
        // payloads of the batch in one reused buffer.
        let mut raw = RawBatch::default();
        let mut summary = RunSummary::default();
        let mut failure: Option<PipelineError> = None;

        loop {
            if options.stop.load(Ordering::Relaxed) {
                break;
            }
            batch.clear();
            raw.clear();
            let now = now_ms();
            // One clock reading per poll: idleness is measured in seconds,
            // so every event of a batch can share it.
            let polled_at = Instant::now();
            let watermark = operator.as_ref().map_or(i64::MIN, WindowOperator::watermark);
            let Sinks { output, dead_letter, late } = sinks;
            let polled = source.poll(BATCH_SIZE, options.poll_wait, &mut |record| {
                summary.records += 1;
                if let Err(reason) =
                    decoder.decode_into(record.payload, record.partition, record.offset, now, &mut batch)
                {
                    summary.dead_letters += 1;
                    let letter = dead_letter_record(
                        &source_name,
                        record.partition,
                        record.offset,
                        record.payload,
                        &reason.to_string(),
                    );
                    if let Err(e) = send(dead_letter.as_mut(), None, &letter, "dead letter") {
                        failure.get_or_insert(e.into());
                    }
                    return;
                }
                let row = batch.len() - 1;
                let ts = batch.timestamps[row];
                if event_time {
                    watermarks.observe(record.partition, ts, polled_at);
                }
                if let (Some(op), Some(key)) = (&operator, &batch.keys[row])
                    && op.is_late(record.partition, key, ts)
                {
                    summary.late += 1;
                    batch.truncate(row);
                    let letter = late_record(
                        &source_name,
                        record.partition,
                        record.offset,
                        record.payload,
                        ts,
                        watermark,
                        lateness,
                    );
                    if let Err(e) = send(late.as_mut(), None, &letter, "late event") {
                        failure.get_or_insert(e.into());
                    }
                    return;
                }
                if operator.is_none() {
                    raw.push(record.payload);
                }
            })?;
            if let Some(e) = failure.take() {
                return Err(e);
            }
            summary.events += batch.len() as u64;

            let instance = &mut self.instance;
            let mut emit = |o: Output<'_>| match o {
                Output::Fired { key, window, rows, refire } => {
                    for record in window_records(&key_field, key, window, &outputs, rows) {
                        summary.outputs += 1;
                        if let Err(e) = send(Some(&mut *output), Some(key), &record, "output") {
                            failure.get_or_insert(e.into());
                        }
                        on_emit(Emitted { key: Some(key), window: Some(window), record: &record, refire });
                    }
                }
                Output::Failed { key, window, error } => {
                    summary.failed += 1;
                    tracing::warn!("{error}");
                    let letter = serde_json::json!({
                        "reason": error.to_string(),
                        "source": source_name,
                        key_field.clone(): key.to_json(),
                        "window_start": window.start,
                        "window_end": window.end,
                    });
                    if let Err(e) = send(dead_letter.as_mut(), None, &letter, "dead letter") {
                        failure.get_or_insert(e.into());
                    }
                }
            };
            let end = polled == Poll::End;
            match &mut operator {
                Some(op) => {
                    op.process(&batch, instance, &mut emit);
                    // The end of a bounded input (a file, or Kafka read up to the
                    // end offsets seen at start) fires every open window.
                    let watermark = match (end, event_time) {
                        (true, _) => i64::MAX,
                        (false, true) => watermarks.current(Instant::now()),
                        // Processing time: the clock is the watermark.
                        (false, false) => now_ms() - 1,
                    };
                    op.advance(watermark, instance, &mut emit);
                }
                None if !batch.is_empty() => {
                    let events = map_events(&batch, &self.inputs, &self.input_types);
                    match instance.map(&events) {
                        Ok(mapped) => {
                            for (i, &row) in mapped.rows.iter().enumerate() {
                                let record = remap(raw.get(row as usize), &outputs, &mapped.columns, i);
                                summary.outputs += 1;
                                let key = batch.keys[row as usize].as_ref();
                                if let Err(e) = send(Some(&mut *output), key, &record, "output") {
                                    failure.get_or_insert(e.into());
                                }
                                on_emit(Emitted { key, window: None, record: &record, refire: false });
                            }
                        }
                        Err(error) => {
                            summary.failed += 1;
                            tracing::warn!("{error}");
                            for (row, payload) in raw.iter().enumerate() {
                                let letter = dead_letter_record(
                                    &source_name,
                                    batch.partitions[row],
                                    batch.offsets[row],
                                    payload,
                                    &error.to_string(),
                                );
                                if let Err(e) = send(dead_letter.as_mut(), None, &letter, "dead letter") {
                                    failure.get_or_insert(e.into());
                                }
                            }
                        }
                    }
                }
                None => {}
            }
            if let Some(e) = failure.take() {
                return Err(e);
            }
            if end {
                break;
            }
        }
        if let Some(op) = &operator {
            let stats = op.stats();
            summary.windows = stats.fired;
            summary.refired = stats.refired;
        }
        sinks.output.flush()?;
        for sink in [&mut sinks.dead_letter, &mut sinks.late].into_iter().flatten() {
            sink.flush()?;
        }
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }
}

/// Writes one JSON record to a sink, or logs it when there is none.
fn send(
    sink: Option<&mut Box<dyn Sink>>,
    key: Option<&Key>,
    record: &serde_json::Value,
    what: &str,
) -> Result<(), SinkError> {
    let text = record.to_string();
    match sink {
        Some(sink) => {
            let key_text = key.map(|k| match k {
                Key::Int(i) => i.to_string(),
                Key::Str(s) => s.clone(),
            });
            sink.send(key_text.as_deref().map(str::as_bytes), text.as_bytes())
        }
        None => {
            tracing::warn!("{what} (no output configured for it): {text}");
            Ok(())
        }
    }
}

/// The raw payloads of a batch, in one reused buffer.
#[derive(Default)]
struct RawBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RawBatch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.ends.len()).map(|i| self.get(i))
    }
}

/// The plugin's input columns for a map batch.
fn map_events(batch: &Batch, inputs: &[usize], types: &[FieldType]) -> Events {
    let mut events = crate::window::empty_events(types);
    events.timestamps.extend_from_slice(&batch.timestamps);
    for (dst, &src) in events.columns.iter_mut().zip(inputs) {
        *dst = batch.columns[src].clone();
    }
    events
}

/// The input record with the map function's output fields set.
fn remap(
    payload: &[u8],
    outputs: &[crate::plugin::types::Field],
    columns: &[Column],
    row: usize,
) -> serde_json::Value {
    let mut object = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    for (field, column) in outputs.iter().zip(columns) {
        object.insert(field.name.clone(), column.get(row).map(|v| v.to_json()).unwrap_or_default());
    }
    serde_json::Value::Object(object)
}
