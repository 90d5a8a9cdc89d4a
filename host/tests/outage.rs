//! Broker outages under a running `weir run`: the broker goes away for
//! 30 s while a Kafka→Kafka map job runs in its own process, then comes
//! back. The job must neither crash nor spin meanwhile, must say once that
//! it is degraded and once that it recovered, and its output must be
//! exactly every input record mapped once.
//!
//! Two kinds of outage: `weir dev-broker` (librdkafka's mock cluster)
//! taken down through its control commands, and a real tansu process
//! killed with SIGKILL and started again on the same port and storage.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Child, start_tansu, weir_command};

/// How long the broker stays away.
const OUTAGE: Duration = Duration::from_secs(30);

/// Records produced before the outage, just before it, and after it.
const PHASES: [std::ops::Range<u64>; 3] = [0..6_000, 6_000..12_000, 12_000..18_000];

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn weir(dir: &Path, args: &[&str]) -> String {
    ok(weir_command(dir).args(args).stdin(Stdio::null()).output().unwrap(), &format!("weir {args:?}"))
}

/// Input record `i`: unique by `seq`, keyed by device.
fn reading(i: u64) -> String {
    let temperature = 290.0 + (i % 997) as f64 / 10.0;
    format!(
        "{{\"seq\": {i}, \"device_id\": {}, \"temperature\": {temperature}, \"execution_time\": {}}}\n",
        i % 10,
        1_700_000_000_000 + 5 * i
    )
}

fn produce(dir: &Path, brokers: &str, range: std::ops::Range<u64>) {
    let path = dir.join(format!("in-{}.jsonl", range.start));
    std::fs::write(&path, range.map(reading).collect::<String>()).unwrap();
    let path = path.to_str().unwrap();
    weir(dir, &["produce", "--brokers", brokers, "--topic", "in", "--input", path, "--key", "device_id"]);
}

/// The output topic's message count (high minus low watermarks).
fn messages(dir: &Path, brokers: &str, topic: &str) -> i64 {
    let info: Value = serde_json::from_str(&weir(
        dir,
        &["topic", "describe", "--brokers", brokers, "--topic", topic, "--json"],
    ))
    .unwrap();
    let partitions = info["partitions"].as_array().cloned().unwrap_or_default();
    partitions.iter().map(|p| p["high"].as_i64().unwrap_or(0) - p["low"].as_i64().unwrap_or(0)).sum()
}

/// Waits until the output topic holds `n` messages; fails if the job dies.
fn wait_for_output(dir: &Path, brokers: &str, n: u64, job: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = job.0.try_wait() {
            panic!("the job exited ({status}) before writing {n} records:\n{}", stderr_of(dir));
        }
        let have = messages(dir, brokers, "out");
        if have >= n as i64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {n} records within {limit:?}:\n{}",
            stderr_of(dir)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.stderr")).unwrap_or_default()
}

