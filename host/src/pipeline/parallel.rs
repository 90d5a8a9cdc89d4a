//! A job over several worker threads (`parallelism`). The source's
//! partitions are spread over the workers, each reading its share with a
//! source of its own ([`Source::split`]) into a [`Part`]: its own window
//! state, clocks and instance of the function. Each partition's records are
//! read, windowed and written by one worker, in order, so its output is
//! what one worker would make of it: the same per-partition semantics as a
//! run on one thread, whatever the number of workers.
//!
//! The sinks are shared (one lock each, taken per record); the calling
//! thread coordinates:
//!
//! - **Checkpoints** are aligned barriers. When one is due the coordinator
//!   asks every worker to stop at the end of its current poll; once all
//!   have (or have finished), it takes the checkpoint over all the parts
//!   at once, exactly as a run on one thread takes it over its one part
//!   (the sinks' states, then each partition's offsets, clocks and window
//!   state, the latter encoded by a forked child), and lets them go on.
//!   The stall is the slowest worker's poll plus the fork. Idle partitions
//!   move there too (the highest watermark of all the workers' partitions),
//!   recorded in the checkpoint before they fire, as on one thread.
//! - Completing a checkpoint needs no barrier: the coordinator polls it,
//!   and hands the offsets to commit to the workers, each committing its
//!   own partitions at the end of its next poll.
//! - Without checkpoints, each worker commits its own partitions every
//!   `commit_interval`, and moves its idle partitions on against the
//!   highest watermark any worker has published.
//! - A worker that fails stops them all; the run fails with its error.

use super::checkpointing::{Checkpointer, Share};
use super::collect::{Collector, Emitted};
use super::part::{self, Part};
use super::{Operator, Pipeline, PipelineError, RunOptions, RunSummary, Sinks};
use crate::sink::{Sink, SinkError};
use crate::source::{Poll, Source};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often the coordinator looks at the workers and the checkpoint in
/// flight when nothing wakes it.
const TICK: Duration = Duration::from_millis(5);

