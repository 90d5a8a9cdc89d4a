//! `weir serve`: the long-running host (plugin store, jobs, HTTP API),
//! until SIGTERM or Ctrl-C, which stop its jobs cleanly; the next start
//! resumes them.

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use weir::service::api::{Host, router};
use weir::service::auth::{Token, TokenOrigin};

#[derive(clap::Args)]
pub struct Args {
    /// The address to listen on. The default takes requests from this
    /// machine only; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Where the host keeps its plugins, jobs and token.
    #[arg(long, default_value = "weir-data")]
    data_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().context("cannot resolve the data dir")?;
    let given = std::env::var("WEIR_TOKEN").ok();
    let (token, origin) = Token::load_or_create(&data_dir, given)?;
    match origin {
        TokenOrigin::Generated => eprintln!(
            "generated the host's token (saved in {}, shown once): {}\n\
             clients send it with --token or WEIR_TOKEN",
            data_dir.join("token").display(),
            token.reveal()
        ),
        TokenOrigin::DataDir => eprintln!("the token is in {}", data_dir.join("token").display()),
        TokenOrigin::Environment => eprintln!("the token is WEIR_TOKEN's"),
    }
    let engine = super::engine()?;
    let host = Host::open(&data_dir, engine, token)?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {} (is another host running there?)", args.listen))?;
    listener.set_nonblocking(true).context("cannot set up the listener")?;
    let address = listener.local_addr().context("cannot read the listener's address")?;

    let stop = Arc::new(tokio::sync::Notify::new());
    let notify = stop.clone();
    ctrlc::set_handler(move || notify.notify_one()).context("cannot handle SIGTERM and Ctrl-C")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-api")
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the HTTP server's runtime")?;
    eprintln!("listening on http://{address} (data in {})", data_dir.display());
    let served: anyhow::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).context("cannot set up the listener")?;
        axum::serve(listener, router(host.clone()))
            .with_graceful_shutdown(async move { stop.notified().await })
            .await
            .context("the HTTP server failed")
    });
    eprintln!("stopping: every job ends its run (and takes its last checkpoint)");
    host.shutdown();
    eprintln!("stopped");
    served
}
