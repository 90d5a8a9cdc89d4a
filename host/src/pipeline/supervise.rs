//! Running a job to its end with its restart strategy: each failed run
//! that can be retried (a source, sink, storage or function failure) is
//! followed, after the strategy's wait, by a new run of the job built
//! afresh, which resumes from its newest checkpoint if it has them.

use super::connect::JobIo;
use super::{Emitted, Pipeline, PipelineError, RestartStrategy, RunOptions, RunSummary, connect};
use crate::job::Job;
use crate::kafka::Cluster;
use crate::plugin::PluginEngine;
use crate::sink::SinkError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A restart about to happen: which one, after what wait, and why.
pub struct Restart<'a> {
    /// 1 for the first restart.
    pub number: u32,
    /// The most restarts the strategy allows in a row, if it has a limit.
    pub limit: Option<u32>,
    /// The wait before it.
    pub delay: Duration,
    /// The failure that ended the run.
    pub error: &'a PipelineError,
}

/// Whether a run that failed this way can be tried again: not if the job
/// itself is wrong (it would fail the same way).
fn retryable(error: &PipelineError) -> bool {
    !matches!(error, PipelineError::Load(_) | PipelineError::Schema { .. } | PipelineError::Job(_))
}

/// A member of a consumer group that failed after it lost its lease failed
/// because it was suspended (a flush or a storage call that timed out
/// while the process did not run, messages that expired meanwhile): that
/// is the lost lease, after which it joins the group again, whatever else
/// the error says (logged).
fn blame_suspension(
    result: Result<RunSummary, PipelineError>,
    io: &JobIo,
) -> Result<RunSummary, PipelineError> {
    match (result, &io.lease) {
        (Err(error), Some(lease))
            if !lease.holds() && !matches!(error, PipelineError::Sink(SinkError::LeaseLost { .. })) =>
        {
            tracing::warn!("{error}");
            let topic = io.sinks.output.name().to_string();
            Err(SinkError::LeaseLost { topic, suspended_after: lease.suspended_after() }.into())
        }
        (result, _) => result,
    }
}

/// Runs `job` until its input ends (with `until_end`) or `options.stop` is
/// set, restarting it as its `[restart]` section says. `embedded` is an
/// embedded cluster to share, as for [`connect::open`]. The summary is the
/// last run's, with `restarts` counted over all of them.
pub fn run_with_restarts(
    job: &Job,
    engine: &PluginEngine,
    until_end: bool,
    embedded: Option<Cluster>,
    options: &RunOptions,
    on_emit: &mut (dyn FnMut(Emitted<'_>) + Send),
    on_restart: &mut dyn FnMut(Restart<'_>),
) -> Result<RunSummary, PipelineError> {
    let mut strategy = match &job.config.restart {
        Some(config) => RestartStrategy::new(config)
            .map_err(|(field, message)| job.error(&format!("restart.{field}"), message))?,
        None => RestartStrategy::none(),
    };
    let mut restarts = 0u64;
    let mut options = options.clone();
    loop {
        let started = Instant::now();
        let call_times = options.metrics.as_ref().map(|m| m.plugin_calls());
        let result = Pipeline::build_timed(job.clone(), engine, call_times).and_then(|mut pipeline| {
            let mut io = connect::open(pipeline.job(), until_end, embedded.clone())?;
            let result = pipeline.run(io.source.as_mut(), &mut io.sinks, &options, on_emit);
            blame_suspension(result, &io)
        });
        let error = match result {
            Ok(mut summary) => {
                summary.restarts = restarts;
                return Ok(summary);
            }
            Err(e) => e,
        };
        if !retryable(&error) || options.stop.load(Ordering::Relaxed) {
            return Err(error);
        }
        // A member of a consumer group that lost its lease joins the group
        // again whatever the strategy: it did not fail, it was suspended.
        let lease_lost = matches!(error, PipelineError::Sink(SinkError::LeaseLost { .. }));
        let delay = match lease_lost {
            true => Some(Duration::from_millis(500)),
            false => strategy.next_delay(started.elapsed()),
        };
        let Some(delay) = delay else { return Err(error) };
        restarts += 1;
        on_restart(Restart { number: strategy.restarts(), limit: strategy.limit(), delay, error: &error });
        // The wait ends early on a stop.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if options.stop.load(Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        // A restart resumes from the newest checkpoint, whatever the first
        // run was told.
        options.restore = super::RestoreFrom::Latest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Lease;
    use crate::pipeline::Sinks;
    use crate::sink::file::FileSink;
    use crate::source::SourceError;
    use crate::source::file::FileSource;

    fn io(dir: &std::path::Path, lease: Option<Lease>) -> JobIo {
        std::fs::write(dir.join("in.jsonl"), "").unwrap();
        JobIo {
            source: Box::new(FileSource::open(&dir.join("in.jsonl")).unwrap()),
            sinks: Sinks {
                output: Box::new(FileSink::create(&dir.join("out")).unwrap()),
                dead_letter: None,
                late: None,
            },
            clusters: Vec::new(),
            lease,
        }
    }

    fn timed_out() -> Result<RunSummary, PipelineError> {
        let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        Err(SourceError::ReadFile { path: "in.jsonl".into(), source }.into())
    }

    #[test]
    fn a_member_that_fails_after_losing_its_lease_lost_its_lease_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::start(Duration::from_secs(10), Duration::from_secs(5));
        let held = blame_suspension(timed_out(), &io(dir.path(), Some(lease.clone())));
        assert!(matches!(held, Err(PipelineError::Source(_))), "a lease that holds blames nothing: {held:?}");
        let alone = blame_suspension(timed_out(), &io(dir.path(), None));
        assert!(matches!(alone, Err(PipelineError::Source(_))), "a run without a lease: {alone:?}");

        lease.lose();
        let lost = blame_suspension(timed_out(), &io(dir.path(), Some(lease.clone())));
        match lost {
            Err(PipelineError::Sink(SinkError::LeaseLost { topic, suspended_after })) => {
                assert_eq!(topic, dir.path().join("out").display().to_string());
                assert_eq!(suspended_after, Duration::from_secs(5));
            }
            other => panic!("the lost lease is to blame: {other:?}"),
        }
        let own = SinkError::LeaseLost { topic: "t".into(), suspended_after: Duration::from_secs(1) };
        let kept = blame_suspension(Err(own.into()), &io(dir.path(), Some(lease.clone())));
        assert!(
            matches!(&kept, Err(PipelineError::Sink(SinkError::LeaseLost { topic, .. })) if topic == "t"),
            "a lost lease the sink reported stays as it was: {kept:?}"
        );
        let summary = RunSummary::default();
        let fine = blame_suspension(Ok(summary), &io(dir.path(), Some(lease)));
        assert!(fine.is_ok(), "a run that ended well stays so: {fine:?}");
    }
}
