//! `weir produce`: sends the example IoT readings to a topic, the workload
//! of the temperature job and the benchmarks (reproducible: reading `i` is
//! always the same); or, with `--input`, the JSON lines of a file or of
//! stdin as they are, so that any data set (out of order, with bad records)
//! can be put on a topic.

use super::dev_broker::stop_on_ctrl_c;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir::sink::Sink;
use weir::sink::kafka::KafkaSink;
use weir_devtools::readings::{self, Reading};

#[derive(clap::Args)]
pub struct Args {
    /// The brokers, host:port[,host:port…] (a `weir dev-broker`, say).
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The topic; it is created if missing (see --partitions).
    #[arg(long, default_value = "readings")]
    topic: String,
    /// Send the lines of this file (`-` for stdin) instead of readings, each
    /// as one record, unchanged; blank lines are skipped.
    #[arg(long, value_name = "FILE")]
    input: Option<std::path::PathBuf>,
    /// With --input: the field whose value keys each record (an integer or
    /// a string, as the job's `format.key`); lines without it, or that are
    /// not JSON objects, are sent without a key and counted.
    #[arg(long, requires = "input", value_name = "FIELD")]
    key: Option<String>,
    /// How many readings (or lines) to send; without it, until Ctrl-C (or
    /// the end of the input).
    #[arg(long)]
    count: Option<u64>,
    /// Readings per second, like `1000` or `1000/s`; without it, as fast as
    /// the broker takes them.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// How many devices send readings.
    #[arg(long, default_value_t = readings::DEFAULT_DEVICES, conflicts_with = "input")]
    devices: u64,
    /// The number of the first reading (to continue an earlier run).
    #[arg(long, default_value_t = 0, conflicts_with = "input")]
    first: u64,
    /// How many times to try reaching the brokers, with exponential backoff.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
    match number.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("expected readings per second like 1000 or 1000/s, got '{text}'")),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stop = stop_on_ctrl_c()?;
    let cluster = super::topic::connect(&args.brokers, args.retries)?;
    if cluster.ensure_topic(&args.topic, args.partitions, 1)? {
        eprintln!("created topic '{}' with {} partition(s)", args.topic, args.partitions);
    }
    let mut sink = KafkaSink::open(&cluster, &args.topic)?;
    if let Some(input) = &args.input {
        return send_lines(&args, input, &mut sink, &stop, cluster.label());
    }

    let bar = progress_bar(args.count);
    let started = Instant::now();
    let (mut payload, mut key) = (Vec::with_capacity(128), Vec::with_capacity(8));
    let mut sent = 0u64;
    while args.count.is_none_or(|c| sent < c) && !stop.load(Ordering::Relaxed) {
        pace(args.rate, started, sent);
        let reading = Reading::generate(args.first + sent, args.devices);
        payload.clear();
        reading.write_json(&mut payload);
        key.clear();
        reading.write_key(&mut key);
        sink.send(Some(&key), &payload)?;
        sent += 1;
        if args.rate.is_some() || sent.is_multiple_of(256) {
            bar.set_position(sent);
        }
    }
    bar.set_position(sent);
    sink.flush().context("not every reading was delivered")?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sent {sent} readings (numbers {}..{}) to topic '{}' at {} in {secs:.1} s ({:.0}/s)",
        args.first,
        args.first + sent,
        args.topic,
        cluster.label(),
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Waits until record `sent` is due at `rate` records per second.
fn pace(rate: Option<f64>, started: Instant, sent: u64) {
    if let Some(rate) = rate {
        // Paced against the start, so rounding never accumulates.
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// The key a line's `field` gives: an integer or a string, as text.
fn key_of(line: &[u8], field: &str) -> Option<String> {
    let serde_json::Value::Object(object) = serde_json::from_slice(line).ok()? else { return None };
    match object.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => n.as_i64().map(|i| i.to_string()),
        _ => None,
    }
}

/// `--input`: every line of the file or stdin as one record.
fn send_lines(
    args: &Args,
    input: &std::path::Path,
    sink: &mut KafkaSink,
    stop: &std::sync::atomic::AtomicBool,
    brokers: &str,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = match input.as_os_str() == "-" {
        true => Box::new(std::io::stdin().lock()),
        false => Box::new(std::io::BufReader::new(
            std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?,
        )),
    };
    let started = Instant::now();
    let (mut sent, mut unkeyed) = (0u64, 0u64);
    for line in reader.split(b'\n') {
        if args.count.is_some_and(|c| sent >= c) || stop.load(Ordering::Relaxed) {
            break;
        }
        let line = line.with_context(|| format!("cannot read {}", input.display()))?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        pace(args.rate, started, sent);
        let key = args.key.as_deref().and_then(|field| key_of(line, field));
        if args.key.is_some() && key.is_none() {
            unkeyed += 1;
        }
        sink.send(key.as_deref().map(str::as_bytes), line)?;
        sent += 1;
    }
    sink.flush().context("not every record was delivered")?;
    let keyed = match &args.key {
        Some(field) => format!(", keyed by '{field}' ({unkeyed} without it, sent unkeyed)"),
        None => String::new(),
    };
    eprintln!(
        "sent {sent} records from {} to topic '{}' at {brokers}{keyed} in {:.1} s",
        input.display(),
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A bar on stderr when it is a terminal, nothing otherwise.
fn progress_bar(count: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match count {
        Some(n) => (ProgressBar::new(n), "{bar:40} {pos}/{len} readings, {per_sec}, {eta} left"),
        None => (ProgressBar::new_spinner(), "{spinner} {pos} readings, {per_sec} (Ctrl-C stops)"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
