//! `weir serve` as a real process, driven over HTTP and through the CLI:
//! upload, submit, results exact against a brute-force oracle, refusals
//! that change nothing, and a host stopped mid-job that resumes it from
//! its last checkpoint after a restart, writing exactly what one
//! uninterrupted run writes.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::host::{Server, TOKEN};
use support::{Lcg, weir_command};

fn guest(name: &str) -> PathBuf {
    weir::plugin::builtin::guests_dir().join(name)
}

/// Readings 5 ms apart, up to 200 ms out of order; (device, time, temperature).
fn write_readings(path: &Path, n: usize, seed: u64) -> Vec<(i64, i64, f64)> {
    let mut rng = Lcg(seed);
    let mut text = String::with_capacity(n * 80);
    let mut readings = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let device = 1 + rng.below(10) as i64;
        let ts = 1_700_000_000_000 + 5 * i - rng.below(201) as i64;
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        readings.push((device, ts, temp));
    }
    std::fs::write(path, text).unwrap();
    readings
}

fn job_file(name: &str, input: &Path, output: &Path, plugin: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntype = \"file\"\npath = \"{}\"\n[format]\nkey = \"device_id\"\n\
         timestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"300ms\"\n[window]\ntype = \"tumbling\"\nsize = \"1s\"\n[function]\n\
         plugin = \"{plugin}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n{extra}",
        input.display(),
        output.display()
    )
}

/// (device, start, end) → (max, count).
type Windows = BTreeMap<(i64, i64, i64), (f64, i64)>;

/// The tumbling 1 s windows of the readings, by brute force (none is late:
/// the watermark trails by 300 ms, the disorder is at most 200 ms).
fn oracle(readings: &[(i64, i64, f64)]) -> Windows {
    oracle_of(readings, 1000)
}

/// [`oracle`] for tumbling windows of `size` ms.
fn oracle_of(readings: &[(i64, i64, f64)], size: i64) -> Windows {
    let mut windows = Windows::new();
    for &(device, ts, temp) in readings {
        let start = ts - ts.rem_euclid(size);
        let w = windows.entry((device, start, start + size)).or_insert((f64::MIN, 0));
        w.0 = w.0.max(temp);
        w.1 += 1;
    }
    windows
}

/// The output file's windows; a window written twice fails.
fn written(path: &Path) -> Windows {
    let mut windows = Windows::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let key = (
            r["device_id"].as_i64().unwrap(),
            r["window_start"].as_i64().unwrap(),
            r["window_end"].as_i64().unwrap(),
        );
        let value = (r["max_temperature"].as_f64().unwrap(), r["count"].as_i64().unwrap());
        assert!(windows.insert(key, value).is_none(), "window {key:?} written twice");
    }
    windows
}

