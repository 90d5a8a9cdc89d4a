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
mod group;
mod live;
mod map_stage;
mod member_checkpoints;
mod operator;
mod parallel;
mod part;
mod payloads;
mod positions;
#[cfg(test)]
mod replay_tests;
mod restart;
mod shadow;
mod supervise;
#[cfg(test)]
mod tests;
mod upgrade;
mod window_stage;

pub use checkpointing::{
    CheckpointError, PartitionSummary, RestoreFrom, Restored, copy_savepoint,
    summarize as summarize_checkpoint,
};
use checkpointing::{Checkpointer, Share};
pub use collect::{Collector, Emitted, OutputRow};
pub use live::{
    CHECKPOINT_HISTORY, CheckpointRecord, CheckpointStatus, LiveMetrics, MetricsSnapshot, WatermarkSlot,
};
pub use map_stage::{MapFunction, MapStage};
pub use operator::Operator;
pub use payloads::Payloads;
pub use restart::RestartStrategy;
pub use shadow::{SHADOW_EXAMPLES, ShadowDiff, ShadowReport, ShadowSide, shadow};
pub use supervise::{Restart, run_with_restarts};
pub use upgrade::{PluginFacts, Upgrade, upgrade_from};
pub use window_stage::WindowStage;

use crate::job::Job;
use crate::plugin::schema::{SchemaError, bind_inputs, resolve_params};
use crate::plugin::{CallTimes, LoadError, Plugin, PluginEngine, PluginError};
use crate::sink::{Sink, SinkError};
use crate::source::{Poll, Source, SourceError};
use crate::types::{Descriptor, FunctionKind};
use crate::window::{Reduce, WindowOperator};
use part::Part;
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
    /// The worker threads of a parallel job could not run.
    #[error("parallel job: {0}")]
    Parallel(String),
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
    /// Worker threads the run's partitions were spread over (the job's
    /// `parallelism`, capped at the partitions).
    pub workers: usize,
    /// The checkpoint the run restored at start, if any.
    pub restored: Option<u64>,
    /// Wall time of the run, in ms.
    pub elapsed_ms: u64,
}

