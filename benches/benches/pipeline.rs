//! Pipeline benchmark: events per second and peak memory of the
//! max-temperature job, on the readings of `weir_devtools::readings` with 10
//! devices (event i has execution_time 1_700_000_000_000 + 5·i ms).
//!
//! Modes:
//! - `memory`: events built in memory, straight into the window operator
//!   (no decoding), as Flink's DataGeneratorSource does;
//! - `json`: the same events as JSON lines in a file, through the whole
//!   pipeline (file source, decode, window, plugin, encode, file sink);
//! - `kafka`: through the embedded broker: produced on another thread
//!   while the job consumes (N = 1M by default, `--n-kafka`);
//! - `broker` and `tansu`: Kafka to Kafka through a broker in its own
//!   process (`weir dev-broker`'s mock cluster, or tansu), the topic filled
//!   first; with the producer's and a bare consumer's rates as stages
//!   (N = 400k by default, `--n-broker`);
//! - `group1` and `group2`: the same topic on `weir dev-broker`, read by
//!   1 or 2 processes as one consumer group (`[source] scale_out`), with
//!   checkpoints in a shared folder, timed from their start to the last
//!   exit (N as for `broker`);
//!
//! - kinds `window` and `agg` run the bundled guests; `native` and
//!   `native-agg` (memory mode) the host's built-in Rust max, with the
//!   same results, to show what the sandbox costs; `python` and
//!   `python-agg` the same functions in Python (`max-temperature-py`,
//!   `max-temperature-agg-py`, built with `weir plugin build` on first use);
//!   `percentile` the percentile guest at p = 1 (the max, so the same
//!   oracle), which sorts each window's values: real work per event;
//!
//! - `state`: the memory an open (key, window) costs, for window functions
//!   (which keep the window's events) and aggregates (an accumulator).
//!
//! Each case runs in a child process so its peak RSS is its own. Every
//! case's output is checked against the oracle in `weir_benches::expected`,
//! computed from the generator: each (device, window)'s whole result (key,
//! start, end, max, count) goes into a digest, so missing, extra, changed or
//! swapped results all fail. A case that fails, or gives another result,
//! makes the benchmark exit with an error after the table.
//!
//! ```sh
//! cargo bench -p weir-benches --bench pipeline                 # all cases, N = 10M
//! cargo bench -p weir-benches --bench pipeline -- --n 1000000  # smaller
//! cargo bench -p weir-benches --bench pipeline -- --case memory:tumbling:window
//! cargo bench -p weir-benches --bench pipeline -- --case json:session:window --fire-delay 0s
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;
use weir::decode::Batch;
use weir::pipeline::{Emitted, Pipeline, RunOptions, Sinks};
use weir::plugin::{EngineConfig, PluginEngine, PluginLimits};
use weir::record::Key;
use weir::types::{Column, Field, FieldType};
use weir::window::native::NativeMaxTemperature;
use weir::window::{Firing, Reduce, WindowFunction, WindowOperator, WindowSpec};
use weir_benches::{Digest, Windows, expected, python_guest};
use weir_devtools::readings::{Reading, START_MS};

const DEVICES: u64 = 10;

/// Adds a window operator's output to the digest: the one place that reads
/// the operator's output type. A failed window fails the case.
fn digest_output(digest: &mut Digest, o: Firing<'_>) {
    let (key, window, rows) = match o {
        Firing::Rows { key, window, rows, .. } => (key, window, rows),
        Firing::Failed { key, window, error, .. } => {
            panic!("the window {window:?} of key {key:?} failed: {error}")
        }
    };
    let (Key::Int(key), [Column::F64(max), Column::I64(count), ..]) = (key, rows.columns) else {
        panic!("unexpected output for key {key:?}: {:?}", rows.columns);
    };
    for row in rows.start..rows.start + rows.len {
        digest.add(*key, window.start, window.end, max[row], count[row]);
    }
}

/// Adds a pipeline's output record to the digest: its key and window, and
/// the function's row it holds. The record's bytes are checked against
/// the row in `check_record`, for a sample.
fn digest_record(digest: &mut Digest, e: &Emitted<'_>) {
    digest_record_of(digest, e, "max_temperature")
}

/// [`digest_record`] for a function whose max is the field `max`.
fn digest_record_of(digest: &mut Digest, e: &Emitted<'_>, max_field: &str) {
    let (Some(Key::Int(key)), Some(window), Some(row)) = (e.key, e.window, e.row) else {
        panic!(
            "an output record without an integer key, a window or a row: {}",
            String::from_utf8_lossy(e.record)
        );
    };
    let (Some(max), Some(count)) = (row.f64(max_field), row.i64("count")) else {
        panic!("an output record without {max_field} and count: {}", String::from_utf8_lossy(e.record));
    };
    digest.add(*key, window.start, window.end, max, count);
    // Every 1,024th record's bytes are read back: they must say the same.
    if digest.results % 1024 == 1 {
        check_record(e, *key, window, max_field, max, count);
    }
}

