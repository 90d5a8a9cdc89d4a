//! The web dashboard in a real browser: `weir serve` as a process, a
//! streaming job with checkpoints fed by `weir produce`, and headless
//! Chromium driven over the W3C WebDriver protocol (chromedriver), reading
//! the live page twice to see it change without a reload. Also the job
//! status JSON and `/metrics` series the dashboard relies on.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::host::Server;
use support::{Child, free_port, weir_command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver gives an element reference under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one headless Chromium session; both end on
/// drop.
struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).is_file(),
                "{binary} is missing: this test drives a real browser. Install it with \
                 `apt-get install -y chromium chromium-driver` (or run `bash .ci/run`)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Child(driver);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = call(&agent, "GET", &format!("{base}/status"), None)
                .is_ok_and(|(_, v)| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready on port {port} in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1600",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            }}
        });
        let (status, answer) = call(&agent, "POST", &format!("{base}/session"), Some(&capabilities))
            .unwrap_or_else(|e| panic!("chromedriver refused the connection: {e}"));
        assert_eq!(status, 200, "no browser session: {answer}");
        let session = answer["value"]["sessionId"].as_str().expect("a session id").to_string();
        Browser { base, session, agent, _driver: driver, _profile: profile }
    }

    /// A command of the session; its `value`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let (status, answer) =
            call(&self.agent, method, &url, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The first element that `css` selects, if any.
    fn find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let body = json!({ "using": "css selector", "value": css });
        let (status, answer) = call(&self.agent, "POST", &url, Some(&body)).unwrap();
        match status {
            200 => match answer["value"][ELEMENT].as_str() {
                Some(element) => Some(element.to_string()),
                None => panic!("find {css}: no element reference in {answer}"),
            },
            404 if answer["value"]["error"] == "no such element" => None,
            _ => panic!("find {css}: {status} {answer}"),
        }
    }

    /// What `read` (`attribute/<name>` or `text`) gives of the element
    /// `css` selects (`None`: no such element, or no such attribute). The
    /// page redraws as it polls: an element replaced between the find and
    /// the read is found again.
    fn read(&self, css: &str, read: &str) -> Option<String> {
        for _ in 0..10 {
            let element = self.find(css)?;
            let url = format!("{}/session/{}/element/{element}/{read}", self.base, self.session);
            let (status, answer) = call(&self.agent, "GET", &url, None).unwrap();
            match status {
                200 => return answer["value"].as_str().map(str::to_string),
                404 if answer["value"]["error"] == "stale element reference" => continue,
                _ => panic!("{read} of {css}: {status} {answer}"),
            }
        }
        panic!("{css}: the element went stale at each of 10 reads")
    }

    /// An attribute of the element `css` selects.
    fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.read(css, &format!("attribute/{name}"))
    }

    /// The visible text of the element `css` selects.
    fn text(&self, css: &str) -> Option<String> {
        self.read(css, "text")
    }

    fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(&json!({ "script": script, "args": [] })))
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().expect("base64 text")).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium; chromedriver is killed when `_driver` drops.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = call(&self.agent, "DELETE", &url, None);
    }
}

/// One HTTP request with a JSON body and answer: (status, JSON).
fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let response = match method {
        "GET" => agent.get(url).call(),
        "DELETE" => agent.delete(url).call(),
        _ => agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.map(Value::to_string).unwrap_or_else(|| "{}".into())),
    };
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text =
        response.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| e.to_string())?;
    let json = serde_json::from_str(&text).map_err(|e| format!("not JSON ({status}): {e}: {text:.200}"))?;
    Ok((status, json))
}

fn guest(name: &str) -> PathBuf {
    weir::plugin::builtin::guests_dir().join(name)
}

/// What the page shows of one job, read through WebDriver.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    state: String,
    throughput: f64,
    events: u64,
    windows: u64,
    /// The ids of the completed checkpoints in its history table.
    completed: Vec<u64>,
    lag: Option<i64>,
}

fn shown(browser: &Browser, id: &str) -> Option<Shown> {
    let card = format!("[data-job-id=\"{id}\"]");
    let value = |field: &str| browser.attribute(&format!("{card} [data-field=\"{field}\"]"), "data-value");
    let number = |field: &str| value(field).and_then(|v| v.parse::<f64>().ok());
    let rows = browser.script(&format!(
        "return Array.from(document.querySelectorAll('{card} [data-field=\"checkpoints\"] \
         tr[data-status=\"completed\"]')).map(r => Number(r.getAttribute('data-checkpoint-id')));"
    ));
    Some(Shown {
        state: browser.text(&format!("{card} [data-field=\"state\"]"))?.to_lowercase(),
        throughput: number("throughput")?,
        events: number("events")? as u64,
        windows: number("windows")? as u64,
        completed: rows.as_array()?.iter().filter_map(Value::as_u64).collect(),
        lag: number("watermark_lag").map(|v| v as i64),
    })
}