/// Runs `pipeline` over `source` with `workers` threads.
pub(super) fn run(
    pipeline: &mut Pipeline,
    source: &mut dyn Source,
    workers: usize,
    sinks: &mut Sinks,
    options: &RunOptions,
    on_emit: &mut (dyn FnMut(Emitted<'_>) + Send),
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let mut partitions = source.partitions();
    partitions.sort_unstable();
    let shares: Vec<Vec<i32>> =
        (0..workers).map(|w| partitions.iter().copied().skip(w).step_by(workers).collect()).collect();
    let sources = source.split(&shares)?;
    let mut checkpointer = pipeline.checkpointer(options.metrics.as_ref())?;
    let mut others = (1..workers).map(|_| pipeline.another_operator()).collect::<Result<Vec<_>, _>>()?;
    let job = &pipeline.job;
    let operators = std::iter::once(&mut pipeline.operator).chain(others.iter_mut());
    let slots: Vec<Mutex<Slot<'_>>> = operators
        .zip(shares)
        .zip(sources)
        .map(|((operator, share), source)| {
            let operator: &mut (dyn Operator + Send) = operator.as_mut();
            Mutex::new(Slot { part: Part::new(job, operator, share), source })
        })
        .collect();
    let shared = SharedSinks::take(sinks);
    let mut coordinator_sinks = shared.handles();
    let mut summary = RunSummary::default();
    let result: Result<(), PipelineError> = (|| {
        if let Some(cp) = &mut checkpointer {
            let mut guards = lock_all(&slots);
            let (mut parts, mut sources) = split_guards(&mut guards);
            summary.restored = cp
                .restore(&mut parts, &mut sources, &mut coordinator_sinks, options.restore.clone())?
                .map(|r| r.checkpoint);
            parts.iter_mut().for_each(|p| p.set_dues());
            // A fresh start of a sink that reads back after a restore: a
            // checkpoint of the empty start, complete before anything is
            // sent.
            if summary.restored.is_none() && coordinator_sinks.reads_back() {
                let views: Vec<Share<'_>> = parts.iter().map(|p| Share::of(p)).collect();
                let owners = slot_partitions(&parts);
                let mut commit = commit_to(&mut sources, &owners);
                summary.checkpoints += cp.take_required(&views, &mut commit, &mut coordinator_sinks)?;
            }
        }
        let board = &Board::new(workers);
        let on_emit = Mutex::new(on_emit);
        let emit = |e: Emitted<'_>| {
            let mut f = lock(&on_emit);
            (*f)(e)
        };
        let emit: &(dyn Fn(Emitted<'_>) + Sync) = &emit;
        let highest: &[AtomicI64] = &(0..workers).map(|_| AtomicI64::new(i64::MIN)).collect::<Vec<_>>();
        let checkpoints = checkpointer.is_some();
        let restored = summary.restored.is_some();
        let owners = {
            let guards = lock_all(&slots);
            guards.iter().map(|g| g.part.partitions.clone()).collect::<Vec<_>>()
        };
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = slots
                .iter()
                .enumerate()
                .map(|(index, slot)| {
                    let worker = Worker {
                        index,
                        slot,
                        board,
                        highest,
                        on_emit: emit,
                        sinks: shared.handles(),
                        job,
                        options,
                        checkpoints,
                        restored,
                    };
                    std::thread::Builder::new().name(format!("weir-worker-{index}")).spawn_scoped(
                        scope,
                        move || {
                            let result = worker.run();
                            board.finish(index, result.is_err());
                            result
                        },
                    )
                })
                .collect();
            for (index, handle) in handles.iter().enumerate() {
                if handle.is_err() {
                    board.finish(index, true);
                }
            }
            let coordinated = match (&mut checkpointer, handles.iter().all(Result::is_ok)) {
                (Some(cp), true) => {
                    coordinate(cp, &slots, board, &owners, &mut coordinator_sinks, &mut summary, options)
                }
                _ => {
                    board.wait_all_finished();
                    Ok(())
                }
            };
            if coordinated.is_err() {
                board.fail();
            }
            let mut outcomes = vec![coordinated];
            for handle in handles {
                outcomes.push(match handle {
                    Ok(handle) => match handle.join() {
                        Ok(Ok(worker_summary)) => {
                            summary.add(&worker_summary);
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(worker_panicked()),
                    },
                    Err(e) => Err(PipelineError::Parallel(format!("cannot start a worker thread: {e}"))),
                });
            }
            outcomes
        });
        // A worker's own error explains the run best; the coordinator's
        // comes next.
        let mut outcomes = outcomes.into_iter();
        let coordinated = outcomes.next().unwrap_or(Ok(()));
        for outcome in outcomes {
            outcome?;
        }
        coordinated?;
        // The end of the run (its input's, or a stop).
        let mut guards = lock_all(&slots);
        let (parts, mut sources) = split_guards(&mut guards);
        match &mut checkpointer {
            Some(cp) => {
                let views: Vec<Share<'_>> = parts.iter().map(|p| Share::of(p)).collect();
                let mut commit = commit_to(&mut sources, &owners);
                let last = cp.finish(&views, &mut commit, &mut coordinator_sinks)?;
                summary.checkpoints += last;
                if let Some(metrics) = &options.metrics {
                    let finished = RunSummary { checkpoints: last, ..RunSummary::default() };
                    metrics.publish(&finished, &mut RunSummary::default());
                }
                summary.failed_checkpoints = cp.failed();
            }
            None => {
                for (part, source) in parts.iter().zip(sources.iter_mut()) {
                    part.commit(&mut coordinator_sinks, &mut **source)?;
                }
            }
        }
        Ok(())
    })();
    drop(coordinator_sinks);
    shared.put_back(sinks);
    result?;
    summary.skipped = sinks.skipped();
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    summary.workers = workers;
    Ok(summary)
}

/// What a worker owns: its part and the source of its share. The worker
/// holds the lock while it polls, and lets go at the end of each poll, so
/// the coordinator can take a checkpoint over every part at a barrier.
struct Slot<'o> {
    part: Part<'o>,
    source: Box<dyn Source>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock_all<'s, 'o>(slots: &'s [Mutex<Slot<'o>>]) -> Vec<MutexGuard<'s, Slot<'o>>> {
    slots.iter().map(lock).collect()
}

/// The parts and sources behind `guards`, in worker order.
fn split_guards<'g, 'o>(
    guards: &'g mut [MutexGuard<'_, Slot<'o>>],
) -> (Vec<&'g mut Part<'o>>, Vec<&'g mut dyn Source>) {
    guards
        .iter_mut()
        .map(|g| {
            let Slot { part, source } = &mut **g;
            (part, source.as_mut() as &mut dyn Source)
        })
        .unzip()
}

fn slot_partitions(parts: &[&mut Part<'_>]) -> Vec<Vec<i32>> {
    parts.iter().map(|p| p.partitions.clone()).collect()
}

/// Commits offsets straight to the sources (the workers are parked).
fn commit_to<'a>(
    sources: &'a mut [&mut dyn Source],
    owners: &'a [Vec<i32>],
) -> impl FnMut(&[(i32, i64)]) -> Result<(), crate::source::SourceError> + 'a {
    move |offsets| {
        for (source, owned) in sources.iter_mut().zip(owners) {
            let mine: Vec<(i32, i64)> = offsets.iter().copied().filter(|(p, _)| owned.contains(p)).collect();
            if !mine.is_empty() {
                source.commit(&mine)?;
            }
        }
        Ok(())
    }
}

