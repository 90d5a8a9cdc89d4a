//! `weir consume`: prints a topic's messages as JSON lines,
//! `{"partition", "offset", "timestamp", "key", "value"}`. A value that is
//! JSON is printed as JSON, anything else as a string.

use super::dev_broker::stop_on_ctrl_c;
use anyhow::Context;
use serde_json::{Value, json};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir::source::Poll;
use weir::source::kafka::{KafkaSource, KafkaSourceOptions, StartFrom};

#[derive(clap::Args)]
pub struct Args {
    /// The brokers, host:port[,host:port…] (a `weir dev-broker`, say).
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The topic; every partition is read.
    #[arg(long, default_value = "readings")]
    topic: String,
    /// Where to start: earliest, latest, or committed (needs --group).
    #[arg(long, default_value = "earliest")]
    from: StartFrom,
    /// The consumer group; with it, offsets are committed as messages are
    /// printed.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no message has come for this long, like 5s; without it,
    /// wait for more until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Stop at the end offsets the partitions have now.
    #[arg(long)]
    until_end: bool,
    /// How many times to try reaching the brokers, with exponential backoff.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Which messages of transactions to show: only committed ones
    /// (`read_committed`, for real Kafka), or all (`read_uncommitted`).
    #[arg(long, default_value = "read_committed", value_parser = ["read_committed", "read_uncommitted"])]
    isolation: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    weir::duration::parse_duration(text).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stop = stop_on_ctrl_c()?;
    let cluster = super::topic::connect_with(
        &args.brokers,
        args.retries,
        &[("isolation.level", args.isolation.as_str())],
    )?;
    let options = KafkaSourceOptions {
        topic: args.topic.clone(),
        group: args.group.clone(),
        start: args.from,
        until_end: args.until_end,
        scale_out: false,
    };
    let mut source = KafkaSource::open(&cluster, &options)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut last_message = Instant::now();
    let mut failed = None;
    while args.count.is_none_or(|c| printed < c) && !stop.load(Ordering::Relaxed) {
        let max = args.count.map_or(1024, |c| (c - printed).min(1024) as usize);
        let poll = source.poll_records(max, Duration::from_millis(200), &mut |r| {
            if failed.is_some() {
                return;
            }
            let value = serde_json::from_slice::<Value>(r.payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(r.payload).into_owned()));
            let key = r.key.map(|k| String::from_utf8_lossy(k).into_owned());
            let line = json!({
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": key,
                "value": value,
            });
            if let Err(e) = writeln!(out, "{line}") {
                failed = Some(e);
            }
        })?;
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
        match poll {
            Poll::Records(n) => {
                printed += n as u64;
                last_message = Instant::now();
                out.flush()?;
                if args.group.is_some() {
                    source.commit_positions().context("cannot commit the offsets of printed messages")?;
                }
            }
            Poll::End => break,
            Poll::Idle => {
                if args.timeout.is_some_and(|t| last_message.elapsed() >= t) {
                    break;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}
