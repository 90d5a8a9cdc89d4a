//! A member of a consumer group (`[source] scale_out`): several processes
//! run one job, each reading the partitions the group gives it, and a
//! partition's window state moves with it through the checkpoint storage
//! they share.
//!
//! Under the job's name in that storage:
//! - `members/<member>/chk-N/`: each member's checkpoints, holding the
//!   partitions it owned at the barrier (the format of any checkpoint);
//! - `handover/p-<p>/chk-N/`: a partition's state as a member gave it back
//!   when the group moved it, which outlives that member's checkpoints;
//! - `group/ends`: for bounded runs, where every partition ends, written
//!   by the first member to start (so that all of them agree);
//! - `group/finished-<p>`: a partition read to its end, its windows fired
//!   and checkpointed.
//!
//! A member runs in sessions over a fixed set of partitions. A rebalance
//! ends the session: its last checkpoint holds every partition it owned;
//! partitions taken away are handed over and released, and the next
//! session restores every partition it owns from the checkpoint that
//! holds it furthest along (of any member), takes the new ones at their
//! offsets, and checkpoints before it reads anything, so that a member's
//! newest checkpoint always holds what it owns. Each partition's output is
//! a function of its own records (see `part.rs`), so it is the same
//! whoever reads it, and a sequenced Kafka sink skips what the partition's
//! previous owner already wrote.

use super::checkpointing::{Checkpointer, Share};
use super::collect::{Collector, Emitted};
use super::part::Part;
use super::{LiveMetrics, Pipeline, PipelineError, RunOptions, RunSummary, Sinks, WatermarkSlot};
use crate::checkpoint::{CheckpointStorage, StorageError};
use crate::kafka::GroupChange;
use crate::source::Source;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a member whose partitions are all finished asks the storage
/// whether every partition of the topic is.
const FINISHED_EVERY: Duration = Duration::from_millis(300);

