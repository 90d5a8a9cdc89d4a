//! Recovery for real: `weir run` killed with SIGKILL at random moments,
//! restarted each time from its newest checkpoint, then let finish, writes
//! exactly the bytes one uninterrupted run writes: no result, late record
//! or dead letter missing or repeated.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{Lcg, weir_command};

/// Readings 5 ms apart, up to 200 ms out of order, one in 400 far behind
/// (late), and a bad line every 5,000.
fn write_input(path: &Path, n: usize) {
    let mut rng = Lcg(99);
    let mut text = String::with_capacity(n * 80);
    for i in 0..n as i64 {
        let device = 1 + rng.below(10);
        let mut ts = 1_700_000_000_000 + 5 * i - rng.below(201) as i64;
        if rng.below(400) == 0 {
            ts -= 5_000;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        if i % 5_000 == 17 {
            text.push_str("{\"device_id\": 1, \"temperature\": \"hot\", \"execution_time\": 0}\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

fn job(dir: &Path, name: &str, checkpoint: &str) -> std::path::PathBuf {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"input.jsonl\"\n[format]\nkey = \"device_id\"\n\
         timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\nmax_out_of_orderness = \"300ms\"\n\
         allowed_lateness = \"500ms\"\nlate_output = \"{name}-late.jsonl\"\n[window]\ntype = \"sliding\"\nsize = \"1s\"\n\
         slide = \"100ms\"\n[function]\nplugin = \"max-temperature-agg\"\n[sink]\ntype = \"file\"\n\
         path = \"{name}-out.jsonl\"\ndead_letter = \"{name}-dead.jsonl\"\n{checkpoint}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn weir_run_killed_again_and_again_resumes_from_its_checkpoints_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write_input(&dir.path().join("input.jsonl"), 900_000);
    let run = |job: &Path| {
        let mut command = weir_command(dir.path());
        command.args(["run", job.to_str().unwrap(), "--until-end"]);
        command
    };

    let clean_job = job(dir.path(), "clean", "");
    let started = Instant::now();
    let clean = run(&clean_job).stdin(Stdio::null()).output().unwrap();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(started.elapsed() > Duration::from_secs(2), "the input is too small to kill the job often");

    let storage = dir.path().join("checkpoints");
    let crash_job = job(
        dir.path(),
        "crash",
        &format!(
            "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"300ms\"\nmode = \"exactly-once\"\n",
            storage.display()
        ),
    );
    let mut rng = Lcg(7);
    let (mut kills, mut restored) = (0, 0);
    loop {
        assert!(kills < 60, "too many kills: the job makes no progress");
        let mut child = run(&crash_job)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Kill after half a checkpoint interval to two of them: most runs
        // get past a checkpoint, and most kills land after output beyond
        // it reached the file (the sink's buffer is 1 MiB; the job writes
        // about 10 MiB a second), which the restart must cut off. The
        // input takes a clean run several times that.
        let wait = Duration::from_millis(150 + rng.below(450));
        std::thread::sleep(wait);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        restored += usize::from(stderr.contains("restored checkpoint"));
        if finished {
            assert!(out.status.success(), "{stderr}");
            break;
        }
        if kills >= 12 {
            let last = run(&crash_job).stdin(Stdio::null()).output().unwrap();
            let stderr = String::from_utf8_lossy(&last.stderr);
            assert!(last.status.success(), "{stderr}");
            restored += usize::from(stderr.contains("restored checkpoint"));
            break;
        }
    }
    assert!(kills >= 10, "only {kills} kills: the job finished too soon to test recovery");
    assert!(restored * 2 > kills, "{restored} of {kills} restarts restored a checkpoint");
    for file in ["out", "late", "dead"] {
        let clean = std::fs::read(dir.path().join(format!("clean-{file}.jsonl"))).unwrap();
        let crashed = std::fs::read(dir.path().join(format!("crash-{file}.jsonl"))).unwrap();
        assert!(!clean.is_empty(), "the clean run wrote no {file} records");
        assert!(
            crashed == clean,
            "{file}: after {kills} kills the output differs from one clean run ({} vs {} bytes)",
            crashed.len(),
            clean.len()
        );
    }
}

#[test]
fn checkpoints_are_listed_inspected_and_chosen_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write_input(&dir.path().join("input.jsonl"), 20_000);
    let storage = dir.path().join("checkpoints");
    let url = format!("file://{}", storage.display());
    let job = job(
        dir.path(),
        "cli",
        &format!("[checkpoint]\nstorage = \"{url}\"\ninterval = \"1h\"\nretain = 2\n"),
    );
    let weir = |args: &[&str]| {
        let out = weir_command(dir.path()).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let job = job.to_str().unwrap();
    let (_, first) = weir(&["run", job, "--until-end"]);
    assert!(first.contains("1 checkpoints taken, starting afresh"), "{first}");
    let output = std::fs::read(dir.path().join("cli-out.jsonl")).unwrap();
    let (_, again) = weir(&["run", job, "--until-end"]);
    assert!(again.contains("resumed from checkpoint 1") && again.contains("0 output records"), "{again}");

    let (listed, _) = weir(&["checkpoints", "list", &url]);
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows.iter().all(|r| r.starts_with("cli ") && r.ends_with("complete")), "{listed}");
    let (inspected, _) = weir(&["checkpoints", "inspect", &format!("{url}/cli/chk-{:020}", 2)]);
    assert!(inspected.contains("window: sliding:1s/100ms"), "{inspected}");
    let sha = inspected.lines().find_map(|l| l.strip_prefix("plugin sha256: ")).unwrap_or_default();
    assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()), "{inspected}");
    let recorded = std::fs::read(storage.join(format!("cli/chk-{:020}/job.toml", 2))).unwrap();
    assert!(String::from_utf8_lossy(&recorded).contains("name = \"cli\""), "the job file is recorded");
    let partition = inspected.lines().last().unwrap().split_whitespace().collect::<Vec<_>>();
    // Partition 0, read to the end: 20,000 readings and 4 bad lines.
    assert_eq!(&partition[..2], ["0", "20004"], "{inspected}");

    // From none: a fresh run, the same output; from checkpoint 1: nothing new.
    let (_, fresh) = weir(&["run", job, "--until-end", "--from-checkpoint", "none"]);
    assert!(fresh.contains("starting afresh"), "{fresh}");
    assert!(std::fs::read(dir.path().join("cli-out.jsonl")).unwrap() == output);
    let missing = weir_command(dir.path())
        .args(["run", job, "--until-end", "--from-checkpoint", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!missing.status.success(), "checkpoint 1 is gone (retain = 2)");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("chk-00000000000000000001 is incomplete"));
}

#[test]
fn a_failing_run_is_restarted_by_its_strategy_and_gives_up_when_it_says() {
    let dir = tempfile::tempdir().unwrap();
    write_input(&dir.path().join("input.jsonl"), 2_000);
    // The trap guest fails every window of more than one event, and
    // on_failure = "fail" makes that fail the run: two restarts, then the
    // job fails with the trap.
    let trap = weir::plugin::builtin::guests_dir().join("trap.wasm");
    let text = format!(
        "name = \"trapping\"\n[source]\ntype = \"file\"\npath = \"input.jsonl\"\n[format]\nkey = \"device_id\"\n\
         timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\ntype = \"tumbling\"\nsize = \"1s\"\n\
         [function]\nplugin = \"{}\"\non_failure = \"fail\"\n[sink]\ntype = \"file\"\npath = \"trap-out.jsonl\"\n\
         [restart]\nstrategy = \"fixed-delay\"\nattempts = 2\ndelay = \"10ms\"\n",
        trap.display()
    );
    std::fs::write(dir.path().join("trap.toml"), text).unwrap();
    let out = weir_command(dir.path())
        .args(["run", "trap.toml", "--until-end"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("restart 1 of 2 in 0.0 s") && stderr.contains("restart 2 of 2"), "{stderr}");
    assert!(!stderr.contains("restart 3"), "{stderr}");
    assert_eq!(stderr.matches("the run failed: plugin 'trap' failed in apply").count(), 2, "{stderr}");
    let last = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(last.contains("plugin 'trap' failed in apply") && last.contains("trapped"), "{stderr}");

    // A source that is not there yet: restarts until it is, then the job
    // runs to the end and writes what one clean run writes.
    let clean = job(dir.path(), "clean", "");
    let late_job = job(
        dir.path(),
        "waiting",
        "[restart]\nstrategy = \"fixed-delay\"\nattempts = 200\ndelay = \"20ms\"\n",
    );
    let text = std::fs::read_to_string(&late_job)
        .unwrap()
        .replace("path = \"input.jsonl\"", "path = \"later.jsonl\"");
    std::fs::write(&late_job, text).unwrap();
    let child = weir_command(dir.path())
        .args(["run", late_job.to_str().unwrap(), "--until-end"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::copy(dir.path().join("input.jsonl"), dir.path().join("later.jsonl")).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("restart 1 of 200") && stderr.contains("cannot open"), "{stderr}");
    assert!(stderr.contains("restarts after failures"), "{stderr}");
    let ran = weir_command(dir.path())
        .args(["run", clean.to_str().unwrap(), "--until-end"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(ran.status.success());
    let expected = std::fs::read(dir.path().join("clean-out.jsonl")).unwrap();
    assert!(!expected.is_empty());
    assert!(std::fs::read(dir.path().join("waiting-out.jsonl")).unwrap() == expected);
}
