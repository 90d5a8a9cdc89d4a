//! `weir run`: a job file in the foreground until its input ends (with
//! `--until-end`) or Ctrl-C.

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use weir::job::Job;
use weir::job::{SinkSpec, SourceSpec};
use weir::kafka::{BrokerSpec, Cluster, KafkaConfig};
use weir::pipeline::{RestoreFrom, RunOptions, RunSummary, run_with_restarts};

#[derive(clap::Args)]
pub struct Args {
    /// The job file (TOML).
    job: PathBuf,
    /// Stop at the end of the input, firing every open window: a file's
    /// end, or for Kafka the end offsets seen at start.
    #[arg(long)]
    until_end: bool,
    /// Also print every output record on stdout.
    #[arg(long)]
    print: bool,
    /// For a job with [checkpoint]: start from the newest complete
    /// checkpoint (`latest`), from none (`none`), or from one by id or
    /// folder (`12`, `…/chk-00000000000000000012`).
    #[arg(long, default_value = "latest", value_name = "latest|none|ID")]
    from_checkpoint: RestoreFrom,
}

/// A stop flag set by Ctrl-C (and SIGTERM).
pub fn stop_on_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("cannot handle Ctrl-C")?;
    Ok(stop)
}

/// The end-of-run lines.
pub fn summary_lines(s: &RunSummary) -> String {
    let secs = (s.elapsed_ms as f64 / 1000.0).max(1e-3);
    format!(
        "{} records read, {} events processed, {} windows fired ({} re-fired for late events), {} output records\n\
         {} late events, {} dead letters, {} windows or batches the function failed on\n\
         {}{:.1} s, {:.0} events/s{}",
        s.records,
        s.events,
        s.windows,
        s.refired,
        s.outputs,
        s.late,
        s.dead_letters,
        s.failed,
        checkpoints_line(s),
        secs,
        s.events as f64 / secs,
        match s.workers {
            0 | 1 => String::new(),
            n => format!(" on {n} workers"),
        }
    )
}

/// "N checkpoints taken (restored from checkpoint M)\n" and the records
/// skipped after a restore, or nothing for a job without checkpoints.
fn checkpoints_line(s: &RunSummary) -> String {
    let restarts = match s.restarts {
        0 => String::new(),
        n => format!("{n} restarts after failures\n"),
    };
    let failed = match s.failed_checkpoints {
        0 => String::new(),
        n => format!("{n} checkpoints failed (the job went on)\n"),
    };
    restarts
        + &failed
        + &match (s.checkpoints, s.restored) {
            (0, None) => String::new(),
            (n, None) => format!("{n} checkpoints taken, starting afresh\n"),
            (n, Some(id)) => format!("{n} checkpoints taken, resumed from checkpoint {id}\n"),
        }
        + &match s.skipped {
            0 => String::new(),
            n => format!("{n} records not written again: the run before the restore had written them\n"),
        }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::load(&args.job)?;
    let engine = super::engine()?;
    if args.from_checkpoint != RestoreFrom::Latest && job.config.checkpoint.is_none() {
        anyhow::bail!("--from-checkpoint: {} has no [checkpoint] section", args.job.display());
    }
    // An embedded broker lives as long as this command, across restarts.
    let brokers = [
        match &job.source {
            SourceSpec::Kafka { brokers, .. } => Some(brokers),
            SourceSpec::File { .. } => None,
        },
        match &job.sink {
            SinkSpec::Kafka { brokers, .. } => Some(brokers),
            SinkSpec::File { .. } => None,
        },
    ];
    let embedded = match brokers.iter().flatten().any(|b| matches!(b.parse(), Ok(BrokerSpec::Embedded))) {
        true => {
            let cluster = Cluster::embedded(KafkaConfig::default())?;
            eprintln!(
                "embedded broker (memory only) at {}: feed it with `weir produce --brokers {} --topic <topic>`",
                cluster.bootstrap(),
                cluster.bootstrap()
            );
            Some(cluster)
        }
        false => None,
    };
    let options =
        RunOptions { stop: stop_on_ctrl_c()?, restore: args.from_checkpoint, ..RunOptions::default() };
    eprintln!("running {} (Ctrl-C to stop)", job.config.name);
    let print = args.print;
    let summary = run_with_restarts(
        &job,
        &engine,
        args.until_end,
        embedded,
        &options,
        &mut |e| {
            if print {
                println!("{}", String::from_utf8_lossy(e.record));
            }
        },
        &mut |restart| {
            let of = restart.limit.map(|l| format!(" of {l}")).unwrap_or_default();
            eprintln!(
                "the run failed: {}\nrestart {}{of} in {:.1} s",
                error_chain(restart.error),
                restart.number,
                restart.delay.as_secs_f64()
            );
        },
    )?;
    eprintln!("{}", summary_lines(&summary));
    Ok(())
}

/// An error with its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