#[test]
fn upload_submit_and_exact_results_through_the_cli_and_refusals_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);

    // Upload: refused without the token, stored with it, once.
    let wasm = guest("max_temperature.wasm");
    let wasm = wasm.to_str().unwrap();
    let refused = server.weir(&["plugin", "upload", wasm], None);
    assert!(!refused.status.success());
    let first_line = String::from_utf8_lossy(&refused.stderr).lines().next().unwrap_or_default().to_string();
    assert!(first_line.contains("needs the host's token"), "{first_line}");
    assert_eq!(server.request("GET", "/api/plugins", None, None).1, serde_json::json!([]));
    let reference = server.ok(&["plugin", "upload", wasm]);
    assert_eq!(reference.trim(), "max-temperature@0.1.0");
    let again = server.weir(&["plugin", "upload", wasm], Some(TOKEN));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already stored"));
    let listed = server.ok(&["plugin", "list"]);
    assert_eq!(listed.lines().filter(|l| l.starts_with("max-temperature@0.1.0")).count(), 1, "{listed}");

    // Submit a job naming the stored plugin; its output is exact.
    let input = dir.path().join("readings.jsonl");
    let readings = write_readings(&input, 20_000, 5);
    let output = dir.path().join("out.jsonl");
    let job = dir.path().join("job.toml");
    std::fs::write(&job, job_file("max-temperature", &input, &output, "max-temperature@0.1.0", "")).unwrap();
    let id = server.ok(&["submit", "--until-end", job.to_str().unwrap()]);
    let id = id.trim();
    assert_eq!(id.len(), 16, "weir submit prints the id alone: {id:?}");
    let ended = server.wait_ended(id);
    assert_eq!(ended["state"], "finished", "{ended}\n{}", server.log());
    let expected = oracle(&readings);
    assert_eq!(written(&output), expected);
    assert_eq!(ended["metrics"]["outputs"], expected.len() as u64);
    assert_eq!(ended["metrics"]["events"], readings.len() as u64);
    assert_eq!(ended["plugin"], "max-temperature@0.1.0");
    let list = server.ok(&["list"]);
    assert!(list.lines().any(|l| l.starts_with(id) && l.contains("finished")), "{list}");
    // The same counts in Prometheus' text format.
    let metrics =
        ureq::get(&format!("{}/metrics", server.url)).call().unwrap().body_mut().read_to_string().unwrap();
    let labels = format!("{{job=\"max-temperature\",id=\"{id}\"}}");
    for (series, value) in [
        ("weir_job_events_total", readings.len() as u64),
        ("weir_job_records_total", readings.len() as u64),
        ("weir_job_outputs_total", expected.len() as u64),
        ("weir_job_windows_fired_total", expected.len() as u64),
        ("weir_job_late_events_total", 0),
        ("weir_job_dead_letters_total", 0),
        ("weir_job_running", 0),
    ] {
        assert!(
            metrics.lines().any(|l| l == format!("{series}{labels} {value}")),
            "no {series} {value} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("# TYPE weir_job_events_total counter"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "weir_plugins_stored 1"), "{metrics}");

    // The bad requests: each a 4xx with a JSON error, and nothing changes.
    let plugins_before = server.request("GET", "/api/plugins", None, None).1;
    let jobs_before = server.request("GET", "/api/jobs", None, None).1;
    let files_before = files_under(&data);
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::read(path).unwrap()
    };
    let good = job_file("other", &input, &dir.path().join("other.jsonl"), "max-temperature", "");
    let relative = write(
        "relative.toml",
        good.replace(&format!("{}", dir.path().join("other.jsonl").display()), "other.jsonl"),
    );
    let unknown = write(
        "unknown.toml",
        good.replace("plugin = \"max-temperature\"", "plugin = \"no-such-plugin@1.0\""),
    );
    let traversal = write(
        "traversal.toml",
        good.replace("plugin = \"max-temperature\"", "plugin = \"../../etc/passwd\""),
    );
    let a_file =
        write("file.toml", good.replace("plugin = \"max-temperature\"", &format!("plugin = \"{wasm}\"")));
    let map_plugin =
        write("map.toml", good.replace("plugin = \"max-temperature\"", "plugin = \"kelvin-to-celsius\""));
    let bad_field = write("field.toml", good.replace("size = \"1s\"", "size = \"soon\""));
    let oversized = vec![0u8; (64 << 20) + 1];
    let wrong_world = std::fs::read(guest("wrong_world.wasm")).unwrap();
    let cancel = format!("/api/jobs/{id}/cancel");
    let shadow = format!("/api/jobs/{id}/shadow?plugin=max-temperature&duration=1s");
    let upgrade = format!("/api/jobs/{id}/upgrade?plugin=max-temperature");
    let no_duration = shadow.replace("&duration=1s", "");
    let (bad_duration, too_long) = (shadow.replace("=1s", "=soon"), shadow.replace("=1s", "=2h"));
    let (no_job, no_job_upgrade) =
        (shadow.replace(id, "0123456789abcdef"), upgrade.replace(id, "0123456789abcdef"));
    let cases: Vec<Case> = vec![
        ("POST", "/api/plugins", None, Some(&wrong_world), 401, "token"),
        ("POST", "/api/plugins", Some("wrong"), Some(&wrong_world), 401, "refused"),
        ("POST", "/api/plugins", Some(TOKEN), Some(b"not wasm at all"), 400, "not a WebAssembly"),
        ("POST", "/api/plugins", Some(TOKEN), Some(&wrong_world), 400, "has the wrong type"),
        ("POST", "/api/plugins", Some(TOKEN), Some(&oversized), 413, "limit"),
        ("POST", "/api/plugins", Some(TOKEN), Some(b""), 400, "empty"),
        ("POST", "/api/jobs", None, Some(&relative), 401, "token"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&relative), 400, "sink.path"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&unknown), 400, "no-such-plugin@1.0"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&traversal), 400, "function.plugin"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&a_file), 400, "weir plugin upload"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&map_plugin), 400, "map-function"),
        ("POST", "/api/jobs", Some(TOKEN), Some(&bad_field), 400, "window.size"),
        ("POST", "/api/jobs", Some(TOKEN), Some(b"name = [unclosed"), 400, "TOML"),
        ("POST", "/api/jobs?until_end=maybe", Some(TOKEN), Some(&relative), 400, "query"),
        ("GET", "/api/jobs/0123456789abcdef", None, None, 404, "no job"),
        ("POST", "/api/jobs/0123456789abcdef/cancel", Some(TOKEN), None, 404, "no job"),
        ("POST", &cancel, Some(TOKEN), None, 409, "not running"),
        ("POST", &cancel, None, None, 401, "token"),
        ("GET", "/api/plugins/..%2F..%2Fetc%2Fpasswd", None, None, 400, "must start with a letter"),
        ("GET", "/api/plugins/a%2F..%2F..%2Fetc", None, None, 400, "may hold only"),
        ("DELETE", "/api/plugins/..%2Findex.json@1", Some(TOKEN), None, 400, "must start with a letter"),
        ("DELETE", "/api/plugins/max-temperature@9.9.9", Some(TOKEN), None, 404, "no plugin"),
        ("DELETE", "/api/plugins/max-temperature@0.1.0", None, None, 401, "token"),
        ("GET", "/api/nothing-here", None, None, 404, "no such endpoint"),
        ("POST", &shadow, None, None, 401, "token"),
        ("POST", &shadow, Some(TOKEN), None, 409, "not running"),
        ("POST", &no_duration, Some(TOKEN), None, 400, "query"),
        ("POST", &bad_duration, Some(TOKEN), None, 400, "duration"),
        ("POST", &too_long, Some(TOKEN), None, 400, "at most"),
        ("POST", &no_job, Some(TOKEN), None, 404, "no job"),
        ("POST", &upgrade, None, None, 401, "token"),
        ("POST", &upgrade, Some(TOKEN), None, 409, "not running"),
        ("POST", &no_job_upgrade, Some(TOKEN), None, 404, "no job"),
    ];
    for (method, path, token, body, status, says) in &cases {
        let (got, answer) = server.request(method, path, *token, *body);
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(got, *status, "{method} {path}: {answer}");
        assert!(error.contains(says), "{method} {path}: the error should say {says:?}: {error}");
    }
    assert_eq!(server.request("GET", "/api/plugins", None, None).1, plugins_before);
    assert_eq!(server.request("GET", "/api/jobs", None, None).1, jobs_before);
    assert_eq!(files_under(&data), files_before, "a refused request changed the data dir");
    assert!(!dir.path().join("other.jsonl").exists(), "a refused job ran");

    // The CLI names the problem on its first line.
    let out = server.weir(&["submit", dir.path().join("unknown.toml").to_str().unwrap()], Some(TOKEN));
    let first = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_string();
    assert!(!out.status.success() && first.contains("no plugin \"no-such-plugin@1.0\""), "{first}");
    assert!(out.stdout.is_empty(), "nothing on stdout when the submission fails");

    // Deleting the plugin (no job runs it now) empties the store.
    server.ok(&["plugin", "delete", "max-temperature@0.1.0"]);
    assert_eq!(server.request("GET", "/api/plugins", None, None).1, serde_json::json!([]));
}

