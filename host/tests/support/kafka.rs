//! Kafka helpers of the tests that run `weir` against a broker in its own
//! process: `weir dev-broker`, topics and what they hold.

use super::{Child, weir_command};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `weir dev-broker` (librdkafka's mock cluster behind a real TCP
/// listener) in its own process; its address.
pub fn start_dev_broker(dir: &Path) -> (Child, String) {
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

pub fn weir_ok(dir: &Path, args: &[&str]) -> String {
    let out = weir_command(dir).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How many records `topic` holds, checking that the mock cluster dropped
/// none of them (every partition's low offset is 0).
pub fn kept(dir: &Path, brokers: &str, topic: &str) -> usize {
    let out = weir_command(dir)
        .args(["topic", "describe", "--brokers", brokers, "--topic", topic])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == 6 && cols[0].parse::<u32>().is_ok())
        .collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r[4] == "0"),
        "records were dropped from {topic}: {text}"
    );
    rows.iter().map(|r| r[5].parse::<usize>().unwrap()).sum()
}

/// The values of every record of `topic`, as text, sorted: a multiset.
pub fn topic_values(dir: &Path, brokers: &str, topic: &str) -> Vec<String> {
    let out = weir_command(dir)
        .args([
            "consume",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--until-end",
            "--isolation",
            "read_uncommitted",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "weir consume {topic}: {}", String::from_utf8_lossy(&out.stderr));
    let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].to_string())
        .collect();
    values.sort();
    values
}
