//! Command-line parsing and dispatch; the binary edge, where errors become
//! messages and exit codes.

mod checkpoints;
mod consume;
mod demo;
mod dev_broker;
mod plugin_build;
mod plugin_inspect;
mod plugin_new;
mod plugin_test;
mod produce;
mod remote;
mod run;
mod serve;
mod topic;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// weir: a stream processor with WebAssembly window functions.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The temperature job with no setup: embedded broker, example readings, live windows.
    Demo(demo::Args),
    /// Run a job file in the foreground (Ctrl-C stops it).
    Run(run::Args),
    /// Build, inspect and try out plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run an in-memory Kafka broker on a fixed address, for several processes to share.
    DevBroker(dev_broker::Args),
    /// Send the example IoT readings (temperatures of devices) to a Kafka topic.
    Produce(produce::Args),
    /// Print a Kafka topic's messages as JSON lines.
    Consume(consume::Args),
    /// Create, describe and list Kafka topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// List the checkpoints of a storage, or inspect one.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
    /// Run a host that stores plugins and runs submitted jobs, with an HTTP API.
    Serve(serve::Args),
    /// Submit a job file to a host (prints the job's id).
    Submit(remote::SubmitArgs),
    /// List a host's jobs.
    List(remote::ListArgs),
    /// Show one of a host's jobs, with its metrics.
    Status(remote::JobArgs),
    /// Cancel one of a host's jobs.
    Cancel(remote::JobArgs),
    /// Take a savepoint of one of a host's jobs (prints its URL).
    Savepoint(remote::SavepointArgs),
    /// Compare another version of a job's function with its own on the
    /// job's input (--shadow), and switch the job to it keeping its state
    /// (--switch).
    Upgrade(remote::UpgradeArgs),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Compile a guest crate (cargo build for wasm32-wasip2) or a Python
    /// module (componentize-py) into a component.
    Build(plugin_build::Args),
    /// Make a new guest project: a working function, the contract, a sample input and job.
    New(plugin_new::Args),
    /// Show a plugin's world, name, version, fields, parameters and size.
    Inspect(plugin_inspect::Args),
    /// Run a plugin over a JSON-lines file and print its output records.
    Test(Box<plugin_test::Args>),
    /// Upload a component to a host's plugin store (prints name@version).
    Upload(remote::UploadArgs),
    /// List the plugins a host stores.
    List(remote::ListArgs),
    /// Delete a plugin (name@version) from a host's store.
    Delete(remote::DeleteArgs),
}

/// Runs the command line; errors print as `error: …` with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // `weir topic describe … | head`: a reader that closes the pipe ends a
    // printing command quietly, as it ends other Unix tools (Rust ignores
    // SIGPIPE, so the next print would panic). Not for the long-running
    // commands, which write to sockets and files, not to a reader.
    if !matches!(cli.command, Command::Run(_) | Command::DevBroker(_) | Command::Serve(_)) {
        // SAFETY: sets a signal's disposition back to the default, before
        // any thread of ours writes to stdout.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::Plugin(PluginCommand::Build(args)) => plugin_build::run(args),
        Command::Plugin(PluginCommand::Inspect(args)) => plugin_inspect::run(args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(*args),
        Command::Plugin(PluginCommand::Upload(args)) => remote::upload(args),
        Command::Plugin(PluginCommand::List(args)) => remote::list_plugins(args),
        Command::Plugin(PluginCommand::Delete(args)) => remote::delete_plugin(args),
        Command::Serve(args) => serve::run(args),
        Command::Submit(args) => remote::submit(args),
        Command::List(args) => remote::list_jobs(args),
        Command::Status(args) => remote::status(args),
        Command::Cancel(args) => remote::cancel(args),
        Command::Savepoint(args) => remote::savepoint(args),
        Command::Upgrade(args) => remote::upgrade(args),
        Command::DevBroker(args) => dev_broker::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Topic(command) => topic::run(command),
        Command::Checkpoints(command) => checkpoints::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`weir … | head`) is the reader's choice, not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` picks the level (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// The plugin engine for a one-shot command.
fn engine() -> anyhow::Result<weir::plugin::PluginEngine> {
    Ok(weir::plugin::PluginEngine::new(weir::plugin::EngineConfig::default())?)
}
