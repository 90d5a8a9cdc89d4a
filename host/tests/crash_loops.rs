//! Crash loops against a broker in its own process: `weir run` reading a
//! Kafka topic is killed with SIGKILL at random moments at least ten
//! times, restarted each time from its newest checkpoint, then let finish.
//! Its outputs must then hold exactly what one crash-free run wrote: the
//! same records as a multiset (the partitions' outputs interleave
//! differently from run to run), none missing and none repeated.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Child, Lcg, weir_command};

/// Readings 5 ms apart, keyed by device, up to 200 ms out of order, one in
/// 300 far behind (late, or within the allowed lateness), and a bad line
/// every 4,000.
fn write_input(path: &Path, n: usize) {
    let mut rng = Lcg(17);
    let mut text = String::with_capacity(n * 80);
    for i in 0..n as i64 {
        let device = 1 + rng.below(48);
        let mut ts = 1_700_000_000_000 + 5 * i - rng.below(201) as i64;
        if rng.below(300) == 0 {
            ts -= 300 + rng.below(2_000) as i64;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        if i % 4_000 == 17 {
            text.push_str(&format!(
                "{{\"device_id\": {device}, \"temperature\": \"hot\", \"execution_time\": 0}}\n"
            ));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// `weir dev-broker` (librdkafka's mock cluster behind a real TCP
/// listener) in its own process; its address.
fn start_dev_broker(dir: &Path) -> (Child, String) {
    let address_file = dir.join("broker.addr");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["dev-broker", "--listen", "127.0.0.1:0", "--address-file"])
        .arg(&address_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir dev-broker");
    let mut child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&address_file)
            && !text.trim().is_empty()
        {
            return (child, text.trim().to_string());
        }
        assert!(child.0.try_wait().unwrap().is_none(), "weir dev-broker exited");
        assert!(Instant::now() < deadline, "weir dev-broker wrote no address");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn weir_ok(dir: &Path, args: &[&str]) -> String {
    let out = weir_command(dir).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates topic `readings` with `partitions` and sends it the input, keyed
/// by device. The mock cluster keeps at most 5 MB a partition (it drops the
/// oldest beyond that): check that every record is still there.
fn produce(dir: &Path, brokers: &str, partitions: u32) {
    let p = partitions.to_string();
    weir_ok(dir, &["topic", "create", "--brokers", brokers, "--topic", "readings", "--partitions", &p]);
    weir_ok(
        dir,
        &[
            "produce",
            "--brokers",
            brokers,
            "--topic",
            "readings",
            "--input",
            "input.jsonl",
            "--key",
            "device_id",
        ],
    );
    let out = weir_command(dir)
        .args(["topic", "describe", "--brokers", brokers, "--topic", "readings"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == 6 && cols[0].parse::<u32>().is_ok())
        .collect();
    assert_eq!(rows.len(), partitions as usize, "{text}");
    let lines = std::fs::read_to_string(dir.join("input.jsonl")).unwrap().lines().count();
    let kept: usize =
        rows.iter().map(|r| r[5].parse::<usize>().unwrap() - r[4].parse::<usize>().unwrap()).sum();
    assert!(rows.iter().all(|r| r[4] == "0") && kept == lines, "records were dropped: {text}");
}

/// A window job reading `topic` on `brokers`, with `sink` and `extra`
/// sections; returns its path.
fn kafka_job(dir: &Path, name: &str, brokers: &str, sink: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"readings\"\n\
         start = \"earliest\"\ngroup = \"{name}\"\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\n\
         fields = {{ temperature = \"f64\" }}\n[time]\nmax_out_of_orderness = \"300ms\"\nallowed_lateness = \"500ms\"\n\
         late_output = \"{name}-late.jsonl\"\n[window]\ntype = \"sliding\"\nsize = \"1s\"\nslide = \"100ms\"\n\
         [function]\nplugin = \"max-temperature-agg\"\n{sink}\n{extra}"
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
}

/// Runs `job` with `--until-end`, killing it after a random 0.2 to 0.8 s,
/// until it finishes by itself or has been killed `kills` times (then it
/// runs to the end). Counts restarts that restored a checkpoint.
fn crash_loop(dir: &Path, job: &Path, kills: usize, seed: u64) -> Loop {
    let mut rng = Lcg(seed);
    let mut done = Loop { kills: 0, restored: 0 };
    loop {
        assert!(done.kills < 60, "too many kills: the job makes no progress");
        let mut child = weir_command(dir)
            .args(["run", job.to_str().unwrap(), "--until-end"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let last = done.kills >= kills;
        if !last {
            std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        }
        let finished = last || child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
            done.kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        done.restored += usize::from(stderr.contains("restored checkpoint"));
        if finished {
            assert!(out.status.success(), "{stderr}");
            return done;
        }
    }
}

/// The lines of `file`, sorted: a multiset.
fn lines(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn kafka_to_file_killed_again_and_again_writes_exactly_one_runs_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_broker, brokers) = start_dev_broker(d);
    write_input(&d.join("input.jsonl"), 400_000);
    produce(d, &brokers, 16);

    let clean = kafka_job(d, "clean", &brokers, &file_sink("clean"), "");
    weir_ok(d, &["run", clean.to_str().unwrap(), "--until-end"]);

    let storage = d.join("checkpoints");
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"200ms\"\nmode = \"exactly-once\"\n",
        storage.display()
    );
    let crash = kafka_job(d, "crash", &brokers, &file_sink("crash"), &checkpoint);
    let done = crash_loop(d, &crash, 10, 3);
    assert!(done.kills >= 10, "only {} kills: the job finished too soon to test recovery", done.kills);
    assert!(
        done.restored * 2 > done.kills,
        "{} of {} restarts restored a checkpoint",
        done.restored,
        done.kills
    );
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