/// The coordinator's loop with checkpoints: completes checkpoints as they
/// are written, and takes one at a barrier when it is due, until every
/// worker has finished (or one failed).
fn coordinate(
    cp: &mut Checkpointer,
    slots: &[Mutex<Slot<'_>>],
    board: &Board,
    owners: &[Vec<i32>],
    sinks: &mut Sinks,
    summary: &mut RunSummary,
    options: &RunOptions,
) -> Result<(), PipelineError> {
    // The coordinator's own counts (checkpoints), published as it goes.
    let mut published = RunSummary::default();
    loop {
        if let Some(metrics) = &options.metrics {
            metrics.publish(summary, &mut published);
        }
        if board.all_finished() || board.failed() {
            return Ok(());
        }
        // Offsets of a checkpoint that completes go to the workers that
        // read them, which commit at the end of their next poll.
        let mut commit = |offsets: &[(i32, i64)]| {
            board.post_commits(offsets, owners);
            Ok(())
        };
        summary.checkpoints += cp.complete(&mut commit, sinks, false)?;
        let now = Instant::now();
        if cp.due(now, &options.checkpoint_now) && !cp.busy() {
            if !board.park_all() {
                continue;
            }
            let taken = barrier(cp, slots, board, owners, sinks, summary);
            options.checkpoint_now.store(false, Ordering::Relaxed);
            board.release();
            taken?;
        }
        board.wait(TICK);
    }
}

/// At a barrier, every worker parked: moves idle partitions on and takes a
/// checkpoint over all the parts.
fn barrier(
    cp: &mut Checkpointer,
    slots: &[Mutex<Slot<'_>>],
    board: &Board,
    owners: &[Vec<i32>],
    sinks: &mut Sinks,
    summary: &mut RunSummary,
) -> Result<(), PipelineError> {
    let mut guards = lock_all(slots);
    let (mut parts, mut sources) = split_guards(&mut guards);
    let now = Instant::now();
    let moves = part::move_idle(&mut parts, now, &|i, p| sources[i].caught_up(p));
    let mut commit = commit_to(&mut sources, owners);
    if moves.iter().all(Vec::is_empty) {
        let views: Vec<Share<'_>> = parts.iter().map(|p| Share::of(p)).collect();
        cp.take(&views, sinks)?;
        // A transactional sink commits before it is sent more.
        summary.checkpoints += cp.complete(&mut commit, sinks, false)?;
        return Ok(());
    }
    // Idle moves are recorded in a checkpoint before they fire: the one in
    // flight completes, then one that holds them.
    summary.checkpoints += cp.complete(&mut commit, sinks, true)?;
    let views: Vec<Share<'_>> = parts.iter().map(|p| Share::of(p)).collect();
    cp.take(&views, sinks)?;
    let completed = cp.complete(&mut commit, sinks, true)?;
    summary.checkpoints += completed;
    if completed > 0 {
        board.post_moves(moves.iter().map(|m| m.iter().map(|&(p, w, _)| (p, w)).collect()).collect());
    } else {
        // The checkpoint failed (and was tolerated): no move without its
        // record; the next one tries again.
        for (part, moved) in parts.iter_mut().zip(&moves) {
            for &(partition, _, before) in moved {
                part.watermarks.undo_idle(partition, before);
            }
        }
    }
    Ok(())
}

/// One worker thread.
struct Worker<'s, 'o> {
    index: usize,
    slot: &'s Mutex<Slot<'o>>,
    board: &'s Board,
    /// Each worker's highest watermark, for idle moves without
    /// checkpoints.
    highest: &'s [AtomicI64],
    on_emit: &'s (dyn Fn(Emitted<'_>) + Sync),
    sinks: Sinks,
    job: &'s crate::job::Job,
    options: &'s RunOptions,
    checkpoints: bool,
    restored: bool,
}

