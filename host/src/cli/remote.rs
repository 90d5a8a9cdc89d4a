//! The CLI's client of a `weir serve` host: `weir plugin upload|list|delete`,
//! `weir submit`, `weir list`, `weir status`, `weir cancel`, `weir
//! savepoint`, `weir upgrade`. Each prints
//! the host's error message on its first line when a request is refused.

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::PathBuf;

/// Where the host is, and the token for requests that change something.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// The host's URL.
    #[arg(long, env = "WEIR_HOST", default_value = "http://127.0.0.1:8081")]
    host: String,
    /// The host's token (printed by `weir serve` on its first start, and in
    /// its data dir's `token` file).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(args: &HostArgs) -> Client {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        Client {
            base: args.host.trim_end_matches('/').to_string(),
            token: args.token.clone(),
            agent: config.into(),
        }
    }

    /// Sends a request; the host's JSON answer, or its error as the message.
    fn call(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), auth).call(),
            (_, Some((content_type, bytes))) => {
                with_auth(self.agent.post(&url), auth).header("Content-Type", content_type).send(bytes)
            }
            (_, None) => with_auth(self.agent.post(&url), auth).send_empty(),
        };
        let mut response = response
            .with_context(|| format!("cannot reach the host at {}: is `weir serve` running?", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .with_context(|| format!("cannot read the host's answer to {method} {path}"))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = json["error"].as_str().map(str::to_string).unwrap_or_else(|| json.to_string());
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(json)
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(clap::Args)]
pub struct UploadArgs {
    /// The .wasm component.
    file: PathBuf,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir plugin upload`: prints `name@version` on stdout.
pub fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let plugin = Client::new(&args.host).call("POST", "/api/plugins", Some(("application/wasm", &bytes)))?;
    let what = if plugin["already_stored"] == Value::Bool(true) { "already stored" } else { "stored" };
    eprintln!(
        "{what} {}@{} ({}, weir:functions@{}, sha256 {})",
        text(&plugin["name"]),
        text(&plugin["version"]),
        text(&plugin["world"]),
        text(&plugin["contract"]),
        text(&plugin["sha256"])
    );
    println!("{}@{}", text(&plugin["name"]), text(&plugin["version"]));
    Ok(())
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    host: HostArgs,
}

/// `weir plugin list`.
pub fn list_plugins(args: ListArgs) -> anyhow::Result<()> {
    let plugins = Client::new(&args.host).call("GET", "/api/plugins", None)?;
    let plugins = plugins.as_array().cloned().unwrap_or_default();
    if plugins.is_empty() {
        eprintln!("no plugins stored: upload one with `weir plugin upload <file.wasm>`");
        return Ok(());
    }
    println!("{:<40} {:<20} {:>10}  sha256", "plugin", "world", "bytes");
    for p in plugins {
        let reference = format!("{}@{}", text(&p["name"]), text(&p["version"]));
        println!(
            "{reference:<40} {:<20} {:>10}  {}",
            text(&p["world"]),
            text(&p["size"]),
            text(&p["sha256"])
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// The plugin, as `name@version`.
    plugin: String,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir plugin delete`.
pub fn delete_plugin(args: DeleteArgs) -> anyhow::Result<()> {
    let path = format!("/api/plugins/{}", escape(&args.plugin));
    let plugin = Client::new(&args.host).call("DELETE", &path, None)?;
    eprintln!("deleted {}@{}", text(&plugin["name"]), text(&plugin["version"]));
    Ok(())
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The job file (TOML). Its paths must be absolute, and its plugin one
    /// the host stores (`name@version`, or `name` for the newest) or a
    /// built-in.
    job: PathBuf,
    /// The job stops at the end of its input (a file's end, or the end
    /// offsets its Kafka topic had at start), firing every open window.
    #[arg(long)]
    until_end: bool,
    /// Start from this savepoint (the URL `weir savepoint` printed, or an
    /// absolute path); the job needs `[checkpoint]` and the same name.
    #[arg(long, value_name = "URL")]
    from_savepoint: Option<String>,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir submit`: prints the job's id alone on stdout.
pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let file = std::fs::read(&args.job).with_context(|| format!("cannot read {}", args.job.display()))?;
    let mut query = Vec::new();
    if args.until_end {
        query.push("until_end=true".to_string());
    }
    if let Some(savepoint) = &args.from_savepoint {
        query.push(format!("from_savepoint={}", escape(savepoint)));
    }
    let path = match query.is_empty() {
        true => "/api/jobs".to_string(),
        false => format!("/api/jobs?{}", query.join("&")),
    };
    let job = Client::new(&args.host).call("POST", &path, Some(("application/toml", &file)))?;
    eprintln!("submitted {} with plugin {}", text(&job["name"]), text(&job["plugin"]));
    println!("{}", text(&job["id"]));
    Ok(())
}

/// `weir list`: the host's jobs.
pub fn list_jobs(args: ListArgs) -> anyhow::Result<()> {
    let jobs = Client::new(&args.host).call("GET", "/api/jobs", None)?;
    let jobs = jobs.as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        eprintln!("no jobs: submit one with `weir submit <job.toml>`");
        return Ok(());
    }
    println!("{:<16}  {:<24} {:<10} {:<32} {:>10}", "id", "name", "state", "plugin", "outputs");
    for j in jobs {
        println!(
            "{:<16}  {:<24} {:<10} {:<32} {:>10}",
            text(&j["id"]),
            text(&j["name"]),
            text(&j["state"]),
            text(&j["plugin"]),
            text(&j["metrics"]["outputs"])
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct JobArgs {
    /// The job's id (`weir list` shows them).
    id: String,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir status`: one job, as the host's JSON.
pub fn status(args: JobArgs) -> anyhow::Result<()> {
    let job = Client::new(&args.host).call("GET", &format!("/api/jobs/{}", escape(&args.id)), None)?;
    println!("{}", serde_json::to_string_pretty(&job)?);
    Ok(())
}

/// `weir cancel`: stops a job; it does not resume.
pub fn cancel(args: JobArgs) -> anyhow::Result<()> {
    let path = format!("/api/jobs/{}/cancel", escape(&args.id));
    let job = Client::new(&args.host).call("POST", &path, None)?;
    eprintln!("{} {} is {}", text(&job["id"]), text(&job["name"]), text(&job["state"]));
    Ok(())
}

#[derive(clap::Args)]
pub struct SavepointArgs {
    /// The job's id.
    id: String,
    /// Stop the job with the savepoint (it does not resume; submit it again
    /// with --from-savepoint to go on).
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir savepoint`: prints the savepoint's URL on stdout.
pub fn savepoint(args: SavepointArgs) -> anyhow::Result<()> {
    let stop = if args.stop { "?stop=true" } else { "" };
    let path = format!("/api/jobs/{}/savepoint{stop}", escape(&args.id));
    let answer = Client::new(&args.host).call("POST", &path, None)?;
    eprintln!(
        "{} {} is {}",
        text(&answer["job"]["id"]),
        text(&answer["job"]["name"]),
        text(&answer["job"]["state"])
    );
    println!("{}", text(&answer["savepoint"]));
    Ok(())
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// The job's id.
    id: String,
    /// The new version of its function: `name@version` (stored), `name`
    /// (its newest stored version), or a built-in.
    plugin: String,
    /// First run the new version beside the job's own for this long (`30s`,
    /// `5m`), on the job's input from its latest checkpoint, writing
    /// nothing, and report how many windows differ.
    #[arg(long, value_name = "DURATION")]
    shadow: Option<String>,
    /// Switch the job to the new version at a savepoint (it goes on with
    /// its window state; prints the new job id). Without it, nothing
    /// changes.
    #[arg(long)]
    switch: bool,
    #[command(flatten)]
    host: HostArgs,
}

/// `weir upgrade`: a shadow run's report on stderr, and, with `--switch`,
/// the upgraded job's id on stdout.
pub fn upgrade(args: UpgradeArgs) -> anyhow::Result<()> {
    if args.shadow.is_none() && !args.switch {
        bail!(
            "weir upgrade needs --shadow <duration> (compare the versions), --switch (switch to the new one), or both"
        );
    }
    let client = Client::new(&args.host);
    let (id, plugin) = (escape(&args.id), escape(&args.plugin));
    if let Some(duration) = &args.shadow {
        let path = format!("/api/jobs/{id}/shadow?plugin={plugin}&duration={}", escape(duration));
        let report = client.call("POST", &path, None)?;
        let (old, new) = (&report["old"], &report["new"]);
        eprintln!(
            "shadow of job {} for {duration}: {} read {} records, {} read {}",
            args.id,
            text(&old["plugin"]),
            text(&old["records"]),
            text(&new["plugin"]),
            text(&new["records"])
        );
        eprintln!(
            "{} windows compared: {} differ ({} fired by {} only, {} by {} only)",
            text(&report["compared"]),
            text(&report["differing"]),
            text(&report["unmatched"][0]),
            text(&old["plugin"]),
            text(&report["unmatched"][1]),
            text(&new["plugin"])
        );
        for diff in report["examples"].as_array().into_iter().flatten() {
            eprintln!(
                "  key {} window [{}, {}):\n    {}: {}\n    {}: {}",
                text(&diff["key"]),
                text(&diff["window_start"]),
                text(&diff["window_end"]),
                text(&old["plugin"]),
                text(&diff["old"]),
                text(&new["plugin"]),
                text(&diff["new"])
            );
        }
    }
    if args.switch {
        let answer = client.call("POST", &format!("/api/jobs/{id}/upgrade?plugin={plugin}"), None)?;
        eprintln!(
            "job {} stopped at savepoint {}; {} goes on with {}",
            args.id,
            text(&answer["savepoint"]),
            text(&answer["job"]["id"]),
            text(&answer["job"]["plugin"])
        );
        println!("{}", text(&answer["job"]["id"]));
    }
    Ok(())
}

/// A path segment (or query value) with everything but plain characters
/// percent-encoded.
fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