#[test]
fn the_dashboard_shows_a_running_job_live_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let plugin = server.ok(&["plugin", "upload", guest("max_temperature_agg.wasm").to_str().unwrap()]);
    let plugin = plugin.trim().to_string();

    // A streaming job on the embedded broker, with checkpoints every 300 ms,
    // fed at a steady rate until the test ends.
    let job_text = format!(
        "name = \"watched\"\n[source]\ntype = \"kafka\"\ntopic = \"readings\"\npartitions = 2\n[format]\n\
         key = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[time]\n\
         max_out_of_orderness = \"300ms\"\n[window]\ntype = \"tumbling\"\nsize = \"1s\"\n[function]\n\
         plugin = \"{plugin}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n[checkpoint]\n\
         storage = \"file://{}\"\ninterval = \"300ms\"\n",
        dir.path().join("out.jsonl").display(),
        dir.path().join("checkpoints").display()
    );
    let job = dir.path().join("job.toml");
    std::fs::write(&job, &job_text).unwrap();
    let id = server.ok(&["submit", job.to_str().unwrap()]).trim().to_string();
    let health = server.request("GET", "/healthz", None, None).1;
    let brokers =
        health["embedded_broker"].as_str().expect("the job started the embedded broker").to_string();
    let producer = weir_command(dir.path())
        .args(["produce", "--brokers", &brokers, "--topic", "readings", "--rate", "2000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir produce");
    let _producer = Child(producer);

    // The page is served without a token, as HTML.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut page = agent.get(&format!("{}/", server.url)).call().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let content_type = page.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.body_mut().read_to_string().unwrap().contains("data-job-id"));

    let browser = Browser::start();
    browser.open(&format!("{}/", server.url));
    // A mark in the page's own state: it survives only if the page is
    // never reloaded.
    browser.script("window.weirTestMark = 'same page'; return null;");

    // First reading: the job runs, has a completed checkpoint and events
    // flowing (polled, up to a minute).
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(s) = shown(&browser, &id)
            && s.state == "running"
            && !s.completed.is_empty()
            && s.throughput > 0.0
            && s.events > 0
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not show job {id} running with a checkpoint and throughput in a minute: \
             {:?}\n{}",
            shown(&browser, &id),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(first.lag.is_some(), "no watermark lag shown: {first:?}");

    // Second reading: the same page, newer numbers (the page polls the API
    // by itself).
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let s = shown(&browser, &id).expect("the job's card is still there");
        let newer_checkpoint = s.completed.iter().max() > first.completed.iter().max();
        if s.events > first.events && s.windows > first.windows && newer_checkpoint && s.throughput > 0.0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not change in a minute: first {first:?}, now {s:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(second.state, "running");
    assert_eq!(browser.script("return window.weirTestMark;"), "same page", "the page was reloaded");

    // The plugin list and the host line.
    let (name, version) = plugin.split_once('@').unwrap();
    let stored = server.request("GET", &format!("/api/plugins/{plugin}"), None, None).1;
    let row = format!("[data-plugin=\"{plugin}\"]");
    assert_eq!(browser.text(&format!("{row} [data-field=\"name\"]")).as_deref(), Some(name));
    assert_eq!(browser.text(&format!("{row} [data-field=\"version\"]")).as_deref(), Some(version));
    assert_eq!(
        browser.text(&format!("{row} [data-field=\"world\"]")),
        stored["world"].as_str().map(str::to_string)
    );
    assert_eq!(
        browser.text(&format!("{row} [data-field=\"sha256\"]")),
        stored["sha256"].as_str().map(str::to_string)
    );
    let host = browser.text("#host").unwrap_or_default();
    assert!(host.contains("1 of 1 jobs running"), "{host}");

    let png = browser.screenshot();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    assert!(png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {} bytes", png.len());

    // What the page reads: the job status JSON, and the same in /metrics.
    let status = server.job(&id);
    let metrics = &status["metrics"];
    let history = metrics["checkpoint_history"].as_array().expect("a checkpoint history");
    let completed: Vec<&Value> = history.iter().filter(|c| c["status"] == "completed").collect();
    assert!(!completed.is_empty() && history.len() <= 50, "{history:?}");
    for c in &completed {
        assert!(c["bytes"].as_u64().unwrap() > 0 && c["time_ms"].as_i64().unwrap() > 0, "{c}");
        assert!(c["duration_ms"].is_u64(), "{c}");
    }
    let ids: Vec<u64> = history.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "the history is oldest first: {ids:?}");
    assert_eq!(metrics["last_checkpoint_bytes"], completed.last().unwrap()["bytes"]);
    // The readings' event times are fixed (from 2023): the lag is large.
    assert!(metrics["watermark_lag_ms"].as_i64().unwrap() > 86_400_000, "{metrics}");
    let calls = &metrics["plugin_calls"];
    assert!(calls["count"].as_u64().unwrap() > 0 && calls["sum_ns"].as_u64().unwrap() > 0, "{calls}");

    let text =
        agent.get(&format!("{}/metrics", server.url)).call().unwrap().body_mut().read_to_string().unwrap();
    let labels = format!("job=\"watched\",id=\"{id}\"");
    let sample = |series: &str| -> f64 {
        let prefix = format!("{series}{{{labels}}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert!(sample("weir_job_watermark_lag_ms") > 86_400_000.0);
    assert!(sample("weir_job_last_checkpoint_duration_ms") >= 0.0);
    assert!(sample("weir_job_last_checkpoint_bytes") > 0.0);
    assert!(text.contains("# TYPE weir_job_plugin_call_seconds histogram"), "{text}");
    let count = sample("weir_job_plugin_call_seconds_count");
    assert!(count > 0.0 && sample("weir_job_plugin_call_seconds_sum") > 0.0);
    let inf = format!("weir_job_plugin_call_seconds_bucket{{{labels},le=\"+Inf\"}} ");
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("weir_job_plugin_call_seconds_bucket{{{labels},")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 12, "11 bounds and +Inf: {text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "the buckets are cumulative: {buckets:?}");
    assert!(text.lines().any(|l| l.starts_with(&inf)), "{text}");
}