/// Runs `pipeline` as a member of its source's consumer group until the
/// input ends (bounded: every partition of the topic finished, whoever
/// read it) or `options.stop` is set.
pub(super) fn run(
    pipeline: &mut Pipeline,
    source: &mut dyn Source,
    sinks: &mut Sinks,
    options: &RunOptions,
    on_emit: &mut dyn FnMut(Emitted<'_>),
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let group = pipeline.job.config.name.clone();
    let Some(checkpointer) = pipeline.checkpointer(options.metrics.as_ref())? else {
        return Err(pipeline.job.error("source.scale_out", "needs a [checkpoint] section").into());
    };
    let member = member_name();
    let mut cp = checkpointer.for_member(&member);
    let takeover_wait = super::connect::member_session(&pipeline.job)
        .map_or(Duration::ZERO, |(session, heartbeat)| crate::kafka::Lease::timeouts(session, heartbeat).0);
    let bounded = match source.end_offsets() {
        Some(seen) => {
            let ends = agree_on_ends(cp.storage(), &group, &seen)?;
            source.set_end_offsets(&ends);
            Some(ends)
        }
        None => None,
    };
    tracing::info!("member {member} of job '{group}' joins the group of source '{}'", source.name());
    let mut member_state = Member {
        owned: Vec::new(),
        pending: Vec::new(),
        bounded,
        summary: RunSummary::default(),
        takeover_wait,
        assign_due: false,
        name: member.clone(),
        metrics: options.metrics.clone(),
        published: RunSummary::default(),
        watermark: options.metrics.as_ref().map(|m| m.watermark_slot()),
    };
    let ran = loop {
        let step = member_state.act_on_changes(&mut cp, source, sinks).and_then(|gained| {
            session(pipeline, &mut cp, source, sinks, options, on_emit, &mut member_state, &gained)
        });
        match step {
            Ok(false) => {}
            Ok(true) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // librdkafka waits for every rebalance to be acted on, even as the
    // consumer closes (a close would wait for ever): the last ones are
    // taken or given back as they are, whether the run ended or failed.
    let mut acknowledged = Ok(());
    for change in std::mem::take(&mut member_state.pending) {
        let done = match change {
            GroupChange::Assigned(partitions) => {
                let take: Vec<(i32, Option<i64>)> = partitions.iter().map(|&p| (p, None)).collect();
                source.take_partitions(&take)
            }
            GroupChange::Revoked { partitions, .. } => source.release_partitions(&partitions),
        };
        acknowledged = acknowledged.and(done);
    }
    if member_state.assign_due {
        acknowledged = acknowledged.and(source.take_partitions(&[]));
    }
    ran?;
    acknowledged?;
    let mut summary = member_state.summary;
    summary.failed_checkpoints = cp.failed();
    summary.skipped = sinks.skipped();
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    summary.workers = 1;
    if let Some(metrics) = &options.metrics {
        metrics.publish(&summary, &mut member_state.published);
    }
    tracing::info!("member {member} of job '{group}' leaves the group");
    Ok(summary)
}

/// What a member keeps across its sessions.
struct Member {
    /// The partitions it owns, ascending.
    owned: Vec<i32>,
    /// The group's changes not acted on yet.
    pending: Vec<GroupChange>,
    /// A bounded run: where each partition of the topic ends.
    bounded: Option<Vec<(i32, i64)>>,
    summary: RunSummary,
    /// How long a member waits before it reads back the output of a
    /// partition it takes over from one that did not hand it over.
    takeover_wait: Duration,
    /// The group gave partitions (maybe none) that are not taken yet:
    /// librdkafka waits for the assignment, even an empty one.
    assign_due: bool,
    /// Its name in the group's storage.
    name: String,
    /// Where a host watching the run reads its counters and ownership.
    metrics: Option<Arc<LiveMetrics>>,
    /// The summary as last published to `metrics`.
    published: RunSummary,
    /// Where the run publishes its watermark.
    watermark: Option<WatermarkSlot>,
}

impl Member {
    /// Between sessions: hands over and releases what the group took
    /// (the last session's final checkpoint holds it), and notes what it
    /// gave. Returns the partitions gained.
    fn act_on_changes(
        &mut self,
        cp: &mut Checkpointer,
        source: &mut dyn Source,
        sinks: &mut Sinks,
    ) -> Result<Vec<i32>, PipelineError> {
        let mut gained = Vec::new();
        let mut changes = std::mem::take(&mut self.pending).into_iter();
        while let Some(change) = changes.next() {
            match change {
                GroupChange::Assigned(partitions) => {
                    self.assign_due = true;
                    for p in partitions {
                        if !self.owned.contains(&p) {
                            self.owned.push(p);
                            gained.push(p);
                        }
                    }
                }
                GroupChange::Revoked { partitions, lost } => {
                    if lost {
                        // The group gave them away already (this member's
                        // session timed out): nothing it holds may be
                        // written now. It joins the group again as a new
                        // member, which restores from the checkpoints.
                        tracing::warn!(
                            "the group dropped this member: partitions {partitions:?} are lost to it"
                        );
                        for sink in sinks.slots().into_iter().flatten() {
                            sink.fence();
                        }
                        // Acknowledged, or librdkafka waits for ever; so
                        // are the changes after it, as the run ends.
                        self.pending.extend(changes);
                        source.release_partitions(&partitions)?;
                        return Err(crate::sink::SinkError::LeaseLost {
                            topic: source.name().to_string(),
                            suspended_after: self.takeover_wait,
                        }
                        .into());
                    } else {
                        tracing::info!("handing over partitions {partitions:?}");
                        cp.hand_over(&partitions)?;
                        tracing::info!("handed over partitions {partitions:?}");
                        if let Some(metrics) = &self.metrics {
                            metrics.group_handed_over(partitions.len());
                        }
                    }
                    source.release_partitions(&partitions)?;
                    self.owned.retain(|p| !partitions.contains(p));
                    gained.retain(|p| !partitions.contains(p));
                }
            }
        }
        self.owned.sort_unstable();
        gained.sort_unstable();
        Ok(gained)
    }
}

/// One session over the member's partitions: restore, read until the
/// group changes (or the input ends, or a stop), then a final checkpoint.
/// Returns whether the run is over.
#[allow(clippy::too_many_arguments)]
fn session(
    pipeline: &mut Pipeline,
    cp: &mut Checkpointer,
    source: &mut dyn Source,
    sinks: &mut Sinks,
    options: &RunOptions,
    on_emit: &mut dyn FnMut(Emitted<'_>),
    member: &mut Member,
    gained: &[i32],
) -> Result<bool, PipelineError> {
    let mut operator = pipeline.another_operator()?;
    let job = &pipeline.job;
    let group = job.config.name.as_str();
    let owned = member.owned.clone();
    let mut part = Part::new(job, operator.as_mut(), owned.clone());
    cp.set_owned(&owned);
    let resume = cp.restore_partitions(&mut part, sinks, &owned, gained, member.takeover_wait)?;
    let take: Vec<(i32, Option<i64>)> = resume.iter().filter(|(p, _)| gained.contains(p)).copied().collect();
    if std::mem::take(&mut member.assign_due) {
        source.take_partitions(&take)?;
    }
    if !owned.is_empty() {
        tracing::info!("owns partitions {owned:?} (gained {gained:?})");
    }
    if let Some(metrics) = &member.metrics {
        metrics.group_session(&member.name, &owned, gained.len());
    }
    part.set_dues();
    let summary = &mut member.summary;
    // The member's newest checkpoint must hold what it owns before it
    // reads anything: whoever gets these partitions next restores from it.
    // One that fails is taken again, and past `tolerable_failures` the
    // run fails, having sent nothing.
    if !owned.is_empty() {
        summary.checkpoints += cp.take_required(&[Share::of(&part)], &mut |o| source.commit(o), sinks)?;
    }
    let key_field = job.config.format.key.clone().unwrap_or_default();
    let source_name = source.name().to_string();
    let mut out = Collector::new(sinks, summary, on_emit, &source_name, &key_field, job);
    part.fire_restored(&mut out);
    // Bounded: the partitions whose windows fired at their end.
    let mut fired_end: BTreeSet<i32> = BTreeSet::new();
    let mut asked_finished: Option<Instant> = None;
    let mut ended = false;
    loop {
        if options.stop.load(Ordering::Relaxed) {
            ended = true;
            break;
        }
        part.step(source, options.poll_wait, &mut out)?;
        if let Some(metrics) = &options.metrics {
            metrics.publish(out.summary, &mut member.published);
        }
        if let Some(slot) = &member.watermark {
            slot.set(part.watermarks.lowest());
        }
        if !owned.is_empty() {
            super::move_idle_alone(&mut part, Some(&mut *cp), source, &mut out, &options.checkpoint_now)?;
        }
        if let Some(e) = out.take_failure() {
            return Err(e);
        }
        if member.bounded.is_some() {
            // A partition read to its end fires every window it holds,
            // once; a checkpoint of that comes before its record.
            let newly: Vec<i32> = source
                .finished_partitions()
                .into_iter()
                .filter(|p| owned.contains(p) && !fired_end.contains(p))
                .collect();
            if !newly.is_empty() {
                for &p in &newly {
                    part.operator.handle_watermark(Some(p), i64::MAX, &mut out);
                    fired_end.insert(p);
                }
                // Recorded finished only once a checkpoint holds that (one
                // that fails is taken again).
                out.summary.checkpoints +=
                    cp.take_required(&[Share::of(&part)], &mut |o| source.commit(o), out.sinks)?;
                for p in newly {
                    mark_finished(cp.storage(), group, p)?;
                    tracing::info!("partition {p} read to its end; its windows fired");
                }
            }
            let all_mine = owned.iter().all(|p| fired_end.contains(p));
            if all_mine && asked_finished.is_none_or(|at| at.elapsed() >= FINISHED_EVERY) {
                asked_finished = Some(Instant::now());
                let topic: Vec<i32> = member.bounded.iter().flatten().map(|&(p, _)| p).collect();
                if all_finished(cp.storage(), group, &topic)? {
                    ended = true;
                    break;
                }
            }
        }
        let changes = source.group_changes();
        if !changes.is_empty() {
            member.pending.extend(changes);
            // Partitions the group gave away already get no final
            // checkpoint: its flush would write for them.
            if member.pending.iter().any(|c| matches!(c, GroupChange::Revoked { lost: true, .. })) {
                drop(out);
                return member.act_on_changes(cp, source, sinks).map(|_| false);
            }
            break;
        }
        if owned.is_empty() {
            continue;
        }
        out.summary.checkpoints += cp.complete(&mut |o| source.commit(o), out.sinks, false)?;
        if cp.due(Instant::now(), &options.checkpoint_now) {
            cp.take(&[Share::of(&part)], out.sinks)?;
            options.checkpoint_now.store(false, Ordering::Relaxed);
            out.summary.checkpoints += cp.complete(&mut |o| source.commit(o), out.sinks, false)?;
        }
    }
    part.operator.finish(out.summary);
    if let Some(metrics) = &options.metrics {
        metrics.publish(out.summary, &mut member.published);
    }
    drop(out);
    // The session's last checkpoint: whoever the group gives these
    // partitions to goes on from exactly here.
    if !owned.is_empty() {
        member.summary.checkpoints += cp.finish(&[Share::of(&part)], &mut |o| source.commit(o), sinks)?;
    }
    Ok(ended)
}

/// This process's name in the group's storage: the host, the process and
/// the time it started, so that no two members share a folder.
fn member_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` has room for the name and its terminating NUL.
    let host = match unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } {
        0 => {
            let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..len]).into_owned()
        }
        _ => "host".to_string(),
    };
    let host: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{host}-{}-{started}", std::process::id())
}

/// The end offsets of a bounded run, the same for every member: the first
/// member to start records those it saw (`seen`), and every member uses
/// the record.
fn agree_on_ends(
    storage: &dyn CheckpointStorage,
    group: &str,
    seen: &[(i32, i64)],
) -> Result<Vec<(i32, i64)>, PipelineError> {
    let path = format!("{group}/group/ends");
    let text: String = seen.iter().map(|(p, end)| format!("{p} {end}\n")).collect();
    let storage_error = |e: StorageError| PipelineError::Checkpoint(e.into());
    if storage.write_new(&path, text.as_bytes()).map_err(storage_error)? {
        tracing::info!("first member of the group: the run ends at offsets {seen:?}");
    }
    let bytes = storage.read(&path).map_err(storage_error)?;
    let bad = |reason: String| {
        PipelineError::Checkpoint(super::CheckpointError::Content {
            checkpoint: 0,
            file: path.clone(),
            reason,
        })
    };
    let mut ends = Vec::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let mut words = line.split_whitespace().map(str::parse::<i64>);
        match (words.next(), words.next(), words.next()) {
            (Some(Ok(p)), Some(Ok(end)), None) if i32::try_from(p).is_ok() => ends.push((p as i32, end)),
            _ => return Err(bad(format!("'{line}' is not a partition and its end offset"))),
        }
    }
    let partitions = |list: &[(i32, i64)]| list.iter().map(|&(p, _)| p).collect::<BTreeSet<i32>>();
    if partitions(&ends) != partitions(seen) {
        return Err(bad(format!(
            "it records partitions {:?}, but the topic has {:?} now: remove the group's record ({group}/group in the \
             checkpoint storage) to start a new bounded run",
            partitions(&ends),
            partitions(seen)
        )));
    }
    Ok(ends)
}

/// Records that partition `p` was read to its end, its windows fired and
/// checkpointed.
fn mark_finished(storage: &dyn CheckpointStorage, group: &str, p: i32) -> Result<(), PipelineError> {
    storage
        .write(&format!("{group}/group/finished-{p}"), b"")
        .map_err(|e| PipelineError::Checkpoint(e.into()))
}

/// Whether every one of `partitions` is recorded finished.
fn all_finished(
    storage: &dyn CheckpointStorage,
    group: &str,
    partitions: &[i32],
) -> Result<bool, PipelineError> {
    let names = storage.list(&format!("{group}/group")).map_err(|e| PipelineError::Checkpoint(e.into()))?;
    Ok(partitions.iter().all(|p| names.iter().any(|n| *n == format!("finished-{p}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_agree_on_the_first_members_end_offsets_and_on_what_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/storage", dir.path().display());
        let storage = crate::checkpoint::open_storage(&url).unwrap();
        let storage = storage.as_ref();
        let first = [(0, 120), (1, 0), (2, 77)];
        assert_eq!(agree_on_ends(storage, "job", &first).unwrap(), first);
        // A member that starts later, when more was written, still ends
        // where the first one said.
        let later = [(0, 150), (1, 30), (2, 77)];
        assert_eq!(agree_on_ends(storage, "job", &later).unwrap(), first);
        // A topic with other partitions than the record: refused, saying
        // how to start afresh.
        let error = agree_on_ends(storage, "job", &[(0, 1), (1, 1)]).unwrap_err().to_string();
        assert!(error.contains("job/group") && error.contains("new bounded run"), "{error}");

        assert!(!all_finished(storage, "job", &[0, 1, 2]).unwrap());
        mark_finished(storage, "job", 0).unwrap();
        mark_finished(storage, "job", 2).unwrap();
        assert!(!all_finished(storage, "job", &[0, 1, 2]).unwrap());
        mark_finished(storage, "job", 1).unwrap();
        assert!(all_finished(storage, "job", &[0, 1, 2]).unwrap());
        assert!(all_finished(storage, "job", &[]).unwrap());
    }

    #[test]
    fn a_member_name_is_a_single_path_part_and_differs_between_members() {
        let name = member_name();
        assert!(!name.is_empty() && !name.contains('/') && !name.contains(".."), "{name}");
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(name, member_name(), "two members started at different times");
    }
}
