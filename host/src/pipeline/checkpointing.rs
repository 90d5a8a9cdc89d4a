//! Taking checkpoints in the loop, and restoring the newest one when a job
//! starts. A checkpoint is taken between polls: the sinks are flushed, and
//! each source partition's next offset, clock and window state, and each
//! sink's state (a file's length; a Kafka sink's sequence numbers and
//! offsets), are snapshot in memory; a writer thread writes them
//! (`checkpoint::write_complete`) while the loop goes on, and only once
//! they are written are the sinks told (a transactional one commits) and
//! the offsets committed to the source.

use super::Sinks;
use super::operator::Operator;
use super::part::Part;
use super::positions::ReadPositions;
use super::upgrade::{PluginFacts, Upgrade, upgrade_from};
use crate::checkpoint::{
    Checkpoint, CheckpointStorage, DEFAULT_CALL_TIMEOUT, ReadError, StorageError, checkpoint_ids, forked,
    latest_complete, open_storage_with, read_complete, write_files, write_manifest,
};
use crate::job::{CheckpointConfig, Job};
use crate::source::Source;
use crate::time::{Watermarks, now_ms};
use crate::window::SnapshotError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a checkpoint takes of one share of the job's partitions (one
/// worker's, for a parallel job).
pub(super) struct Share<'a> {
    /// The operator holding the share's window state.
    pub operator: &'a dyn Operator,
    /// The share's clocks.
    pub watermarks: &'a Watermarks,
    /// How far the share has read.
    pub read: &'a ReadPositions,
}

impl<'a> Share<'a> {
    /// The share a part holds.
    pub(super) fn of(part: &'a Part<'_>) -> Share<'a> {
        Share { operator: &*part.operator, watermarks: &part.watermarks, read: &part.read }
    }
}

/// Commits offsets to the source, once a checkpoint holds them.
pub(super) type Commit<'a> = &'a mut dyn FnMut(&[(i32, i64)]) -> Result<(), crate::source::SourceError>;

/// The version of the partition files' layout.
pub(super) const LAYOUT: u32 = 2;

/// The checkpoint file that records the job's function ([`PluginFacts`]).
const PLUGIN_FILE: &str = "plugin";

/// A group member's checkpoint file that lists the partitions it owned.
pub(super) const OWNED_FILE: &str = "owned";

/// The partitions of an `owned` file, one per line.
fn owned_text(owned: &[i32]) -> String {
    owned.iter().map(|p| format!("{p}\n")).collect()
}

/// The version of the `sinks` file's layout. Version 1 held a length per
/// sink (file sinks only); version 2 holds each sink's opaque state.
const SINKS_LAYOUT: u32 = 2;

/// A checkpoint that could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A checkpoint could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Window state that could not be restored.
    #[error(transparent)]
    State(#[from] SnapshotError),
    /// A checkpoint file whose content makes no sense.
    #[error("checkpoint {checkpoint}: file {file}: {reason}")]
    Content {
        /// The checkpoint's id.
        checkpoint: u64,
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing a checkpoint took longer than `[checkpoint] timeout`.
    #[error("checkpoint {checkpoint} was not written within {after:?} ([checkpoint] timeout)")]
    Timeout {
        /// The checkpoint's id.
        checkpoint: u64,
        /// The timeout.
        after: Duration,
    },
    /// A savepoint that cannot be taken or read.
    #[error("savepoint {url}: {reason}")]
    Savepoint {
        /// Its storage's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The job's function cannot take over the checkpoint's window state
    /// (a plugin upgrade that does not fit, or a migration that failed).
    #[error("checkpoint {checkpoint} cannot be restored with this plugin: {reason}")]
    Upgrade {
        /// The checkpoint's id.
        checkpoint: u64,
        /// Why not.
        reason: String,
    },
    /// The job changed since the checkpoint in a way its state cannot
    /// follow.
    #[error(
        "checkpoint {checkpoint} was taken with {what} {then}, but the job now has {now}: \
         restore it with the job as it was, or give the job another name to start afresh"
    )]
    Mismatch {
        /// The checkpoint's id.
        checkpoint: u64,
        /// What changed.
        what: &'static str,
        /// Its value in the checkpoint.
        then: String,
        /// Its value now.
        now: String,
    },
}

/// Which checkpoint a run starts from (`weir run --from-checkpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The newest complete one, skipping damaged ones (the default).
    #[default]
    Latest,
    /// This one, by id; it must be complete.
    Checkpoint(u64),
    /// None: start afresh (later checkpoints continue the ids).
    Nothing,
    /// A savepoint: the newest complete checkpoint of the job in the
    /// storage at this URL (see [`copy_savepoint`]). Later checkpoints go to
    /// the job's own storage, with ids after the savepoint's.
    Savepoint(String),
}

impl std::str::FromStr for RestoreFrom {
    type Err = String;

    /// `latest`, `none`, a checkpoint id, or a checkpoint's folder (its
    /// last part is `chk-<id>`).
    fn from_str(text: &str) -> Result<RestoreFrom, String> {
        let last = text.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        match last {
            "latest" => Ok(RestoreFrom::Latest),
            "none" => Ok(RestoreFrom::Nothing),
            _ => {
                last.strip_prefix("chk-").unwrap_or(last).parse().map(RestoreFrom::Checkpoint).map_err(|_| {
                    format!("expected latest, none, a checkpoint id or a chk-<id> folder, got '{text}'")
                })
            }
        }
    }
}

/// What a run restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The checkpoint's id.
    pub checkpoint: u64,
    /// How many source partitions it held.
    pub partitions: usize,
}

/// One source partition of a checkpoint, as `weir checkpoints inspect`
/// shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSummary {
    /// The partition.
    pub partition: i32,
    /// The offset a restored job reads next.
    pub next_offset: i64,
    /// The latest event time seen, if any.
    pub max_event_time: Option<i64>,
    /// Its watermark (what its windows fire up to after a restore).
    pub watermark: i64,
    /// What its window state holds.
    pub state: crate::window::SnapshotSummary,
}

