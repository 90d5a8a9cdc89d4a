//! `weir demo`: the temperature job with nothing to set up. It starts the
//! embedded broker, produces the example IoT readings into it, runs
//! max-temperature over them, prints each window as it fires, and ends with
//! a summary.

use super::run::{stop_on_ctrl_c, summary_lines};
use anyhow::Context;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir::job::{Job, WindowConfig};
use weir::kafka::{Cluster, KafkaConfig};
use weir::pipeline::{Pipeline, RunOptions, connect};
use weir::sink::Sink;
use weir::sink::kafka::KafkaSink;
use weir::source::{Poll, RawRecord, Source, SourceError};
use weir::window::WindowSpec;
use weir_devtools::readings::Reading;

#[derive(clap::Args)]
pub struct Args {
    /// The window: tumbling:SIZE, sliding:SIZE/SLIDE or session:GAP.
    #[arg(long, default_value = "tumbling:1s")]
    window: WindowSpec,
    /// The function: max-temperature, max-temperature-agg, or a .wasm path.
    #[arg(long, default_value = "max-temperature")]
    function: String,
    /// Readings to produce.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Readings per second (0: as fast as possible).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Devices.
    #[arg(long, default_value_t = 10)]
    devices: u64,
    /// Partitions of the readings topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

fn job_toml(args: &Args) -> anyhow::Result<String> {
    let window = toml::to_string(&WindowConfig::from(args.window)).context("the window as TOML")?;
    Ok(format!(
        r#"name = "max-temperature"
[source]
type = "kafka"
brokers = "embedded"
topic = "readings"
partitions = {partitions}
[format]
key = "device_id"
timestamp = "execution_time"
fields = {{ temperature = "f64" }}
[time]
max_out_of_orderness = "500ms"
late_output = "readings-late"
[window]
{window}
[function]
plugin = "{function}"
[sink]
type = "kafka"
topic = "max-temperature"
dead_letter = "readings-dlq"
"#,
        partitions = args.partitions,
        function = args.function,
    ))
}

/// Ends the run once every produced reading was read: the demo's input is
/// bounded by what it produced, though the topic is not.
struct DemoSource {
    inner: Box<dyn Source>,
    produced: Arc<AtomicU64>,
    read: u64,
}

impl Source for DemoSource {
    fn partitions(&self) -> Vec<i32> {
        self.inner.partitions()
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        if self.read >= self.produced.load(Ordering::Acquire) {
            return Ok(Poll::End);
        }
        let polled = self.inner.poll(max, wait, each)?;
        if let Poll::Records(n) = polled {
            self.read += n as u64;
        }
        Ok(polled)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn commit(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.inner.commit(next_offsets)
    }
    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        self.inner.seek(next_offsets)
    }
}

/// `HH:MM:SS.mmm` (UTC) of a time in ms.
fn clock(ms: i64) -> String {
    let day = ms.rem_euclid(86_400_000);
    format!("{:02}:{:02}:{:02}.{:03}", day / 3_600_000, day / 60_000 % 60, day / 1000 % 60, day % 1000)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = job_toml(&args)?;
    let job = Job::parse(&text, "weir demo", std::path::Path::new("."))?;
    let engine = super::engine()?;
    let mut pipeline = Pipeline::build(job, &engine)?;
    let cluster = Cluster::embedded(KafkaConfig::default())?;
    let mut io = connect::open(pipeline.job(), false, Some(cluster.clone()))?;
    eprintln!(
        "embedded broker (memory only) at {}; producing {} readings of {} devices at {}",
        cluster.bootstrap(),
        args.events,
        args.devices,
        if args.rate == 0 { "full speed".to_string() } else { format!("{}/s", args.rate) }
    );

    // The producer: u64::MAX until it knows how many it sent.
    let produced = Arc::new(AtomicU64::new(u64::MAX));
    let producer = {
        let (produced, cluster) = (produced.clone(), cluster.clone());
        let (events, rate, devices) = (args.events, args.rate, args.devices);
        std::thread::Builder::new().name("demo-producer".into()).spawn(move || -> anyhow::Result<()> {
            let mut sink = KafkaSink::open(&cluster, "readings")?;
            let (mut key, mut value) = (Vec::new(), Vec::new());
            let started = Instant::now();
            for i in 0..events {
                let reading = Reading::generate(i, devices);
                key.clear();
                value.clear();
                reading.write_key(&mut key);
                reading.write_json(&mut value);
                sink.send(Some(&key), &value)?;
                if rate > 0 && i % 100 == 99 {
                    let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            sink.flush()?;
            produced.store(events, Ordering::Release);
            Ok(())
        })?
    };

    let mut source = DemoSource { inner: io.source, produced: produced.clone(), read: 0 };
    let options = RunOptions { stop: stop_on_ctrl_c()?, ..RunOptions::default() };
    println!("{:>6}  {:<27}  {:>12}  {:>6}", "device", "window (UTC)", "max (K)", "count");
    let value_field = pipeline.descriptor().outputs.first().map(|f| f.name.clone()).unwrap_or_default();
    let summary = pipeline.run(&mut source, &mut io.sinks, &options, &mut |e| {
        let (Some(key), Some(w), Some(row)) = (e.key, e.window, e.row) else { return };
        let max = row.f64(&value_field).unwrap_or(f64::NAN);
        let count = row.i64("count").unwrap_or(0);
        let mark = if e.refire { " (late update)" } else { "" };
        println!(
            "{:>6}  {}–{}  {max:>12.3}  {count:>6}{mark}",
            key.to_string(),
            clock(w.start),
            clock(w.end)
        );
    })?;
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the demo producer panicked"))?
        .context("producing readings")?;
    println!();
    println!("{}", summary_lines(&summary));
    println!(
        "results are also on the embedded broker's topic max-temperature (dead letters: readings-dlq, late: readings-late)"
    );
    Ok(())
}
