//! What the integration tests share: the `weir` binary, child processes
//! that die with the test, and a real Kafka-compatible broker (tansu) on a
//! free port.
#![allow(dead_code)]

pub mod host;
pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's root, where `examples/` is.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the `weir` binary to completion in the repository's root, with no
/// standard input and its component cache in the tests' own folder.
pub fn weir(args: &[&str]) -> Output {
    weir_command(&root()).args(args).stdin(Stdio::null()).output().expect("run weir")
}

/// The `weir` binary as a command run in `dir`, with the tests' shared
/// cache of compiled components.
pub fn weir_command(dir: &Path) -> Command {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.current_dir(dir).env("WEIR_CACHE_DIR", cache);
    command
}

/// A seeded 64-bit linear congruential generator: the same numbers for the
/// same seed, with no crate needed.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Writes `n` readings to `path` as JSON lines, the same for the same
/// `seed`: 5 ms apart, keyed by one of `devices`, up to 200 ms out of
/// order, one in 300 far behind (late, or within the allowed lateness),
/// and a bad line (a string temperature) after reading `k` of every
/// `bad_every` for which `k % bad_every == 17`.
pub fn write_readings(path: &Path, n: usize, seed: u64, devices: u64, bad_every: i64) {
    let mut rng = Lcg(seed);
    let mut text = String::with_capacity(n * 80);
    for i in 0..n as i64 {
        let device = 1 + rng.below(devices);
        let mut ts = 1_700_000_000_000 + 5 * i - rng.below(201) as i64;
        if rng.below(300) == 0 {
            ts -= 300 + rng.below(2_000) as i64;
        }
        let temp = 333.0 + rng.below(5_000) as f64 / 100.0;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {temp}, \"execution_time\": {ts}}}\n"
        ));
        if i % bad_every == 17 {
            text.push_str(&format!(
                "{{\"device_id\": {device}, \"temperature\": \"hot\", \"execution_time\": 0}}\n"
            ));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// The JSON lines a successful `weir` command printed, in order.
pub fn stdout_records(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "weir failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// (device, event time, temperature) of every reading in the JSON-lines
/// file at `path` (lines that are not readings left out).
pub fn readings_in(path: &Path) -> Vec<(i64, i64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((v["device_id"].as_i64()?, v["execution_time"].as_i64()?, v["temperature"].as_f64()?))
        })
        .collect()
}

/// A child process killed when the test ends, however it ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tansu binary: `$WEIR_TANSU`, else on PATH, else `~/.cargo/bin`. The
/// tests that need a real broker fail, saying how to install it, when it is
/// missing: they never pass without it.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_TANSU") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    match on_path.or(home.filter(|p| p.is_file())) {
        Some(path) => path,
        None => panic!(
            "the tansu broker is not installed, and this test needs a real Kafka-compatible broker. \
             Install it with `cargo install tansu --locked --features dynostore,libsql` (about 15 minutes), \
             or run `bash .ci/run`, or point WEIR_TANSU at the binary"
        ),
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker on a free loopback port, with its data in a temporary
/// folder. SQLite storage: tansu 0.6's memory engine reports a wrong high
/// watermark (the last batch's base offset + 1, not the last offset + 1),
/// so bounded reads would stop early.
pub struct Tansu {
    pub bootstrap: String,
    binary: PathBuf,
    url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

pub fn start_tansu() -> Tansu {
    let binary = tansu_binary();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu { bootstrap: format!("127.0.0.1:{port}"), binary, url, child: None, dir };
    tansu.start();
    tansu
}

impl Tansu {
    /// Starts the broker process (again) on the same port and storage, and
    /// waits until it accepts connections. Started again right after a
    /// kill, it may find the port still held and exit: it is tried again.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "tansu is running already");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let child = Command::new(&self.binary)
                .args(["broker", "--listener-url", &self.url, "--advertised-listener-url", &self.url])
                .args(["--storage-engine", "sqlite://tansu.sqlite"])
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
            let mut child = Child(child);
            loop {
                if std::net::TcpStream::connect(&self.bootstrap).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if child.0.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "tansu did not start listening on {}",
                    self.bootstrap
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tansu exited at every start on {}",
                self.bootstrap
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Kills the broker process with SIGKILL and waits for it to be gone;
    /// its storage stays.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Adds the index that tansu 0.6's SQLite schema lacks: for every
    /// record it fetches, tansu looks up the record's headers
    /// (`header_fetch.sql`) in a table with no index on the record's key,
    /// so each fetched record scans every header of every topic (`SCAN h`
    /// in the query plan). Once a topic holds some 20,000 records with
    /// headers (weir's sequence numbers), reading 150,000 records without
    /// any took over 7 minutes instead of 3 s, and metadata requests, queued
    /// behind those fetches in tansu's one storage task, timed out. The
    /// index changes how tansu finds headers, not what it returns. Needs
    /// the `sqlite3` shell.
    pub fn index_headers(&self) {
        let out = Command::new("sqlite3")
            .current_dir(self.dir.path())
            .args(["-cmd", ".timeout 10000", "tansu.sqlite"])
            .arg("create index if not exists weir_header_record on header (topition, offset_id)")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run sqlite3 (apt-get install sqlite3): {e}"));
        assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    }
}