impl Worker<'_, '_> {
    fn run(self) -> Result<RunSummary, PipelineError> {
        let Worker { index, slot, board, highest, on_emit, mut sinks, job, options, checkpoints, restored } =
            self;
        let mut summary = RunSummary::default();
        let key_field = job.config.format.key.clone().unwrap_or_default();
        let source_name = lock(slot).source.name().to_string();
        let mut emit = |e: Emitted<'_>| on_emit(e);
        let mut out = Collector::new(&mut sinks, &mut summary, &mut emit, &source_name, &key_field, job);
        let mut committed_at = Instant::now();
        let mut first = true;
        let mut published = RunSummary::default();
        let watermark = options.metrics.as_ref().map(|m| m.watermark_slot());
        loop {
            {
                let mut slot = lock(slot);
                let Slot { part, source } = &mut *slot;
                if first && restored {
                    part.fire_restored(&mut out);
                }
                first = false;
                let (commits, moves) = board.take_posted(index);
                if !commits.is_empty() {
                    source.commit(&commits)?;
                }
                part.fire_moves(&moves, &mut out);
                if options.stop.load(Ordering::Relaxed) || board.failed() {
                    part.operator.finish(out.summary);
                    break;
                }
                let end = part.step(source.as_mut(), options.poll_wait, &mut out)? == Poll::End;
                if let Some(metrics) = &options.metrics {
                    metrics.publish(out.summary, &mut published);
                }
                if let Some(watermark) = &watermark {
                    watermark.set(part.watermarks.lowest());
                }
                if let Some(e) = out.take_failure() {
                    return Err(e);
                }
                if end {
                    part.operator.finish(out.summary);
                    break;
                }
                if !checkpoints {
                    idle_moves(index, highest, part, source.as_ref(), &mut out);
                    if committed_at.elapsed() >= options.commit_interval {
                        part.commit(out.sinks, source.as_mut())?;
                        committed_at = Instant::now();
                    }
                }
            }
            board.park_if_asked(index);
        }
        if let Some(e) = out.take_failure() {
            return Err(e);
        }
        if let Some(metrics) = &options.metrics {
            metrics.publish(out.summary, &mut published);
        }
        drop(out);
        Ok(summary)
    }
}

/// Without checkpoints: worker `index`'s idle partitions follow the highest
/// watermark of all the workers' partitions (each publishes its own in
/// `highest`), at once.
fn idle_moves(
    index: usize,
    highest: &[AtomicI64],
    part: &mut Part<'_>,
    source: &dyn Source,
    out: &mut Collector<'_>,
) {
    {
        if !part.windowed() {
            return;
        }
        if let Some(own) = part.watermarks.highest() {
            highest[index].fetch_max(own, Ordering::Relaxed);
        }
        let highest = highest.iter().map(|h| h.load(Ordering::Relaxed)).max().unwrap_or(i64::MIN);
        if highest == i64::MIN {
            return;
        }
        let moves: Vec<(i32, i64)> = part
            .watermarks
            .idle_under(Instant::now(), highest)
            .into_iter()
            .filter(|&(partition, _)| source.caught_up(partition))
            .collect();
        for &(partition, watermark) in &moves {
            part.watermarks.move_idle(partition, watermark);
        }
        part.fire_moves(&moves, out);
    }
}

