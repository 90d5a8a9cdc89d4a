//! `weir dev-broker`: an in-memory Kafka broker on a fixed address, shared by
//! several processes (weir jobs, `weir produce`, `weir consume`, other Kafka
//! tools).

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weir::kafka::MockBackend;
use weir_devtools::{DevBroker, DevBrokerOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen; clients bootstrap from here. Port 0 picks a free
    /// port (see --address-file).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Partitions of the topics given with --topic, and of topics created
    /// without a partition count.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// A topic to create at start; repeat for more.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Write the bootstrap address (host:port) to this file once the broker
    /// is ready, and remove it when the broker stops.
    #[arg(long, value_name = "FILE")]
    address_file: Option<PathBuf>,
    /// Read outage commands from standard input, one a line: `down` closes
    /// every connection and refuses new ones, `up` serves again. For
    /// testing how clients ride out a broker outage.
    #[arg(long)]
    control_stdin: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stop = stop_on_ctrl_c()?;
    let options =
        DevBrokerOptions { listen: args.listen, partitions: args.partitions, topics: args.topics.clone() };
    let mock = Arc::new(MockBackend::start()?);
    let broker = DevBroker::start(&options, mock.clone())?;
    let bootstrap = broker.bootstrap();
    eprintln!("weir dev-broker: a Kafka broker (librdkafka's mock cluster) at {bootstrap}");
    eprintln!("  memory only: every topic and message is lost when it stops, and each partition");
    eprintln!("  keeps only its latest 5 MiB of messages. Ctrl-C stops it.");
    for topic in &args.topics {
        eprintln!("  topic '{topic}' with {} partition(s)", args.partitions.max(1));
    }
    if let Some(path) = &args.address_file {
        write_atomically(path, &bootstrap)?;
    }
    println!("{bootstrap}");
    if args.control_stdin {
        std::thread::Builder::new()
            .name("weir-dev-broker-control".into())
            .spawn(move || control(&mock))
            .context("cannot start the control thread")?;
    }

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(broker);
    if let Some(path) = &args.address_file {
        let _ = std::fs::remove_file(path);
    }
    eprintln!("weir dev-broker: stopped");
    Ok(())
}

/// Applies `down` and `up` commands read from standard input until it
/// ends. Down means the mock broker itself is down: the forwarder's
/// connections to it are closed and new ones refused, so clients see what
/// a dead broker process shows them.
fn control(mock: &MockBackend) {
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        let done = match line.trim() {
            "down" => mock.cluster().broker_down(-1),
            "up" => mock.cluster().broker_up(-1),
            "" => continue,
            other => {
                eprintln!("weir dev-broker: unknown command '{other}' (expected down or up)");
                continue;
            }
        };
        match done {
            Ok(()) => eprintln!("weir dev-broker: broker {}", line.trim()),
            Err(e) => eprintln!("weir dev-broker: {e}"),
        }
    }
}

/// Writes `text` to `path` through a temporary file, so a reader never sees
/// a half-written address.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A flag that Ctrl-C (or SIGTERM) sets, for commands that stop cleanly.
pub fn stop_on_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("cannot handle Ctrl-C")?;
    Ok(stop)
}