/// The record as written holds the key, window and row it was made from.
fn check_record(
    e: &Emitted<'_>,
    key: i64,
    window: weir::types::Window,
    max_field: &str,
    max: f64,
    count: i64,
) {
    let text = String::from_utf8_lossy(e.record);
    let json = e.json().unwrap_or_else(|err| panic!("an output record is not JSON ({err}): {text}"));
    let read = (
        json["device_id"].as_i64(),
        json["window_start"].as_i64(),
        json["window_end"].as_i64(),
        json[max_field].as_f64().map(f64::to_bits),
        json["count"].as_i64(),
    );
    let want = (Some(key), Some(window.start), Some(window.end), Some(max.to_bits()), Some(count));
    assert_eq!(read, want, "the record written is not the row it was made from: {text}");
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A case's windows, as the oracle sees them.
fn windows(name: &str) -> Windows {
    match name {
        "tumbling" => Windows::Tumbling { size: 1000 },
        "sliding" => Windows::Sliding { size: 1000, slide: 100 },
        // Long windows: each event is in 1,200 of them, each of up to
        // 24,000 events of its device, for functions that do real work per
        // event; few results (the broker keeps only 5 MiB a partition).
        "sliding20m" => Windows::Sliding { size: 1_200_000, slide: 1_000 },
        "session" => Windows::Session { gap: 100 },
        other => panic!("unknown window {other}"),
    }
}

/// The same windows for weir.
fn window_spec(name: &str) -> WindowSpec {
    match windows(name) {
        Windows::Tumbling { size } => WindowSpec::Tumbling { size },
        Windows::Sliding { size, slide } => WindowSpec::Sliding { size, slide },
        Windows::Session { gap } => WindowSpec::Session { gap },
    }
}

/// The `[window]` table of a job file.
fn window_toml(name: &str) -> String {
    match windows(name) {
        Windows::Tumbling { size } => format!("type = \"tumbling\"\nsize = \"{size}ms\""),
        Windows::Sliding { size, slide } => {
            format!("type = \"sliding\"\nsize = \"{size}ms\"\nslide = \"{slide}ms\"")
        }
        Windows::Session { gap } => format!("type = \"session\"\ngap = \"{gap}ms\""),
    }
}

/// The plugin reference (a bundled name, or a component's path) for a
/// function kind, and how the window operator reduces with it.
fn plugin_for(reduce: &str) -> (String, Reduce) {
    let aggregate = Reduce::Aggregate { flush_at: weir::pipeline::AGGREGATE_FLUSH };
    let python = |module, world| python_guest(module, world).display().to_string();
    match reduce {
        "window" => ("max-temperature".into(), Reduce::Apply),
        "agg" => ("max-temperature-agg".into(), aggregate),
        "python" => (
            python("guest-functions/max-temperature-py/max_temperature.py", "window-function"),
            Reduce::Apply,
        ),
        "python-agg" => (
            python("guest-functions/max-temperature-agg-py/max_temperature_agg.py", "aggregate-function"),
            aggregate,
        ),
        other => panic!("unknown function kind {other}"),
    }
}

struct Measured {
    events: u64,
    seconds: f64,
    outputs: u64,
    digest: Digest,
}

/// An engine and an instance of the bundled function for `reduce`
/// (`window` or `agg`), and how the operator reduces with it. The engine
/// is returned so that it outlives the instance.
fn instance_for(reduce: &str) -> (PluginEngine, weir::plugin::PluginInstance, Reduce) {
    let engine =
        PluginEngine::new(EngineConfig { cache_dir: None, ..EngineConfig::default() }).expect("engine");
    let (plugin, mode) = plugin_for(reduce);
    let instance = engine
        .load_ref(&plugin)
        .expect("plugin")
        .instantiate(vec![], PluginLimits::default())
        .expect("instance");
    (engine, instance, mode)
}

/// Mode `memory`: batches of 1,000 events built in place, fed to the
/// window operator, the watermark advanced after each batch (monotonous
/// time, bound 0).
///
/// Kinds `native` and `native-agg` reduce with the host's built-in
/// [`NativeMaxTemperature`] instead of the guests: the same case without
/// the WebAssembly sandbox, to measure what it costs.
fn run_memory(n: u64, window: &str, reduce: &str) -> Measured {
    let mut native = NativeMaxTemperature;
    let (_engine, mut instance, mode);
    let function: &mut dyn WindowFunction = match reduce {
        "native" => {
            mode = Reduce::Apply;
            &mut native
        }
        "native-agg" => {
            mode = plugin_for("agg").1;
            &mut native
        }
        _ => {
            (_engine, instance, mode) = instance_for(reduce);
            &mut instance
        }
    };
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op = WindowOperator::new(window_spec(window), 0, mode, vec![FieldType::F64], vec![0]);
    let mut batch = Batch::new(&fields);
    let mut digest = Digest::default();
    let mut collect = |o: Firing<'_>| digest_output(&mut digest, o);
    let keys: Vec<Key> = (0..=DEVICES as i64).map(Key::Int).collect();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        batch.clear();
        let end = (i + 1000).min(n);
        let Column::F64(temps) = &mut batch.columns[0] else { unreachable!() };
        for j in i..end {
            let r = Reading::generate(j, DEVICES);
            batch.partitions.push(0);
            batch.offsets.push(j as i64);
            batch.keys.push(Some(keys[r.device_id as usize].clone()));
            batch.timestamps.push(r.execution_time);
            temps.push(r.temperature);
        }
        let watermark = batch.timestamps[batch.len() - 1] - 1;
        op.process(&batch, 0..batch.len(), function);
        op.advance(Some(0), watermark, function, &mut collect);
        i = end;
    }
    op.advance(None, i64::MAX, function, &mut collect);
    let seconds = started.elapsed().as_secs_f64();
    Measured { events: n, seconds, outputs: digest.results, digest }
}

