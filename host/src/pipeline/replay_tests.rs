//! Each source partition's output is a function of that partition's
//! records alone: the same records, read in other interleavings with the
//! other partitions and cut into other polls, give byte-identical output
//! per partition (results, late records and dead letters, in order). This
//! is what lets a restored job reproduce exactly what it wrote after its
//! checkpoint. The results are also checked against the window oracle.

use super::*;
use crate::source::RawRecord;
use crate::testing::{Lcg, engine};
use crate::window::WindowSpec;
use crate::window::tests::{Event, Outcome, never, oracle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

/// Records per partition, read in an interleaving and poll sizes drawn
/// from a seed; `None` reads the partitions one after the other, in
/// whole polls.
struct ScriptedSource {
    partitions: Vec<Vec<Vec<u8>>>,
    next: Vec<usize>,
    rng: Option<Lcg>,
    /// Called before every `n`-th poll (the polls so far, `n`, the call).
    between: Option<(usize, usize, Between)>,
}

/// What a [`ScriptedSource`] does between polls.
type Between = Box<dyn FnMut() + Send>;

impl Source for ScriptedSource {
    fn partitions(&self) -> Vec<i32> {
        (0..self.partitions.len() as i32).collect()
    }

    fn poll(
        &mut self,
        max: usize,
        _: Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        let open: Vec<usize> =
            (0..self.partitions.len()).filter(|&p| self.next[p] < self.partitions[p].len()).collect();
        if open.is_empty() {
            return Ok(Poll::End);
        }
        if let Some((polls, every, call)) = &mut self.between {
            *polls += 1;
            if *polls % *every == 0 {
                call();
            }
        }
        let count = match &mut self.rng {
            Some(rng) => 1 + rng.below(max.min(60) as u64) as usize,
            None => max,
        };
        let mut given = 0;
        while given < count {
            let open: Vec<usize> =
                (0..self.partitions.len()).filter(|&p| self.next[p] < self.partitions[p].len()).collect();
            let Some(&first) = open.first() else { break };
            let p = match &mut self.rng {
                Some(rng) => open[rng.below(open.len() as u64) as usize],
                None => first,
            };
            let offset = self.next[p];
            self.next[p] += 1;
            each(RawRecord {
                partition: p as i32,
                offset: offset as i64,
                payload: &self.partitions[p][offset],
            });
            given += 1;
        }
        Ok(Poll::Records(given))
    }

    fn name(&self) -> &str {
        "scripted"
    }

    fn commit(&mut self, _: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        for &(p, offset) in next_offsets {
            if let Some(next) = self.next.get_mut(p as usize) {
                *next = offset as usize;
            }
        }
        Ok(())
    }

    /// Only at the end of its records: a partition with records left is
    /// never quiet, whatever the schedule.
    fn caught_up(&self, partition: i32) -> bool {
        let p = partition as usize;
        self.next.get(p).zip(self.partitions.get(p)).is_none_or(|(next, records)| *next >= records.len())
    }
}

/// Keeps what it is sent, in order.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Sink for Capture {
    fn send(&mut self, _: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        let text = String::from_utf8_lossy(payload).into_owned();
        if let Ok(mut kept) = self.0.lock() {
            kept.push(text);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn name(&self) -> &str {
        "capture"
    }
}

/// Per partition, in order: results, late records, dead letters.
type PerPartition = BTreeMap<i32, (Vec<String>, Vec<String>, Vec<String>)>;

/// `n` records on three partitions; keys live on partition key % 3. Event time moves on
/// with disorder within the bound, some events far behind it (late, or
/// within the allowed lateness), and a few undecodable lines.
fn input(seed: u64, n: usize) -> (Vec<Vec<Vec<u8>>>, Vec<Event>) {
    let mut rng = Lcg(seed);
    let mut partitions = vec![vec![]; 3];
    let mut events = vec![];
    let mut clock = 1_000_000i64;
    for _ in 0..n {
        clock += rng.below(12) as i64;
        let key = rng.below(9) as i64;
        let p = (key % 3) as usize;
        let roll = rng.below(100);
        if roll == 0 {
            partitions[p].push(b"{not json".to_vec());
            continue;
        }
        let mut ts = clock - rng.below(300) as i64;
        if roll < 4 {
            ts -= 500 + rng.below(3_000) as i64;
        }
        let temp = 300.0 + rng.below(1000) as f64 / 10.0;
        partitions[p].push(
            format!(r#"{{"device_id": {key}, "temperature": {temp}, "execution_time": {ts}}}"#).into_bytes(),
        );
        events.push(Event { partition: p as i32, key, ts, temp });
    }
    (partitions, events)
}

/// The replay job, with `time` added to its `[time]` table.
fn job_with(window: &str, plugin: &str, time: &str) -> Job {
    let text = format!(
        r#"
name = "replay"
[source]
type = "file"
path = "/dev/null"
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
max_out_of_orderness = "300ms"
allowed_lateness = "1s"
late_output = "/dev/null"
{time}
[window]
{window}
[function]
plugin = "{plugin}"
[sink]
type = "file"
path = "/dev/null"
"#
    );
    match Job::parse(&text, "replay.toml", std::path::Path::new("/")) {
        Ok(job) => job,
        Err(e) => panic!("{e}"),
    }
}

fn run(window: &str, plugin: &str, partitions: &[Vec<Vec<u8>>], schedule: Option<u64>) -> PerPartition {
    run_with(window, plugin, "", partitions, schedule)
}

/// [`run`], with `time` added to the job's `[time]` table.
fn run_with(
    window: &str,
    plugin: &str,
    time: &str,
    partitions: &[Vec<Vec<u8>>],
    schedule: Option<u64>,
) -> PerPartition {
    let mut pipeline = Pipeline::build(job_with(window, plugin, time), engine()).unwrap();
    let mut source = ScriptedSource {
        partitions: partitions.to_vec(),
        next: vec![0; partitions.len()],
        rng: schedule.map(Lcg),
        between: None,
    };
    let (output, late, dead) = (Capture::default(), Capture::default(), Capture::default());
    let mut sinks = Sinks {
        output: Box::new(output.clone()),
        dead_letter: Some(Box::new(dead.clone())),
        late: Some(Box::new(late.clone())),
    };
    pipeline.run(&mut source, &mut sinks, &RunOptions::default(), &mut |_| {}).unwrap();
    let take = |c: &Capture| c.0.lock().unwrap().clone();
    per_partition(take(&output), take(&late), take(&dead))
}

/// Output, late and dead-letter lines by source partition.
fn per_partition(output: Vec<String>, late: Vec<String>, dead: Vec<String>) -> PerPartition {
    let mut per: PerPartition = BTreeMap::new();
    for line in output {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        per.entry((v["device_id"].as_i64().unwrap() % 3) as i32).or_default().0.push(line);
    }
    for line in late {
        let v: Value = serde_json::from_str(&line).unwrap();
        per.entry(v["partition"].as_i64().unwrap() as i32).or_default().1.push(line);
    }
    for line in dead {
        let v: Value = serde_json::from_str(&line).unwrap();
        per.entry(v["partition"].as_i64().unwrap() as i32).or_default().2.push(line);
    }
    per
}

#[test]
fn each_partition_gives_the_same_output_however_its_reads_interleave_with_the_others() {
    let (partitions, events) = input(5, 4_000);
    let cases = [
        ("type = \"tumbling\"\nsize = \"1s\"", Some(WindowSpec::Tumbling { size: 1000 })),
        (
            "type = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"",
            Some(WindowSpec::Sliding { size: 1000, slide: 250 }),
        ),
        ("type = \"session\"\ngap = \"40ms\"", None),
    ];
    for (window, spec) in cases {
        for plugin in ["max-temperature", "max-temperature-agg"] {
            let reference = run(window, plugin, &partitions, None);
            let (results, late, dead): (usize, usize, usize) = reference
                .values()
                .fold((0, 0, 0), |(r, l, d), p| (r + p.0.len(), l + p.1.len(), d + p.2.len()));
            assert!(results > 100 && late > 0 && dead > 0, "{window} {plugin}: {results} {late} {dead}");
            for seed in [1, 2, 3] {
                let got = run(window, plugin, &partitions, Some(seed));
                assert!(
                    got == reference,
                    "{window} {plugin}: interleaving {seed} changed a partition's output"
                );
            }
            let Some(spec) = spec else { continue };
            // The results, as a multiset, are the oracle's.
            let (expected, expected_late) = oracle(spec, 1000, 300, std::slice::from_ref(&events), &never);
            let mut got: Vec<(i64, i64, i64, Outcome)> = reference
                .values()
                .flat_map(|p| &p.0)
                .map(|line| {
                    let v: Value = serde_json::from_str(line).unwrap();
                    let int = |f: &str| v[f].as_i64().unwrap();
                    let max = v["max_temperature"].as_f64().unwrap().to_bits();
                    (
                        int("device_id"),
                        int("window_start"),
                        int("window_end"),
                        Outcome::Rows { max, count: int("count") },
                    )
                })
                .collect();
            got.sort();
            let missing: Vec<_> = expected.iter().filter(|e| !got.contains(e)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|e| !expected.contains(e)).take(5).collect();
            assert!(
                got == expected,
                "{window} {plugin}: {} vs {}; missing {missing:?}, extra {extra:?}",
                got.len(),
                expected.len()
            );
            assert_eq!(late, expected_late, "{window} {plugin}: late events");
        }
    }
}

/// Partition 0 keeps going while partition 1 falls quiet: `paced` polls of
/// partition 0's records, `pause` apart, then `stop` is set.
struct QuietSource {
    early: Vec<(i32, Vec<u8>)>,
    paced: Vec<Vec<u8>>,
    next: usize,
    offsets: [i64; 2],
    pause: Duration,
    stop: Arc<AtomicBool>,
}

impl Source for QuietSource {
    fn partitions(&self) -> Vec<i32> {
        vec![0, 1]
    }

    fn poll(
        &mut self,
        _: usize,
        _: Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        let mut give = |partition: i32, payload: &[u8], offsets: &mut [i64; 2]| {
            let offset = offsets[partition as usize];
            offsets[partition as usize] += 1;
            each(RawRecord { partition, offset, payload });
        };
        if !self.early.is_empty() {
            for (partition, payload) in std::mem::take(&mut self.early) {
                give(partition, &payload, &mut self.offsets);
            }
            return Ok(Poll::Records(1));
        }
        std::thread::sleep(self.pause);
        match self.paced.get(self.next) {
            Some(payload) => {
                self.next += 1;
                give(0, payload, &mut self.offsets);
                Ok(Poll::Records(1))
            }
            None => {
                self.stop.store(true, Ordering::Relaxed);
                Ok(Poll::Idle)
            }
        }
    }

    fn name(&self) -> &str {
        "quiet"
    }

    fn commit(&mut self, _: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&mut self, _: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }
}

fn reading(device: i64, ts: i64) -> Vec<u8> {
    format!(r#"{{"device_id": {device}, "temperature": 300.5, "execution_time": {ts}}}"#).into_bytes()
}

#[test]
fn an_idle_partitions_move_is_checkpointed_before_it_fires_and_a_restore_makes_it_again() {
    let storage = tempfile::tempdir().unwrap();
    let url = format!("file://{}", storage.path().display());
    let text = format!(
        r#"
name = "idle"
[source]
type = "file"
path = "/dev/null"
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
idle_timeout = "40ms"
[window]
type = "tumbling"
size = "1s"
[function]
plugin = "max-temperature"
[sink]
type = "file"
path = "/dev/null"
[checkpoint]
storage = "{url}"
interval = "10ms"
retain = 1000
"#
    );
    let job = Job::parse(&text, "idle.toml", std::path::Path::new("/")).unwrap();
    let run = |restore: RestoreFrom, source: &mut QuietSource| {
        let mut pipeline = Pipeline::build(job.clone(), engine()).unwrap();
        let output = Capture::default();
        let mut sinks = Sinks { output: Box::new(output.clone()), dead_letter: None, late: None };
        let options = RunOptions { stop: source.stop.clone(), restore, ..RunOptions::default() };
        let summary = pipeline.run(source, &mut sinks, &options, &mut |_| {}).unwrap();
        let lines = output.0.lock().unwrap().clone();
        (summary, lines)
    };
    // Device 1 lives on partition 1, which speaks at 1,000-1,400 and then
    // falls quiet; partition 0 (device 2) goes on to 9,000.
    let source = |paced: usize| QuietSource {
        early: vec![(1, reading(1, 1_000)), (1, reading(1, 1_400)), (0, reading(2, 1_100))],
        paced: (0..paced as i64).map(|i| reading(2, 2_000 + 1_000 * i)).collect(),
        next: 0,
        offsets: [0, 0],
        pause: Duration::from_millis(15),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (summary, lines) = run(RestoreFrom::Nothing, &mut source(8));
    let device1: Vec<&String> = lines.iter().filter(|l| l.contains(r#""device_id":1"#)).collect();
    // Stopped, not ended: only the idle move can have fired device 1's window.
    assert_eq!(device1.len(), 1, "{lines:?}");
    assert!(device1[0].contains(r#""window_start":1000"#), "{lines:?}");
    assert!(summary.checkpoints >= 2, "{summary:?}");

    // The checkpoint that recorded the move holds partition 1's watermark
    // past the window while its state has not fired it: restored, it fires
    // it again, as the run did once the checkpoint was complete.
    let storage = crate::checkpoint::open_storage(&url).unwrap();
    let recorded = crate::checkpoint::checkpoint_ids(storage.as_ref(), "idle")
        .unwrap()
        .into_iter()
        .find(|&id| {
            let checkpoint = crate::checkpoint::read_complete(storage.as_ref(), "idle", id).unwrap();
            let summary = summarize_checkpoint(&checkpoint).unwrap();
            summary.iter().any(|p| p.partition == 1 && p.watermark >= 1_999 && p.state.watermark < 1_999)
        })
        .expect("a checkpoint recorded the idle move before it fired");
    let (again, lines) = run(RestoreFrom::Checkpoint(recorded), &mut source(0));
    assert_eq!(again.restored, Some(recorded));
    let device1: Vec<&String> = lines.iter().filter(|l| l.contains(r#""device_id":1"#)).collect();
    assert_eq!(device1.len(), 1, "the restore makes the move again: {lines:?}");
}

/// The `clock-random` test guest: a window function whose rows report the
/// call's clock (its latest window end - 1) and random values (seeded
/// from the call's keys and windows), so they change when a call holds
/// other windows.
fn clock_random() -> String {
    crate::plugin::builtin::guests_dir().join("clock_random.wasm").display().to_string()
}

/// The guest's rows without `std_hash`: std's hasher counts the instance's
/// earlier calls, every partition's, so it changes with the interleaving.
fn without_std_hash(per: PerPartition) -> PerPartition {
    let strip = |line: &String| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("std_hash");
        v.to_string()
    };
    per.into_iter()
        .map(|(p, (results, late, dead))| (p, (results.iter().map(strip).collect(), late, dead)))
        .collect()
}

const WINDOWS: [&str; 3] = [
    "type = \"tumbling\"\nsize = \"1s\"",
    "type = \"sliding\"\nsize = \"1s\"\nslide = \"250ms\"",
    "type = \"session\"\ngap = \"40ms\"",
];

#[test]
fn each_partition_makes_the_same_calls_however_its_reads_interleave() {
    let (partitions, _) = input(11, 4_000);
    let plugin = clock_random();
    for window in WINDOWS {
        let reference = without_std_hash(run(window, &plugin, &partitions, None));
        // A round of firing covers the window ends of the fire delay: some
        // calls hold windows that end before the call's latest one.
        let mut batched = 0;
        for line in reference.values().flat_map(|p| &p.0) {
            let v: Value = serde_json::from_str(line).unwrap();
            let (clock, end) = (v["wall_ms"].as_i64().unwrap(), v["window_end"].as_i64().unwrap());
            assert!(clock >= end - 1, "{window}: a call's clock before its window's end: {line}");
            batched += usize::from(clock > end - 1);
        }
        assert!(batched > 10, "{window}: only {batched} windows shared a call with a later one");
        for seed in [1, 2, 3] {
            let got = without_std_hash(run(window, &plugin, &partitions, Some(seed)));
            assert!(got == reference, "{window}: interleaving {seed} changed a partition's calls");
        }
    }
}

#[test]
fn a_restore_from_any_checkpoint_makes_the_same_calls_as_one_run() {
    let (partitions, _) = input(13, 16_000);
    let plugin = clock_random();
    let window = WINDOWS[1];
    let reference = without_std_hash(run(window, &plugin, &partitions, None));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/checkpoints", dir.path().display());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let text = format!(
        r#"
name = "replay"
[source]
type = "file"
path = "/dev/null"
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
max_out_of_orderness = "300ms"
allowed_lateness = "1s"
late_output = "{late}"
[window]
{window}
[function]
plugin = "{plugin}"
[sink]
type = "file"
path = "{out}"
dead_letter = "{dead}"
[checkpoint]
storage = "{url}"
interval = "1ms"
retain = 100000
"#,
        late = file("late.jsonl"),
        out = file("out.jsonl"),
        dead = file("dead.jsonl"),
    );
    let job = Job::parse(&text, "replay.toml", std::path::Path::new("/")).unwrap();
    // The first run's source waits, every 40 polls, for a checkpoint newer
    // than the last one it saw to be complete in the storage (for at most
    // 10 s), so that the run leaves many checkpoints however slow the
    // machine is.
    let paced = || -> Between {
        let storage = crate::checkpoint::open_storage(&url).unwrap();
        let mut seen = 0;
        Box::new(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let newest = crate::checkpoint::latest_complete(storage.as_ref(), "replay")
                    .ok()
                    .flatten()
                    .map_or(0, |c| c.manifest.checkpoint);
                if newest > seen {
                    seen = newest;
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let run = |restore: RestoreFrom, seed: u64| {
        let mut pipeline = Pipeline::build(job.clone(), engine()).unwrap();
        let mut io = connect::open(pipeline.job(), true, None).unwrap();
        let between = matches!(restore, RestoreFrom::Nothing).then(|| (0, 40, paced()));
        let mut source = ScriptedSource {
            partitions: partitions.clone(),
            next: vec![0; partitions.len()],
            rng: Some(Lcg(seed)),
            between,
        };
        let options = RunOptions { restore, ..RunOptions::default() };
        pipeline.run(&mut source, &mut io.sinks, &options, &mut |_| {}).unwrap()
    };
    let written = || {
        let lines = |name: &str| -> Vec<String> {
            std::fs::read_to_string(dir.path().join(name)).unwrap().lines().map(str::to_string).collect()
        };
        without_std_hash(per_partition(lines("out.jsonl"), lines("late.jsonl"), lines("dead.jsonl")))
    };
    let first = run(RestoreFrom::Nothing, 1);
    assert!(first.checkpoints >= 5, "{first:?}");
    assert!(written() == reference, "a checkpointed run changed a partition's calls");
    let names = ["out.jsonl", "late.jsonl", "dead.jsonl"];
    let files: Vec<Vec<u8>> =
        names.iter().map(|name| std::fs::read(dir.path().join(name)).unwrap()).collect();

    // Checkpoints taken while windows waited for the fire delay: events had
    // moved a partition's watermark past what its windows had fired up to.
    let storage = crate::checkpoint::open_storage(&url).unwrap();
    let waiting: Vec<u64> = crate::checkpoint::checkpoint_ids(storage.as_ref(), "replay")
        .unwrap()
        .into_iter()
        .filter(|&id| {
            let checkpoint = crate::checkpoint::read_complete(storage.as_ref(), "replay", id).unwrap();
            summarize_checkpoint(&checkpoint).unwrap().iter().any(|p| {
                p.state.timers > 0 && p.max_event_time.is_some_and(|t| t - 300 - 1 > p.state.watermark)
            })
        })
        .collect();
    assert!(waiting.len() >= 3, "{waiting:?}");
    // As if the first run had crashed after each of them: a restore cuts
    // its files back to the checkpoint and reads on in another
    // interleaving, and every partition's calls are one run's.
    for (k, &id) in waiting.iter().step_by(waiting.len().div_ceil(4)).take(4).enumerate() {
        for (name, bytes) in names.iter().zip(&files) {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let again = run(RestoreFrom::Checkpoint(id), 2 + k as u64);
        assert_eq!(again.restored, Some(id));
        assert!(written() == reference, "restored from checkpoint {id}, a partition's calls changed");
    }
}

#[test]
fn the_fire_delay_changes_which_windows_share_a_call_and_nothing_else() {
    // The same records with the windows fired end by end, after the
    // default second and after five: every partition's results, late
    // records and dead letters are the same, byte for byte, in order.
    let (partitions, _) = input(17, 4_000);
    for window in WINDOWS {
        for plugin in ["max-temperature", "max-temperature-agg"] {
            let each_end = run_with(window, plugin, "fire_delay = \"0s\"", &partitions, Some(4));
            let (results, late): (usize, usize) =
                each_end.values().fold((0, 0), |(r, l), p| (r + p.0.len(), l + p.1.len()));
            assert!(results > 100 && late > 0, "{window} {plugin}: {results} {late}");
            for time in ["", "fire_delay = \"5s\""] {
                let got = run_with(window, plugin, time, &partitions, Some(4));
                assert!(got == each_end, "{window} {plugin} {time:?}: the output changed with the delay");
            }
        }
    }
    // Without a delay a call holds the window ends one record crossed
    // (mostly one): far fewer windows share a call with a later end than
    // with the delay.
    let shared = |time: &str| {
        let per = run_with(WINDOWS[1], &clock_random(), time, &partitions, None);
        let mut fired = std::collections::HashSet::new();
        let mut shared = 0;
        for line in per.values().flat_map(|p| &p.0) {
            let v: Value = serde_json::from_str(line).unwrap();
            let int = |f: &str| v[f].as_i64().unwrap();
            let window = (int("device_id"), int("window_start"), int("window_end"));
            // First firings only: a re-fire's call holds every window the
            // late event changed.
            shared += usize::from(fired.insert(window) && int("wall_ms") > window.2 - 1);
        }
        shared
    };
    let (none, default) = (shared("fire_delay = \"0s\""), shared(""));
    assert!(
        none * 10 < default,
        "windows sharing a call with a later end: {none} without a delay, {default} with"
    );
}