/// Whether checkpoint `id`, of `files`, holds the state of this job's
/// window and function (`identity`), and what its state needs to be taken
/// over by this version of the function (`facts`).
fn check_fit(
    identity: &[(&'static str, String)],
    facts: &PluginFacts,
    id: u64,
    files: &[(String, Vec<u8>)],
) -> Result<Upgrade, CheckpointError> {
    let file = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice());
    let text = |name: &str| file(name).map(|b| String::from_utf8_lossy(b).into_owned());
    for (key, now) in identity {
        let Some(then) = text(&format!("identity-{key}")) else { continue };
        // Older checkpoints name the function with its version.
        let same = match *key {
            "function" => then.split('@').next() == Some(now.as_str()),
            _ => &then == now,
        };
        if !same {
            return Err(CheckpointError::Mismatch { checkpoint: id, what: key, then, now: now.clone() });
        }
    }
    let upgrade = |reason: String| CheckpointError::Upgrade { checkpoint: id, reason };
    let Some(bytes) = file(PLUGIN_FILE) else {
        // A checkpoint from before plugin upgrades records the function's
        // `name@version` and sha256 only: it fits that version alone.
        let then = text("identity-function").unwrap_or_default();
        if then == facts.reference() || text("plugin-sha256").as_deref() == Some(facts.sha256.as_str()) {
            return Ok(Upgrade::Keep);
        }
        return Err(upgrade(format!(
            "it was taken with {then} by a weir that did not record what an upgrade needs: \
             restore it with {then}, then take a new savepoint to upgrade from"
        )));
    };
    let then = PluginFacts::from_bytes(bytes).map_err(|reason| CheckpointError::Content {
        checkpoint: id,
        file: PLUGIN_FILE.into(),
        reason,
    })?;
    upgrade_from(&then, facts).map_err(upgrade)
}

/// Migrates `operator`'s restored state (of checkpoint `id`) from state
/// version `from`; the number of accumulators migrated.
fn migrate(operator: &mut dyn Operator, id: u64, from: u32) -> Result<u64, CheckpointError> {
    operator.migrate_state(from).map_err(|reason| CheckpointError::Upgrade {
        checkpoint: id,
        reason: format!("migrating its accumulators from state version {from} failed: {reason}"),
    })
}

/// What a checkpoint holds, per source partition, checked as a restore
/// would check it.
pub fn summarize(checkpoint: &Checkpoint) -> Result<Vec<PartitionSummary>, CheckpointError> {
    let id = checkpoint.manifest.checkpoint;
    let mut out = Vec::new();
    for (name, bytes) in &checkpoint.files {
        let Some(p) = name.strip_prefix("partition-") else { continue };
        let content = |reason: &str| CheckpointError::Content {
            checkpoint: id,
            file: name.clone(),
            reason: reason.into(),
        };
        let partition: i32 = p.parse().map_err(|_| content("not a partition number"))?;
        let entry = decode_partition(partition, bytes).ok_or_else(|| content("not a partition record"))?;
        let state = crate::window::summarize_snapshot(partition, &entry.state)?;
        out.push(PartitionSummary {
            partition,
            next_offset: entry.next_offset,
            max_event_time: entry.max_event_time,
            watermark: entry.watermark.max(state.watermark),
            state,
        });
    }
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// Takes a job's checkpoints and restores them.
pub(super) struct Checkpointer {
    storage: std::sync::Arc<dyn CheckpointStorage>,
    job: String,
    /// The window and function (by name) the state belongs to: a restore
    /// checks them.
    identity: [(&'static str, String); 2],
    /// The function's version, world, inputs and state version: a restore
    /// with another version checks that it can take the state over.
    facts: PluginFacts,
    /// Recorded with each checkpoint: the job file as it was read, the
    /// plugin's sha256 (for the record), and the plugin's facts.
    records: [(&'static str, String); 3],
    interval: Duration,
    min_pause: Duration,
    timeout: Duration,
    retain: usize,
    /// A member of a group: how old another member's newest checkpoint
    /// must be before it may give way (see `member_checkpoints`).
    cleanup_delay: Duration,
    /// Failed checkpoints tolerated in a row, how many failed in a row
    /// now, and how many failed in all.
    tolerable: u32,
    failed_in_row: u32,
    failed: u64,
    next_id: u64,
    last_started: Instant,
    last_ended: Instant,
    in_flight: Option<InFlight>,
    /// A sink of the checkpoint in flight commits when it completes: the
    /// loop waits for it before sending more.
    commit_pending: bool,
    /// The writer of the last completed checkpoint, maybe still removing
    /// older ones: the end of a run waits for it.
    writer: Option<std::thread::JoinHandle<()>>,
    /// Where each checkpoint's end is recorded (a host's job).
    observer: Option<std::sync::Arc<super::LiveMetrics>>,
    /// A member of a consumer group: the folder the group shares (the
    /// job's name); `job` is then the member's own folder in it.
    group: Option<String>,
    /// A member of a group: the partitions it owns, recorded in each of
    /// its checkpoints (`owned`), read or not.
    owned: Option<Vec<i32>>,
}

/// One source partition in a checkpoint.
struct PartitionEntry {
    partition: i32,
    next_offset: i64,
    max_event_time: Option<i64>,
    /// What the partition's windows fire up to after a restore: what they
    /// had fired up to, or the watermark an idle move put past what its
    /// events say (recorded before the move fires).
    watermark: i64,
    state: Vec<u8>,
}

fn encode_partition(e: &PartitionEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + e.state.len());
    out.extend_from_slice(&LAYOUT.to_le_bytes());
    out.extend_from_slice(&e.next_offset.to_le_bytes());
    out.extend_from_slice(&e.max_event_time.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&e.watermark.to_le_bytes());
    out.extend_from_slice(&e.state);
    out
}

/// The next offset of a partition record, read without copying its state.
pub(super) fn decode_next_offset(bytes: &[u8]) -> Option<i64> {
    let layout = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    (layout == LAYOUT).then_some(i64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?))
}

fn decode_partition(partition: i32, bytes: &[u8]) -> Option<PartitionEntry> {
    let layout = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let next_offset = i64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
    let max = i64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
    let watermark = i64::from_le_bytes(bytes.get(20..28)?.try_into().ok()?);
    (layout == LAYOUT).then(|| PartitionEntry {
        partition,
        next_offset,
        max_event_time: (max > i64::MIN).then_some(max),
        watermark,
        state: bytes[28..].to_vec(),
    })
}

/// Each sink's state: the output, dead-letter and late sinks, in that
/// order, `None` for one the job does not have.
type SinkStates = [Option<Vec<u8>>; 3];

fn encode_sinks(states: &SinkStates) -> Vec<u8> {
    let mut out = SINKS_LAYOUT.to_le_bytes().to_vec();
    for state in states {
        out.push(u8::from(state.is_some()));
        let bytes = state.as_deref().unwrap_or_default();
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn decode_sinks(bytes: &[u8]) -> Result<SinkStates, String> {
    let layout = bytes.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let short = || "the record is cut short".to_string();
    let mut out: SinkStates = [None, None, None];
    match layout {
        // A file length per sink, as 8 bytes: the file sink's state.
        Some(1) => {
            if bytes.len() != 4 + 3 * 9 {
                return Err(short());
            }
            for (i, slot) in out.iter_mut().enumerate() {
                let at = 4 + 9 * i;
                *slot = (bytes[at] == 1).then(|| bytes[at + 1..at + 9].to_vec());
            }
        }
        Some(SINKS_LAYOUT) => {
            let mut at = 4;
            for slot in &mut out {
                let present = *bytes.get(at).ok_or_else(short)?;
                let len = bytes.get(at + 1..at + 5).ok_or_else(short)?;
                let len = u32::from_le_bytes(len.try_into().map_err(|_| short())?) as usize;
                at += 5;
                let state = bytes.get(at..at + len).ok_or_else(short)?;
                at += len;
                *slot = (present == 1).then(|| state.to_vec());
            }
            if at != bytes.len() {
                return Err("bytes after the last sink".into());
            }
        }
        Some(other) => {
            return Err(format!(
                "layout version {other} is unknown: this weir reads versions 1 and {SINKS_LAYOUT} (was the checkpoint written by a newer weir?)"
            ));
        }
        None => return Err(short()),
    }
    Ok(out)
}

impl Checkpointer {
    /// The checkpointer of `job`, if it has a `[checkpoint]` section;
    /// `facts` are its function's.
    pub(super) fn open(
        job: &Job,
        config: &CheckpointConfig,
        facts: PluginFacts,
    ) -> Result<Self, CheckpointError> {
        Ok(Checkpointer::with_storage(
            job,
            config,
            facts,
            open_storage_with(&config.storage, config.storage_timeout)?.into(),
        ))
    }

    /// The checkpointer of `job` over `storage`.
    fn with_storage(
        job: &Job,
        config: &CheckpointConfig,
        facts: PluginFacts,
        storage: std::sync::Arc<dyn CheckpointStorage>,
    ) -> Checkpointer {
        let window = job.window.map_or_else(|| "none".to_string(), |w| w.to_string());
        let now = Instant::now();
        Checkpointer {
            storage,
            job: job.config.name.clone(),
            identity: [("window", window), ("function", facts.name.clone())],
            records: [
                ("job.toml", toml::to_string(&job.config).unwrap_or_default()),
                ("plugin-sha256", facts.sha256.clone()),
                (PLUGIN_FILE, String::from_utf8(facts.to_bytes()).unwrap_or_default()),
            ],
            facts,
            interval: config.interval,
            min_pause: config.min_pause,
            timeout: config.timeout,
            retain: config.retain.max(1) as usize,
            cleanup_delay: config.cleanup_delay.unwrap_or(crate::job::DEFAULT_CLEANUP_DELAY),
            tolerable: config.tolerable_failures,
            failed_in_row: 0,
            failed: 0,
            next_id: 1,
            last_started: now,
            last_ended: now,
            in_flight: None,
            commit_pending: false,
            writer: None,
            observer: None,
            group: None,
            owned: None,
        }
    }

    /// A member of a group: records `owned` in its checkpoints from now on.
    pub(super) fn set_owned(&mut self, owned: &[i32]) {
        self.owned = Some(owned.to_vec());
    }

    /// A member of a consumer group (`[source] scale_out`): its
    /// checkpoints go to a folder of its own, `<job>/members/<member>`, of
    /// the storage the group shares (see `group.rs` for the layout).
    pub(super) fn for_member(mut self, member: &str) -> Checkpointer {
        let group = self.job.clone();
        self.job = format!("{group}/members/{member}");
        self.group = Some(group);
        self
    }

    /// The storage the checkpoints go to.
    pub(super) fn storage(&self) -> &dyn CheckpointStorage {
        self.storage.as_ref()
    }

    /// A member of a group: restores `partitions` into `part` (a fresh
    /// one), each from the checkpoint that holds it furthest along, of any
    /// member or hand-over, and the sinks from the pieces of those
    /// checkpoints' states that belong to the partitions taken from each.
    /// Returns where each partition resumes (`None`: no checkpoint holds
    /// it, it starts where the source's `start` says).
    ///
    /// Before a sink reads back what was written after those checkpoints,
    /// it waits `takeover_wait` (the lease's message timeout) if one of the
    /// `gained` partitions had an owner that did not hand it over: all
    /// that owner queued has expired by then (see `kafka::lease`).
    pub(super) fn restore_partitions(
        &mut self,
        part: &mut Part<'_>,
        sinks: &mut Sinks,
        partitions: &[i32],
        gained: &[i32],
        takeover_wait: Duration,
    ) -> Result<Vec<(i32, Option<i64>)>, super::PipelineError> {
        let Some(group) = self.group.clone() else {
            return Err(super::PipelineError::Parallel("restore_partitions: not a member of a group".into()));
        };
        self.next_id = checkpoint_ids(self.storage.as_ref(), &self.job)
            .map_err(CheckpointError::from)?
            .last()
            .map_or(1, |id| id + 1);
        let candidates = group_checkpoints(self.storage.as_ref(), &group).map_err(CheckpointError::from)?;
        // Per partition: the candidate and entry furthest along.
        let mut chosen: std::collections::BTreeMap<i32, (usize, PartitionEntry)> = Default::default();
        for (c, checkpoint) in candidates.iter().enumerate() {
            let id = checkpoint.manifest.checkpoint;
            for (name, bytes) in &checkpoint.files {
                let Some(partition) = name.strip_prefix("partition-").and_then(|p| p.parse::<i32>().ok())
                else {
                    continue;
                };
                if !partitions.contains(&partition) {
                    continue;
                }
                let entry = decode_partition(partition, bytes).ok_or_else(|| CheckpointError::Content {
                    checkpoint: id,
                    file: format!("{} {name}", checkpoint.manifest.job),
                    reason: "not a partition record".into(),
                })?;
                if chosen.get(&partition).is_none_or(|(_, best)| entry.next_offset > best.next_offset) {
                    chosen.insert(partition, (c, entry));
                }
            }
        }
        // Every checkpoint used must fit this function, the same way.
        let mut used: Vec<usize> = chosen.values().map(|(c, _)| *c).collect();
        used.sort_unstable();
        used.dedup();
        let mut upgrade = None;
        for &c in &used {
            let checkpoint = &candidates[c];
            let fit =
                check_fit(&self.identity, &self.facts, checkpoint.manifest.checkpoint, &checkpoint.files)?;
            match (&upgrade, fit) {
                (None, fit) => upgrade = Some(fit),
                (Some(a), b) if *a == b => {}
                (Some(_), _) => {
                    return Err(CheckpointError::Upgrade {
                        checkpoint: checkpoint.manifest.checkpoint,
                        reason: "the members' checkpoints hold state of different state versions: \
                                 upgrade every member the same way"
                            .into(),
                    }
                    .into());
                }
            }
        }
        for (&partition, (_, entry)) in &chosen {
            part.operator.restore_partition(partition, &entry.state).map_err(CheckpointError::from)?;
            let fired = part.operator.watermark(partition).max(entry.watermark);
            part.watermarks.restore(partition, entry.max_event_time, fired);
            if entry.next_offset > 0 {
                part.read.advance(partition, entry.next_offset - 1);
            }
        }
        if let Some(Upgrade::Migrate { from }) = upgrade {
            migrate(&mut *part.operator, 0, from)?;
        }
        // Each sink's state, from the pieces of the checkpoints used. A
        // partition that no checkpoint holds may still have output: a
        // member that took it fresh and died before a checkpoint held it
        // wrote after its own newest checkpoint, so every member's newest
        // checkpoint is read back from then.
        if partitions.iter().any(|p| !chosen.contains_key(p)) {
            used = (0..candidates.len()).collect();
        }
        // Another member that owned a gained partition and did not hand it
        // over may be suspended with output queued for it: one whose
        // checkpoint it is restored from, or one that listed it since its
        // newest hand-over (it took the partition from there).
        let members = format!("{group}/members/");
        let of_other_member =
            |c: &Checkpoint| c.manifest.job.starts_with(&members) && c.manifest.job != self.job;
        let unhanded = gained.iter().any(|&p| {
            chosen.get(&p).is_some_and(|(c, _)| of_other_member(&candidates[*c]))
                || super::member_checkpoints::taken_since_handed_over(&candidates, &group, &self.job, p)
        });
        if unhanded && !takeover_wait.is_zero() {
            tracing::info!(
                "taking over partitions that were not handed over: waiting {takeover_wait:?} for what their \
                 last owner may have queued to expire"
            );
            std::thread::sleep(takeover_wait);
        }
        let mut pieces: [Vec<(Vec<i32>, Vec<u8>)>; 3] = Default::default();
        for &c in &used {
            let checkpoint = &candidates[c];
            let id = checkpoint.manifest.checkpoint;
            let bytes = checkpoint.files.iter().find(|(n, _)| n == "sinks").map(|(_, b)| b);
            let content =
                |reason: String| CheckpointError::Content { checkpoint: id, file: "sinks".into(), reason };
            let states = decode_sinks(bytes.ok_or_else(|| content("missing".into()))?).map_err(content)?;
            let taken: Vec<i32> =
                chosen.iter().filter(|(_, (from, _))| *from == c).map(|(p, _)| *p).collect();
            for (slot, state) in pieces.iter_mut().zip(states) {
                slot.push((taken.clone(), state.unwrap_or_default()));
            }
        }
        for (sink, pieces) in sinks.slots().into_iter().zip(&pieces) {
            let Some(sink) = sink else { continue };
            match pieces.is_empty() {
                true => sink.restore(None)?,
                false => sink.restore(Some(&sink.merge_states(pieces)?))?,
            }
        }
        let resume: Vec<(i32, Option<i64>)> = partitions
            .iter()
            .map(|&p| (p, chosen.get(&p).map(|(_, e)| e.next_offset).filter(|&o| o > 0)))
            .collect();
        // Members that died or left: their checkpoints go once others hold
        // all they held.
        let obsolete =
            super::member_checkpoints::obsolete(&candidates, &group, &self.job, now_ms(), self.cleanup_delay);
        super::member_checkpoints::remove(self.storage.as_ref(), &candidates, &obsolete);
        tracing::info!(
            "member {}: restored {} of partitions {partitions:?} from {} checkpoint(s) of the group",
            self.job,
            chosen.len(),
            used.len()
        );
        Ok(resume)
    }

    /// A member of a group gives `partitions` back: their state in its
    /// newest checkpoint (the one it has just taken) is written as each
    /// one's hand-over, `<job>/handover/p-<p>`, which outlives the member's
    /// own checkpoints, for whoever the group gives them to.
    pub(super) fn hand_over(&self, partitions: &[i32]) -> Result<(), CheckpointError> {
        let Some(group) = &self.group else { return Ok(()) };
        let storage = self.storage.as_ref();
        let Some(newest) = latest_complete(storage, &self.job)? else { return Ok(()) };
        for &partition in partitions {
            let name = format!("partition-{partition}");
            if !newest.files.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let files: Vec<(String, Vec<u8>)> = newest
                .files
                .iter()
                .filter(|(n, _)| *n == name || !n.starts_with("partition-"))
                .cloned()
                .collect();
            let folder = format!("{group}/handover/p-{partition}");
            let id = checkpoint_ids(storage, &folder)?.last().map_or(1, |id| id + 1);
            crate::checkpoint::write_complete(storage, &folder, id, now_ms(), &files)?;
            // The one before stays, should this one be damaged.
            remove_older(storage, &folder, id, 2);
        }
        Ok(())
    }

    /// Records how each checkpoint ends (its time, duration and size) in
    /// `metrics`' history.
    pub(super) fn observe(&mut self, metrics: Option<std::sync::Arc<super::LiveMetrics>>) {
        self.observer = metrics;
    }

    /// Whether a checkpoint is being written (a new one would be skipped).
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a checkpoint is due at `now`: its interval passed, or one
    /// was asked for (`RunOptions::checkpoint_now`, a savepoint).
    /// The caller clears `asked` once it has taken the checkpoint.
    pub(super) fn due(&self, now: Instant, asked: &AtomicBool) -> bool {
        if asked.load(Ordering::Relaxed) && !self.busy() {
            return true;
        }
        now.duration_since(self.last_started) >= self.interval
            && now.duration_since(self.last_ended) >= self.min_pause
    }

    /// Restores the newest complete checkpoint, if there is one: the
    /// operator's state, the clocks, the source's offsets and the sinks'
    /// states. Without one, the sinks start afresh (file sinks are
    /// emptied, as a fresh run's are).
    ///
    /// Each partition goes to the part that reads it (`parts[i]` reads
    /// with `sources[i]`); one that no part reads, to the first.
    pub(super) fn restore(
        &mut self,
        parts: &mut [&mut Part<'_>],
        sources: &mut [&mut dyn Source],
        sinks: &mut Sinks,
        from: RestoreFrom,
    ) -> Result<Option<Restored>, super::PipelineError> {
        self.next_id = checkpoint_ids(self.storage.as_ref(), &self.job)
            .map_err(CheckpointError::from)?
            .last()
            .map_or(1, |id| id + 1);
        let chosen = match from {
            RestoreFrom::Latest => {
                latest_complete(self.storage.as_ref(), &self.job).map_err(CheckpointError::from)?
            }
            RestoreFrom::Savepoint(url) => {
                let savepoint =
                    open_storage_with(&url, DEFAULT_CALL_TIMEOUT).map_err(CheckpointError::from)?;
                let found = latest_complete(savepoint.as_ref(), &self.job).map_err(CheckpointError::from)?;
                let Some(found) = found else {
                    return Err(CheckpointError::Savepoint {
                        url,
                        reason: format!("it holds no complete checkpoint of job '{}'", self.job),
                    }
                    .into());
                };
                // Checked before it becomes the job's: a savepoint this
                // function cannot take over leaves the job's storage as it was.
                check_fit(&self.identity, &self.facts, found.manifest.checkpoint, &found.files)?;
                // Copied into the job's own storage as its newest
                // checkpoint, so that a restart before the next one starts
                // from the savepoint too.
                let id = self.next_id.max(found.manifest.checkpoint + 1);
                let (created, files) = (found.manifest.created_ms, &found.files);
                crate::checkpoint::write_complete(self.storage.as_ref(), &self.job, id, created, files)
                    .map_err(CheckpointError::from)?;
                self.next_id = id + 1;
                Some(found)
            }
            // Asked for by id: a damaged one is an error, not skipped.
            RestoreFrom::Checkpoint(id) => {
                Some(read_complete(self.storage.as_ref(), &self.job, id).map_err(CheckpointError::from)?)
            }
            RestoreFrom::Nothing => None,
        };
        let Some(Checkpoint { manifest, files }) = chosen else {
            for sink in sinks.slots().into_iter().flatten() {
                sink.restore(None)?;
            }
            return Ok(None);
        };
        let id = manifest.checkpoint;
        let upgrade = check_fit(&self.identity, &self.facts, id, &files)?;
        let content = |file: &str, reason: &str| CheckpointError::Content {
            checkpoint: id,
            file: file.to_string(),
            reason: reason.to_string(),
        };
        let mut offsets: Vec<Vec<(i32, i64)>> = vec![Vec::new(); parts.len()];
        let mut sink_states = None;
        for (name, bytes) in &files {
            if name == "sinks" {
                sink_states = Some(decode_sinks(bytes).map_err(|reason| content(name, &reason))?);
            } else if let Some(p) = name.strip_prefix("partition-") {
                let partition: i32 = p.parse().map_err(|_| content(name, "not a partition number"))?;
                let entry = decode_partition(partition, bytes)
                    .ok_or_else(|| content(name, "not a partition record"))?;
                let owner = parts.iter().position(|p| p.partitions.contains(&partition)).unwrap_or(0);
                let Some(part) = parts.get_mut(owner) else { continue };
                part.operator.restore_partition(partition, &entry.state).map_err(CheckpointError::from)?;
                let fired = part.operator.watermark(partition).max(entry.watermark);
                part.watermarks.restore(partition, entry.max_event_time, fired);
                if entry.next_offset > 0 {
                    part.read.advance(partition, entry.next_offset - 1);
                    offsets[owner].push((partition, entry.next_offset));
                }
            }
        }
        if let Upgrade::Migrate { from } = upgrade {
            let mut migrated = 0;
            for part in parts.iter_mut() {
                migrated += migrate(&mut *part.operator, id, from)?;
            }
            tracing::info!(
                "migrated {migrated} accumulators of checkpoint {id} from state version {from} to {}'s {}",
                self.facts.reference(),
                self.facts.state_version
            );
        }
        let states = sink_states.ok_or_else(|| content("sinks", "missing"))?;
        for (sink, state) in sinks.slots().into_iter().zip(&states) {
            if let Some(sink) = sink {
                sink.restore(state.as_deref())?;
            }
        }
        for (source, offsets) in sources.iter_mut().zip(&offsets) {
            source.seek(offsets)?;
        }
        let partitions = offsets.iter().map(Vec::len).sum();
        tracing::info!("restored checkpoint {id} of job '{}' ({partitions} partitions)", self.job);
        Ok(Some(Restored { checkpoint: id, partitions }))
    }

    /// Checks that the function can take over the window state of the
    /// savepoint at `url`, as a restore from it would, without changing
    /// anything: the identity and the plugin facts, and, for an upgrade
    /// that migrates, the migration itself, into `operator` (a spare one).
    pub(super) fn check_savepoint(
        &self,
        url: &str,
        operator: &mut dyn Operator,
    ) -> Result<Upgrade, CheckpointError> {
        let savepoint = open_storage_with(url, DEFAULT_CALL_TIMEOUT)?;
        let Some(found) = latest_complete(savepoint.as_ref(), &self.job)? else {
            return Err(CheckpointError::Savepoint {
                url: url.to_string(),
                reason: format!("it holds no complete checkpoint of job '{}'", self.job),
            });
        };
        let id = found.manifest.checkpoint;
        let upgrade = check_fit(&self.identity, &self.facts, id, &found.files)?;
        if let Upgrade::Migrate { from } = upgrade {
            for (name, bytes) in &found.files {
                let Some(partition) = name.strip_prefix("partition-").and_then(|p| p.parse().ok()) else {
                    continue;
                };
                let entry = decode_partition(partition, bytes).ok_or_else(|| CheckpointError::Content {
                    checkpoint: id,
                    file: name.clone(),
                    reason: "not a partition record".into(),
                })?;
                operator.restore_partition(partition, &entry.state)?;
            }
            migrate(operator, id, from)?;
        }
        Ok(upgrade)
    }

    /// Takes a checkpoint: asks each sink for its state at this barrier
    /// and snapshots every partition's offset and clock (the loop waits
    /// for this, but not for the window state's encoding, which a forked
    /// child does), then writes them on another thread; [`complete`]
    /// finishes it once the sinks hold what they were sent before the
    /// barrier. Skipped (0) while another one is being written.
    ///
    /// [`complete`]: Checkpointer::complete
    pub(super) fn take(
        &mut self,
        shares: &[Share<'_>],
        sinks: &mut Sinks,
    ) -> Result<u64, super::PipelineError> {
        // One checkpoint in flight at a time: a new one waits its turn.
        if self.in_flight.is_some() {
            return Ok(0);
        }
        self.last_started = Instant::now();
        let mut states: SinkStates = [None, None, None];
        for (slot, sink) in states.iter_mut().zip(sinks.slots()) {
            if let Some(sink) = sink {
                *slot = Some(sink.checkpoint_state()?);
                self.commit_pending |= sink.commits_at_checkpoints();
            }
        }
        let offsets: Vec<(i32, i64)> = shares.iter().flat_map(|s| s.read.to_commit(|_| None)).collect();
        // Each partition with the share that holds it, in partition order.
        let mut partitions: Vec<(i32, usize)> = Vec::new();
        for (i, share) in shares.iter().enumerate() {
            let read = share.read.to_commit(|_| None).into_iter().map(|(p, _)| p);
            partitions.extend(read.chain(share.operator.state_partitions()).map(|p| (p, i)));
        }
        partitions.sort_unstable();
        partitions.dedup_by_key(|&mut (p, _)| p);
        let mut files: Vec<(String, Vec<u8>)> =
            self.identity.iter().map(|(k, v)| (format!("identity-{k}"), v.clone().into_bytes())).collect();
        files.extend(self.records.iter().map(|(k, v)| (k.to_string(), v.clone().into_bytes())));
        files.push(("sinks".into(), encode_sinks(&states)));
        if let Some(owned) = &self.owned {
            files.push((OWNED_FILE.into(), owned_text(owned).into_bytes()));
        }
        let entries: Vec<PartitionEntry> = partitions
            .iter()
            .map(|&(partition, i)| PartitionEntry {
                partition,
                next_offset: offsets.iter().find(|(p, _)| *p == partition).map_or(0, |&(_, o)| o),
                max_event_time: shares[i].watermarks.max_event_time(partition),
                // What a restore fires up to: the windows fired, or an
                // idle move not yet made. Not the watermark the events
                // gave, past windows still waiting for the fire delay:
                // the same records fire them after a restore.
                watermark: shares[i].watermarks.floor(partition).max(shares[i].operator.watermark(partition)),
                state: Vec::new(),
            })
            .collect();
        // The window state is encoded by a forked child from its frozen
        // copy of the process: the loop stalls only for the fork. Where
        // that fails, it is encoded here, the loop waiting.
        let mut encode = |out: &mut Vec<u8>| {
            for &(partition, i) in &partitions {
                let mark = out.len();
                out.extend_from_slice(&[0; 8]);
                shares[i].operator.snapshot_partition(partition, out);
                let len = (out.len() - mark - 8) as u64;
                out[mark..mark + 8].copy_from_slice(&len.to_le_bytes());
            }
        };
        let id = self.next_id;
        let states = match forked::fork_snapshot(&mut encode) {
            Ok(child) => EncodedStates::Forked(child),
            Err(e) => {
                tracing::warn!("checkpoint {id}: {e}; the state is encoded while the job waits");
                let mut out = Vec::new();
                encode(&mut out);
                EncodedStates::Here(out)
            }
        };
        // The loop goes on while another thread collects the state and
        // writes it; `complete` commits the offsets once it is written.
        self.next_id += 1;
        let (storage, job, retain, timeout) =
            (self.storage.clone(), self.job.clone(), self.retain, self.timeout);
        let (done, written) = std::sync::mpsc::channel();
        // The manifest waits until the loop says that what the sinks were
        // sent before the barrier is durable (`complete`): a checkpoint
        // must never be complete while output it accounts for may be lost.
        let (durable, sinks_durable) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::Builder::new()
            .name("weir-checkpoint".into())
            .spawn(move || {
                let mut states = states;
                let started = Instant::now();
                let result = states.collect(id, timeout).and_then(|states| {
                    add_partitions(id, &mut files, entries, &states)?;
                    let entries = write_files(storage.as_ref(), &job, id, &files)?;
                    if sinks_durable.recv_timeout(timeout.saturating_sub(started.elapsed())).is_err() {
                        let reason = "what the sinks were sent before it was not acknowledged in time".into();
                        return Err(CheckpointError::Content {
                            checkpoint: id,
                            file: "manifest".into(),
                            reason,
                        });
                    }
                    Ok(write_manifest(storage.as_ref(), &job, id, now_ms(), entries)?)
                });
                let complete = result.is_ok();
                let _ = done.send(result);
                // Reaps a forked encoder, whose exit overlapped the write.
                drop(states);
                // Old checkpoints go here, not on the loop: a storage that
                // hangs (a dead NameNode) holds up this thread only.
                if complete {
                    remove_older(storage.as_ref(), &job, id, retain);
                }
            })
            .map_err(|e| CheckpointError::Content {
                checkpoint: id,
                file: String::new(),
                reason: format!("cannot start the writer: {e}"),
            })?;
        self.in_flight =
            Some(InFlight { id, started: Instant::now(), offsets, written, writer, durable: Some(durable) });
        Ok(id)
    }

    /// Completes the checkpoint in flight once it is written (waiting for
    /// it if `wait`, or if a sink commits at checkpoints and must not be
    /// sent more before it has): tells the sinks (a transactional one
    /// commits), commits its offsets to the source and drops checkpoints
    /// beyond `retain`. Returns how many completed (0 or 1). A checkpoint
    /// that failed is logged and counted, and the job goes on, unless more
    /// than `tolerable_failures` failed in a row.
    ///
    /// `commit` commits offsets to the source (each worker's, for a
    /// parallel job).
    pub(super) fn complete(
        &mut self,
        commit: Commit<'_>,
        sinks: &mut Sinks,
        wait: bool,
    ) -> Result<u64, super::PipelineError> {
        match self.try_complete(commit, sinks, wait) {
            Ok(n) => {
                if n > 0 {
                    self.failed_in_row = 0;
                }
                Ok(n)
            }
            Err(e @ super::PipelineError::Checkpoint(_)) => {
                if let Some(metrics) = &self.observer {
                    let id = self.next_id.saturating_sub(1);
                    metrics.checkpoint_failed(id, self.last_started.elapsed(), e.to_string());
                }
                self.failed += 1;
                self.failed_in_row += 1;
                self.last_ended = Instant::now();
                if self.failed_in_row > self.tolerable {
                    return Err(e);
                }
                tracing::warn!(
                    "{e}; the job goes on ({} in a row, {} tolerated; [checkpoint] tolerable_failures)",
                    self.failed_in_row,
                    self.tolerable
                );
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// How many checkpoints failed (and were tolerated) so far.
    pub(super) fn failed(&self) -> u64 {
        self.failed
    }

    fn try_complete(
        &mut self,
        commit: Commit<'_>,
        sinks: &mut Sinks,
        wait: bool,
    ) -> Result<u64, super::PipelineError> {
        let wait = wait || self.commit_pending;
        let Some(flight) = &self.in_flight else { return Ok(0) };
        // First, everything the sinks were sent before the barrier must be
        // durable (a Kafka sink's deliveries acknowledged); only then may
        // the writer make the checkpoint complete. The loop goes on
        // meanwhile, or, when it must wait, flushes.
        if flight.durable.is_some() {
            loop {
                let mut pending = false;
                for sink in sinks.slots().into_iter().flatten() {
                    pending |= sink.checkpoint_pending()?;
                }
                if !pending {
                    break;
                }
                if self.in_flight.as_ref().is_none_or(|f| f.started.elapsed() >= self.timeout) {
                    return Err(self.timed_out());
                }
                if !wait {
                    return Ok(0);
                }
                sinks.flush()?;
            }
            if let Some(durable) = self.in_flight.as_mut().and_then(|f| f.durable.take()) {
                let _ = durable.send(());
            }
        }
        let Some(flight) = &self.in_flight else { return Ok(0) };
        let left = self.timeout.saturating_sub(flight.started.elapsed());
        let result = match wait {
            true => match flight.written.recv_timeout(left) {
                Ok(result) => Some(result),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(self.timed_out()),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            },
            false => match flight.written.try_recv() {
                Ok(result) => Some(result),
                Err(std::sync::mpsc::TryRecvError::Empty) if left.is_zero() => return Err(self.timed_out()),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(0),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            },
        };
        let Some(InFlight { id, offsets, writer, .. }) = self.in_flight.take() else { return Ok(0) };
        self.writer = Some(writer);
        // Its size, and when its manifest made it complete in storage.
        let (bytes, complete_ms) = match result {
            Some(written) => written.map(|m| (m.files.iter().map(|f| f.size).sum::<u64>(), m.created_ms))?,
            None => {
                let reason = "the writer stopped without a word".to_string();
                return Err(CheckpointError::Content { checkpoint: id, file: String::new(), reason }.into());
            }
        };
        // Two phases: the checkpoint is complete (its manifest written)
        // before a transactional sink commits what it holds.
        self.commit_pending = false;
        for sink in sinks.slots().into_iter().flatten() {
            sink.checkpoint_complete()?;
        }
        commit(&offsets)?;
        self.last_ended = Instant::now();
        if let Some(metrics) = &self.observer {
            // Up to its manifest, not to when this poll noticed it.
            let started_ms = now_ms().saturating_sub(self.last_started.elapsed().as_millis() as i64);
            let took = Duration::from_millis(complete_ms.saturating_sub(started_ms).max(0) as u64);
            metrics.checkpoint_completed(id, took, bytes);
        }
        Ok(1)
    }

    /// The checkpoint in flight took longer than `timeout`: it is given up
    /// (its writer may still finish, but nothing trusts it before its
    /// manifest, and no offsets are committed for it).
    fn timed_out(&mut self) -> super::PipelineError {
        let id = self.in_flight.take().map_or(0, |f| f.id);
        CheckpointError::Timeout { checkpoint: id, after: self.timeout }.into()
    }

    /// The last checkpoint of a run: waits for the one in flight, takes one
    /// more and waits for it. Returns how many completed.
    pub(super) fn finish(
        &mut self,
        shares: &[Share<'_>],
        commit: Commit<'_>,
        sinks: &mut Sinks,
    ) -> Result<u64, super::PipelineError> {
        self.take_required(shares, commit, sinks)
    }

    /// A checkpoint the run cannot go on without: its last one (where the
    /// next run starts), the one of a fresh start before anything is sent
    /// (what a restart reads the output back from), a member's before it
    /// reads what it gained. Waits for the one in flight, takes one more
    /// and waits for it. Returns how many completed.
    pub(super) fn take_required(
        &mut self,
        shares: &[Share<'_>],
        commit: Commit<'_>,
        sinks: &mut Sinks,
    ) -> Result<u64, super::PipelineError> {
        let before = self.complete(&mut *commit, sinks, true)?;
        // One that fails is taken again (after `min_pause`, at least
        // 100 ms) as long as failures are tolerated (a storage just back,
        // such as a restarted NameNode, may be slow at first); past that,
        // the run fails (and may be restarted) rather than go on without
        // it.
        let last = loop {
            self.take(shares, sinks)?;
            let failed = self.failed;
            let done = self.complete(&mut *commit, sinks, true)?;
            if done > 0 || self.failed == failed {
                break done;
            }
            std::thread::sleep(self.min_pause.max(Duration::from_millis(100)));
        };
        // A run leaves `retain` checkpoints behind: its writer's cleanup
        // (each storage call bounded by the storage's timeout) ends first.
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        Ok(before + last)
    }
}

/// The encoded window state of a checkpoint's partitions, each prefixed
/// with its length (u64 LE).
enum EncodedStates {
    /// Being encoded by a forked child.
    Forked(forked::ForkedSnapshot),
    /// Encoded on the loop already.
    Here(Vec<u8>),
}

impl EncodedStates {
    /// The encoded states (a forked child is reaped when `self` drops).
    fn collect(&mut self, id: u64, within: Duration) -> Result<Vec<u8>, CheckpointError> {
        match self {
            EncodedStates::Forked(child) => child.collect(within).map_err(|e| CheckpointError::Content {
                checkpoint: id,
                file: "partition-*".into(),
                reason: e.to_string(),
            }),
            EncodedStates::Here(bytes) => Ok(std::mem::take(bytes)),
        }
    }
}

/// Adds a `partition-<p>` file per entry to `files`, with its state cut
/// from `states` (as [`EncodedStates`] lays them out).
fn add_partitions(
    id: u64,
    files: &mut Vec<(String, Vec<u8>)>,
    entries: Vec<PartitionEntry>,
    mut states: &[u8],
) -> Result<(), CheckpointError> {
    for mut entry in entries {
        let name = format!("partition-{}", entry.partition);
        let cut = states.split_first_chunk::<8>().and_then(|(len, rest)| {
            let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
            (len <= rest.len()).then(|| rest.split_at(len))
        });
        let Some((state, rest)) = cut else {
            let reason = "the encoded window state is cut short".to_string();
            return Err(CheckpointError::Content { checkpoint: id, file: name, reason });
        };
        entry.state = state.to_vec();
        states = rest;
        files.push((name, encode_partition(&entry)));
    }
    Ok(())
}

/// Every checkpoint a member of the group under `group` may restore a
/// partition from: the newest complete one of each member, and of each
/// partition's hand-over.
fn group_checkpoints(storage: &dyn CheckpointStorage, group: &str) -> Result<Vec<Checkpoint>, StorageError> {
    let mut found = Vec::new();
    // Hand-overs first: of a hand-over and the member checkpoint it was
    // made from, which hold the partition as far, the hand-over is taken.
    for kind in ["handover", "members"] {
        for name in storage.list(&format!("{group}/{kind}"))? {
            if let Some(checkpoint) = newest_of_other(storage, &format!("{group}/{kind}/{name}"))? {
                found.push(checkpoint);
            }
        }
    }
    Ok(found)
}

/// The newest complete checkpoint in `folder`, which another process may
/// be writing to and pruning while it is read. One still being written has
/// no manifest yet, and is passed over for the one before (which stays
/// until a newer one is complete). One that its retention removes while it
/// is read is gone from a new listing: then newer ones are there, and the
/// folder is listed again.
fn newest_of_other(
    storage: &dyn CheckpointStorage,
    folder: &str,
) -> Result<Option<Checkpoint>, StorageError> {
    // Each round that finds a checkpoint gone means its writer took a
    // newer one meanwhile; a reader this slow against a writer this
    // fast is a storage in trouble, so the rounds are bounded.
    const ROUNDS: usize = 100;
    for _ in 0..ROUNDS {
        let ids = checkpoint_ids(storage, folder)?;
        let mut vanished = false;
        for &id in ids.iter().rev() {
            let failed = match read_complete(storage, folder, id) {
                Ok(checkpoint) => return Ok(Some(checkpoint)),
                Err(e) => e,
            };
            if !checkpoint_ids(storage, folder)?.contains(&id) {
                vanished = true;
                break;
            }
            match failed {
                ReadError::Incomplete { .. } => {}
                ReadError::Storage(e) => return Err(e),
                e => tracing::warn!("{e}; using an older checkpoint"),
            }
        }
        if !vanished {
            return Ok(None);
        }
    }
    Err(StorageError::Io {
        url: storage.url().into(),
        action: "read",
        path: folder.into(),
        source: std::io::Error::other(format!(
            "its newest checkpoint was removed while it was read, {ROUNDS} times in a row: is the storage \
             that slow?"
        )),
    })
}

/// Removes the checkpoints of `job` that `retain` newer ones, up to
/// `newest`, make old. One left behind costs only space: a storage that
/// fails here is logged, and the next cleanup tries again.
fn remove_older(storage: &dyn CheckpointStorage, job: &str, newest: u64, retain: usize) {
    let removed = checkpoint_ids(storage, job).and_then(|ids| {
        ids.iter()
            .filter(|&&old| old + retain as u64 <= newest)
            .try_for_each(|old| storage.remove_dir(&format!("{job}/chk-{old:020}")))
    });
    if let Err(e) = removed {
        tracing::warn!("checkpoint {newest}: cannot remove older checkpoints: {e}");
    }
}

/// A checkpoint being written on another thread.
struct InFlight {
    id: u64,
    started: Instant,
    /// The offsets to commit once it is written.
    offsets: Vec<(i32, i64)>,
    written: std::sync::mpsc::Receiver<Result<crate::checkpoint::Manifest, CheckpointError>>,
    /// The writer, which removes older checkpoints once this one is.
    writer: std::thread::JoinHandle<()>,
    /// Tells the writer that the sinks hold what was sent before the
    /// barrier, so it may write the manifest (`None` once told).
    durable: Option<std::sync::mpsc::Sender<()>>,
}

/// Copies the newest complete checkpoint of `job` from its storage (`from`,
/// a URL) to the storage at `to`, as a savepoint: a checkpoint that the
/// job's retention never removes, and that a run can start from
/// ([`RestoreFrom::Savepoint`]). Returns the checkpoint's id.
pub fn copy_savepoint(from: &str, job: &str, to: &str) -> Result<u64, CheckpointError> {
    let source = open_storage_with(from, DEFAULT_CALL_TIMEOUT)?;
    let Some(checkpoint) = latest_complete(source.as_ref(), job)? else {
        return Err(CheckpointError::Savepoint {
            url: from.to_string(),
            reason: format!("it holds no complete checkpoint of job '{job}' to save"),
        });
    };
    let target = open_storage_with(to, DEFAULT_CALL_TIMEOUT)?;
    let id = checkpoint.manifest.checkpoint;
    crate::checkpoint::write_complete(
        target.as_ref(),
        job,
        id,
        checkpoint.manifest.created_ms,
        &checkpoint.files,
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::MapStage;

    /// A storage whose writes take `delay`, and that refuses the next
    /// `refusals` of them. With `prunes`, the first `prunes` reads of a
    /// partition file find that another member (`g/members/m`) wrote a
    /// newer checkpoint and its retention removed the one being read.
    struct Faulty {
        inner: Box<dyn CheckpointStorage>,
        delay: Duration,
        refusals: std::sync::atomic::AtomicU32,
        prunes: std::sync::atomic::AtomicU32,
    }

    impl Faulty {
        fn new(url: &str, delay: Duration, refusals: u32) -> Faulty {
            let inner = crate::checkpoint::open_storage(url).unwrap();
            let (refusals, prunes) = (refusals.into(), 0.into());
            Faulty { inner, delay, refusals, prunes }
        }
    }

    impl CheckpointStorage for Faulty {
        fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
            use std::sync::atomic::Ordering;
            std::thread::sleep(self.delay);
            if self.refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StorageError::Hdfs {
                    url: self.inner.url().into(),
                    action: "write",
                    path: path.into(),
                    message: "refused by the test".into(),
                });
            }
            self.inner.write(path, bytes)
        }
        fn write_new(&self, path: &str, bytes: &[u8]) -> Result<bool, StorageError> {
            self.inner.write_new(path, bytes)
        }
        fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
            use std::sync::atomic::Ordering;
            if path.ends_with("/partition-0")
                && self.prunes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
            {
                let id = checkpoint_ids(self.inner.as_ref(), "g/members/m")?.last().copied().unwrap_or(0);
                let files = [("partition-0".to_string(), format!("state {}", id + 1).into_bytes())];
                crate::checkpoint::write_complete(self.inner.as_ref(), "g/members/m", id + 1, 0, &files)?;
                remove_older(self.inner.as_ref(), "g/members/m", id + 1, 1);
            }
            self.inner.read(path)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(dir)
        }
        fn remove_dir(&self, dir: &str) -> Result<(), StorageError> {
            self.inner.remove_dir(dir)
        }
        fn url(&self) -> &str {
            self.inner.url()
        }
    }

    /// A member reads another's checkpoints while that one's retention
    /// removes them: it takes the newest one there is, never an older one
    /// or none, and says so when it can never catch one.
    #[test]
    fn a_checkpoint_removed_while_another_member_reads_it_gives_way_to_the_newer_one() {
        for prunes in [0u32, 1, 3, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let storage = Faulty::new(&format!("file://{}", dir.path().display()), Duration::ZERO, 0);
            storage.prunes.store(prunes, std::sync::atomic::Ordering::SeqCst);
            let files = [("partition-0".to_string(), b"state 1".to_vec())];
            crate::checkpoint::write_complete(storage.inner.as_ref(), "g/members/m", 1, 0, &files).unwrap();
            let found = group_checkpoints(&storage, "g");
            if prunes == 1000 {
                let err = found.err().map(|e| format!("{e}: {:?}", std::error::Error::source(&e)));
                let err = err.unwrap_or_default();
                assert!(err.contains("removed while it was read, 100 times in a row"), "{err}");
                continue;
            }
            let found = found.unwrap();
            assert_eq!(found.len(), 1, "{prunes} prunes");
            let newest = u64::from(prunes) + 1;
            assert_eq!(found[0].manifest.checkpoint, newest, "{prunes} prunes");
            assert_eq!(found[0].files, [("partition-0".to_string(), format!("state {newest}").into_bytes())]);
            assert_eq!(checkpoint_ids(storage.inner.as_ref(), "g/members/m").unwrap(), [newest]);
        }
    }

    fn test_facts() -> PluginFacts {
        PluginFacts {
            name: "f".into(),
            version: "1".into(),
            world: "window-function".into(),
            contract: crate::plugin::CONTRACT_VERSION.into(),
            inputs: Vec::new(),
            state_version: 0,
            sha256: "00".into(),
        }
    }

    #[test]
    fn a_checkpoint_written_too_slowly_times_out_commits_nothing_and_is_tolerated_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let text = format!(
            "name = \"slow\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[format]\nfields = {{ t = \"f64\" }}\n\
             [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n\
             [checkpoint]\nstorage = \"{url}\"\ntimeout = \"50ms\"\ntolerable_failures = 1\n"
        );
        let job = Job::parse(&text, "slow.toml", dir.path()).unwrap();
        let config = job.config.checkpoint.clone().unwrap();
        let slow = Faulty::new(&url, Duration::from_millis(400), 0);
        let mut cp = Checkpointer::with_storage(&job, &config, test_facts(), std::sync::Arc::new(slow));
        let stage = MapStage::new(NoMap, vec![], vec![], vec![]);
        let mut sinks = crate::pipeline::Sinks {
            output: Box::new(crate::sink::file::FileSink::create(&dir.path().join("out.jsonl")).unwrap()),
            dead_letter: None,
            late: None,
        };
        let watermarks = Watermarks::new(&[0], Duration::ZERO, None, Instant::now());
        let mut read = ReadPositions::default();
        read.advance(0, 41);
        let started = Instant::now();
        assert_eq!(
            cp.take(&[Share { operator: &stage, watermarks: &watermarks, read: &read }], &mut sinks).unwrap(),
            1
        );
        assert!(started.elapsed() < Duration::from_millis(300), "the write does not hold the loop");
        let mut source = Committed(vec![]);
        // The first failure is tolerated and counted; the second in a row
        // fails the run.
        assert_eq!(cp.complete(&mut |o| source.commit(o), &mut sinks, true).unwrap(), 0);
        assert_eq!(cp.failed(), 1);
        assert_eq!(
            cp.take(&[Share { operator: &stage, watermarks: &watermarks, read: &read }], &mut sinks).unwrap(),
            2
        );
        let err = cp.complete(&mut |o| source.commit(o), &mut sinks, true).unwrap_err().to_string();
        assert!(err.contains("checkpoint 2 was not written within 50ms"), "{err}");
        assert_eq!(cp.failed(), 2);
        assert!(source.0.is_empty(), "no offsets are committed for them");
    }

    /// The last checkpoint of a run is taken again while failures are
    /// tolerated (a storage just back may refuse at first), and only one
    /// failure past `tolerable_failures` fails the run.
    #[test]
    fn the_last_checkpoint_is_taken_again_while_failures_are_tolerated() {
        for (refusals, tolerable, ok) in [(2u32, 2u32, true), (3, 2, false), (0, 0, true), (1, 0, false)] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}", dir.path().display());
            let text = format!(
                "name = \"last\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[format]\nfields = {{ t = \"f64\" }}\n\
                 [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n\
                 [checkpoint]\nstorage = \"{url}\"\ntolerable_failures = {tolerable}\n"
            );
            let job = Job::parse(&text, "last.toml", dir.path()).unwrap();
            let config = job.config.checkpoint.clone().unwrap();
            let storage = Faulty::new(&url, Duration::ZERO, refusals);
            let mut cp =
                Checkpointer::with_storage(&job, &config, test_facts(), std::sync::Arc::new(storage));
            let stage = MapStage::new(NoMap, vec![], vec![], vec![]);
            let mut sinks = crate::pipeline::Sinks {
                output: Box::new(crate::sink::file::FileSink::create(&dir.path().join("out.jsonl")).unwrap()),
                dead_letter: None,
                late: None,
            };
            let watermarks = Watermarks::new(&[0], Duration::ZERO, None, Instant::now());
            let mut read = ReadPositions::default();
            read.advance(0, 41);
            let mut source = Committed(vec![]);
            let shares = [Share { operator: &stage, watermarks: &watermarks, read: &read }];
            let result = cp.finish(&shares, &mut |o| source.commit(o), &mut sinks);
            let case = format!("{refusals} refused, {tolerable} tolerated");
            if ok {
                assert_eq!(result.unwrap(), 1, "{case}");
                assert_eq!(cp.failed(), u64::from(refusals), "{case}");
                assert_eq!(source.0, [(0, 42)], "{case}: its offsets are committed");
                let check = crate::checkpoint::open_storage(&url).unwrap();
                let latest = crate::checkpoint::latest_complete(check.as_ref(), "last").unwrap();
                assert_eq!(latest.map(|c| c.manifest.checkpoint), Some(u64::from(refusals) + 1), "{case}");
            } else {
                let err = result.unwrap_err().to_string();
                assert!(err.contains("refused by the test"), "{case}: {err}");
                assert_eq!(cp.failed(), u64::from(tolerable) + 1, "{case}");
                assert!(source.0.is_empty(), "{case}: nothing is committed");
            }
        }
    }

    /// A sink whose sends stay unacknowledged until `acked` is set (as a
    /// Kafka sink's deliveries wait for the brokers).
    struct Unacked {
        acked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl crate::sink::Sink for Unacked {
        fn send(&mut self, _: Option<&[u8]>, _: &[u8]) -> Result<(), crate::sink::SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), crate::sink::SinkError> {
            Ok(())
        }
        fn name(&self) -> &str {
            "unacked"
        }
        fn checkpoint_state(&mut self) -> Result<Vec<u8>, crate::sink::SinkError> {
            Ok(Vec::new())
        }
        fn checkpoint_pending(&mut self) -> Result<bool, crate::sink::SinkError> {
            Ok(!self.acked.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    /// A checkpoint is complete (its manifest written, offsets committed)
    /// only once what the sinks were sent before it is acknowledged; one
    /// whose sends stay unacknowledged past `timeout` fails, is tolerated,
    /// and leaves no manifest and no commit behind.
    #[test]
    fn a_checkpoint_waits_for_the_sinks_acknowledgements_and_fails_without_them() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let text = format!(
            "name = \"acks\"\n[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[format]\nfields = {{ t = \"f64\" }}\n\
             [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\n\
             [checkpoint]\nstorage = \"{url}\"\ntimeout = \"500ms\"\ntolerable_failures = 1\n"
        );
        let job = Job::parse(&text, "acks.toml", dir.path()).unwrap();
        let config = job.config.checkpoint.clone().unwrap();
        let storage = crate::checkpoint::open_storage(&url).unwrap();
        let mut cp = Checkpointer::with_storage(&job, &config, test_facts(), storage.into());
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stage = MapStage::new(NoMap, vec![], vec![], vec![]);
        let mut sinks = crate::pipeline::Sinks {
            output: Box::new(Unacked { acked: acked.clone() }),
            dead_letter: None,
            late: None,
        };
        let watermarks = Watermarks::new(&[0], Duration::ZERO, None, Instant::now());
        let mut read = ReadPositions::default();
        read.advance(0, 41);
        let mut source = Committed(vec![]);
        let check = crate::checkpoint::open_storage(&url).unwrap();
        let complete = |id| crate::checkpoint::read_complete(check.as_ref(), "acks", id).is_ok();

        // Unacknowledged: the loop goes on, nothing is complete.
        assert_eq!(
            cp.take(&[Share { operator: &stage, watermarks: &watermarks, read: &read }], &mut sinks).unwrap(),
            1
        );
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            assert_eq!(cp.complete(&mut |o| source.commit(o), &mut sinks, false).unwrap(), 0);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!complete(1) && source.0.is_empty(), "complete before its sends were acknowledged");
        // Acknowledged: the manifest is written and the offsets committed.
        acked.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cp.complete(&mut |o| source.commit(o), &mut sinks, false).unwrap() == 0 {
            assert!(Instant::now() < deadline, "not complete 10 s after the acknowledgements");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(complete(1));
        assert_eq!(source.0, [(0, 42)]);

        // Never acknowledged: it times out, is tolerated, and is never
        // made complete.
        acked.store(false, Ordering::SeqCst);
        read.advance(0, 99);
        assert_eq!(
            cp.take(&[Share { operator: &stage, watermarks: &watermarks, read: &read }], &mut sinks).unwrap(),
            2
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while cp.failed() == 0 {
            assert_eq!(cp.complete(&mut |o| source.commit(o), &mut sinks, false).unwrap(), 0);
            assert!(Instant::now() < deadline, "no timeout 10 s after the 500 ms one");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Its writer gives up once the loop has (the loop dropped the
        // channel it waited on): no manifest appears later either.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!complete(2), "a checkpoint whose sends were not acknowledged became complete");
        assert_eq!(source.0, [(0, 42)], "no offsets are committed for it");
    }

    #[test]
    fn sink_states_round_trip_old_layouts_are_read_and_unknown_ones_refused() {
        let states: SinkStates = [Some(b"file length".to_vec()), None, Some(Vec::new())];
        assert_eq!(decode_sinks(&encode_sinks(&states)).unwrap(), states);
        // Layout 1: a length per sink, which is the file sink's state.
        let mut v1 = 1u32.to_le_bytes().to_vec();
        for slot in [Some(41u64), None, Some(7)] {
            v1.push(u8::from(slot.is_some()));
            v1.extend_from_slice(&slot.unwrap_or(0).to_le_bytes());
        }
        let expected: SinkStates =
            [Some(41u64.to_le_bytes().to_vec()), None, Some(7u64.to_le_bytes().to_vec())];
        assert_eq!(decode_sinks(&v1).unwrap(), expected);
        let mut v3 = encode_sinks(&states);
        v3[..4].copy_from_slice(&3u32.to_le_bytes());
        let err = decode_sinks(&v3).unwrap_err();
        assert!(err.starts_with("layout version 3 is unknown: this weir reads versions 1 and 2"), "{err}");
        let whole = encode_sinks(&states);
        assert_eq!(decode_sinks(&whole[..whole.len() - 1]).unwrap_err(), "the record is cut short");
    }

    struct NoMap;

    impl crate::pipeline::MapFunction for NoMap {
        fn map(
            &mut self,
            _: &crate::types::Events,
        ) -> Result<crate::plugin::Mapped, crate::plugin::PluginError> {
            Ok(crate::plugin::Mapped { rows: vec![], columns: vec![] })
        }
    }

    /// A source that only records commits.
    struct Committed(Vec<(i32, i64)>);

    impl Source for Committed {
        fn partitions(&self) -> Vec<i32> {
            vec![0]
        }
        fn poll(
            &mut self,
            _: usize,
            _: Duration,
            _: &mut dyn FnMut(crate::source::RawRecord<'_>),
        ) -> Result<crate::source::Poll, crate::source::SourceError> {
            Ok(crate::source::Poll::End)
        }
        fn name(&self) -> &str {
            "committed"
        }
        fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), crate::source::SourceError> {
            self.0.extend_from_slice(offsets);
            Ok(())
        }
        fn seek(&mut self, _: &[(i32, i64)]) -> Result<(), crate::source::SourceError> {
            Ok(())
        }
    }
}
