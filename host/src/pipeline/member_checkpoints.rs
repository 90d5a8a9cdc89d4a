//! What the checkpoints of a consumer group's members (`[source]
//! scale_out`) say about each other: whether a partition was handed over
//! by its last owner, and which members' checkpoints nobody needs any more
//! (`[checkpoint] cleanup_delay`).
//!
//! Every process that ever joined the group leaves a folder of
//! checkpoints, `<job>/members/<member>/`, and every member that starts a
//! session reads the newest checkpoint of each folder. Folders of members
//! that died or left would pile up and make every rebalance slower, so a
//! member starting a session removes the checkpoints of the ones nobody
//! needs: those whose every partition another checkpoint holds at least as
//! far along.
//!
//! Members decide this at the same time from listings taken at different
//! moments, so two must never remove each other's checkpoints as
//! redundant. The rule makes that impossible: a checkpoint gives way only
//! to one that *dominates* it for each of its partitions, by an order over
//! checkpoints that never changes (their contents never do): further
//! along, then taken later, then a hand-over before a member's, then by
//! name. A partition's greatest checkpoint is never removed as redundant,
//! and one its own writer replaces (retention, a hand-over) is replaced by
//! one that holds the partition at least as far along.
//!
//! A member's checkpoint taken after a hand-over of the same partition
//! outranks it: that member took the partition over from the hand-over,
//! and whoever takes it next must wait out its lease
//! ([`taken_since_handed_over`]) unless it handed the partition over in
//! turn. So a removal never hides an owner that may still have output
//! queued.
//!
//! Only checkpoints older than `cleanup_delay` give way: a member that
//! took no checkpoint for that long is dead, or owns nothing and writes
//! nothing, or was suspended so long that nothing it queued can still be
//! delivered (see `kafka::lease`).

use super::checkpointing::{OWNED_FILE, decode_next_offset};
use crate::checkpoint::{Checkpoint, CheckpointStorage, checkpoint_ids};
use std::time::Duration;

/// Where a checkpoint stands for one partition, compared field by field:
/// greater dominates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Standing<'a> {
    /// The next offset (-1: it lists the partition as owned, with no
    /// state recorded).
    next_offset: i64,
    created_ms: i64,
    /// Hand-overs (1) outrank members' checkpoints (0) taken at the same
    /// time.
    handover: u8,
    folder: &'a str,
    id: u64,
}

/// The standings of `checkpoint` for each partition it holds or owns.
fn standings<'a>(checkpoint: &'a Checkpoint, members: &str) -> Vec<(i32, Standing<'a>)> {
    let manifest = &checkpoint.manifest;
    let at = |next_offset| Standing {
        next_offset,
        created_ms: manifest.created_ms,
        handover: u8::from(!manifest.job.starts_with(members)),
        folder: &manifest.job,
        id: manifest.checkpoint,
    };
    let mut out: Vec<(i32, Standing<'a>)> = Vec::new();
    for (name, bytes) in &checkpoint.files {
        if let Some(p) = name.strip_prefix("partition-").and_then(|p| p.parse::<i32>().ok()) {
            // One that cannot be read holds its partition as far as can
            // be: it never gives way.
            let offset = decode_next_offset(bytes).unwrap_or(i64::MAX);
            out.push((p, at(offset)));
        }
    }
    if let Some((_, owned)) = checkpoint.files.iter().find(|(n, _)| n == OWNED_FILE) {
        for p in String::from_utf8_lossy(owned).lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, at(-1)));
            }
        }
    }
    out
}

