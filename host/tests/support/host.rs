//! `weir serve` as a real process on a free port, for the tests that drive
//! a host over HTTP and through the CLI.

use super::weir_command;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The token every test host runs with.
pub const TOKEN: &str = "test-token-0123456789";

/// A `weir serve` process on a free port; killed when dropped.
pub struct Server {
    child: Option<std::process::Child>,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a host on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> Server {
        let mut child = weir_command(data_dir.parent().unwrap())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()])
            .env("WEIR_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.strip_prefix("listening on ") {
                url = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("weir serve did not start: {}", stderr.lock().unwrap()));
        // The rest of its log, kept for messages (and so the pipe never fills).
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child: Some(child), url, stderr }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signals a child of ours that has not been reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "weir serve exited with {status}: {}", self.log());
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A CLI command against it, with `token` if given.
    pub fn weir(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut command = weir_command(Path::new(env!("CARGO_TARGET_TMPDIR")));
        command.args(args).env("WEIR_HOST", &self.url).env_remove("WEIR_TOKEN").stdin(Stdio::null());
        if let Some(token) = token {
            command.env("WEIR_TOKEN", token);
        }
        command.output().unwrap()
    }

    /// A CLI command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weir(args, Some(TOKEN));
        assert!(
            out.status.success(),
            "weir {args:?} failed: {}\nhost log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A raw request: (status, JSON body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let r = agent.get(&url);
                match &auth {
                    Some(a) => r.header("Authorization", a).call(),
                    None => r.call(),
                }
            }
            ("DELETE", _) => {
                let r = agent.delete(&url);
                match &auth {
                    Some(a) => r.header("Authorization", a).call(),
                    None => r.call(),
                }
            }
            (_, body) => {
                let r = agent.post(&url);
                let r = match &auth {
                    Some(a) => r.header("Authorization", a),
                    None => r,
                };
                r.send(body.unwrap_or_default())
            }
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
        (status, json)
    }

    /// A job's record (`GET /api/jobs/{id}`).
    pub fn job(&self, id: &str) -> Value {
        let (status, job) = self.request("GET", &format!("/api/jobs/{id}"), None, None);
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Waits (polling its status, up to a minute) until the job is no
    /// longer running; its record.
    pub fn wait_ended(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.job(id);
            if job["state"] != "running" {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still running after a minute: {job}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