/// CPU time (user + system) a process used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Runs the job, takes the broker away for [`OUTAGE`] with `down`, brings
/// it back with `up`, and checks the job's output, log and CPU time.
fn ride_out_an_outage(dir: &Path, brokers: &str, down: &mut dyn FnMut(), up: &mut dyn FnMut()) {
    for topic in ["in", "out"] {
        weir(dir, &["topic", "create", "--brokers", brokers, "--topic", topic, "--partitions", "2"]);
    }
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"outage\"\n[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"in\"\n\
             group = \"outage\"\n[format]\nkey = \"device_id\"\nfields = {{ temperature = \"f64\" }}\n\
             [function]\nplugin = \"kelvin-to-celsius\"\n[sink]\ntype = \"kafka\"\ntopic = \"out\"\n"
        ),
    )
    .unwrap();
    produce(dir, brokers, PHASES[0].clone());
    let stderr = std::fs::File::create(dir.join("job.stderr")).unwrap();
    // No [restart]: a failed run ends the process, which the test sees.
    let mut child = Child(
        weir_command(dir)
            .args(["run", job.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    wait_for_output(dir, brokers, PHASES[0].end, &mut child, Duration::from_secs(60));

    // The second batch lands just before the outage, so the job is reading
    // or writing it when the broker goes.
    produce(dir, brokers, PHASES[1].clone());
    down();
    let (cpu_before, started) = (cpu_time(pid), Instant::now());
    std::thread::sleep(OUTAGE);
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let share = cpu.as_secs_f64() / started.elapsed().as_secs_f64();
    assert!(child.0.try_wait().unwrap().is_none(), "the job died during the outage:\n{}", stderr_of(dir));
    up();
    eprintln!("the job used {cpu:?} of CPU during the {OUTAGE:?} outage ({:.2}% of a core)", share * 100.0);
    // Waiting costs the job only librdkafka's reconnects with backoff (a
    // fraction of a percent); a loop that polls without waiting burns a
    // whole core (100%). 10% leaves room for a loaded test machine.
    assert!(share < 0.10, "the job used {cpu:?} of CPU in the {OUTAGE:?} outage: it spins");

    produce(dir, brokers, PHASES[2].clone());
    wait_for_output(dir, brokers, PHASES[2].end, &mut child, Duration::from_secs(120));
    // Stop it as Ctrl-C does, and let it end cleanly.
    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    let log = stderr_of(dir);
    assert!(status.success(), "the job failed:\n{log}");

    // Every input record, mapped to Celsius, exactly once.
    let out = weir(dir, &["consume", "--brokers", brokers, "--topic", "out", "--until-end"]);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for line in out.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        let record = &value["value"];
        let seq = record["seq"].as_u64().unwrap();
        let input: Value = serde_json::from_str(&reading(seq)).unwrap();
        let kelvin = input["temperature"].as_f64().unwrap();
        assert_eq!(record["temperature"].as_f64(), Some(kelvin - 273.15), "record {seq}: {record}");
        assert_eq!(record["device_id"], input["device_id"], "record {seq}");
        assert_eq!(value["key"].as_str(), Some((seq % 10).to_string().as_str()), "key of record {seq}");
        *seen.entry(seq).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(s, _)| *s).collect();
    assert!(
        repeated.is_empty(),
        "{} records written twice, e.g. {:?}",
        repeated.len(),
        &repeated[..5.min(repeated.len())]
    );
    let missing: Vec<u64> = (0..PHASES[2].end).filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    assert_eq!(seen.len() as u64, PHASES[2].end);

    // Said once that it is degraded, once that it recovered; not per poll.
    for line in log.lines().filter(|l| l.contains("degraded") || l.contains("recovered")) {
        eprintln!("job: {line}");
    }
    let degraded = log.lines().filter(|l| l.contains("WARN") && l.contains("unreachable")).count();
    let recovered = log.lines().filter(|l| l.contains("reachable again")).count();
    assert!((1..=4).contains(&degraded), "{degraded} degraded warnings:\n{log}");
    assert!(
        recovered >= 1 && recovered <= degraded,
        "{recovered} recoveries for {degraded} warnings:\n{log}"
    );
    for role in ["source", "sink"] {
        let last = log
            .lines()
            .rfind(|l| l.contains(&format!("{role} degraded")) || l.contains(&format!("{role} recovered")));
        assert!(last.is_none_or(|l| l.contains("recovered")), "the {role} never said it recovered:\n{log}");
        let said = log.lines().filter(|l| l.contains(&format!("{role} degraded"))).count();
        assert!(said <= 2, "the {role} said {said} times that it is degraded:\n{log}");
    }
}

#[test]
fn a_job_rides_out_a_dev_broker_outage() {
    let dir = tempfile::tempdir().unwrap();
    let address_file = dir.path().join("broker.addr");
    let mut broker = Child(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["dev-broker", "--listen", "127.0.0.1:0", "--control-stdin", "--address-file"])
            .arg(&address_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&address_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_string();
        }
        assert!(Instant::now() < deadline, "weir dev-broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let control = std::cell::RefCell::new(broker.0.stdin.take().unwrap());
    let send = |command: &str| control.borrow_mut().write_all(format!("{command}\n").as_bytes()).unwrap();
    ride_out_an_outage(dir.path(), &address, &mut || send("down"), &mut || send("up"));
}

#[test]
fn a_job_rides_out_a_killed_and_restarted_kafka_broker() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = std::cell::RefCell::new(start_tansu());
    let brokers = tansu.borrow().bootstrap.clone();
    wait_for_port(&brokers);
    ride_out_an_outage(dir.path(), &brokers, &mut || tansu.borrow_mut().kill(), &mut || {
        let mut tansu = tansu.borrow_mut();
        tansu.start();
        wait_for_port(&tansu.bootstrap);
    });
}

/// Waits until something listens at `address`.
fn wait_for_port(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens at {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