/// Mode `json`: the events as JSON lines through the whole pipeline.
/// `fire_delay` sets the job's `[time] fire_delay` (else its default).
fn run_json(
    n: u64,
    window: &str,
    reduce: &str,
    dir: &Path,
    checkpoints: bool,
    fire_delay: Option<&str>,
) -> Measured {
    let input = dir.join(format!("readings-{n}.jsonl"));
    if !input.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).expect("input file"));
        let mut line = Vec::with_capacity(96);
        for i in 0..n {
            line.clear();
            Reading::generate(i, DEVICES).write_json(&mut line);
            line.push(b'\n');
            out.write_all(&line).expect("write");
        }
        out.flush().expect("flush");
    }
    let (plugin, _) = plugin_for(reduce);
    let window_toml = window_toml(window);
    let output = dir.join("out.jsonl");
    let time = fire_delay.map_or(String::new(), |d| format!("[time]\nfire_delay = \"{d}\"\n"));
    // Mode `json-checkpointed`: the same job, checkpointed every second to
    // a local folder (emptied first: the run must not restore).
    let checkpoint = match checkpoints {
        true => {
            let folder = dir.join("checkpoints");
            let _ = std::fs::remove_dir_all(&folder);
            format!("[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1s\"\n", folder.display())
        }
        false => String::new(),
    };
    let job = format!(
        "name = \"bench\"\n[source]\ntype = \"file\"\npath = \"{}\"\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n{time}[window]\n{window_toml}\n[function]\nplugin = \"{plugin}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n{checkpoint}",
        input.display(),
        output.display()
    );
    let job = weir::job::Job::parse(&job, "bench.toml", dir).expect("job");
    // One instance runs: a small pool, whose reservation also fits under
    // valgrind (256 slots of 1 GiB do not).
    let config = EngineConfig { cache_dir: None, max_instances: 4 };
    let engine = PluginEngine::new(config).expect("engine");
    let mut pipeline = Pipeline::build(job, &engine).expect("pipeline");
    let mut source = weir::source::file::FileSource::open(&input).expect("source");
    let mut sinks = Sinks {
        output: Box::new(weir::sink::file::FileSink::create(&output).expect("sink")),
        dead_letter: None,
        late: None,
    };
    let mut digest = Digest::default();
    let started = Instant::now();
    let summary = pipeline
        .run(&mut source, &mut sinks, &RunOptions::default(), &mut |e| digest_record(&mut digest, &e))
        .expect("run");
    if checkpoints {
        let taken = summary.checkpoints;
        let want = started.elapsed().as_secs();
        assert!(taken >= want, "{taken} checkpoints in {want} s: not one a second");
        eprintln!("checkpoints: {taken}");
    }
    Measured {
        events: summary.events,
        seconds: started.elapsed().as_secs_f64(),
        outputs: summary.outputs,
        digest,
    }
}

/// Modes `files1` and `files2`: the events as JSON lines in two files
/// (even devices in one, odd in the other: a key lives in one partition),
/// read as two partitions on 1 or 2 workers (`parallelism`). Kind
/// `percentile` runs the percentile guest at p = 1, which selects each
/// window's max from all its values: real work per event, and the oracle's
/// result.
fn run_files(n: u64, window: &str, reduce: &str, dir: &Path, workers: usize) -> Measured {
    let folder = dir.join(format!("parts-{n}"));
    if !folder.join("1.jsonl").exists() {
        std::fs::create_dir_all(&folder).expect("input folder");
        let mut files: Vec<_> = (0..2)
            .map(|i| {
                std::io::BufWriter::new(
                    std::fs::File::create(folder.join(format!("{i}.jsonl"))).expect("input"),
                )
            })
            .collect();
        let mut line = Vec::with_capacity(96);
        for i in 0..n {
            let reading = Reading::generate(i, DEVICES);
            line.clear();
            reading.write_json(&mut line);
            line.push(b'\n');
            files[(reading.device_id % 2) as usize].write_all(&line).expect("write");
        }
        for mut file in files {
            file.flush().expect("flush");
        }
    }
    let (function, max_field) = function_toml(reduce);
    let output = dir.join("out.jsonl");
    let job = format!(
        "name = \"bench\"\nparallelism = {workers}\n[source]\ntype = \"file\"\npath = \"{}\"\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\n{}\n[function]\n{function}[sink]\ntype = \"file\"\npath = \"{}\"\n",
        folder.display(),
        window_toml(window),
        output.display()
    );
    let job = weir::job::Job::parse(&job, "bench.toml", dir).expect("job");
    let config = EngineConfig { cache_dir: None, max_instances: 4 };
    let engine = PluginEngine::new(config).expect("engine");
    let mut pipeline = Pipeline::build(job, &engine).expect("pipeline");
    let paths = weir::source::files::resolve(&folder).expect("input files");
    let mut source =
        weir::source::files::FilesSource::open(&folder.display().to_string(), &paths).expect("source");
    assert_eq!(pipeline.workers_for(&source), workers, "the run would not get {workers} workers");
    let mut sinks = Sinks {
        output: Box::new(weir::sink::file::FileSink::create(&output).expect("sink")),
        dead_letter: None,
        late: None,
    };
    let mut digest = Digest::default();
    let started = Instant::now();
    let summary = pipeline
        .run(&mut source, &mut sinks, &RunOptions::default(), &mut |e| {
            digest_record_of(&mut digest, &e, max_field)
        })
        .expect("run");
    assert_eq!(summary.workers, workers);
    Measured {
        events: summary.events,
        seconds: started.elapsed().as_secs_f64(),
        outputs: summary.outputs,
        digest,
    }
}

