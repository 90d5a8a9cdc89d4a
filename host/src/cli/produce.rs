//! `weir produce`: sends the example IoT readings to a topic, the workload
//! of the temperature job and the benchmarks (reproducible: reading `i` is
//! always the same).

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
    /// How many readings to send; without it, until Ctrl-C.
    #[arg(long)]
    count: Option<u64>,
    /// Readings per second, like `1000` or `1000/s`; without it, as fast as
    /// the broker takes them.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// How many devices send readings.
    #[arg(long, default_value_t = readings::DEFAULT_DEVICES)]
    devices: u64,
    /// The number of the first reading (to continue an earlier run).
    #[arg(long, default_value_t = 0)]
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

    let bar = progress_bar(args.count);
    let started = Instant::now();
    let (mut payload, mut key) = (Vec::with_capacity(128), Vec::with_capacity(8));
    let mut sent = 0u64;
    while args.count.is_none_or(|c| sent < c) && !stop.load(Ordering::Relaxed) {
        if let Some(rate) = args.rate {
            // Paced against the start, so rounding never accumulates.
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
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