/// Which of `candidates` (the newest complete checkpoint of each member's
/// folder and hand-over of group `group`) give way: those of members other
/// than `me`, taken at least `delay` before `now_ms`, that another
/// candidate dominates for every partition they hold or own.
pub(super) fn obsolete(
    candidates: &[Checkpoint],
    group: &str,
    me: &str,
    now_ms: i64,
    delay: Duration,
) -> Vec<usize> {
    let members = format!("{group}/members/");
    let held: Vec<Vec<(i32, Standing<'_>)>> = candidates.iter().map(|c| standings(c, &members)).collect();
    let old_enough =
        |c: &Checkpoint| i128::from(now_ms) - i128::from(c.manifest.created_ms) >= delay.as_millis() as i128;
    (0..candidates.len())
        .filter(|&i| {
            let c = &candidates[i];
            c.manifest.job.starts_with(&members) && c.manifest.job != me && old_enough(c)
        })
        .filter(|&i| {
            held[i].iter().all(|(p, mine)| {
                held.iter().enumerate().any(|(j, other)| {
                    j != i
                        && other.iter().any(|(q, theirs)| q == p && theirs.next_offset >= 0 && theirs > mine)
                })
            })
        })
        .collect()
}

/// Whether a member (`me`) that gains `partition` must wait out the lease
/// before it reads the partition's output back: another member listed the
/// partition in a checkpoint taken no earlier than its newest hand-over
/// (or it has none), so that member owned it and may not have handed it
/// over; it may be suspended with output queued.
pub(super) fn taken_since_handed_over(
    candidates: &[Checkpoint],
    group: &str,
    me: &str,
    partition: i32,
) -> bool {
    let members = format!("{group}/members/");
    let handed_over = candidates
        .iter()
        .filter(|c| !c.manifest.job.starts_with(&members))
        .filter(|c| standings(c, &members).iter().any(|(p, _)| *p == partition))
        .map(|c| c.manifest.created_ms)
        .max();
    candidates
        .iter()
        .filter(|c| c.manifest.job.starts_with(&members) && c.manifest.job != me)
        .filter(|c| handed_over.is_none_or(|at| c.manifest.created_ms >= at))
        .any(|c| standings(c, &members).iter().any(|(p, _)| *p == partition))
}

/// Removes the checkpoints of `candidates[i]`'s folder up to it, for each
/// `i` in `which`. One left behind costs only space: a failure is logged.
pub(super) fn remove(storage: &dyn CheckpointStorage, candidates: &[Checkpoint], which: &[usize]) {
    for &i in which {
        let Some(newest) = candidates.get(i) else { continue };
        let (folder, id) = (&newest.manifest.job, newest.manifest.checkpoint);
        let removed = checkpoint_ids(storage, folder).and_then(|ids| {
            ids.into_iter()
                .filter(|&old| old <= id)
                .try_for_each(|old| storage.remove_dir(&format!("{folder}/chk-{old:020}")))
        });
        match removed {
            Ok(()) => tracing::info!(
                "removed the checkpoints of {folder} up to {id}: other checkpoints hold each of its \
                 partitions at least as far along"
            ),
            Err(e) => tracing::warn!("cannot remove the checkpoints of {folder}, which no one needs: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Manifest;

    /// A checkpoint of `folder` (under group `g`), taken at `created_ms`,
    /// holding each `(partition, next offset)` and owning `owned`.
    fn checkpoint(folder: &str, id: u64, created_ms: i64, held: &[(i32, i64)], owned: &[i32]) -> Checkpoint {
        let mut files: Vec<(String, Vec<u8>)> = held
            .iter()
            .map(|&(p, offset)| {
                let mut bytes = super::super::checkpointing::LAYOUT.to_le_bytes().to_vec();
                bytes.extend_from_slice(&offset.to_le_bytes());
                bytes.extend_from_slice(&i64::MIN.to_le_bytes());
                bytes.extend_from_slice(&0i64.to_le_bytes());
                (format!("partition-{p}"), bytes)
            })
            .collect();
        files.push((OWNED_FILE.into(), owned.iter().map(|p| format!("{p}\n")).collect::<String>().into()));
        let manifest = Manifest {
            version: 1,
            job: format!("g/{folder}"),
            checkpoint: id,
            created_ms,
            files: Vec::new(),
        };
        Checkpoint { manifest, files }
    }

    const MIN: i64 = 60_000;

    fn removed(candidates: &[Checkpoint]) -> Vec<&str> {
        obsolete(candidates, "g", "g/members/me", 100 * MIN, Duration::from_secs(600))
            .into_iter()
            .map(|i| candidates[i].manifest.job.as_str())
            .collect()
    }

    #[test]
    fn a_dead_members_checkpoint_gives_way_only_to_ones_that_hold_all_it_holds_as_far() {
        // Held further along by a live member, and by a hand-over at the
        // same offset: it gives way.
        let dead = checkpoint("members/dead", 7, 10 * MIN, &[(0, 50), (1, 80)], &[0, 1]);
        let live = checkpoint("members/live", 3, 99 * MIN, &[(0, 60)], &[0]);
        let handover = checkpoint("handover/p-1", 1, 10 * MIN, &[(1, 80)], &[]);
        assert_eq!(removed(&[dead.clone(), live.clone(), handover.clone()]), ["g/members/dead"]);
        // One partition held less far elsewhere: it stays.
        let behind = checkpoint("handover/p-1", 1, 10 * MIN, &[(1, 79)], &[]);
        assert!(removed(&[dead.clone(), live.clone(), behind]).is_empty());
        // One partition held nowhere else: it stays.
        assert!(removed(&[dead.clone(), live.clone()]).is_empty());
        // Too recent (a member that may be alive): it stays.
        let recent = checkpoint("members/dead", 7, 95 * MIN, &[(0, 50), (1, 80)], &[0, 1]);
        assert!(removed(&[recent, live.clone(), handover.clone()]).is_empty());
        // This member's own: it stays, however old.
        let mine = checkpoint("members/me", 7, 10 * MIN, &[(0, 50), (1, 80)], &[0, 1]);
        assert!(removed(&[mine, live.clone(), handover.clone()]).is_empty());
        // Hand-overs never give way.
        let old_handover = checkpoint("handover/p-0", 1, 10 * MIN, &[(0, 10)], &[]);
        assert!(removed(&[old_handover, live.clone()]).is_empty());
    }

    #[test]
    fn a_member_that_took_a_partition_from_its_hand_over_outranks_the_hand_over() {
        // It restored partition 0 from the hand-over and checkpointed at
        // the same offset, then went silent: whoever takes partition 0 next
        // must wait out its lease, so its checkpoint must stay to say so.
        let handover = checkpoint("handover/p-0", 1, 10 * MIN, &[(0, 50)], &[]);
        let silent = checkpoint("members/silent", 2, 11 * MIN, &[(0, 50)], &[0]);
        assert!(removed(&[handover.clone(), silent.clone()]).is_empty());
        assert!(taken_since_handed_over(&[handover.clone(), silent.clone()], "g", "g/members/me", 0));
        // The member that handed it over listed it before the hand-over:
        // no wait.
        let giver = checkpoint("members/giver", 5, 9 * MIN, &[(0, 50)], &[0]);
        assert!(!taken_since_handed_over(&[handover.clone(), giver.clone()], "g", "g/members/me", 0));
        assert_eq!(removed(&[handover.clone(), giver.clone()]), ["g/members/giver"]);
        // No hand-over at all: any other member that lists it.
        assert!(taken_since_handed_over(std::slice::from_ref(&giver), "g", "g/members/me", 0));
        assert!(!taken_since_handed_over(std::slice::from_ref(&giver), "g", "g/members/me", 1));
        // This member's own checkpoints never count.
        let mine = checkpoint("members/me", 3, 12 * MIN, &[(0, 50)], &[0]);
        assert!(!taken_since_handed_over(&[handover, mine], "g", "g/members/me", 0));
        // Listed as owned with no state recorded counts too.
        let fresh = checkpoint("members/fresh", 1, 12 * MIN, &[], &[4]);
        assert!(taken_since_handed_over(&[fresh], "g", "g/members/me", 4));
    }

    #[test]
    fn of_two_old_members_that_hold_a_partition_as_far_exactly_one_gives_way() {
        // Ties break the same way whoever decides, so two members deciding
        // at once never remove both.
        let a = checkpoint("members/a", 4, 10 * MIN, &[(0, 50)], &[0]);
        let b = checkpoint("members/b", 9, 12 * MIN, &[(0, 50)], &[0]);
        assert_eq!(removed(&[a.clone(), b.clone()]), ["g/members/a"]);
        assert_eq!(removed(&[b.clone(), a.clone()]), ["g/members/a"]);
        // Taken at the same time: the folder's name decides.
        let c = checkpoint("members/c", 1, 10 * MIN, &[(0, 50)], &[0]);
        assert_eq!(removed(&[c.clone(), a.clone()]), ["g/members/a"]);
    }

    #[test]
    fn an_old_member_that_owns_nothing_gives_way_and_one_that_owns_unrecorded_partitions_waits_for_their_state()
     {
        let idle = checkpoint("members/idle", 2, 10 * MIN, &[], &[]);
        assert_eq!(removed(&[idle]), ["g/members/idle"]);
        // It owned partition 3 but recorded no state for it: another
        // checkpoint must hold some.
        let unrecorded = checkpoint("members/old", 2, 10 * MIN, &[], &[3]);
        assert!(removed(std::slice::from_ref(&unrecorded)).is_empty());
        let holder = checkpoint("members/new", 1, 99 * MIN, &[(3, 0)], &[3]);
        assert_eq!(removed(&[unrecorded, holder]), ["g/members/old"]);
    }

    #[test]
    fn removing_takes_the_folders_checkpoints_up_to_the_one_judged_and_leaves_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::checkpoint::open_storage(&format!("file://{}", dir.path().display())).unwrap();
        let files = [("owned".to_string(), Vec::new())];
        for id in 1..=3 {
            crate::checkpoint::write_complete(storage.as_ref(), "g/members/dead", id, 0, &files).unwrap();
        }
        let judged = crate::checkpoint::read_complete(storage.as_ref(), "g/members/dead", 2).unwrap();
        remove(storage.as_ref(), &[judged], &[0]);
        assert_eq!(checkpoint_ids(storage.as_ref(), "g/members/dead").unwrap(), [3]);
    }
}