/// Mode `kafka`: the readings produced to a 4-partition topic on the
/// embedded broker while the job consumes them (the mock cluster keeps only
/// about 5 MiB per partition, so producing everything first would lose the
/// oldest), until every produced record was read.
fn run_kafka(n: u64, window: &str, reduce: &str) -> Measured {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use weir::kafka::{Cluster, KafkaConfig};
    use weir::sink::Sink;
    use weir::source::{Poll, RawRecord, Source, SourceError};

    struct Counted {
        inner: Box<dyn Source>,
        produced: Arc<AtomicU64>,
        consumed: Arc<AtomicU64>,
        read: u64,
        last_record: Instant,
    }
    impl Source for Counted {
        fn partitions(&self) -> Vec<i32> {
            self.inner.partitions()
        }
        fn poll(
            &mut self,
            max: usize,
            wait: std::time::Duration,
            each: &mut dyn FnMut(RawRecord<'_>),
        ) -> Result<Poll, SourceError> {
            if self.read >= self.produced.load(Ordering::Acquire) {
                return Ok(Poll::End);
            }
            let polled = self.inner.poll(max, wait, each)?;
            if let Poll::Records(k) = polled {
                self.read += k as u64;
                self.consumed.store(self.read, Ordering::Release);
                self.last_record = Instant::now();
            }
            // Records the broker dropped would never come: fail, not hang.
            assert!(
                self.last_record.elapsed() < std::time::Duration::from_secs(20),
                "no records for 20 s after {} of them: the broker lost data",
                self.read
            );
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

    let (plugin, _) = plugin_for(reduce);
    let window_toml = window_toml(window);
    let job = format!(
        "name = \"bench\"\n[source]\ntype = \"kafka\"\nbrokers = \"embedded\"\ntopic = \"readings\"\npartitions = 4\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\n{window_toml}\n[function]\nplugin = \"{plugin}\"\n[sink]\ntype = \"kafka\"\ntopic = \"max-temperature\"\n"
    );
    let job = weir::job::Job::parse(&job, "bench.toml", Path::new(".")).expect("job");
    let engine =
        PluginEngine::new(EngineConfig { cache_dir: None, ..EngineConfig::default() }).expect("engine");
    let mut pipeline = Pipeline::build(job, &engine).expect("pipeline");
    let cluster = Cluster::embedded(KafkaConfig::default()).expect("embedded broker");
    let mut io = weir::pipeline::connect::open(pipeline.job(), false, Some(cluster.clone())).expect("io");
    let produced = Arc::new(AtomicU64::new(u64::MAX));
    let consumed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let producer = {
        let (produced, consumed, cluster) = (produced.clone(), consumed.clone(), cluster.clone());
        std::thread::spawn(move || {
            let mut sink = weir::sink::kafka::KafkaSink::open(&cluster, "readings").expect("producer");
            let (mut key, mut value) = (Vec::new(), Vec::new());
            for i in 0..n {
                // Stay within 100k records of the job: the mock broker keeps
                // only about 5 MiB per partition.
                while i.saturating_sub(consumed.load(Ordering::Acquire)) > 100_000 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                let r = Reading::generate(i, DEVICES);
                key.clear();
                value.clear();
                r.write_key(&mut key);
                r.write_json(&mut value);
                sink.send(Some(&key), &value).expect("send");
            }
            sink.flush().expect("flush");
            produced.store(n, Ordering::Release);
        })
    };
    let mut source = Counted { inner: io.source, produced, consumed, read: 0, last_record: Instant::now() };
    let mut digest = Digest::default();
    let summary = pipeline
        .run(&mut source, &mut io.sinks, &RunOptions::default(), &mut |e| digest_record(&mut digest, &e))
        .expect("run");
    producer.join().expect("producer thread");
    Measured {
        events: summary.events,
        seconds: started.elapsed().as_secs_f64(),
        outputs: summary.outputs,
        digest,
    }
}

/// A Kafka broker in a process of its own, killed when dropped.
struct BrokerProcess {
    child: std::process::Child,
    bootstrap: String,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve-dev-broker FILE`: what `weir dev-broker --listen 127.0.0.1:0
/// --address-file FILE` runs (the same mock broker and forwarder, from the
/// library), until standard input closes: the bench runs it in a child
/// process, so the broker's work is not the job's.
fn serve_dev_broker(address_file: &Path) -> ExitCode {
    use std::io::Read;
    use weir_devtools::{DevBroker, DevBrokerOptions};
    let backend = std::sync::Arc::new(weir::kafka::MockBackend::start().expect("mock broker"));
    let options = DevBrokerOptions { listen: ([127, 0, 0, 1], 0).into(), partitions: 1, topics: vec![] };
    let broker = DevBroker::start(&options, backend).expect("dev broker");
    let tmp = address_file.with_extension("tmp");
    std::fs::write(&tmp, broker.bootstrap()).expect("address file");
    std::fs::rename(&tmp, address_file).expect("address file");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(broker);
    ExitCode::SUCCESS
}

/// Starts this binary as a dev broker and waits for its address.
fn start_dev_broker(dir: &Path) -> BrokerProcess {
    let file = dir.join("dev-broker.address");
    let _ = std::fs::remove_file(&file);
    let exe = std::env::current_exe().expect("exe");
    let child = Command::new(exe)
        .args(["--serve-dev-broker", &file.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start the dev broker");
    let mut broker = BrokerProcess { child, bootstrap: String::new() };
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while broker.bootstrap.is_empty() {
        broker.bootstrap = std::fs::read_to_string(&file).unwrap_or_default().trim().to_string();
        assert!(Instant::now() < deadline, "the dev broker did not start in 20 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    broker
}

/// Starts tansu (SQLite storage, in `dir`) on a free loopback port: from
/// `$WEIR_TANSU`, else PATH, else `~/.cargo/bin`. Without it the case
/// fails: it never reports a figure it did not measure.
fn start_tansu(dir: &Path) -> BrokerProcess {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"));
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    let binary = std::env::var_os("WEIR_TANSU")
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path)
        .chain(home)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu is not installed: `cargo install tansu --version 0.6.0 --locked --features \
                 dynostore,libsql`, or point WEIR_TANSU at it"
            )
        });
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("port").port();
    let data = dir.join("tansu");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("tansu dir");
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&binary)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.sqlite"])
        .current_dir(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let broker = BrokerProcess { child, bootstrap: format!("127.0.0.1:{port}") };
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&broker.bootstrap).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start listening in 20 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    broker
}

/// Reads `topic` from the start to its end offsets, handing each payload to
/// `each`; returns how many records it read and how long that took.
fn read_topic(cluster: &weir::kafka::Cluster, topic: &str, each: &mut dyn FnMut(&[u8])) -> (u64, f64) {
    use weir::source::kafka::{KafkaSource, KafkaSourceOptions};
    use weir::source::{Poll, Source};
    let options = KafkaSourceOptions { until_end: true, ..KafkaSourceOptions::new(topic) };
    let mut source = KafkaSource::open(cluster, &options).expect("consumer");
    let started = Instant::now();
    let mut read = 0u64;
    loop {
        let polled = source
            .poll(4096, std::time::Duration::from_millis(100), &mut |r| {
                read += 1;
                each(r.payload)
            })
            .expect("poll");
        if polled == Poll::End {
            return (read, started.elapsed().as_secs_f64());
        }
    }
}

/// Prints one stage of a case, as a row of the parent's table.
fn stage(case: &str, name: &str, events: u64, seconds: f64) {
    println!(
        "STAGE {case}/{name} events={events} seconds={seconds:.3} events_per_s={:.0}",
        events as f64 / seconds
    );
}

/// How long after its creation an idempotent producer gets its producer id
/// and starts sending: librdkafka's timer (500 ms) and its request.
const PRODUCER_ID_WAIT: std::time::Duration = std::time::Duration::from_millis(600);

/// The windows in output topic `topic` (their max in field `max_field`),
/// and how many records it holds.
fn written_windows(cluster: &weir::kafka::Cluster, topic: &str, max_field: &str) -> (u64, Digest) {
    let mut written = Digest::default();
    let (records, _) = read_topic(cluster, topic, &mut |payload| {
        let text = String::from_utf8_lossy(payload);
        let json: serde_json::Value = serde_json::from_slice(payload)
            .unwrap_or_else(|e| panic!("an output record is not JSON ({e}): {text}"));
        let field = |name: &str| json[name].as_i64().unwrap_or_else(|| panic!("no {name} in {text}"));
        let max = json[max_field].as_f64().unwrap_or_else(|| panic!("no {max_field} in {text}"));
        written.add(field("device_id"), field("window_start"), field("window_end"), max, field("count"));
    });
    (records, written)
}

/// Fills topic `readings` (one partition per device) with `n` readings,
/// timing the producer from its start, then reads it once without a job
/// (consume only); both are stages of `case`.
fn fill_readings(case: &str, cluster: &weir::kafka::Cluster, n: u64) {
    use weir::sink::Sink;
    use weir::sink::kafka::KafkaSink;
    cluster.ensure_topic("readings", DEVICES as i32, 1).expect("input topic");
    let mut sink = KafkaSink::open(cluster, "readings").expect("producer");
    std::thread::sleep(PRODUCER_ID_WAIT);
    let started = Instant::now();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for i in 0..n {
        let r = Reading::generate(i, DEVICES);
        key.clear();
        value.clear();
        r.write_key(&mut key);
        r.write_json(&mut value);
        let partition = (r.device_id - 1) as i32;
        sink.send_to_partition(partition, Some(&key), &value).expect("send");
    }
    sink.flush().expect("every reading delivered");
    drop(sink);
    stage(case, "produce", n, started.elapsed().as_secs_f64());

    let (read, seconds) = read_topic(cluster, "readings", &mut |_| {});
    assert_eq!(read, n, "the input topic holds {read} of the {n} readings produced: the broker lost some");
    stage(case, "consume", read, seconds);
}

/// Modes `broker` (`weir dev-broker`: librdkafka's mock cluster) and
/// `tansu`, each in a process of its own: the readings are produced to a
/// topic first, one partition per device (the mock cluster keeps only 5
/// MiB a partition, so `--n-broker` stays within that), then read once
/// without a job (consume only), then the job runs `--until-end` from that
/// topic to an output topic, which is read back and must hold exactly what
/// the job emitted. The producer and the consumer-only pass are reported
/// as stages of the case, and so is opening the job's clients (with the
/// producer's start, [`PRODUCER_ID_WAIT`]); the case's own figure is the
/// run from the first poll to the last delivery. The pre-fill's producer
/// is timed from its start too.
fn run_broker(case: &str, n: u64, window: &str, reduce: &str, kind: &str, dir: &Path) -> Measured {
    use weir::kafka::{Cluster, KafkaConfig};
    let broker = match kind {
        "broker" => start_dev_broker(dir),
        _ => start_tansu(dir),
    };
    let cluster = Cluster::external(&broker.bootstrap, KafkaConfig::default()).expect("connect");
    fill_readings(case, &cluster, n);

    let (plugin, _) = plugin_for(reduce);
    let job = format!(
        "name = \"bench\"\n[source]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"readings\"\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\n{}\n[function]\nplugin = \"{plugin}\"\n[sink]\ntype = \"kafka\"\ntopic = \"max-temperature\"\n",
        broker.bootstrap,
        window_toml(window)
    );
    let job = weir::job::Job::parse(&job, "bench.toml", dir).expect("job");
    let config = EngineConfig { cache_dir: None, max_instances: 4 };
    let engine = PluginEngine::new(config).expect("engine");
    let mut pipeline = Pipeline::build(job, &engine).expect("pipeline");
    // Opening (metadata, end offsets, the producers) is timed apart: on
    // topics this small it would weigh as much as the run.
    let started = Instant::now();
    let mut io = weir::pipeline::connect::open(pipeline.job(), true, None).expect("io");
    // An idempotent producer (the job's sink) asks for its producer id 500
    // ms after it is created (librdkafka's `rd_kafka_idemp_init`: no broker
    // is connected that early) and sends nothing before. On a topic this
    // small that one-off wait would be most of the run, so the open stage
    // waits it out; a job's first output is that much later.
    std::thread::sleep(PRODUCER_ID_WAIT.saturating_sub(started.elapsed()));
    stage(case, "open", 0, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let mut digest = Digest::default();
    let summary = pipeline
        .run(&mut *io.source, &mut io.sinks, &RunOptions::default(), &mut |e| digest_record(&mut digest, &e))
        .expect("run");
    let seconds = started.elapsed().as_secs_f64();
    drop(io);

    // What the topic holds must be what the job emitted, record for record.
    let (records, written) = written_windows(&cluster, "max-temperature", "max_temperature");
    assert_eq!(
        records, summary.outputs,
        "the output topic holds {records} records, the job wrote {}",
        summary.outputs
    );
    assert!(written == digest, "the output topic ({written}) is not what the job emitted ({digest})");
    Measured { events: summary.events, seconds, outputs: summary.outputs, digest }
}

/// The `[function]` table for kind `reduce` (`percentile` is the
/// percentile guest at p = 1, the max, binding `temperature`), and the
/// field its output holds the max in.
fn function_toml(reduce: &str) -> (String, &'static str) {
    match reduce {
        "percentile" => (
            "plugin = \"percentile\"\nparams = { p = 1.0 }\n[function.bind]\nvalue = \"temperature\"\n"
                .into(),
            "percentile",
        ),
        other => (format!("plugin = \"{}\"\n", plugin_for(other).0), "max_temperature"),
    }
}

/// Modes `group1` and `group2`: the job as a consumer group across
/// processes (`[source] scale_out`). The topic is filled on `weir
/// dev-broker` in its own process, as in mode `broker`; then `members`
/// processes (this binary, `--serve-member JOB`) start together and run
/// the job `--until-end` as members of one group, checkpointing every
/// second to a shared folder. The case's time is from their start to the
/// last one's exit: joining the group, the hand-over when the second
/// joins, restores and the last checkpoints are all in it; a stage times
/// the span from the first result of any member to the last, which leaves
/// out joining the group. The output topic is read back and must hold
/// exactly the oracle's windows.
fn run_group(case: &str, n: u64, window: &str, reduce: &str, members: usize, dir: &Path) -> Measured {
    use weir::kafka::{Cluster, KafkaConfig};
    let broker = start_dev_broker(dir);
    let cluster = Cluster::external(&broker.bootstrap, KafkaConfig::default()).expect("connect");
    fill_readings(case, &cluster, n);
    let storage = dir.join("group-checkpoints");
    let _ = std::fs::remove_dir_all(&storage);
    let (function, max_field) = function_toml(reduce);
    let job = format!(
        "name = \"bench-group\"\n[source]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"readings\"\nstart = \"earliest\"\nscale_out = true\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\nfields = {{ temperature = \"f64\" }}\n[window]\n{}\n[function]\n{function}[sink]\ntype = \"kafka\"\ntopic = \"max-temperature\"\n[checkpoint]\nstorage = \"file://{}\"\ninterval = \"1s\"\n",
        broker.bootstrap,
        window_toml(window),
        storage.display()
    );
    let path = dir.join("group-job.toml");
    std::fs::write(&path, job).expect("job file");
    let exe = std::env::current_exe().expect("exe");
    let started = Instant::now();
    let children: Vec<std::process::Child> = (0..members)
        .map(|_| {
            Command::new(&exe)
                .args(["--serve-member", &path.display().to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a member")
        })
        .collect();
    let mut events = 0;
    let (mut first, mut last) = (i64::MAX, 0i64);
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("member");
        assert!(out.status.success(), "member {i} failed ({})", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("MEMBER ")).expect("a member's figures");
        let value = |name: &str| -> f64 {
            let field = line.split_whitespace().find_map(|w| w.strip_prefix(name)).expect("field");
            field.parse().expect("number")
        };
        events += value("events=") as u64;
        stage(case, &format!("member-{i}"), value("events=") as u64, value("seconds="));
        first = first.min(value("first_ms=") as i64);
        last = last.max(value("last_ms=") as i64);
    }
    let seconds = started.elapsed().as_secs_f64();
    // From the first result of any member to the last: the work, without
    // the group's join (the broker waits about 3 s for more members).
    stage(case, "first-to-last-result", events, (last - first).max(1) as f64 / 1000.0);
    let (outputs, digest) = written_windows(&cluster, "max-temperature", max_field);
    Measured { events, seconds, outputs, digest }
}

/// `--serve-member JOB`: one member of a `group` case, as `weir run JOB
/// --until-end` runs it; prints its figures.
fn serve_member(path: &Path) -> ExitCode {
    let text = std::fs::read_to_string(path).expect("job file");
    let job = weir::job::Job::parse(&text, "group-job.toml", path.parent().expect("dir")).expect("job");
    let engine = PluginEngine::new(EngineConfig { cache_dir: None, max_instances: 4 }).expect("engine");
    let mut pipeline = Pipeline::build(job, &engine).expect("pipeline");
    let started = Instant::now();
    let mut io = weir::pipeline::connect::open(pipeline.job(), true, None).expect("io");
    // When the member wrote its first and its last result (ms since the
    // epoch): the span that excludes joining the group.
    let (mut first, mut last) = (0i64, 0i64);
    let summary = pipeline
        .run(&mut *io.source, &mut io.sinks, &RunOptions::default(), &mut |_| {
            last = weir::time::now_ms();
            if first == 0 {
                first = last;
            }
        })
        .expect("run");
    drop(io);
    println!(
        "MEMBER events={} outputs={} seconds={:.3} first_ms={first} last_ms={last}",
        summary.events,
        summary.outputs,
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// Mode `state`: the memory one open (key, window) costs. 100,000 keys,
/// each with 20 events in one tumbling window that never fires; reports
/// the RSS growth per open window.
fn run_state(reduce: &str) {
    let keys = 100_000i64;
    let per_key = 20;
    let (_engine, mut instance, mode) = instance_for(reduce);
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let mut op =
        WindowOperator::new(WindowSpec::Tumbling { size: 1000 }, 0, mode, vec![FieldType::F64], vec![0]);
    let mut batch = Batch::new(&fields);
    let before = current_rss_mb();
    for round in 0..per_key {
        for start in (0..keys).step_by(1000) {
            batch.clear();
            let Column::F64(temps) = &mut batch.columns[0] else { unreachable!() };
            for k in start..start + 1000 {
                batch.partitions.push(0);
                batch.offsets.push(0);
                batch.keys.push(Some(Key::Int(k)));
                batch.timestamps.push(START_MS + round);
                temps.push(333.0 + (k % 50) as f64);
            }
            op.process(&batch, 0..batch.len(), &mut instance);
        }
    }
    let grown = current_rss_mb() - before;
    let (entries, bytes) = op.open_state();
    println!(
        "RESULT state:{reduce} open_windows={entries} events_per_window={per_key} rss_bytes_per_window={:.0} held_bytes_per_window={:.0}",
        grown * 1024.0 * 1024.0 / entries as f64,
        bytes as f64 / entries as f64
    );
}

/// Mode `checkpoint`: the cost of checkpointing `keys` open (key, window)
/// states: 2 readings per key in one tumbling window that has fired and is
/// kept for late events (an aggregate then holds one accumulator per key; a
/// window function, the 2 events). Reports what the loop stalls for (the
/// fork of the child that encodes the state), the time until the child's
/// snapshot is in, the same encoding done inline (checked equal), the time
/// to write it as a complete checkpoint to a
/// local folder (checksums, files, manifest), its size, and the time to
/// read and restore it into a new operator; checks the restored state.
fn run_checkpoint(reduce: &str, keys: i64, dir: &Path) {
    use weir::checkpoint::{open_storage, read_complete, write_complete};
    let (_engine, mut instance, mode) = instance_for(reduce);
    let fields = [Field { name: "temperature".into(), ty: FieldType::F64 }];
    let spec = WindowSpec::Tumbling { size: 1000 };
    let lateness = 3_600_000;
    let new_operator = || WindowOperator::new(spec, lateness, mode, vec![FieldType::F64], vec![0]);
    let mut op = new_operator();
    let mut batch = Batch::new(&fields);
    for round in 0..2 {
        for start in (0..keys).step_by(10_000) {
            batch.clear();
            let Column::F64(temps) = &mut batch.columns[0] else { unreachable!() };
            for k in start..(start + 10_000).min(keys) {
                batch.partitions.push(0);
                batch.offsets.push(k);
                batch.keys.push(Some(Key::Int(k)));
                batch.timestamps.push(START_MS + round);
                temps.push(333.0 + (k % 50) as f64);
            }
            op.process(&batch, 0..batch.len(), &mut instance);
        }
    }
    let mut fired = 0u64;
    op.advance(None, START_MS + 1000, &mut instance, &mut |_| fired += 1);
    assert_eq!(fired, keys as u64, "every window fires once before the checkpoint");
    let (entries, _) = op.open_state();
    assert_eq!(entries, keys as usize, "one open state per key");

    // What a checkpoint does: a forked child encodes the state while the
    // loop goes on; the loop stalls only for the fork.
    let started = Instant::now();
    let child =
        weir::checkpoint::forked::fork_snapshot(&mut |out| op.snapshot_partition(0, out)).expect("fork");
    let stall_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut child = child;
    let forked = child.collect(std::time::Duration::from_secs(120)).expect("the child's snapshot");
    drop(child);
    let forked_ms = started.elapsed().as_secs_f64() * 1e3;
    // The same encoding on this thread, as without a fork: it must give the
    // same bytes.
    let started = Instant::now();
    let mut state = Vec::new();
    op.snapshot_partition(0, &mut state);
    let snapshot_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(forked == state, "the forked child encoded other bytes than the loop would");
    // A recovery starts in a new process: the original state is gone.
    drop(op);
    let folder = dir.join(format!("checkpoint-{reduce}-{keys}"));
    let _ = std::fs::remove_dir_all(&folder);
    let storage = open_storage(&format!("file://{}", folder.display())).expect("storage");
    let started = Instant::now();
    let bytes = state.len();
    write_complete(storage.as_ref(), "bench", 1, 0, &[("partition-0".into(), state)]).expect("write");
    let write_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let checkpoint = read_complete(storage.as_ref(), "bench", 1).expect("read");
    let read_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut restored = new_operator();
    restored.restore_partition(0, &checkpoint.files[0].1).expect("restore");
    let restore_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(restored.open_state().0, entries, "the restored operator holds every state");
    let _ = std::fs::remove_dir_all(&folder);
    println!(
        "RESULT checkpoint:{reduce}:{keys} states={entries} bytes={bytes} bytes_per_state={:.1} stall_ms={stall_ms:.1} forked_snapshot_ms={forked_ms:.1} inline_snapshot_ms={snapshot_ms:.1} write_ms={write_ms:.1} read_ms={read_ms:.1} restore_ms={restore_ms:.1}",
        bytes as f64 / entries as f64
    );
}

fn current_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one case; fails (exit code 1) when its output is not the oracle's.
fn child(case: &str, n: u64, dir: &Path, fire_delay: Option<&str>) -> ExitCode {
    if let Some(rest) = case.strip_prefix("checkpoint:") {
        let (reduce, keys) = rest.split_once(':').expect("checkpoint:<window|agg>:<keys>");
        run_checkpoint(reduce, keys.parse().expect("keys"), dir);
        return ExitCode::SUCCESS;
    }
    if let Some(reduce) = case.strip_prefix("state:") {
        run_state(reduce);
        return ExitCode::SUCCESS;
    }
    let parts: Vec<&str> = case.split(':').collect();
    let [mode, window, reduce] = parts[..] else { panic!("case is mode:window:kind, got {case}") };
    let m = match mode {
        "memory" => run_memory(n, window, reduce),
        "json" => run_json(n, window, reduce, dir, false, fire_delay),
        "json-checkpointed" => run_json(n, window, reduce, dir, true, fire_delay),
        "kafka" => run_kafka(n, window, reduce),
        "files1" => run_files(n, window, reduce, dir, 1),
        "files2" => run_files(n, window, reduce, dir, 2),
        "broker" | "tansu" => run_broker(case, n, window, reduce, mode, dir),
        "group1" => run_group(case, n, window, reduce, 1, dir),
        "group2" => run_group(case, n, window, reduce, 2, dir),
        other => panic!("unknown mode {other}"),
    };
    // Peak memory of the run itself, before the check below builds its own
    // map of every (device, window).
    let peak = peak_rss_mb();
    let want = expected(n, DEVICES, windows(window));
    if m.digest != want || m.outputs != want.results {
        eprintln!(
            "MISMATCH {case}: the output ({}; {} output records) is not what the generator gives ({want})",
            m.digest, m.outputs
        );
        return ExitCode::FAILURE;
    }
    println!(
        "RESULT {case} events={} seconds={:.3} events_per_s={:.0} outputs={} peak_rss_mb={:.1}",
        m.events,
        m.seconds,
        m.events as f64 / m.seconds,
        m.outputs,
        peak
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let n: u64 = value("--n").map_or(10_000_000, |v| v.parse().expect("--n takes a number"));
    // Through the broker the producer is the bottleneck: fewer events.
    let n_kafka: u64 = value("--n-kafka").map_or(1_000_000, |v| v.parse().expect("--n-kafka takes a number"));
    let dir = value("--dir").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("weir-bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    // Brokers hold fewer: see `run_broker`.
    let n_broker: u64 =
        value("--n-broker").map_or(400_000, |v| v.parse().expect("--n-broker takes a number"));
    if let Some(file) = value("--serve-dev-broker") {
        return serve_dev_broker(Path::new(&file));
    }
    if let Some(job) = value("--serve-member") {
        return serve_member(Path::new(&job));
    }
    if let Some(case) = value("--case") {
        return child(&case, n, &dir, value("--fire-delay").as_deref());
    }
    let cases = [
        "memory:tumbling:window",
        "memory:tumbling:native",
        "memory:tumbling:agg",
        "memory:tumbling:native-agg",
        "memory:sliding:window",
        "memory:sliding:agg",
        "memory:session:window",
        "memory:session:agg",
        "json:tumbling:window",
        "json:tumbling:agg",
        "json:sliding:agg",
        "json:session:window",
        "memory:tumbling:python",
        "memory:tumbling:python-agg",
        "memory:sliding:python",
        "memory:session:python",
        "json:tumbling:python",
        "files1:tumbling:window",
        "files2:tumbling:window",
        "files1:tumbling:percentile",
        "files2:tumbling:percentile",
        "kafka:tumbling:window",
        "kafka:session:agg",
        "broker:tumbling:window",
        "tansu:tumbling:window",
        "group1:sliding20m:percentile",
        "group2:sliding20m:percentile",
    ];
    let states = ["state:window", "state:agg"];
    let checkpoints = [
        "checkpoint:agg:100000",
        "checkpoint:agg:1000000",
        "checkpoint:window:100000",
        "checkpoint:window:1000000",
    ];
    println!("| case | events | seconds | events/s | outputs | peak RSS (MB) |");
    println!("|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("exe");
    let mut failed = Vec::new();
    for case in states {
        let out = Command::new(&exe).args(["--case", case]).output().expect("run case");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(line) if out.status.success() => println!("memory per open (key, window): {line}"),
            _ => failed.push((case, out.status, String::from_utf8_lossy(&out.stderr).into_owned())),
        }
    }
    for case in checkpoints {
        let out = Command::new(&exe)
            .args(["--case", case, "--dir", &dir.display().to_string()])
            .output()
            .expect("run case");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(line) if out.status.success() => println!("checkpoint: {line}"),
            _ => failed.push((case, out.status, String::from_utf8_lossy(&out.stderr).into_owned())),
        }
    }
    let events_for = |case: &str| match case.split(':').next() {
        Some("kafka") => n_kafka,
        Some("broker" | "tansu" | "group1" | "group2") => n_broker,
        _ => n,
    };
    for case in cases {
        let out = Command::new(&exe)
            .args(["--case", case, "--dir", &dir.display().to_string()])
            .args(["--n", &events_for(case).to_string()])
            .output()
            .expect("run case");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(line) if out.status.success() => {
                // A case's stages (a broker case's producer and consumer)
                // first, then the case itself.
                let stages = text.lines().filter_map(|l| l.strip_prefix("STAGE "));
                for line in stages.chain([line]) {
                    let (name, fields) = line.split_once(' ').unwrap_or((line, ""));
                    let field = |k: &str| {
                        fields
                            .split_whitespace()
                            .find_map(|p| p.strip_prefix(&format!("{k}=")))
                            .unwrap_or("–")
                            .to_string()
                    };
                    let eps: f64 = field("events_per_s").parse().unwrap_or(0.0);
                    println!(
                        "| {name} | {} | {} | {:.2} M | {} | {} |",
                        field("events"),
                        field("seconds"),
                        eps / 1e6,
                        field("outputs"),
                        field("peak_rss_mb")
                    );
                }
            }
            _ => {
                println!("| {case} | FAILED ({}) |", out.status);
                failed.push((case, out.status, String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
    }
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!();
    for (case, status, stderr) in &failed {
        eprintln!("FAILED {case} ({status}):");
        for line in stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
            eprintln!("    {line}");
        }
    }
    eprintln!("{} of the benchmark's cases failed; their figures are not valid", failed.len());
    ExitCode::FAILURE
}