impl RunSummary {
    /// Adds the counts of `other` (another worker's) to these.
    fn add(&mut self, other: &RunSummary) {
        self.records += other.records;
        self.events += other.events;
        self.dead_letters += other.dead_letters;
        self.late += other.late;
        self.windows += other.windows;
        self.refired += other.refired;
        self.failed += other.failed;
        self.outputs += other.outputs;
        self.checkpoints += other.checkpoints;
        self.failed_checkpoints += other.failed_checkpoints;
    }
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
    /// Counters to publish to as the run goes (the host's jobs).
    pub metrics: Option<Arc<LiveMetrics>>,
    /// Set to take a checkpoint at the end of the current poll, whatever
    /// the interval (a savepoint); the run clears it when it starts one.
    pub checkpoint_now: Arc<AtomicBool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stop: Arc::new(AtomicBool::new(false)),
            poll_wait: Duration::from_millis(100),
            commit_interval: Duration::from_secs(5),
            restore: RestoreFrom::Latest,
            metrics: None,
            checkpoint_now: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Sinks {
    /// The output, dead-letter and late sinks, in that order (`None` for
    /// one the job does not have).
    fn slots(&mut self) -> [Option<&mut Box<dyn Sink>>; 3] {
        [Some(&mut self.output), self.dead_letter.as_mut(), self.late.as_mut()]
    }

    /// Whether a sink reads back what it wrote after a restore (so a fresh
    /// run checkpoints its empty start first).
    fn reads_back(&mut self) -> bool {
        self.slots().into_iter().flatten().any(|s| s.reads_back())
    }

    /// Records the sinks did not write again after a restore.
    fn skipped(&mut self) -> u64 {
        self.slots().into_iter().flatten().map(|s| s.skipped()).sum()
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
    /// What checkpoints record of the plugin, to check an upgrade against.
    facts: PluginFacts,
    /// How each worker's operator is made (`None` for a pipeline built
    /// around a given operator, in tests: one worker).
    recipe: Option<Recipe>,
    /// The first worker's operator.
    operator: Box<dyn Operator + Send>,
}

/// What makes an operator for the job: a plugin instance of its own (one
/// per worker), fed the inputs it reads.
struct Recipe {
    plugin: Plugin,
    params: Vec<crate::types::Param>,
    inputs: Vec<usize>,
    input_types: Vec<crate::types::FieldType>,
    /// The window and how it is reduced; `None` for a map job.
    reduce: Option<(Reduce, crate::window::WindowSpec)>,
    /// Where each instance times its calls, if anyone watches.
    call_times: Option<Arc<CallTimes>>,
}

impl Pipeline {
    /// Loads the job's plugin and checks it against the job: its world
    /// against the window, its inputs against the fields, its parameters.
    pub fn build(job: Job, engine: &PluginEngine) -> Result<Pipeline, PipelineError> {
        Pipeline::build_timed(job, engine, None)
    }

    /// [`Pipeline::build`], with every plugin instance of the job (one per
    /// worker) timing its calls into `call_times`.
    pub fn build_timed(
        job: Job,
        engine: &PluginEngine,
        call_times: Option<Arc<CallTimes>>,
    ) -> Result<Pipeline, PipelineError> {
        let reference = &job.config.function.plugin;
        // A path is relative to the job file; a bare name is a built-in.
        let plugin: Plugin = if reference.ends_with(".wasm") {
            engine.load_file(&job.path(std::path::Path::new(reference)))?
        } else {
            engine.load_ref(reference)?
        };
        let descriptor = plugin.descriptor().clone();
        let facts = PluginFacts::of(&plugin);
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
        let recipe = Recipe { plugin, params, inputs, input_types, reduce, call_times };
        let operator = recipe.operator(&job)?;
        Ok(Pipeline { job, descriptor, facts, recipe: Some(recipe), operator })
    }

    /// Another operator for the job, with an instance of its own.
    fn another_operator(&self) -> Result<Box<dyn Operator + Send>, PipelineError> {
        match &self.recipe {
            Some(recipe) => recipe.operator(&self.job),
            None => Err(PipelineError::Parallel("this pipeline has one operator only".into())),
        }
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The plugin's descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// What checkpoints record of the plugin.
    pub fn facts(&self) -> &PluginFacts {
        &self.facts
    }

    /// Runs the job over `source` into `sinks` until the input ends (with
    /// a bounded source) or `stop` is set. `on_emit` sees every output
    /// record as it is written. With more than one worker (the job's
    /// `parallelism`, for a source that can be split), the source's
    /// partitions are spread over that many threads (`parallel.rs`).
    pub fn run(
        &mut self,
        source: &mut dyn Source,
        sinks: &mut Sinks,
        options: &RunOptions,
        on_emit: &mut (dyn FnMut(Emitted<'_>) + Send),
    ) -> Result<RunSummary, PipelineError> {
        if self.job.config.source.scale_out {
            if options.restore != RestoreFrom::Latest {
                return Err(self
                    .job
                    .error(
                        "source.scale_out",
                        "a member of a group restores from the group's checkpoints: --from-checkpoint takes only latest",
                    )
                    .into());
            }
            return group::run(self, source, sinks, options, on_emit);
        }
        let workers = self.workers_for(source);
        if workers > 1 {
            return parallel::run(self, source, workers, sinks, options, on_emit);
        }
        self.run_alone(source, sinks, options, on_emit)
    }

    /// How many workers a run over `source` gets: the job's `parallelism`
    /// (by default the machine's cores), at most one per partition, and one
    /// for a source that cannot be split.
    pub fn workers_for(&self, source: &dyn Source) -> usize {
        if !source.splittable() || self.recipe.is_none() {
            return 1;
        }
        let wanted =
            self.job.config.parallelism.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
        wanted.clamp(1, source.partitions().len().max(1))
    }

    /// Checks, without changing anything, that a run from the savepoint at
    /// `url` would restore: the savepoint is this job's, and this job's
    /// plugin can take its window state over (the same function, world and
    /// inputs, and a state version it can migrate from, which it then tries
    /// on a spare instance). What it returns says whether the state needs a
    /// migration.
    pub fn check_savepoint(&self, url: &str) -> Result<Upgrade, PipelineError> {
        let Some(checkpointer) = self.checkpointer(None)? else {
            return Err(CheckpointError::Savepoint {
                url: url.to_string(),
                reason: "the job has no [checkpoint] section to go on with".into(),
            }
            .into());
        };
        let mut spare = self.another_operator()?;
        Ok(checkpointer.check_savepoint(url, spare.as_mut())?)
    }

    /// The job's checkpointer, if it has `[checkpoint]`.
    /// Its checkpoints go to the history of `metrics`, if given.
    fn checkpointer(
        &self,
        metrics: Option<&Arc<LiveMetrics>>,
    ) -> Result<Option<Checkpointer>, PipelineError> {
        let Some(config) = &self.job.config.checkpoint else { return Ok(None) };
        let mut checkpointer = Checkpointer::open(&self.job, config, self.facts.clone())?;
        checkpointer.observe(metrics.cloned());
        Ok(Some(checkpointer))
    }

    /// [`Pipeline::run`] on this thread, with one part.
    fn run_alone(
        &mut self,
        source: &mut dyn Source,
        sinks: &mut Sinks,
        options: &RunOptions,
        on_emit: &mut dyn FnMut(Emitted<'_>),
    ) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let mut checkpointer = self.checkpointer(options.metrics.as_ref())?;
        let job = &self.job;
        let key_field = job.config.format.key.clone().unwrap_or_default();
        let source_name = source.name().to_string();
        let mut part = Part::new(job, self.operator.as_mut(), source.partitions());
        let mut summary = RunSummary::default();
        let mut committed_at = Instant::now();
        let mut published = RunSummary::default();
        let watermark = options.metrics.as_ref().map(|m| m.watermark_slot());
        // With checkpoints, the run starts from the newest one, and commits
        // offsets only when a checkpoint holds the state they leave behind.
        if let Some(cp) = &mut checkpointer {
            summary.restored = cp
                .restore(&mut [&mut part], &mut [&mut *source], sinks, options.restore.clone())?
                .map(|r| r.checkpoint);
            part.set_dues();
            // A fresh start of a sink that reads back after a restore: a
            // checkpoint of the empty start (the output topics' end
            // offsets), complete before anything is sent.
            if summary.restored.is_none() && sinks.reads_back() {
                summary.checkpoints +=
                    cp.take_required(&[Share::of(&part)], &mut |o| source.commit(o), sinks)?;
            }
        }
        let restored = summary.restored.is_some();
        let mut out = Collector::new(sinks, &mut summary, on_emit, &source_name, &key_field, job);
        if restored {
            part.fire_restored(&mut out);
        }
        loop {
            if options.stop.load(Ordering::Relaxed) {
                break;
            }
            let end = part.step(source, options.poll_wait, &mut out)? == Poll::End;
            if let Some(metrics) = &options.metrics {
                metrics.publish(out.summary, &mut published);
            }
            if let Some(slot) = &watermark {
                slot.set(part.watermarks.lowest());
            }
            if !end {
                move_idle_alone(&mut part, checkpointer.as_mut(), source, &mut out, &options.checkpoint_now)?;
            }
            if let Some(e) = out.take_failure() {
                return Err(e);
            }
            if end {
                break;
            }
            match &mut checkpointer {
                Some(cp) => {
                    out.summary.checkpoints += cp.complete(&mut |o| source.commit(o), out.sinks, false)?;
                    if cp.due(Instant::now(), &options.checkpoint_now) {
                        cp.take(&[Share::of(&part)], out.sinks)?;
                        options.checkpoint_now.store(false, Ordering::Relaxed);
                        // A transactional sink commits before it is sent more.
                        out.summary.checkpoints +=
                            cp.complete(&mut |o| source.commit(o), out.sinks, false)?;
                    }
                }
                None if committed_at.elapsed() >= options.commit_interval => {
                    part.commit(out.sinks, source)?;
                    committed_at = Instant::now();
                }
                None => {}
            }
        }
        part.operator.finish(out.summary);
        if let Some(metrics) = &options.metrics {
            metrics.publish(out.summary, &mut published);
        }
        match &mut checkpointer {
            // The end of the run (its input's, or a stop) is checkpointed:
            // started again, the job goes on from exactly here.
            Some(cp) => {
                summary.checkpoints += cp.finish(&[Share::of(&part)], &mut |o| source.commit(o), sinks)?;
                summary.failed_checkpoints = cp.failed();
            }
            None => part.commit(sinks, source)?,
        }
        if let Some(metrics) = &options.metrics {
            metrics.publish(&summary, &mut published);
        }
        summary.skipped = sinks.skipped();
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        summary.workers = 1;
        Ok(summary)
    }
}

/// One part alone (a run on one thread, or a group member's session):
/// idle partitions follow the highest watermark, and what that closes
/// fires. The move depends on wall time, which a replay does not repeat:
/// with checkpoints it is made only when one is due, recorded in it, and
/// takes effect once it is complete, so that a restore of that checkpoint
/// makes the same move (see `Checkpointer::restore`).
fn move_idle_alone(
    part: &mut Part<'_>,
    checkpointer: Option<&mut Checkpointer>,
    source: &mut dyn Source,
    out: &mut Collector<'_>,
    checkpoint_now: &AtomicBool,
) -> Result<(), PipelineError> {
    let now = Instant::now();
    if !part.windowed() || checkpointer.as_ref().is_some_and(|cp| !cp.due(now, checkpoint_now)) {
        return Ok(());
    }
    let moves = part::move_idle(&mut [&mut *part], now, &|_, p| source.caught_up(p));
    let moves = moves.into_iter().next().unwrap_or_default();
    if moves.is_empty() {
        return Ok(());
    }
    let mut recorded = true;
    if let Some(cp) = checkpointer {
        out.summary.checkpoints += cp.complete(&mut |o| source.commit(o), out.sinks, true)?;
        cp.take(&[Share::of(part)], out.sinks)?;
        checkpoint_now.store(false, Ordering::Relaxed);
        let completed = cp.complete(&mut |o| source.commit(o), out.sinks, true)?;
        out.summary.checkpoints += completed;
        recorded = completed > 0;
    }
    if recorded {
        let fired: Vec<(i32, i64)> = moves.iter().map(|&(p, w, _)| (p, w)).collect();
        part.fire_moves(&fired, out);
    } else {
        // The checkpoint failed (and was tolerated): no move without its
        // record; the next one tries again.
        for &(partition, _, before) in &moves {
            part.watermarks.undo_idle(partition, before);
        }
    }
    Ok(())
}

impl Recipe {
    /// An operator of `job` with a fresh instance of the plugin.
    fn operator(&self, job: &Job) -> Result<Box<dyn Operator + Send>, PipelineError> {
        let d = self.plugin.descriptor();
        let mut instance =
            self.plugin.instantiate(self.params.clone(), job.config.function.limits.clone())?;
        if let Some(times) = &self.call_times {
            instance.time_calls(times.clone());
        }
        let (inputs, input_types) = (self.inputs.clone(), self.input_types.clone());
        Ok(match self.reduce {
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
        })
    }
}