fn worker_panicked() -> PipelineError {
    PipelineError::Parallel("a worker thread panicked".into())
}

/// (partition, offset or watermark) pairs.
type Offsets = Vec<(i32, i64)>;

/// Where the coordinator and the workers meet.
struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

struct BoardState {
    /// The coordinator asks the workers to park at the end of their poll.
    asked: bool,
    /// Which workers are parked.
    parked: Vec<bool>,
    /// Which workers have finished (their input ended, the run stopped, or
    /// they failed): they count as parked.
    finished: Vec<bool>,
    /// Bumped when parked workers may go on.
    generation: u64,
    /// Per worker, offsets of completed checkpoints to commit.
    commits: Vec<Vec<(i32, i64)>>,
    /// Per worker, idle moves to fire (their checkpoint is complete).
    moves: Vec<Vec<(i32, i64)>>,
    /// Something failed: every worker stops.
    failed: bool,
}

impl Board {
    fn new(workers: usize) -> Board {
        Board {
            state: Mutex::new(BoardState {
                asked: false,
                parked: vec![false; workers],
                finished: vec![false; workers],
                generation: 0,
                commits: vec![Vec::new(); workers],
                moves: vec![Vec::new(); workers],
                failed: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, BoardState> {
        lock(&self.state)
    }

    fn failed(&self) -> bool {
        self.state().failed
    }

    fn fail(&self) {
        self.state().failed = true;
        self.changed.notify_all();
    }

    fn all_finished(&self) -> bool {
        self.state().finished.iter().all(|&f| f)
    }

    /// Waits until every worker has finished.
    fn wait_all_finished(&self) {
        let state = self.state();
        let _state = self
            .changed
            .wait_while(state, |s| !s.finished.iter().all(|&f| f))
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Worker `index` is done (`failed`: with an error, which stops all).
    fn finish(&self, index: usize, failed: bool) {
        let mut state = self.state();
        state.finished[index] = true;
        state.failed |= failed;
        self.changed.notify_all();
    }

    /// Waits at most `limit` for something to change.
    fn wait(&self, limit: Duration) {
        let state = self.state();
        let _ = self.changed.wait_timeout(state, limit).unwrap_or_else(PoisonError::into_inner);
    }

    /// Asks every worker to park and waits until all have (or finished);
    /// false if the run failed meanwhile.
    fn park_all(&self) -> bool {
        let mut state = self.state();
        state.asked = true;
        let state = self
            .changed
            .wait_while(state, |s| {
                !s.failed && s.parked.iter().zip(&s.finished).any(|(&parked, &finished)| !parked && !finished)
            })
            .unwrap_or_else(PoisonError::into_inner);
        !state.failed
    }

    /// Lets parked workers go on.
    fn release(&self) {
        let mut state = self.state();
        state.asked = false;
        state.generation += 1;
        self.changed.notify_all();
    }

    /// At the end of a poll: parks worker `index` until released, if the
    /// coordinator asked.
    fn park_if_asked(&self, index: usize) {
        let mut state = self.state();
        if !state.asked || state.failed {
            return;
        }
        state.parked[index] = true;
        let generation = state.generation;
        self.changed.notify_all();
        let mut state = self
            .changed
            .wait_while(state, |s| s.generation == generation && !s.failed)
            .unwrap_or_else(PoisonError::into_inner);
        state.parked[index] = false;
    }

    /// Hands each worker the offsets of its partitions to commit.
    fn post_commits(&self, offsets: &[(i32, i64)], owners: &[Vec<i32>]) {
        let mut state = self.state();
        for (commits, owned) in state.commits.iter_mut().zip(owners) {
            for &(partition, offset) in offsets.iter().filter(|(p, _)| owned.contains(p)) {
                // A newer commit replaces an older one not yet made.
                commits.retain(|(p, _)| *p != partition);
                commits.push((partition, offset));
            }
        }
    }

    /// Hands each worker its idle moves to fire.
    fn post_moves(&self, moves: Vec<Vec<(i32, i64)>>) {
        let mut state = self.state();
        for (mine, new) in state.moves.iter_mut().zip(moves) {
            mine.extend(new);
        }
    }

    /// What was posted for worker `index`: offsets to commit, moves to
    /// fire.
    fn take_posted(&self, index: usize) -> (Offsets, Offsets) {
        let mut state = self.state();
        (std::mem::take(&mut state.commits[index]), std::mem::take(&mut state.moves[index]))
    }
}

/// The job's sinks while workers share them: each behind a lock.
struct SharedSinks {
    output: Arc<Mutex<Box<dyn Sink>>>,
    dead_letter: Option<Arc<Mutex<Box<dyn Sink>>>>,
    late: Option<Arc<Mutex<Box<dyn Sink>>>>,
}

impl SharedSinks {
    /// Takes the sinks out of `sinks` (put back by [`SharedSinks::put_back`]).
    fn take(sinks: &mut Sinks) -> SharedSinks {
        let take = |sink: &mut Box<dyn Sink>| Arc::new(Mutex::new(std::mem::replace(sink, Box::new(Vacant))));
        SharedSinks {
            output: take(&mut sinks.output),
            dead_letter: sinks.dead_letter.as_mut().map(take),
            late: sinks.late.as_mut().map(take),
        }
    }

    /// A set of handles on the shared sinks.
    fn handles(&self) -> Sinks {
        let handle = |sink: &Arc<Mutex<Box<dyn Sink>>>| -> Box<dyn Sink> {
            let name = lock(sink).name().to_string();
            Box::new(SharedSink { sink: sink.clone(), name })
        };
        Sinks {
            output: handle(&self.output),
            dead_letter: self.dead_letter.as_ref().map(handle),
            late: self.late.as_ref().map(handle),
        }
    }

    /// Puts the sinks back into `sinks` (every handle must be gone).
    fn put_back(self, sinks: &mut Sinks) {
        let back = |shared: Arc<Mutex<Box<dyn Sink>>>, slot: &mut Box<dyn Sink>| {
            if let Ok(sink) = Arc::try_unwrap(shared) {
                *slot = sink.into_inner().unwrap_or_else(PoisonError::into_inner);
            }
        };
        back(self.output, &mut sinks.output);
        if let (Some(shared), Some(slot)) = (self.dead_letter, sinks.dead_letter.as_mut()) {
            back(shared, slot);
        }
        if let (Some(shared), Some(slot)) = (self.late, sinks.late.as_mut()) {
            back(shared, slot);
        }
    }
}

/// A handle on a shared sink: every call takes its lock.
struct SharedSink {
    sink: Arc<Mutex<Box<dyn Sink>>>,
    name: String,
}

impl SharedSink {
    fn get(&self) -> MutexGuard<'_, Box<dyn Sink>> {
        lock(&self.sink)
    }
}

impl Sink for SharedSink {
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        self.get().send(key, payload)
    }
    fn send_from(
        &mut self,
        source_partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), SinkError> {
        self.get().send_from(source_partition, key, payload)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.get().flush()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn checkpoint_state(&mut self) -> Result<Vec<u8>, SinkError> {
        self.get().checkpoint_state()
    }
    fn checkpoint_pending(&mut self) -> Result<bool, SinkError> {
        self.get().checkpoint_pending()
    }
    fn checkpoint_complete(&mut self) -> Result<(), SinkError> {
        self.get().checkpoint_complete()
    }
    fn commits_at_checkpoints(&self) -> bool {
        self.get().commits_at_checkpoints()
    }
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        self.get().restore(state)
    }
    fn skipped(&self) -> u64 {
        self.get().skipped()
    }
    fn reads_back(&self) -> bool {
        self.get().reads_back()
    }
}

/// What stands in a job's [`Sinks`] while the workers share its sinks.
struct Vacant;

impl Sink for Vacant {
    fn send(&mut self, _: Option<&[u8]>, _: &[u8]) -> Result<(), SinkError> {
        Err(SinkError::Detached { sink: self.name().to_string() })
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Err(SinkError::Detached { sink: self.name().to_string() })
    }
    fn name(&self) -> &str {
        "(shared by the workers)"
    }
}