/// A bad request: method, path, token, body, the status it gets, and what
/// its error says.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a [u8]>, u16, &'a str);

/// Every file under `dir` with its size, for "nothing changed".
fn files_under(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), meta.len());
            }
        }
    }
    files
}

#[test]
fn a_host_stopped_mid_job_resumes_it_after_a_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("readings.jsonl");
    let readings = write_readings(&input, 600_000, 11);
    let output = dir.path().join("out.jsonl");
    let storage = dir.path().join("checkpoints");
    let checkpoint = format!(
        "[checkpoint]\nstorage = \"file://{}\"\ninterval = \"200ms\"\nmode = \"exactly-once\"\n",
        storage.display()
    );
    let mut server = Server::start(&data);
    let plugin = server.ok(&["plugin", "upload", guest("max_temperature_agg.wasm").to_str().unwrap()]);
    let plugin = plugin.trim();
    let job = dir.path().join("job.toml");
    std::fs::write(&job, job_file("resumed", &input, &output, plugin, &checkpoint)).unwrap();

    let id = server.ok(&["submit", "--until-end", job.to_str().unwrap()]).trim().to_string();
    // Stopped once it has written some output, before its input ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = server.job(&id);
        assert_eq!(job["state"], "running", "the job ended before the host could be stopped: {job}");
        if job["metrics"]["outputs"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no output after a minute: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The plugin of a running job stays.
    let (status, answer) = server.request("DELETE", &format!("/api/plugins/{plugin}"), Some(TOKEN), None);
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains(&format!("used by running job {id}")), "{answer}");
    server.stop();
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(data.join("jobs").join(&id).join("job.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["state"], "running", "a shutdown leaves the job to resume: {on_disk}");
    let partial = written(&output);
    let expected = oracle(&readings);
    assert!(partial.len() < expected.len(), "the job had finished before the stop");

    let server = Server::start(&data);
    let ended = server.wait_ended(&id);
    assert_eq!(ended["state"], "finished", "{ended}\n{}", server.log());
    assert!(
        server.log().contains("restored checkpoint"),
        "the resumed run did not restore: {}",
        server.log()
    );
    assert_eq!(written(&output), expected, "the output across the restart is not exactly one run's");
    assert_eq!(ended["plugin"], plugin);
    let listed = server.ok(&["list"]);
    assert!(listed.lines().any(|l| l.starts_with(&id) && l.contains("finished")), "{listed}");
    // Once it finished, its plugin may go.
    server.ok(&["plugin", "delete", plugin]);
}

#[test]
fn a_job_stopped_with_a_savepoint_goes_on_from_it_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("readings.jsonl");
    let readings = write_readings(&input, 20_000, 23);
    let output = dir.path().join("out.jsonl");
    // A streaming job on the host's embedded broker: it runs until stopped.
    let job_text = format!(
        "name = \"saved\"\n[source]\ntype = \"kafka\"\ntopic = \"readings\"\npartitions = 2\n[format]\n\
         key = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"300ms\"\n[window]\ntype = \"tumbling\"\nsize = \"1s\"\n[function]\n\
         plugin = \"max-temperature-agg\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n[checkpoint]\n\
         storage = \"file://{}\"\ninterval = \"1h\"\nmode = \"exactly-once\"\n",
        output.display(),
        dir.path().join("checkpoints").display()
    );
    let job = dir.path().join("job.toml");
    std::fs::write(&job, &job_text).unwrap();
    let server = Server::start(&data);
    let id = server.ok(&["submit", job.to_str().unwrap()]).trim().to_string();
    let health = server.request("GET", "/healthz", None, None).1;
    let brokers =
        health["embedded_broker"].as_str().expect("the job started the embedded broker").to_string();
    let sent = weir_command(dir.path())
        .args(["produce", "--brokers", &brokers, "--topic", "readings", "--input", input.to_str().unwrap()])
        .args(["--key", "device_id"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    // Wait (polling its status) until the job has read every reading.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.job(&id)["metrics"]["records"].as_u64().unwrap_or(0) < readings.len() as u64 {
        assert!(Instant::now() < deadline, "the job did not read the readings in a minute: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A savepoint while it runs (the interval is an hour: this checkpoint
    // is the savepoint's own), then one that stops it.
    let first = server.ok(&["savepoint", &id]).trim().to_string();
    assert!(first.starts_with("file://"), "{first}");
    assert_eq!(server.job(&id)["state"], "running");
    let stopped = server.ok(&["savepoint", "--stop", &id]).trim().to_string();
    let record = server.job(&id);
    assert_eq!(record["state"], "stopped", "{record}");
    assert_eq!(record["savepoints"], serde_json::json!([first, stopped]));
    let expected = oracle(&readings);
    let partial = written(&output);
    assert!(!partial.is_empty() && partial.len() < expected.len(), "the last windows fire only at the end");
    // Each savepoint is a complete checkpoint, listed like any storage.
    for savepoint in [&first, &stopped] {
        let out = weir_command(dir.path())
            .args(["checkpoints", "list", savepoint, "--job", "saved"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && listed.contains("complete"),
            "{listed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A stopped job takes no more savepoints.
    let (status, answer) = server.request("POST", &format!("/api/jobs/{id}/savepoint"), Some(TOKEN), None);
    assert_eq!(status, 409, "{answer}");

    // Submitted again from the savepoint, to the end of the topic, it goes
    // on where it stopped: nothing read twice, no window missing or twice.
    let resumed = server.ok(&["submit", "--until-end", "--from-savepoint", &stopped, job.to_str().unwrap()]);
    let ended = server.wait_ended(resumed.trim());
    assert_eq!(ended["state"], "finished", "{ended}\n{}", server.log());
    assert_eq!(ended["from_savepoint"], stopped.as_str());
    assert_eq!(ended["metrics"]["records"], 0, "the savepoint's offsets are the topic's end: {ended}");
    assert_eq!(written(&output), expected, "the output across the savepoint is not exactly one run's");

    // A relative savepoint path, or a job without [checkpoint], is refused.
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        job_file("plain", &input, &dir.path().join("plain.jsonl"), "max-temperature-agg", ""),
    )
    .unwrap();
    for (args, says) in [
        (vec!["submit", "--from-savepoint", "sp-1", job.to_str().unwrap()], "relative path"),
        (vec!["submit", "--from-savepoint", &stopped, plain.to_str().unwrap()], "no [checkpoint]"),
    ] {
        let out = server.weir(&args, Some(TOKEN));
        let first_line = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_string();
        assert!(!out.status.success() && first_line.contains(says), "{args:?}: {first_line}");
    }
}

/// The streaming max-temperature job of the upgrade tests, on the host's
/// embedded broker, with tumbling windows of `size` ms and `function` as
/// its `[function]` section's body; checkpoints in `dir/checkpoints`.
fn upgrade_job(dir: &Path, name: &str, size: i64, output: &Path, function: &str) -> String {
    let storage = format!("file://{}", dir.join("checkpoints").display());
    upgrade_job_in(&storage, name, size, output, function)
}

/// [`upgrade_job`] with checkpoints in `storage`.
fn upgrade_job_in(storage: &str, name: &str, size: i64, output: &Path, function: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\ntopic = \"readings\"\npartitions = 2\n[format]\n\
         key = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"300ms\"\n[window]\ntype = \"tumbling\"\nsize = \"{size}ms\"\n\
         [function]\n{function}\n[sink]\ntype = \"file\"\npath = \"{}\"\n[checkpoint]\nstorage = \"{storage}\"\n\
         interval = \"1h\"\nmode = \"exactly-once\"\n",
        output.display(),
    )
}

#[test]
fn a_plugin_upgrade_keeps_the_window_state_and_refuses_what_cannot_take_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let storage = format!("file://{}", checkpoints.display());
    upgrade_through_a_savepoint(dir.path(), &storage, &|| format!("{:?}", files_under(&checkpoints)));
}

/// The same upgrade with the job's checkpoints in a real HDFS: the
/// savepoint is copied out of HDFS into the host's data dir, and back into
/// HDFS as the upgraded job's first checkpoint.
#[test]
fn a_plugin_upgrade_of_a_job_with_hdfs_checkpoints_keeps_the_window_state() {
    let hdfs = weir_devtools::hdfs::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("{}/weir", hdfs.url);
    upgrade_through_a_savepoint(dir.path(), &storage, &|| hdfs.fs_shell(&["-ls", "-R", "/weir"]));
    assert!(hdfs.fs_shell(&["-ls", "/weir/upgraded"]).contains("/weir/upgraded/chk-"));
}

/// Stops a job on 0.1.0 with a savepoint, has the submits that cannot take
/// its state over refused (with `listing` of its checkpoint storage
/// unchanged), and upgrades it to 0.2.0 from the savepoint, exactly.
fn upgrade_through_a_savepoint(dir: &Path, storage: &str, listing: &dyn Fn() -> String) {
    let data = dir.join("data");
    let input = dir.join("readings.jsonl");
    let readings = write_readings(&input, 20_000, 29);
    let output = dir.join("out.jsonl");
    // Windows of 30 s hold about 600 readings per device: more than an
    // aggregate's pane buffers (256), so the open windows at the savepoint
    // hold accumulators, which the upgrade must migrate.
    const SIZE: i64 = 30_000;
    let write_job = |file: &str, function: &str| {
        let path = dir.join(file);
        std::fs::write(&path, upgrade_job_in(storage, "upgraded", SIZE, &output, function)).unwrap();
        path
    };
    // Version 0.1.0 (the built-in) runs until stopped with a savepoint.
    let v1 = write_job("v1.toml", "plugin = \"max-temperature-agg\"");
    let server = Server::start(&data);
    let id = server.ok(&["submit", v1.to_str().unwrap()]).trim().to_string();
    let health = server.request("GET", "/healthz", None, None).1;
    let brokers = health["embedded_broker"].as_str().expect("the embedded broker").to_string();
    let sent = weir_command(dir)
        .args(["produce", "--brokers", &brokers, "--topic", "readings", "--input", input.to_str().unwrap()])
        .args(["--key", "device_id"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.job(&id)["metrics"]["records"].as_u64().unwrap_or(0) < readings.len() as u64 {
        assert!(Instant::now() < deadline, "the job did not read the readings in a minute: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = server.ok(&["savepoint", "--stop", &id]).trim().to_string();
    let expected = oracle_of(&readings, SIZE);
    let before = written(&output);
    assert!(!before.is_empty() && before.len() < expected.len(), "the last windows are still open");

    // Version 0.2.0 keeps its accumulators in another layout (state
    // version 1) and migrates 0.1.0's.
    let uploaded = server.ok(&["plugin", "upload", guest("max_temperature_agg_v2.wasm").to_str().unwrap()]);
    assert_eq!(uploaded.trim(), "max-temperature-agg@0.2.0");

    // What cannot take the state over is refused at submit, with the
    // reason on the first line, and nothing changes: no job, no
    // checkpoint, no output.
    let jobs = || server.request("GET", "/api/jobs", None, None).1;
    let (jobs_before, checkpoints_before) = (jobs(), listing());
    let v2 = "plugin = \"max-temperature-agg@0.2.0\"";
    for (file, function, says) in [
        ("other.toml", "plugin = \"max-temperature\"".to_string(), "taken with function max-temperature-agg"),
        ("refuse.toml", format!("{v2}\nparams = {{ migrate_fails = \"refuse\" }}"), "this migration refuses"),
        ("trap.toml", format!("{v2}\nparams = {{ migrate_fails = \"trap\" }}"), "trapped"),
    ] {
        let job = write_job(file, &function);
        let out = server.weir(&["submit", "--from-savepoint", &stopped, job.to_str().unwrap()], Some(TOKEN));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let first_line = stderr.lines().next().unwrap_or_default();
        assert!(!out.status.success() && first_line.contains(says), "{file}: {stderr}");
    }
    assert_eq!(jobs(), jobs_before, "a refused upgrade left a job behind");
    assert_eq!(listing(), checkpoints_before, "a refused upgrade changed the checkpoints");
    assert_eq!(written(&output), before);

    // The upgrade, to the end of the topic: the windows open at the
    // savepoint fire from their migrated accumulators, and the whole
    // output is exactly one run's.
    let upgraded = write_job("v2.toml", v2);
    let resumed =
        server.ok(&["submit", "--until-end", "--from-savepoint", &stopped, upgraded.to_str().unwrap()]);
    let ended = server.wait_ended(resumed.trim());
    assert_eq!(ended["state"], "finished", "{ended}\n{}", server.log());
    assert_eq!(ended["plugin"], "max-temperature-agg@0.2.0", "{ended}");
    assert_eq!(ended["metrics"]["records"], 0, "nothing is read twice: {ended}");
    assert_eq!(written(&output), expected, "the output across the upgrade is not exactly one run's");
    assert!(server.log().contains("migrated"), "{}", server.log());
}

/// One reading per device (1 to 10) at `hours` past the readings' start.
/// Behind the readings, they carry every partition's watermark past all
/// the readings' windows, whichever partition each device is in, so that
/// all of those fire on a stream that does not end; their own windows stay
/// open, in the job's state.
fn flush_readings(path: &Path, hours: i64) -> Vec<(i64, i64, f64)> {
    let ts = 1_700_000_000_000 + hours * 3_600_000;
    let readings: Vec<(i64, i64, f64)> = (1..=10).map(|d| (d, ts, 340.0 + d as f64)).collect();
    let text: String = readings
        .iter()
        .map(|(d, ts, t)| format!("{{\"device_id\": {d}, \"temperature\": {t}, \"execution_time\": {ts}}}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
    readings
}

#[test]
fn a_shadow_run_counts_exactly_the_windows_a_new_version_changes_and_a_switch_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (input, flush, flush2) =
        (dir.path().join("readings.jsonl"), dir.path().join("flush.jsonl"), dir.path().join("flush2.jsonl"));
    let readings = write_readings(&input, 20_000, 31);
    let first_flush = flush_readings(&flush, 1);
    flush_readings(&flush2, 2);
    let output = dir.path().join("out.jsonl");
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        upgrade_job(dir.path(), "shadowed", 1000, &output, "plugin = \"max-temperature-agg\""),
    )
    .unwrap();
    let server = Server::start(&data);
    let id = server.ok(&["submit", job.to_str().unwrap()]).trim().to_string();
    let health = server.request("GET", "/healthz", None, None).1;
    let brokers = health["embedded_broker"].as_str().expect("the embedded broker").to_string();
    let produce = |file: &Path| {
        let sent = weir_command(dir.path())
            .args([
                "produce",
                "--brokers",
                &brokers,
                "--topic",
                "readings",
                "--input",
                file.to_str().unwrap(),
            ])
            .args(["--key", "device_id"])
            .output()
            .unwrap();
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    };
    produce(&input);
    produce(&flush);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} within a minute: {} written: {}",
                written(&output).len(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let expected = oracle(&readings);
    let records = (readings.len() + first_flush.len()) as u64;
    wait_for("the job did not read every reading", &|| {
        server.job(&id)["metrics"]["records"].as_u64().unwrap_or(0) == records
    });
    for file in ["max_temperature_agg_v2.wasm", "max_temperature_agg_v3.wasm"] {
        server.ok(&["plugin", "upload", guest(file).to_str().unwrap()]);
    }

    // 0.2.0 gives the same results in another state layout: no window differs.
    let out = server.weir(&["upgrade", &id, "max-temperature-agg@0.2.0", "--shadow", "5s"], Some(TOKEN));
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && out.stdout.is_empty(), "{report}");
    let same = format!(
        "{} windows compared: 0 differ (0 fired by max-temperature-agg@0.1.0 only, 0 by max-temperature-agg@0.2.0 only)",
        expected.len()
    );
    assert!(report.lines().any(|l| l == same), "expected '{same}' in:\n{report}");

    // 0.3.0 ignores readings above 382: by brute force, a window differs
    // when it holds such a reading and another, and 0.3.0 writes nothing
    // for a window with only such readings.
    let mut spiky: BTreeMap<(i64, i64, i64), (bool, bool)> = BTreeMap::new();
    for &(device, ts, temp) in &readings {
        let start = ts - ts.rem_euclid(1000);
        let w = spiky.entry((device, start, start + 1000)).or_default();
        if temp > 382.0 { w.0 = true } else { w.1 = true }
    }
    let differing: Vec<_> =
        spiky.iter().filter(|(_, (above, below))| *above && *below).map(|(w, _)| *w).collect();
    let only_old = spiky.values().filter(|&&(above, below)| above && !below).count() as u64;
    assert!(!differing.is_empty() && differing.len() < expected.len(), "the readings must give both kinds");
    let (status, changed) = server.request(
        "POST",
        &format!("/api/jobs/{id}/shadow?plugin=max-temperature-agg@0.3.0&duration=5s"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["old"]["records"], records, "{changed}");
    assert_eq!(changed["new"]["records"], records, "{changed}");
    assert_eq!(changed["compared"], expected.len() as u64 - only_old, "{changed}");
    assert_eq!(changed["differing"], differing.len() as u64, "{changed}");
    assert_eq!(changed["unmatched"], serde_json::json!([only_old, 0]), "{changed}");
    let examples = changed["examples"].as_array().unwrap();
    assert_eq!(examples.len(), differing.len().min(10));
    for example in examples {
        let window = (
            example["key"].as_str().unwrap().parse::<i64>().unwrap(),
            example["window_start"].as_i64().unwrap(),
            example["window_end"].as_i64().unwrap(),
        );
        assert!(differing.contains(&window), "{example} is not a window 0.3.0 changes");
        let old: Value = serde_json::from_str(example["old"].as_str().unwrap()).unwrap();
        assert_eq!(old["max_temperature"].as_f64().unwrap(), expected[&window].0, "{example}");
        let new: Value = serde_json::from_str(example["new"].as_str().unwrap()).unwrap();
        assert!(new["max_temperature"].as_f64().unwrap() <= 382.0, "{example}");
    }
    // The job goes on untouched.
    assert_eq!(server.job(&id)["state"], "running");
    assert_eq!(server.job(&id)["metrics"]["records"], records);
    // A version of another function is refused, naming the mismatch.
    for how in ["--shadow", "--switch"] {
        let args = ["upgrade", &id, "max-temperature", how, "1s"];
        let out = server.weir(if how == "--switch" { &args[..4] } else { &args }, Some(TOKEN));
        let first_line = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_string();
        assert!(!out.status.success() && first_line.contains("another function"), "{how}: {first_line}");
        assert_eq!(server.job(&id)["state"], "running", "a refused {how} stopped the job");
    }

    // Switched at a savepoint, the job goes on with 0.2.0 and the window
    // state it had: the flush readings' windows, migrated, fire when the
    // second flush passes them, and the whole output is one run's.
    let switched = server.ok(&["upgrade", &id, "max-temperature-agg@0.2.0", "--switch"]).trim().to_string();
    assert_ne!(switched, id);
    assert_eq!(server.job(&id)["state"], "stopped");
    // Its output is written at checkpoints (the switch's savepoint is
    // one): every window of the readings, once, and nothing from the
    // shadow runs.
    assert_eq!(written(&output), expected);
    let now = server.job(&switched);
    assert_eq!(
        (&now["state"], &now["plugin"]),
        (&"running".into(), &"max-temperature-agg@0.2.0".into()),
        "{now}"
    );
    produce(&flush2);
    wait_for("the upgraded job did not read the second flush", &|| {
        server.job(&switched)["metrics"]["records"] == first_flush.len() as u64
    });
    // The cancel's last checkpoint writes what the second flush fired.
    server.ok(&["cancel", &switched]);
    let all: Vec<_> = readings.iter().chain(&first_flush).copied().collect();
    let expected = oracle(&all);
    assert_eq!(written(&output), expected, "the output across the switch is not exactly one run's");
    assert!(server.log().contains("migrated "), "{}", server.log());
}

#[test]
fn a_savepoint_that_cannot_be_written_fails_cleanly_and_a_bad_data_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A data dir that cannot be made: weir serve says which, and exits.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let out = weir_command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", file.join("data").to_str().unwrap()])
        .env("WEIR_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cannot create the data dir"), "{stderr}");

    // A savepoint whose folder cannot be written is refused with the
    // reason; the job runs on, and takes one once the folder can be made.
    let data = dir.path().join("data");
    let output = dir.path().join("out.jsonl");
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        upgrade_job(dir.path(), "blocked", 1000, &output, "plugin = \"max-temperature-agg\""),
    )
    .unwrap();
    let server = Server::start(&data);
    let id = server.ok(&["submit", job.to_str().unwrap()]).trim().to_string();
    let savepoints = data.join("savepoints");
    std::fs::write(&savepoints, "in the way").unwrap();
    let (status, answer) = server.request("POST", &format!("/api/jobs/{id}/savepoint"), Some(TOKEN), None);
    assert_eq!(status, 500, "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("cannot take the savepoint"), "{answer}");
    let record = server.job(&id);
    assert_eq!(
        (&record["state"], &record["savepoints"]),
        (&"running".into(), &serde_json::json!([])),
        "{record}"
    );
    std::fs::remove_file(&savepoints).unwrap();
    let taken = server.ok(&["savepoint", &id]).trim().to_string();
    assert!(taken.starts_with("file://") && server.job(&id)["savepoints"] == serde_json::json!([taken]));
    server.ok(&["cancel", &id]);
}
