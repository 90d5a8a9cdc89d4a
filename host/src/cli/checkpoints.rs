//! `weir checkpoints list|inspect`: what a checkpoint storage holds, and
//! what one checkpoint holds, per source partition.

use anyhow::Context;
use weir::checkpoint::{ReadError, checkpoint_ids, open_storage, read_complete};
use weir::pipeline::summarize_checkpoint;

#[derive(clap::Subcommand)]
pub enum CheckpointsCommand {
    /// One line per checkpoint: job, id, time, size, status.
    List {
        /// The storage, as in the job's `[checkpoint] storage`.
        storage: String,
        /// Only this job's checkpoints.
        #[arg(long)]
        job: Option<String>,
    },
    /// Offsets, clocks, and key and window counts per source partition.
    Inspect {
        /// A checkpoint: `<storage URL>/<job>/chk-<id>`, as `list` shows it.
        path: String,
    },
}

pub fn run(command: CheckpointsCommand) -> anyhow::Result<()> {
    match command {
        CheckpointsCommand::List { storage, job } => list(&storage, job.as_deref()),
        CheckpointsCommand::Inspect { path } => inspect(&path),
    }
}

fn list(url: &str, only: Option<&str>) -> anyhow::Result<()> {
    let storage = open_storage(url)?;
    let jobs = match only {
        Some(job) => vec![job.to_string()],
        None => storage.list("")?,
    };
    println!("{:<24} {:>6}  {:<23}  {:>12}  status", "job", "id", "taken (UTC)", "bytes");
    for job in jobs {
        for id in checkpoint_ids(storage.as_ref(), &job)? {
            let (time, size, status) = match read_complete(storage.as_ref(), &job, id) {
                Ok(c) => {
                    let size: u64 = c.manifest.files.iter().map(|f| f.size).sum();
                    (utc(c.manifest.created_ms), size.to_string(), "complete".to_string())
                }
                Err(ReadError::Incomplete { .. }) => ("-".into(), "-".into(), "incomplete".into()),
                Err(ReadError::Storage(e)) => return Err(e.into()),
                Err(e) => ("-".into(), "-".into(), format!("damaged: {e}")),
            };
            println!("{job:<24} {id:>6}  {time:<23}  {size:>12}  {status}");
        }
    }
    Ok(())
}

fn inspect(path: &str) -> anyhow::Result<()> {
    let trimmed = path.trim_end_matches('/');
    let (rest, folder) = trimmed.rsplit_once('/').context("expected <storage URL>/<job>/chk-<id>")?;
    let (url, job) = rest.rsplit_once('/').context("expected <storage URL>/<job>/chk-<id>")?;
    let id: u64 = folder
        .strip_prefix("chk-")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("'{folder}' is not a checkpoint folder (chk-<id>)"))?;
    let storage = open_storage(url)?;
    let checkpoint = read_complete(storage.as_ref(), job, id)?;
    println!("job {job}, checkpoint {id}, taken {}", utc(checkpoint.manifest.created_ms));
    for (name, bytes) in &checkpoint.files {
        if let Some(what) = name.strip_prefix("identity-") {
            println!("{what}: {}", String::from_utf8_lossy(bytes));
        } else if name == "plugin-sha256" {
            println!("plugin sha256: {}", String::from_utf8_lossy(bytes));
        }
    }
    println!(
        "{:>9}  {:>12}  {:>14}  {:>6}  {:>6}  {:>8}  {:>8}  {:>7}  {:>7}  {:>14}",
        "partition",
        "next offset",
        "max event time",
        "keys",
        "panes",
        "sessions",
        "events",
        "timers",
        "refires",
        "watermark"
    );
    for p in summarize_checkpoint(&checkpoint)? {
        let max = p.max_event_time.map_or_else(|| "-".to_string(), |t| t.to_string());
        let s = p.state;
        let watermark = match p.watermark {
            i64::MIN => "-".to_string(),
            w => w.to_string(),
        };
        println!(
            "{:>9}  {:>12}  {:>14}  {:>6}  {:>6}  {:>8}  {:>8}  {:>7}  {:>7}  {:>14}",
            p.partition,
            p.next_offset,
            max,
            s.keys,
            s.panes,
            s.sessions,
            s.events,
            s.timers,
            s.refires,
            watermark
        );
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of a time in ms since the Unix epoch.
fn utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let day_ms = ms.rem_euclid(86_400_000);
    // Days since 1970-01-01 to a civil date: shift to a year starting in
    // March (so the leap day ends it), in 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(super::utc(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(super::utc(4_107_542_400_000), "2100-03-01 00:00:00.000");
    }
}
