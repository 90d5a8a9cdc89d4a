//! Crash loops against a broker in its own process: `weir run` reading a
//! Kafka topic is killed with SIGKILL at least ten times, at moments spread
//! over its input by the output it has written, restarted each time from
//! its newest checkpoint, then let finish.
//! Its outputs must then hold exactly what one crash-free run wrote: the
//! same records as a multiset (the partitions' outputs interleave
//! differently from run to run), none missing and none repeated.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::kafka::{kept, start_dev_broker, topic_values, weir_ok};
use support::{Lcg, start_tansu, weir_command};
use weir::checkpoint::{checkpoint_ids, open_storage, read_complete};
use weir::pipeline::summarize_checkpoint;

/// Readings 5 ms apart, keyed by device, up to 200 ms out of order, one in
/// 300 far behind (late, or within the allowed lateness), and a bad line
/// every 4,000.
fn write_input(path: &Path, n: usize) {
    support::write_readings(path, n, 17, 72, 4000);
}

/// How many parts the input of a Kafka loop comes in: one before each of
/// the ten killed runs, the rest before the last run.
const CHUNKS: usize = 13;

/// Splits `input.jsonl` into [`CHUNKS`] files `input-<i>.jsonl` of whole
/// lines, in order.
fn split_input(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("input.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(CHUNKS);
    for (i, chunk) in lines.chunks(per).enumerate() {
        let mut part = chunk.join("\n");
        part.push('\n');
        std::fs::write(dir.join(format!("input-{i}.jsonl")), part).unwrap();
    }
}

/// Creates topic `readings` with `partitions`.
fn create_input(dir: &Path, brokers: &str, partitions: u32) {
    let p = partitions.to_string();
    weir_ok(dir, &["topic", "create", "--brokers", brokers, "--topic", "readings", "--partitions", &p]);
}

/// Sends `file` (JSON lines) to topic `readings`, keyed by device: parts
/// sent one after another give each partition the same records in the same
/// order as the whole file would.
fn produce(dir: &Path, brokers: &str, file: &str) {
    let args =
        ["produce", "--brokers", brokers, "--topic", "readings", "--input", file, "--key", "device_id"];
    weir_ok(dir, &args);
}

/// Checks that `readings` holds the whole input: the mock cluster keeps at
/// most 5 MB a partition and drops the oldest beyond that.
fn check_input(dir: &Path, brokers: &str) {
    let lines = std::fs::read_to_string(dir.join("input.jsonl")).unwrap().lines().count();
    assert_eq!(kept(dir, brokers, "readings"), lines, "records were dropped");
}

/// A window job reading `topic` on `brokers`, with `sink` and `extra`
/// sections; returns its path. Its input comes in parts, with pauses
/// between them (a run's kill, restart and restore): no partition is ever
/// taken for idle, as none would be in one clean run of all of it.
fn kafka_job(dir: &Path, name: &str, brokers: &str, sink: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"readings\"\n\
         start = \"earliest\"\ngroup = \"{name}\"\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\n\
         fields = {{ temperature = \"f64\" }}\n[time]\nmax_out_of_orderness = \"300ms\"\nallowed_lateness = \"500ms\"\n\
         idle_timeout = \"1h\"\nlate_output = \"{name}-late.jsonl\"\n[window]\ntype = \"sliding\"\nsize = \"2s\"\n\
         slide = \"1s\"\n[function]\nplugin = \"max-temperature-agg\"\n{sink}\n{extra}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn file_sink(name: &str) -> String {
    format!("[sink]\ntype = \"file\"\npath = \"{name}-out.jsonl\"\ndead_letter = \"{name}-dead.jsonl\"")
}

/// What a crash loop did.
struct Loop {
    kills: usize,
    restored: usize,
    /// Records the last run did not write again (`sequence`): killed runs
    /// print no summary.
    skipped: u64,
    /// Records that restores found written past their checkpoint, to be
    /// skipped by the replay (`sequence`), over every run.
    ahead: u64,
    /// Runs that said a broker was unreachable (and waited for it).
    degraded: usize,
    /// Runs that said a broker was reachable again.
    recovered: usize,
}

/// The count in a run summary's "N records not written again" line.
fn skipped_in(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            l.split(" records not written again").next().filter(|_| l.contains("not written again"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The records a run's restores found written past their checkpoint, from
/// the sequenced sinks' "N records written after the checkpoint" lines.
fn ahead_in(stderr: &str) -> u64 {
    let phrase = " records written after the checkpoint, not to be written again";
    stderr
        .lines()
        .filter_map(|l| l.split(phrase).next().filter(|_| l.contains(phrase)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// How far a job reading a bounded input (a file) got: the length of its
/// results file against the one a clean run wrote.
struct Progress {
    file: PathBuf,
    /// What one clean run wrote: where the last run ends.
    total: u64,
}

impl Progress {
    /// Progress of a run writing `file`, which a clean run wrote as `clean`.
    fn new(file: PathBuf, clean: &Path) -> Progress {
        let total = std::fs::metadata(clean).map(|m| m.len()).unwrap_or(0);
        assert!(total > 0, "the clean run wrote nothing to {}", clean.display());
        Progress { file, total }
    }

    fn written(&self) -> u64 {
        std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0)
    }

    /// The fraction `num / den` of the clean run's output.
    fn part(&self, num: usize, den: usize) -> u64 {
        self.total * num as u64 / den as u64
    }
}

/// When a crash loop kills a run.
enum KillBy<'a> {
    /// A bounded input, which a run reads to its end (`--until-end`): run
    /// `i` (from 0) is killed once its output passes `(i + 1) / (count +
    /// 3)` of a clean run's (and has grown in that run), plus up to 200 ms
    /// (random). Counting progress, not time, keeps every kill before the
    /// end however fast the machine is, with a good part of the input left
    /// for the last run.
    Output(&'a Progress),
    /// An input that comes in parts (a topic): `feed(run)` sends run
    /// `run`'s part before it starts (`feed(count)` the rest, before the
    /// last run). Runs before the last read without `--until-end`, so they
    /// never end by themselves, and each is killed as `at(run)` says. The
    /// last run reads to the end offsets it finds at its start.
    Parts { storage: &'a Path, feed: &'a mut dyn FnMut(usize), at: &'a dyn Fn(usize) -> KillAt },
}

/// When a run of an input in parts is killed: `base` ms plus up to `extra`
/// more (random) after it says it restored a checkpoint (a fresh run:
/// after its first checkpoint), and, if `progress`, after it also
/// completed a checkpoint past the offsets it restored (so that every such
/// run moves the job on, however slowly the broker answers). A run that
/// says neither within [`PATIENCE`] is killed counting from then.
#[derive(Clone, Copy)]
struct KillAt {
    base: u64,
    extra: u64,
    progress: bool,
}

/// The records before the next offsets of the newest complete checkpoint
/// of job `crash` in `storage` (0 with none), read as a restore reads it.
/// One that is incomplete, or removed while it is read (the job keeps only
/// `retain`), is passed over for the one before.
fn checkpointed(storage: &Path) -> u64 {
    let Ok(storage) = open_storage(&format!("file://{}", storage.display())) else { return 0 };
    let ids = checkpoint_ids(storage.as_ref(), "crash").unwrap_or_default();
    let newest = ids.into_iter().rev().find_map(|id| {
        let checkpoint = read_complete(storage.as_ref(), "crash", id).ok()?;
        let partitions = summarize_checkpoint(&checkpoint).ok()?;
        Some(partitions.iter().map(|p| p.next_offset.max(0) as u64).sum())
    });
    newest.unwrap_or(0)
}

/// How long a run may go without writing anything before the loop calls
/// the job stuck.
const STUCK: Duration = Duration::from_secs(120);

/// How long a crash loop waits for a run to say it restored a checkpoint
/// before it goes on.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long a crash loop waits for a run that lost its broker to say it
/// has it back. A restarted tansu can take tens of seconds to answer again
/// on a loaded machine (it reopens its SQLite file), and the clients' backoff
/// reaches 8 s between attempts.
const RECOVERY: Duration = Duration::from_secs(120);

/// Whether checkpoint storage `dir` holds a complete checkpoint.
fn has_checkpoint(dir: &Path) -> bool {
    let jobs = std::fs::read_dir(dir).into_iter().flatten().flatten();
    let checkpoints = jobs.flat_map(|job| std::fs::read_dir(job.path()).into_iter().flatten().flatten());
    checkpoints.into_iter().any(|c| c.path().join("MANIFEST").is_file())
}

/// Kills `job` with SIGKILL `count` times, restarting it each time from its
/// newest checkpoint, then lets the last run finish; `during(run)` is
/// called halfway to each kill (to restart the broker). Checks that the
/// loop did what it claims: `count` kills, and most restarts restored a
/// checkpoint.
fn crash_loop(
    dir: &Path,
    job: &Path,
    count: usize,
    seed: u64,
    mut by: KillBy,
    during: &mut dyn FnMut(usize),
) -> Loop {
    let mut rng = Lcg(seed);
    let mut done = Loop { kills: 0, restored: 0, skipped: 0, ahead: 0, degraded: 0, recovered: 0 };
    loop {
        assert!(done.kills < 60, "too many kills: the job makes no progress");
        let run = done.kills;
        let last = run >= count;
        let bounded = last || matches!(by, KillBy::Output(_));
        if let KillBy::Parts { feed, .. } = &mut by {
            feed(run);
        }
        let started = Instant::now();
        let mut command = weir_command(dir);
        command.args(["run", job.to_str().unwrap()]);
        if bounded {
            command.arg("--until-end");
        }
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = RunLog::read(child.stderr.take().unwrap());
        if !last {
            match &by {
                KillBy::Output(progress) => {
                    let start = progress.written();
                    let target =
                        progress.part(run + 1, count + 3).max(start + progress.part(1, 2 * (count + 3)));
                    let halfway = (start + target) / 2;
                    let mut called = false;
                    let (mut seen, mut moved) = (start, Instant::now());
                    while !log.ended() {
                        let written = progress.written();
                        if written != seen {
                            (seen, moved) = (written, Instant::now());
                        }
                        assert!(
                            moved.elapsed() < STUCK,
                            "run {run}: no output in {STUCK:?} (at {written} of {}, waiting for {target})",
                            progress.total
                        );
                        if !called && written >= halfway {
                            called = true;
                            during(run);
                        } else if written >= target {
                            std::thread::sleep(ms(rng.below(200)));
                            break;
                        }
                        std::thread::sleep(ms(20));
                    }
                }
                KillBy::Parts { storage, at, .. } => {
                    let kill = at(run);
                    if has_checkpoint(storage) {
                        // Goes on early if the run exits without restoring.
                        log.wait_for(PATIENCE, |state| state.restored);
                    } else {
                        // A fresh run: counted from its first checkpoint.
                        let deadline = Instant::now() + PATIENCE;
                        while !has_checkpoint(storage) && !log.ended() && Instant::now() < deadline {
                            std::thread::sleep(ms(20));
                        }
                    }
                    // Its part of the input is there to be read: a
                    // checkpoint past what it restored comes.
                    let (from, since) = (checkpointed(storage), Instant::now());
                    while kill.progress && checkpointed(storage) <= from && !log.ended() {
                        assert!(
                            since.elapsed() < STUCK,
                            "run {run}: no checkpoint past {from} records in {STUCK:?}"
                        );
                        std::thread::sleep(ms(50));
                    }
                    let wait = kill.base + rng.below(kill.extra.max(1));
                    std::thread::sleep(ms(wait / 2));
                    during(run);
                    std::thread::sleep(ms(wait - wait / 2));
                }
            }
            // A run that lost its broker is killed once it says it has it
            // back: the loop sees it ride out the outage.
            log.wait_for(RECOVERY, |state| !state.down || state.up);
        }
        let finished = last || child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
            done.kills += 1;
        }
        let status = child.wait().unwrap();
        let stderr = log.text();
        done.restored += usize::from(stderr.contains("restored checkpoint"));
        done.skipped += skipped_in(&stderr);
        done.ahead += ahead_in(&stderr);
        done.degraded += usize::from(stderr.contains("is unreachable"));
        done.recovered += usize::from(stderr.contains("is reachable again"));
        if stderr.contains("is unreachable") && !stderr.contains("is reachable again") {
            eprintln!("run {run} lost its broker and was killed before it said it had it back:\n{stderr}");
            eprintln!("(after {:?})", started.elapsed());
        }
        // What a failure's reader needs: how far each run came.
        match &by {
            KillBy::Output(progress) => {
                eprintln!(
                    "run {run}: {:?}, output {} of {}",
                    started.elapsed(),
                    progress.written(),
                    progress.total
                )
            }
            KillBy::Parts { storage, .. } => {
                eprintln!(
                    "run {run}: {:?}, checkpointed {} records",
                    started.elapsed(),
                    checkpointed(storage)
                )
            }
        }
        if finished {
            assert!(status.success(), "{stderr}");
            break;
        }
    }
    assert!(done.kills >= count, "only {} kills: run {} finished before its kill", done.kills, done.kills);
    assert!(
        done.restored * 2 > done.kills,
        "{} of {} restarts restored a checkpoint",
        done.restored,
        done.kills
    );
    done
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a run's standard error said so far.
#[derive(Default)]
struct LogState {
    text: String,
    /// It restored a checkpoint.
    restored: bool,
    /// It said a broker was unreachable.
    down: bool,
    /// It said a broker was reachable again.
    up: bool,
    /// The stream ended (the run exited).
    ended: bool,
}

/// A run's standard error, read on a thread of its own as it comes.
struct RunLog {
    state: std::sync::Arc<(std::sync::Mutex<LogState>, std::sync::Condvar)>,
    reader: std::thread::JoinHandle<()>,
}

impl RunLog {
    fn read(stderr: std::process::ChildStderr) -> RunLog {
        let state =
            std::sync::Arc::new((std::sync::Mutex::new(LogState::default()), std::sync::Condvar::new()));
        let shared = state.clone();
        let reader = std::thread::spawn(move || {
            let (lock, changed) = &*shared;
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                let mut state = lock.lock().unwrap();
                state.restored |= line.contains("restored checkpoint");
                state.down |= line.contains("is unreachable");
                state.up |= line.contains("is reachable again");
                state.text.push_str(&line);
                state.text.push('\n');
                changed.notify_all();
            }
            lock.lock().unwrap().ended = true;
            changed.notify_all();
        });
        RunLog { state, reader }
    }

    /// Whether the run's standard error ended (it exited).
    fn ended(&self) -> bool {
        self.state.0.lock().unwrap().ended
    }

    /// Waits until `done` holds or the run exited, at most `limit`.
    fn wait_for(&self, limit: Duration, done: impl Fn(&LogState) -> bool) {
        let (lock, changed) = &*self.state;
        let state = lock.lock().unwrap();
        let _ = changed.wait_timeout_while(state, limit, |s| !s.ended && !done(s)).unwrap();
    }

    /// The whole text, once the run exited.
    fn text(self) -> String {
        self.reader.join().unwrap();
        std::mem::take(&mut self.state.0.lock().unwrap().text)
    }
}

/// The lines of `file`, sorted: a multiset.
fn lines(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Feeds the parts of a Kafka loop's input: part `run` before run `run`,
/// the rest before the last run (`run == count`); then checks that the
/// topic holds all of it.
fn feeder<'a>(dir: &'a Path, brokers: &'a str, count: usize) -> impl FnMut(usize) + 'a {
    move |run| {
        let parts = if run < count { run..run + 1 } else { count..CHUNKS };
        for part in parts {
            produce(dir, brokers, &format!("input-{part}.jsonl"));
        }
        if run >= count {
            check_input(dir, brokers);
        }
    }
}

#[test]
fn kafka_to_file_killed_again_and_again_writes_exactly_one_runs_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_dev_broker(d);
    write_input(&d.join("input.jsonl"), 400_000);
    split_input(d);
    create_input(d, &brokers, 16);

    let storage = d.join("checkpoints");
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"200ms\"\nmode = \"exactly-once\"\n",
        storage.display()
    );
    let crash = kafka_job(d, "crash", &brokers, &file_sink("crash"), &checkpoint);
    let mut feed = feeder(d, &brokers, 10);
    let by = KillBy::Parts {
        storage: &storage,
        feed: &mut feed,
        at: &|_| KillAt { base: 200, extra: 600, progress: true },
    };
    let done = crash_loop(d, &crash, 10, 3, by, &mut |_| {});

    let clean = kafka_job(d, "clean", &brokers, &file_sink("clean"), "");
    weir_ok(d, &["run", clean.to_str().unwrap(), "--until-end"]);
    for file in ["out", "late", "dead"] {
        let expected = lines(d, &format!("clean-{file}.jsonl"));
        let got = lines(d, &format!("crash-{file}.jsonl"));
        assert!(!expected.is_empty(), "the clean run wrote no {file} records");
        let missing = expected.iter().filter(|l| got.binary_search(l).is_err()).count();
        assert!(
            got == expected,
            "{file}: after {} kills, {} records vs {} in one clean run ({missing} missing)",
            done.kills,
            got.len(),
            expected.len()
        );
    }
}

fn kafka_sink(name: &str, brokers: &str, extra: &str) -> String {
    format!(
        "[sink]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{name}-out\"\ndead_letter = \"{name}-dead\"\n{extra}"
    )
}

/// An output topic (`out`, `late` or `dead`), with the clean run's and the
/// crashed run's records, each sorted.
type Compared = (&'static str, Vec<String>, Vec<String>);

/// How a Kafka-to-Kafka loop is set up.
struct KafkaLoop<'a> {
    brokers: &'a str,
    /// Partitions of the results topics (late records and dead letters get
    /// 2).
    out_partitions: u32,
    /// `exactly_once = "sequence"`, or at-least-once.
    exactly_once: bool,
    /// When run `run` (from 0) is killed.
    at: &'a dyn Fn(usize) -> KillAt,
    seed: u64,
}

/// Kafka to Kafka on a `weir dev-broker` of its own (a crash loop, then a
/// clean run), with `exactly_once = "sequence"` or at-least-once. Returns
/// the loop and, per output topic (results, late records, dead letters),
/// the clean and the crashed run's records as multisets.
fn kafka_to_kafka(dir: &Path, exactly_once: bool) -> (Loop, Vec<Compared>) {
    let (_broker, brokers) = start_dev_broker(dir);
    write_input(&dir.join("input.jsonl"), 600_000);
    create_input(dir, &brokers, 24);
    // A restart with Kafka sinks reads back their topics before it goes on:
    // kill later than the file loops do. Enough output partitions that the
    // mock cluster's 5 MB a partition holds every record (checked).
    let at = |_| KillAt { base: 800, extra: 1_200, progress: true };
    let setup = KafkaLoop { brokers: &brokers, out_partitions: 48, exactly_once, at: &at, seed: 5 };
    kafka_to_kafka_on(dir, &setup, &mut |_| {})
}

/// [`kafka_to_kafka`] on `setup.brokers`, whose topic `readings` is to get
/// the input (`input.jsonl`), in parts as the loop goes; `during(run)` is
/// called halfway to each kill (to restart the broker).
fn kafka_to_kafka_on(dir: &Path, setup: &KafkaLoop, during: &mut dyn FnMut(usize)) -> (Loop, Vec<Compared>) {
    let brokers = setup.brokers;
    split_input(dir);
    let out_partitions = setup.out_partitions.to_string();
    for name in ["clean", "crash"] {
        for (kind, partitions) in [("out", out_partitions.as_str()), ("dead", "2"), ("late", "2")] {
            let topic = format!("{name}-{kind}");
            weir_ok(
                dir,
                &["topic", "create", "--brokers", brokers, "--topic", &topic, "--partitions", partitions],
            );
        }
    }
    let late = |name: &str| format!("late_output = \"{name}-late.jsonl\"");
    let job = |name: &str, sink: &str, extra: &str| {
        let path = kafka_job(dir, name, brokers, &kafka_sink(name, brokers, sink), extra);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&late(name), &format!("late_output = \"{name}-late\""));
        std::fs::write(&path, text).unwrap();
        path
    };
    let storage = dir.join("checkpoints");
    let (mode, sink) = match setup.exactly_once {
        true => ("exactly-once", "exactly_once = \"sequence\""),
        false => ("at-least-once", ""),
    };
    // Restarts ride out a broker that is slow to answer, as a user's job
    // would.
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"200ms\"\nmode = \"{mode}\"\n\
         [restart]\nstrategy = \"fixed-delay\"\nattempts = 10\ndelay = \"1s\"\n",
        storage.display()
    );
    let crash = job("crash", sink, &checkpoint);
    let mut feed = feeder(dir, brokers, 10);
    let by = KillBy::Parts { storage: &storage, feed: &mut feed, at: setup.at };
    let done = crash_loop(dir, &crash, 10, setup.seed, by, during);

    let clean = job("clean", "", "");
    weir_ok(dir, &["run", clean.to_str().unwrap(), "--until-end"]);
    let mut topics = Vec::new();
    for kind in ["out", "late", "dead"] {
        let (clean, crash) = (format!("clean-{kind}"), format!("crash-{kind}"));
        kept(dir, brokers, &clean);
        kept(dir, brokers, &crash);
        let expected = topic_values(dir, brokers, &clean);
        assert!(!expected.is_empty(), "the clean run wrote no {kind} records");
        topics.push((kind, expected, topic_values(dir, brokers, &crash)));
    }
    (done, topics)
}

/// Every output topic of a sequenced loop holds the clean run's records,
/// and some restore found records written past its checkpoint, which the
/// replays made again (the last run replays to the end): without skipping,
/// they would be there twice.
fn assert_each_record_once(done: &Loop, topics: &[Compared]) {
    assert!(done.ahead > 0, "no restore found a record written past its checkpoint: the loop proved nothing");
    for (kind, expected, got) in topics {
        let missing = expected.iter().filter(|l| got.binary_search(l).is_err()).count();
        assert!(
            got == expected,
            "{kind}: after {} kills ({} records found past a checkpoint, {} skipped by the last run), {} records vs {} in one clean run ({missing} missing)",
            done.kills,
            done.ahead,
            done.skipped,
            got.len(),
            expected.len()
        );
    }
}

#[test]
fn kafka_to_kafka_with_sequence_killed_again_and_again_writes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (done, topics) = kafka_to_kafka(dir.path(), true);
    assert_each_record_once(&done, &topics);
}

/// The runs of the tansu loop during which the broker is restarted.
const BROKER_RESTARTS: [usize; 3] = [1, 4, 7];

/// The sequenced loop on a real broker in its own process (tansu, SQLite
/// storage), which is itself restarted while the job runs, three times
/// among the kills: killed with SIGKILL, away for a second, started again
/// on the same port and storage. SIGKILL loses nothing tansu acknowledged:
/// it commits each produce request in a SQLite transaction (WAL journal)
/// before it answers, and a killed process leaves committed transactions
/// in the file. The runs are killed counting from their restore, since
/// starting against tansu (opening three sinks and reading them back)
/// takes 2 to 3 s and varies with the machine's load; two of them right
/// after it.
#[test]
fn kafka_to_kafka_on_tansu_with_broker_restarts_writes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut tansu = start_tansu();
    tansu.index_headers();
    let brokers = tansu.bootstrap.clone();
    write_input(&d.join("input.jsonl"), 200_000);
    create_input(d, &brokers, 6);
    let setup = KafkaLoop {
        brokers: &brokers,
        out_partitions: 6,
        exactly_once: true,
        at: &|run| match run {
            // Long enough to ride out the broker's restart halfway and go on.
            run if BROKER_RESTARTS.contains(&run) => KillAt { base: 3_000, extra: 2_000, progress: true },
            // While they start reading, whether or not they got anywhere.
            3 | 8 => KillAt { base: 0, extra: 1_000, progress: false },
            // After a checkpoint past their restore, at a random moment.
            _ => KillAt { base: 0, extra: 1_500, progress: true },
        },
        seed: 7,
    };
    let mut restarts = 0;
    let (done, topics) = kafka_to_kafka_on(d, &setup, &mut |run| {
        if BROKER_RESTARTS.contains(&run) {
            tansu.kill();
            // Away long enough that the job's clients find it gone.
            std::thread::sleep(Duration::from_secs(1));
            tansu.start();
            restarts += 1;
        }
    });
    assert!(restarts >= 3, "the broker was restarted {restarts} times");
    assert!(done.degraded > 0, "no run saw the broker go away: the restarts proved nothing");
    assert_eq!(
        done.recovered, done.degraded,
        "runs that said they had the broker back, of those that lost it"
    );
    eprintln!(
        "{} kills, {} restored, {} found past a checkpoint, {} skipped by the last run, {} runs saw the broker away, {} saw it back",
        done.kills, done.restored, done.ahead, done.skipped, done.degraded, done.recovered
    );
    assert_each_record_once(&done, &topics);
}

/// At-least-once, the same loop: nothing is lost, and what was written
/// after each restored checkpoint is written again, so there are
/// duplicates, and only of records a clean run writes.
#[test]
fn kafka_to_kafka_at_least_once_killed_again_and_again_loses_nothing_and_repeats_some() {
    let dir = tempfile::tempdir().unwrap();
    let (done, topics) = kafka_to_kafka(dir.path(), false);
    assert_eq!(done.skipped, 0, "at-least-once skips nothing");
    let (_, expected, got) = &topics[0];
    let mut counts: std::collections::BTreeMap<&String, i64> = std::collections::BTreeMap::new();
    for line in got {
        *counts.entry(line).or_default() += 1;
    }
    for line in expected {
        *counts.entry(line).or_default() -= 1;
    }
    let missing = counts.values().filter(|&&c| c < 0).count();
    let foreign = counts.iter().filter(|(l, c)| **c > 0 && expected.binary_search(l).is_err()).count();
    let repeated: i64 = counts.values().filter(|&&c| c > 0).sum();
    assert_eq!(missing, 0, "at-least-once lost records");
    assert_eq!(foreign, 0, "records no clean run writes");
    assert!(
        repeated > 0,
        "no duplicates after {} kills: the loop proved nothing about at-least-once",
        done.kills
    );
}

/// A file source and file sinks with checkpoints in a real HDFS (started by
/// `scripts/hdfs-test-cluster.sh`): killed again and again, the job writes
/// byte for byte one clean run's output, and the NameNode's own shell lists
/// the checkpoints it took.
#[test]
fn file_to_file_with_hdfs_checkpoints_killed_again_and_again_writes_exactly_one_runs_output() {
    let hdfs = weir_devtools::hdfs::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_input(&d.join("input.jsonl"), 1_200_000);
    let job = |name: &str, checkpoint: &str| {
        let text = format!(
            "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"input.jsonl\"\n[format]\nkey = \"device_id\"\n\
             timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
             max_out_of_orderness = \"300ms\"\nallowed_lateness = \"500ms\"\nlate_output = \"{name}-late.jsonl\"\n\
             [window]\ntype = \"sliding\"\nsize = \"1s\"\nslide = \"100ms\"\n[function]\n\
             plugin = \"max-temperature-agg\"\n{}\n{checkpoint}",
            file_sink(name)
        );
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    weir_ok(d, &["run", job("clean", "").to_str().unwrap(), "--until-end"]);
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"{}/weir\"\ninterval = \"300ms\"\nmode = \"exactly-once\"\nretain = 3\n",
        hdfs.url
    );
    let progress = Progress::new(d.join("crash-out.jsonl"), &d.join("clean-out.jsonl"));
    crash_loop(d, &job("crash", &checkpoint), 10, 13, KillBy::Output(&progress), &mut |_| {});
    for file in ["out", "late", "dead"] {
        let clean = std::fs::read(d.join(format!("clean-{file}.jsonl"))).unwrap();
        let crashed = std::fs::read(d.join(format!("crash-{file}.jsonl"))).unwrap();
        assert!(!clean.is_empty(), "the clean run wrote no {file} records");
        assert!(crashed == clean, "{file}: {} bytes vs {} in one clean run", crashed.len(), clean.len());
    }
    let listed = hdfs.fs_shell(&["-ls", "/weir/crash"]);
    let checkpoints = listed.lines().filter(|l| l.contains("/weir/crash/chk-")).count();
    assert!(
        (1..=3).contains(&checkpoints),
        "the NameNode lists {checkpoints} checkpoints (retain = 3):\n{listed}"
    );
}
