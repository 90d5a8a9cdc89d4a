//! A shadow run: before a job switches to another version of its function,
//! both versions run side by side on the job's input, from the job's latest
//! checkpoint (each restoring it as an upgrade would, migration and all),
//! writing nothing; then their window results are compared, window by
//! window. The running job is not touched: each side reads with a consumer
//! group of its own and checkpoints (at its end only) to a scratch folder.

use super::{Pipeline, PipelineError, RestoreFrom, RunOptions, Sinks};
use crate::checkpoint::{latest_complete, open_storage_with};
use crate::job::{Job, SourceSpec};
use crate::kafka::Cluster;
use crate::plugin::PluginEngine;
use crate::sink::{Sink, SinkError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How many differing windows a report shows.
pub const SHADOW_EXAMPLES: usize = 10;

/// What a shadow run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The job's current version.
    pub old: ShadowSide,
    /// The candidate version.
    pub new: ShadowSide,
    /// Windows both versions fired.
    pub compared: u64,
    /// Of those, the windows whose results differ.
    pub differing: u64,
    /// Windows only one of them fired (old, new): 0 unless one fell behind
    /// the other when the run ended.
    pub unmatched: [u64; 2],
    /// Some of the differing windows, in key and window order.
    pub examples: Vec<ShadowDiff>,
}

/// One side of a shadow run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowSide {
    /// The function, `name@version`.
    pub plugin: String,
    /// Records it read.
    pub records: u64,
    /// Windows it fired.
    pub windows: u64,
}

/// A window whose results differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowDiff {
    /// The key, as text.
    pub key: String,
    /// The window's start, in ms since the Unix epoch.
    pub window_start: i64,
    /// The window's end.
    pub window_end: i64,
    /// The current version's output records for it, one JSON object per
    /// line.
    pub old: String,
    /// The candidate's.
    pub new: String,
}

/// A side's results: (key, start, end) → its output records, as written.
type Results = BTreeMap<(String, i64, i64), Vec<u8>>;

