//! `weir plugin test`: a plugin over a JSON-lines file (or stdin), so a
//! plugin author can try a function without Kafka. It is a bounded run of
//! the real pipeline, the one `weir run` uses: the same decoding, windows,
//! watermarks, batched calls and failure handling, with the output records
//! on stdout and the rejected and late records reported on stderr. So a
//! plugin that passes here behaves the same in a job, and the same input
//! and settings give byte-identical output.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use weir::job::{Job, JobConfig, WindowConfig};
use weir::pipeline::{Pipeline, RunOptions, Sinks};
use weir::record::parse_field;
use weir::sink::{Sink, SinkError};
use weir::source::file::FileSource;
use weir::types::FunctionKind;
use weir::window::WindowSpec;

#[derive(clap::Args)]
pub struct Args {
    /// A .wasm component, or the name of a built-in function.
    plugin: String,
    /// The JSON-lines file to read, one record per line; `-` for stdin.
    #[arg(long)]
    input: PathBuf,
    /// The field to key by (window and aggregate functions).
    #[arg(long)]
    key: Option<String>,
    /// The fields to read, as name:type (f64, i64, string, bool); repeat the
    /// flag or separate with commas.
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// The field holding each record's event time in milliseconds; without
    /// it, records get the time they are read (processing time).
    #[arg(long)]
    timestamp: Option<String>,
    /// The window: tumbling:1s, sliding:10s/1s or session:5s.
    #[arg(long)]
    window: Option<WindowSpec>,
    /// How far out of order events may come: the watermark trails the
    /// latest event time by this much (as `time.max_out_of_orderness`).
    #[arg(long, default_value = "0s")]
    max_out_of_orderness: String,
    /// How long after a window fires late events still update it (as
    /// `time.allowed_lateness`); later ones are reported as late.
    #[arg(long, default_value = "0s")]
    allowed_lateness: String,
    /// How far past a window's end the watermark goes before it fires, so
    /// one call covers the windows ending in that span (as
    /// `time.fire_delay`).
    #[arg(long, default_value = "1s")]
    fire_delay: String,
    /// A parameter for the plugin, as name=value (value in JSON, or text).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Feed a plugin input from a field of another name, as input=field.
    #[arg(long = "bind", value_name = "INPUT=FIELD")]
    binds: Vec<String>,
    /// The wall time one plugin call may take, such as 1s or 200ms.
    #[arg(long, default_value = "1s")]
    deadline: String,
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--{what} takes name=value, got '{item}'"))
        })
        .collect()
}

/// The job these flags describe, as a job file would: file in, and the
/// plugin's output, rejected and late records out.
fn job_config(args: &Args) -> anyhow::Result<JobConfig> {
    let mut fields = serde_json::Map::new();
    for text in &args.fields {
        let field = parse_field(text).map_err(anyhow::Error::msg)?;
        fields.insert(field.name, serde_json::Value::from(field.ty.name()));
    }
    let params: serde_json::Map<String, serde_json::Value> = pairs(&args.params, "param")?
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            (k, value)
        })
        .collect();
    let window = args.window.map(WindowConfig::from);
    let config = serde_json::json!({
        "name": "plugin-test",
        "source": { "type": "file", "path": args.input },
        "format": { "key": args.key, "timestamp": args.timestamp, "fields": fields },
        "time": {
            "max_out_of_orderness": args.max_out_of_orderness,
            "allowed_lateness": args.allowed_lateness,
            "fire_delay": args.fire_delay,
        },
        "window": window,
        "function": {
            "plugin": args.plugin,
            "params": params,
            "bind": pairs(&args.binds, "bind")?,
            "limits": { "deadline": args.deadline },
        },
        "sink": { "type": "file", "path": "-" },
    });
    serde_json::from_value(without_nulls(config)).context("the flags do not make a job")
}

/// The value with every null field left out, as a job file would leave it
/// out.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => fields
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other,
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let engine = super::engine()?;
    let descriptor = engine.load_ref(&args.plugin)?.descriptor().clone();
    match (descriptor.kind, &args.window, &args.key) {
        (FunctionKind::Map, Some(_), _) => bail!("{} is a map-function: remove --window", descriptor.name),
        (FunctionKind::Window | FunctionKind::Aggregate, None, _)
        | (FunctionKind::Window | FunctionKind::Aggregate, _, None) => {
            bail!("{} is a {}: give --key and --window", descriptor.name, descriptor.kind)
        }
        _ => {}
    }
    let here = std::env::current_dir().context("cannot read the current folder")?;
    let job = Job::from_config(job_config(&args)?, "weir plugin test", &here)?;
    let mut pipeline = Pipeline::build(job, &engine)?;
    let mut source = match args.input.as_os_str() == "-" {
        true => FileSource::stdin(),
        false => FileSource::open(&args.input)?,
    };
    let mut sinks = Sinks {
        output: Box::new(Stdout(std::io::BufWriter::new(std::io::stdout()))),
        dead_letter: Some(Box::new(Report("rejected"))),
        late: Some(Box::new(Report("late"))),
    };
    let summary = pipeline.run(&mut source, &mut sinks, &RunOptions::default(), &mut |_| {})?;
    let windows = match descriptor.kind {
        FunctionKind::Map => String::new(),
        _ => format!(", {} windows fired ({} re-fired)", summary.windows, summary.refired),
    };
    eprintln!(
        "{} records read, {} rejected, {} late{windows}, {} failed, {} output records",
        summary.records,
        summary.records - summary.events - summary.late,
        summary.late,
        summary.failed,
        summary.outputs
    );
    Ok(())
}

/// Output records on stdout, one per line, as a file sink writes them.
struct Stdout(std::io::BufWriter<std::io::Stdout>);

impl Sink for Stdout {
    fn send(&mut self, _key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        let fail = |source| SinkError::WriteFile { path: "stdout".into(), source };
        self.0.write_all(payload).map_err(fail)?;
        self.0.write_all(b"\n").map_err(fail)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.flush().map_err(|source| SinkError::WriteFile { path: "stdout".into(), source })
    }

    fn name(&self) -> &str {
        "stdout"
    }
}

/// Rejected or late records, reported on stderr as they come.
struct Report(&'static str);

impl Sink for Report {
    fn send(&mut self, _key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        eprintln!("{}: {}", self.0, String::from_utf8_lossy(payload));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn name(&self) -> &str {
        "stderr"
    }
}
