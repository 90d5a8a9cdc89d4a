//! A running job: source → decode → operator (window assign → keyed state
//! → fire → plugin → encode) → sink, with dead letters and late events on
//! the side.
//!
//! The loop ([`Pipeline::run`]) runs on one thread (plugin calls are
//! synchronous) and only moves things: it polls up to a batch of records,
//! decodes them into columns (bad ones to the dead letters, too-late ones
//! to the late output) and hands them to the job's [`Operator`] with each
//! partition's watermark. A partition fires right after the record that
//! moves its watermark to what it has due, so its output depends only on
//! its own records. What the operator does with them is in
//! `window_stage.rs` and `map_stage.rs`; where its output goes, in
//! `collect.rs`.

mod checkpointing;
mod collect;
pub mod connect;
mod dead_letter;
mod map_stage;
mod operator;
mod payloads;
mod positions;
#[cfg(test)]
mod replay_tests;
mod restart;
mod supervise;
#[cfg(test)]
mod tests;
mod window_stage;

use checkpointing::Checkpointer;
pub use checkpointing::{
    CheckpointError, PartitionSummary, RestoreFrom, Restored, summarize as summarize_checkpoint,
};
pub use collect::{Collector, Emitted, OutputRow};
pub use map_stage::{MapFunction, MapStage};
pub use operator::Operator;
pub use payloads::Payloads;
pub use restart::RestartStrategy;
pub use supervise::{Restart, run_with_restarts};
pub use window_stage::WindowStage;

use crate::decode::{Batch, JsonDecoder};
use crate::job::Job;
use crate::plugin::schema::{SchemaError, bind_inputs, resolve_params};
use crate::plugin::{LoadError, Plugin, PluginEngine, PluginError};
use crate::sink::{Sink, SinkError};
use crate::source::{Poll, Source, SourceError};
use crate::time::{Watermarks, now_ms};
use crate::types::{Descriptor, FunctionKind};
use crate::window::{Reduce, WindowOperator};
use positions::ReadPositions;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Records per poll.
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
    /// A checkpoint could not be taken or restored.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from the source.
    pub records: u64,
    /// Records decoded and processed.
    pub events: u64,
    /// Records sent to the dead-letter output: undecodable records, the
    /// windows the function failed on, and the records of map batches it
    /// failed on.
    pub dead_letters: u64,
    /// Events too late for any window.
    pub late: u64,
    /// Windows fired (first firings).
    pub windows: u64,
    /// Windows fired again for late events.
    pub refired: u64,
    /// Windows (or map batches) the function failed on; each went to the
    /// dead letters.
    pub failed: u64,
    /// Output records the job made (counting skipped ones).
    pub outputs: u64,
    /// Records (output, dead letters, late events) a restored run did not
    /// write again because the run before it had (Kafka sinks with
    /// `exactly_once = "sequence"`).
    pub skipped: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Checkpoints that failed while the job went on (`[checkpoint]
    /// tolerable_failures`).
    pub failed_checkpoints: u64,
    /// Restarts after failures (`run_with_restarts`).
    pub restarts: u64,
    /// The checkpoint the run restored at start, if any.
    pub restored: Option<u64>,
    /// Wall time of the run, in ms.
    pub elapsed_ms: u64,
}

/// Where a job's records go.
pub struct Sinks {
    /// The results.
    pub output: Box<dyn Sink>,
    /// Undecodable records and failed windows or batches; `None` logs and
    /// counts them.
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
    /// How often the sinks are flushed and the source's offsets committed
    /// (Kafka's default auto-commit interval); also at the end of a run.
    pub commit_interval: Duration,
    /// Which checkpoint to start from, for a job with `[checkpoint]`.
    pub restore: RestoreFrom,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stop: Arc::new(AtomicBool::new(false)),
            poll_wait: Duration::from_millis(100),
            commit_interval: Duration::from_secs(5),
            restore: RestoreFrom::Latest,
        }
    }
}

impl Sinks {
    /// The output, dead-letter and late sinks, in that order (`None` for
    /// one the job does not have).
    fn slots(&mut self) -> [Option<&mut Box<dyn Sink>>; 3] {
        [Some(&mut self.output), self.dead_letter.as_mut(), self.late.as_mut()]
    }