/// Runs `old` (the job as it runs) and `new` (the job with the candidate
/// function) side by side for `duration`, or until `stop`, and compares
/// their windows. `scratch` is a folder of the caller's, for the sides'
/// checkpoints; `embedded` is the host's embedded broker, if the job uses
/// it.
pub fn shadow(
    old: &Job,
    new: &Job,
    engine: &PluginEngine,
    embedded: Option<Cluster>,
    scratch: &Path,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<ShadowReport, PipelineError> {
    let sides = [side_job(old, scratch, "old")?, side_job(new, scratch, "new")?];
    // From the job's latest checkpoint, if it has completed one; else from
    // where the job itself started.
    let storage = old.config.checkpoint.as_ref().map(|c| c.storage.clone()).unwrap_or_default();
    let opened = open_storage_with(&storage, crate::checkpoint::DEFAULT_CALL_TIMEOUT)
        .map_err(super::CheckpointError::from)?;
    let restore =
        match latest_complete(opened.as_ref(), &old.config.name).map_err(super::CheckpointError::from)? {
            Some(_) => RestoreFrom::Savepoint(storage),
            None => RestoreFrom::Nothing,
        };
    let mut pipelines = Vec::with_capacity(2);
    for job in &sides {
        pipelines.push(Pipeline::build(job.clone(), engine)?);
    }
    let halt = Arc::new(AtomicBool::new(false));
    let outcomes = std::thread::scope(|scope| {
        let runs: Vec<_> = pipelines
            .iter_mut()
            .zip(&sides)
            .map(|(pipeline, job)| {
                let (halt, restore, embedded) = (halt.clone(), restore.clone(), embedded.clone());
                scope.spawn(move || run_side(pipeline, job, embedded, restore, halt))
            })
            .collect();
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline
            && !stop.load(Ordering::Relaxed)
            && !runs.iter().all(|r| r.is_finished())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        halt.store(true, Ordering::Relaxed);
        runs.into_iter()
            .map(|r| {
                r.join().unwrap_or_else(|_| Err(PipelineError::Parallel("a shadow side panicked".into())))
            })
            .collect::<Vec<_>>()
    });
    let mut outcomes = outcomes.into_iter();
    let (Some(old_side), Some(new_side)) = (outcomes.next(), outcomes.next()) else {
        return Err(PipelineError::Parallel("a shadow side did not run".into()));
    };
    let ((old_records, old_results), (new_records, new_results)) = (old_side?, new_side?);
    let reference = |p: &Pipeline| format!("{}@{}", p.descriptor().name, p.descriptor().version);
    Ok(compare(
        ShadowSide {
            plugin: reference(&pipelines[0]),
            records: old_records,
            windows: old_results.len() as u64,
        },
        ShadowSide {
            plugin: reference(&pipelines[1]),
            records: new_records,
            windows: new_results.len() as u64,
        },
        &old_results,
        &new_results,
    ))
}

/// The job as one side of a shadow runs it: one worker, its own consumer
/// group, checkpoints in the scratch folder (none but the run's last).
fn side_job(job: &Job, scratch: &Path, side: &str) -> Result<Job, PipelineError> {
    let mut job = job.clone();
    if job.window.is_none() {
        return Err(job
            .error("window", "a shadow run compares window results, and this job has no [window]")
            .into());
    }
    let Some(checkpoint) = &mut job.config.checkpoint else {
        return Err(job
            .error(
                "checkpoint",
                "a shadow run starts from the job's checkpoints: the job needs a [checkpoint]",
            )
            .into());
    };
    checkpoint.storage = format!("file://{}", scratch.join(side).display());
    checkpoint.interval = Duration::from_secs(100 * 365 * 24 * 3600);
    job.config.parallelism = Some(1);
    if let SourceSpec::Kafka { group, .. } = &mut job.source {
        *group = format!("{group}-shadow-{side}");
    }
    Ok(job)
}

/// Runs one side until its input ends or `halt`: the records it read and
/// the windows it fired.
fn run_side(
    pipeline: &mut Pipeline,
    job: &Job,
    embedded: Option<Cluster>,
    restore: RestoreFrom,
    halt: Arc<AtomicBool>,
) -> Result<(u64, Results), PipelineError> {
    let (mut source, _clusters) = super::connect::open_source(job, embedded)?;
    let discard = || -> Box<dyn Sink> { Box::new(Discard) };
    let mut sinks = Sinks { output: discard(), dead_letter: Some(discard()), late: Some(discard()) };
    let options = RunOptions { stop: halt, restore, ..RunOptions::default() };
    let mut results = Results::new();
    let summary = pipeline.run(source.as_mut(), &mut sinks, &options, &mut |emitted| {
        let (Some(key), Some(window)) = (emitted.key, emitted.window) else { return };
        let records = results.entry((key.to_string(), window.start, window.end)).or_default();
        // A window fired again for late events replaces its first results.
        if emitted.refire && !records.is_empty() && emitted.row.is_some_and(|r| r.row == r.rows.start) {
            records.clear();
        }
        records.extend_from_slice(emitted.record);
        records.push(b'\n');
    })?;
    Ok((summary.records, results))
}

/// The report on two sides' results.
fn compare(old: ShadowSide, new: ShadowSide, a: &Results, b: &Results) -> ShadowReport {
    let mut report =
        ShadowReport { old, new, compared: 0, differing: 0, unmatched: [0, 0], examples: Vec::new() };
    for (window, old_records) in a {
        let Some(new_records) = b.get(window) else {
            report.unmatched[0] += 1;
            continue;
        };
        report.compared += 1;
        if old_records != new_records {
            report.differing += 1;
            if report.examples.len() < SHADOW_EXAMPLES {
                let text = |r: &[u8]| String::from_utf8_lossy(r).trim_end().to_string();
                report.examples.push(ShadowDiff {
                    key: window.0.clone(),
                    window_start: window.1,
                    window_end: window.2,
                    old: text(old_records),
                    new: text(new_records),
                });
            }
        }
    }
    report.unmatched[1] = b.keys().filter(|w| !a.contains_key(*w)).count() as u64;
    report
}

/// A sink that writes nothing: a shadow side's output is compared, not
/// kept. It keeps no state, so it restores from any checkpoint's.
struct Discard;

impl Sink for Discard {
    fn send(&mut self, _key: Option<&[u8]>, _payload: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn name(&self) -> &str {
        "the shadow run's discard"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_counts_differing_and_unmatched_windows_and_keeps_examples() {
        let results = |rows: &[(&str, i64, &str)]| -> Results {
            rows.iter()
                .map(|&(k, s, r)| ((k.to_string(), s, s + 1000), format!("{r}\n").into_bytes()))
                .collect()
        };
        let side = |plugin: &str| ShadowSide { plugin: plugin.into(), records: 3, windows: 3 };
        let a = results(&[("1", 0, "{\"m\":1}"), ("1", 1000, "{\"m\":2}"), ("2", 0, "{\"m\":3}")]);
        let b = results(&[("1", 0, "{\"m\":1}"), ("1", 1000, "{\"m\":9}"), ("3", 0, "{\"m\":3}")]);
        let report = compare(side("f@1"), side("f@2"), &a, &b);
        assert_eq!((report.compared, report.differing, report.unmatched), (2, 1, [1, 1]));
        assert_eq!(
            report.examples,
            vec![ShadowDiff {
                key: "1".into(),
                window_start: 1000,
                window_end: 2000,
                old: "{\"m\":2}".into(),
                new: "{\"m\":9}".into()
            }]
        );
        let same = compare(side("f@1"), side("f@1"), &a, &a);
        assert_eq!((same.compared, same.differing, same.unmatched), (3, 0, [0, 0]));
    }
}