    /// Blocks until everything sent to every sink is written.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.output.flush()?;
        for sink in [&mut self.dead_letter, &mut self.late].into_iter().flatten() {
            sink.flush()?;
        }
        Ok(())
    }
}

/// A job whose plugin is loaded and checked against it.
pub struct Pipeline {
    job: Job,
    descriptor: Descriptor,
    /// The plugin's sha256, recorded with checkpoints.
    plugin_sha256: String,
    operator: Box<dyn Operator>,
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
        let descriptor = plugin.descriptor().clone();
        let plugin_sha256 = plugin.sha256().to_string();
        let d = &descriptor;
        let schema = |source| PipelineError::Schema { origin: job.origin.clone(), source };
        let inputs =
            bind_inputs(&d.name, &d.inputs, &job.fields, &job.config.function.bind).map_err(schema)?;
        let params = resolve_params(&d.name, &d.params, &job.config.function.params).map_err(schema)?;
        let input_types: Vec<_> = d.inputs.iter().map(|f| f.ty).collect();
        let reduce = match (d.kind, &job.window) {
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
            (FunctionKind::Map, None) => None,
            (FunctionKind::Window, Some(spec)) => Some((Reduce::Apply, *spec)),
            (FunctionKind::Aggregate, Some(spec)) => {
                Some((Reduce::Aggregate { flush_at: AGGREGATE_FLUSH }, *spec))
            }
        };
        let instance = plugin.instantiate(params, job.config.function.limits.clone())?;
        let operator: Box<dyn Operator> = match reduce {
            None => {
                let function = &job.config.function;
                let stage = MapStage::new(instance, inputs, input_types, d.outputs.clone());
                Box::new(stage.with_retries(function.retries, function.retry_backoff))
            }
            Some((reduce, spec)) => {
                let lateness = job.allowed_lateness();
                let windows = WindowOperator::new(spec, lateness, reduce, input_types, inputs);
                let key_field = job.config.format.key.as_deref().unwrap_or_default();
                Box::new(WindowStage::new(windows, instance, key_field, d.outputs.clone(), lateness))
            }
        };
        Ok(Pipeline { job, descriptor, plugin_sha256, operator })
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The plugin's descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// Runs the job over `source` into `sinks` until the input ends (with
    /// a bounded source) or `stop` is set. `on_emit` sees every output
    /// record as it is written.
    pub fn run(
        &mut self,
        source: &mut dyn Source,
        sinks: &mut Sinks,
        options: &RunOptions,
        on_emit: &mut dyn FnMut(Emitted<'_>),
    ) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let job = &self.job;
        let operator = self.operator.as_mut();
        let key_field = job.config.format.key.clone().unwrap_or_default();
        let event_time = job.config.format.timestamp.is_some();
        let source_name = source.name().to_string();
        let mut decoder = JsonDecoder::new(job.record_schema());
        let mut watermarks = Watermarks::new(
            &source.partitions(),
            job.config.time.max_out_of_orderness,
            Some(job.config.time.idle_timeout),
            Instant::now(),
        )
        .with_fire_delay(job.config.time.fire_delay);
        let mut batch = Batch::new(&job.fields);
        let mut payloads = Payloads::default();
        let keep_payloads = operator.reads_payloads();
        let mut summary = RunSummary::default();
        let mut read = ReadPositions::default();
        let mut committed_at = Instant::now();
        // With checkpoints, the run starts from the newest one, and commits
        // offsets only when a checkpoint holds the state they leave behind.
        let mut checkpointer = match &job.config.checkpoint {
            Some(config) => {
                let plugin = format!("{}@{}", self.descriptor.name, self.descriptor.version);
                Some(Checkpointer::open(job, config, plugin, self.plugin_sha256.clone())?)
            }
            None => None,
        };
        if let Some(cp) = &mut checkpointer {
            summary.restored = cp
                .restore(operator, &mut watermarks, source, sinks, &mut read, options.restore)?
                .map(|restored| restored.checkpoint);
            for partition in operator.state_partitions() {
                watermarks.set_due(partition, operator.next_due(partition));
            }
            // A fresh start of a sink that reads back after a restore: a
            // checkpoint of the empty start (the output topics' end
            // offsets), complete before anything is sent.
            if summary.restored.is_none() && sinks.slots().into_iter().flatten().any(|s| s.reads_back()) {
                cp.take(operator, &watermarks, sinks, &read)?;
                summary.checkpoints += cp.complete(source, sinks, true)?;
            }
        }
        let summary_restored = summary.restored.is_some();
        let mut out = Collector {
            sinks,
            summary: &mut summary,
            on_emit,
            source: &source_name,
            key_field: &key_field,
            on_failure: job.config.function.on_failure,
            failure: None,
            buffers: collect::Buffers::default(),
        };

        // Per record: the record's partition's watermark moves with it, and
        // when it is `fire_delay` past what the partition has due (its
        // operator state's next timer, or an event still in the batch),
        // the rows so far are handed over and that partition fires, right
        // after the record: every window due by then, in one round. An
        // event behind its partition's watermark first brings the operator
        // up to date (to judge it late, or to fire its window again at
        // once). So each partition's output, and each call to the
        // function, depends only on its own records, not on how polls cut
        // them or interleave partitions.
        let windowed = operator.windowed() && event_time;
        // A restored checkpoint may hold watermarks past what their
        // partitions' windows fired up to (an idle move, recorded before it
        // took effect): fire up to them now, as the run before did. Only
        // the recorded move: windows merely waiting for the fire delay
        // wait for the same records as in the run before.
        if summary_restored && windowed {
            for partition in operator.state_partitions() {
                let watermark = watermarks.floor(partition);
                if watermark > operator.watermark(partition) {
                    operator.handle_watermark(Some(partition), watermark, &mut out);
                    watermarks.set_due(partition, operator.next_due(partition));
                }
            }
        }
        loop {
            if options.stop.load(Ordering::Relaxed) {
                break;
            }
            batch.clear();
            payloads.clear();
            let now = now_ms();
            // One clock reading per poll: idleness is measured in seconds,
            // so every event of a batch can share it.
            let polled_at = Instant::now();
            // Rows before this one have been handed to the operator.
            let mut handed = 0;
            let polled = source.poll(BATCH_SIZE, options.poll_wait, &mut |record| {
                out.summary.records += 1;
                read.advance(record.partition, record.offset);
                let partition = record.partition;
                if let Err(reason) =
                    decoder.decode_into(record.payload, partition, record.offset, now, &mut batch)
                {
                    out.undecodable(partition, record.offset, record.payload, &reason.to_string());
                    return;
                }
                if !windowed {
                    if keep_payloads {
                        payloads.push(record.payload);
                    }
                    return;
                }
                let row = batch.len() - 1;
                let ts = batch.timestamps[row];
                let (after, fires) = match watermarks
                    .event(partition, ts, polled_at, |ts| operator.due_of(ts))
                {
                    Ok(ahead) => ahead,
                    Err(before) => {
                        // Behind the watermark: the operator catches up
                        // first, to judge it late against every window
                        // that should have fired by now.
                        operator.process_batch(&batch, handed..row, &payloads, &mut out);
                        handed = row;
                        operator.handle_watermark(Some(partition), before, &mut out);
                        watermarks.set_due(partition, operator.next_due(partition));
                        if operator.is_late(partition, batch.keys[row].as_ref(), ts) {
                            batch.truncate(row);
                            let (watermark, lateness) = (operator.watermark(partition), operator.lateness());
                            out.late(partition, record.offset, record.payload, ts, watermark, lateness);
                            return;
                        }
                        let after = watermarks.observe(partition, ts, polled_at);
                        watermarks.lower_due(partition, ts, |ts| operator.due_of(ts));
                        // Not late: it changed a window that may have
                        // fired, which fires again at once.
                        (after, true)
                    }
                };
                if fires {
                    operator.process_batch(&batch, handed..row + 1, &payloads, &mut out);
                    handed = row + 1;
                    operator.handle_watermark(Some(partition), after, &mut out);
                    watermarks.set_due(partition, operator.next_due(partition));
                }
            })?;
            out.summary.events += batch.len() as u64;
            operator.process_batch(&batch, handed..batch.len(), &payloads, &mut out);
            let end = polled == Poll::End;
            if end {
                // The end of a bounded input (a file, or Kafka read up to
                // the end offsets seen at start) fires every open window,
                // one partition at a time, so that each call to the
                // function holds one partition's windows, as in a replay.
                for partition in operator.state_partitions() {
                    operator.handle_watermark(Some(partition), i64::MAX, &mut out);
                }
            } else if !event_time {
                // Processing time: the clock is every partition's watermark.
                operator.handle_watermark(None, now_ms() - 1, &mut out);
            } else if windowed {
                // Idle partitions follow the highest watermark. The move
                // depends on wall time, which a replay does not repeat: with
                // checkpoints it is made only when one is due, recorded in
                // it, and takes effect once it is complete, so a restore of
                // that checkpoint makes the same move (see `restore`).
                let now = Instant::now();
                let mut moves = match &checkpointer {
                    None => watermarks.idle(now),
                    Some(cp) if cp.due(now) => watermarks.idle(now),
                    Some(_) => Vec::new(),
                };
                // Quiet, not just read late: its records are all in.
                moves.retain(|&(partition, _)| source.caught_up(partition));
                if !moves.is_empty() {
                    let before: Vec<i64> = moves
                        .iter()
                        .map(|&(partition, watermark)| watermarks.move_idle(partition, watermark))
                        .collect();
                    let mut recorded = true;
                    if let Some(cp) = &mut checkpointer {
                        out.summary.checkpoints += cp.complete(source, out.sinks, true)?;
                        cp.take(operator, &watermarks, out.sinks, &read)?;
                        let completed = cp.complete(source, out.sinks, true)?;
                        out.summary.checkpoints += completed;
                        recorded = completed > 0;
                    }
                    if !recorded {
                        // The checkpoint failed (and was tolerated): no
                        // move without its record; the next one tries again.
                        for (&(partition, _), floor) in moves.iter().zip(before) {
                            watermarks.undo_idle(partition, floor);
                        }
                    }
                    for (partition, watermark) in moves.into_iter().filter(|_| recorded) {
                        operator.handle_watermark(Some(partition), watermark, &mut out);
                        watermarks.set_due(partition, operator.next_due(partition));
                    }
                }
            }
            if let Some(e) = out.take_failure() {
                return Err(e);
            }
            if end {
                break;
            }
            match &mut checkpointer {
                Some(cp) => {
                    out.summary.checkpoints += cp.complete(source, out.sinks, false)?;
                    if cp.due(Instant::now()) {
                        cp.take(operator, &watermarks, out.sinks, &read)?;
                        // A transactional sink commits before it is sent more.
                        out.summary.checkpoints += cp.complete(source, out.sinks, false)?;
                    }
                }
                None if committed_at.elapsed() >= options.commit_interval => {
                    commit(out.sinks, source, operator, &read)?;
                    committed_at = Instant::now();
                }
                None => {}
            }
        }
        operator.finish(out.summary);
        match &mut checkpointer {
            // The end of the run (its input's, or a stop) is checkpointed:
            // started again, the job goes on from exactly here.
            Some(cp) => {
                summary.checkpoints += cp.finish(operator, &watermarks, source, sinks, &read)?;
                summary.failed_checkpoints = cp.failed();
            }
            None => commit(sinks, source, operator, &read)?,
        }
        summary.skipped = sinks.slots().into_iter().flatten().map(|s| s.skipped()).sum();
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }
}

/// Flushes the sinks, then commits to the source the offsets whose output
/// they now hold: what was read, held back to the oldest record a window
/// still to fire needs. Without checkpoints, a restarted job reads those
/// records again and rebuilds its open windows from them.
fn commit(
    sinks: &mut Sinks,
    source: &mut dyn Source,
    operator: &dyn Operator,
    read: &ReadPositions,
) -> Result<(), PipelineError> {
    sinks.flush()?;
    let mut held: Vec<(i32, i64)> = Vec::new();
    operator.unfired_offsets(&mut |partition, offset| held.push((partition, offset)));
    let offsets = read.to_commit(|p| held.iter().find(|(q, _)| *q == p).map(|&(_, o)| o));
    source.commit(&offsets)?;
    Ok(())
}
