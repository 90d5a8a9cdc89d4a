//! `weir plugin test`: a plugin over a JSON-lines file, without Kafka, so a
//! plugin author can try a function. All input is read first (this is a
//! bounded, batch run), then every window fires in end order.

use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use weir::encode::window_records;
use weir::plugin::schema::{bind_inputs, resolve_params};
use weir::plugin::{PluginInstance, PluginLimits};
use weir::record::{Key, parse_field, push_json};
use weir::types::{Column, Events, Field, FunctionKind, Window};
use weir::window::{WindowSpec, merge_sessions};

#[derive(clap::Args)]
pub struct Args {
    /// A .wasm component, or the name of a built-in function.
    plugin: String,
    /// The JSON-lines file to read, one record per line.
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
    /// A parameter for the plugin, as name=value (value in JSON, or text).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Feed a plugin input from a field of another name, as input=field.
    #[arg(long = "bind", value_name = "INPUT=FIELD")]
    binds: Vec<String>,
    /// The CPU time one plugin call may take, such as 1s or 200ms.
    #[arg(long, default_value = "1s")]
    deadline: String,
}

/// One decoded record: where it came from, its key and time, and the
/// values of the plugin's inputs.
struct Record {
    object: serde_json::Map<String, serde_json::Value>,
    key: Option<Key>,
    ts: i64,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let plugin = super::engine()?.load_ref(&args.plugin)?;
    let descriptor = plugin.descriptor().clone();
    let fields: Vec<Field> =
        args.fields.iter().map(|f| parse_field(f)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let inputs = bind_inputs(&descriptor.name, &descriptor.inputs, &fields, &pairs(&args.binds, "bind")?)?;
    let given: BTreeMap<String, serde_json::Value> = pairs(&args.params, "param")?
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            (k, value)
        })
        .collect();
    let params = resolve_params(&descriptor.name, &descriptor.params, &given)?;
    let limits =
        PluginLimits { deadline: weir::duration::parse_duration(&args.deadline)?, ..PluginLimits::default() };
    let mut instance = plugin.instantiate(params, limits)?;

    let windowed = descriptor.kind != FunctionKind::Map;
    if windowed && (args.key.is_none() || args.window.is_none()) {
        bail!("{} is a {}: give --key and --window", descriptor.name, descriptor.kind);
    }

    let file =
        std::fs::File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let mut records = Vec::new();
    let mut rejected = 0usize;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", args.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match decode(&line, &args, &fields, &inputs) {
            Ok(record) => records.push(record),
            Err(reason) => {
                rejected += 1;
                eprintln!("{}:{}: rejected: {reason}", args.input.display(), n + 1);
            }
        }
    }

    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    let mut emitted = 0usize;
    let mut windows = 0usize;
    let input_fields: Vec<&Field> = inputs.iter().map(|&i| &fields[i]).collect();
    if let (true, Some(spec), Some(key_field)) = (windowed, args.window, args.key.as_deref()) {
        for (window, key, members) in group(&records, spec) {
            windows += 1;
            let events = events_of(members.iter().map(|&i| &records[i]), &input_fields, &inputs, &fields)?;
            let rows = fire(&mut instance, &key, window, &events)?;
            let rows = weir::window::RowsRef::all(&rows);
            for record in window_records(key_field, &key, window, &descriptor.outputs, rows) {
                writeln!(out, "{record}")?;
                emitted += 1;
            }
        }
    } else {
        for batch in records.chunks(1024) {
            let events = events_of(batch.iter(), &input_fields, &inputs, &fields)?;
            let mapped = instance.map(&events)?;
            for (i, &row) in mapped.rows.iter().enumerate() {
                let mut object = batch[row as usize].object.clone();
                for (field, column) in descriptor.outputs.iter().zip(&mapped.columns) {
                    let value = column.get(i).map(|v| v.to_json()).unwrap_or_default();
                    object.insert(field.name.clone(), value);
                }
                writeln!(out, "{}", serde_json::Value::Object(object))?;
                emitted += 1;
            }
        }
    }
    out.flush()?;
    let windows = if windowed { format!(", {windows} windows") } else { String::new() };
    eprintln!("{} records read, {rejected} rejected{windows}, {emitted} output records", records.len());
    Ok(())
}

/// Decodes one line; the error says why it was rejected.
fn decode(line: &str, args: &Args, fields: &[Field], inputs: &[usize]) -> Result<Record, String> {
    let object = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(o)) => o,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("malformed JSON: {e}")),
    };
    let key = match &args.key {
        Some(k) => {
            let value = object.get(k).ok_or_else(|| format!("missing key field '{k}'"))?;
            Some(
                Key::from_json(value)
                    .ok_or_else(|| format!("key '{k}' must be an integer or a string, got {value}"))?,
            )
        }
        None => None,
    };
    let ts = match &args.timestamp {
        Some(t) => {
            let value = object.get(t).ok_or_else(|| format!("missing timestamp field '{t}'"))?;
            value
                .as_i64()
                .ok_or_else(|| format!("timestamp '{t}' must be an integer of milliseconds, got {value}"))?
        }
        None => now_ms(),
    };
    for &i in inputs {
        let field = &fields[i];
        let value = object.get(&field.name).ok_or_else(|| format!("missing field '{}'", field.name))?;
        push_json(&mut Column::empty(field.ty), value).map_err(|e| format!("field '{}': {e}", field.name))?;
    }
    Ok(Record { object, key, ts })
}

/// The plugin's input batch for some records, in its declared input order.
fn events_of<'a>(
    records: impl Iterator<Item = &'a Record>,
    input_fields: &[&Field],
    inputs: &[usize],
    fields: &[Field],
) -> anyhow::Result<Events> {
    let mut events = Events {
        timestamps: Vec::new(),
        columns: input_fields.iter().map(|f| Column::empty(f.ty)).collect(),
    };
    for record in records {
        events.timestamps.push(record.ts);
        for (column, &i) in events.columns.iter_mut().zip(inputs) {
            let name = &fields[i].name;
            let value = record.object.get(name).with_context(|| format!("field '{name}' vanished"))?;
            push_json(column, value).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(events)
}

/// Every (window, key) with the indices of its records, in firing order:
/// by window end, then start, then key.
fn group(records: &[Record], spec: WindowSpec) -> Vec<(Window, Key, Vec<usize>)> {
    let mut by_key: HashMap<&Key, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(k) = &r.key {
            by_key.entry(k).or_default().push(i);
        }
    }
    let mut groups: BTreeMap<(i64, i64, Key), Vec<usize>> = BTreeMap::new();
    let mut assigned = Vec::new();
    for (key, members) in by_key {
        if let WindowSpec::Session { gap } = spec {
            let mut sessions: Vec<Window> =
                members.iter().map(|&i| Window { start: records[i].ts, end: records[i].ts + gap }).collect();
            merge_sessions(&mut sessions);
            for &i in &members {
                let ts = records[i].ts;
                if let Some(w) = sessions.iter().find(|w| w.start <= ts && ts < w.end) {
                    groups.entry((w.end, w.start, key.clone())).or_default().push(i);
                }
            }
        } else {
            for &i in &members {
                spec.assign(records[i].ts, &mut assigned);
                for w in &assigned {
                    groups.entry((w.end, w.start, key.clone())).or_default().push(i);
                }
            }
        }
    }
    groups.into_iter().map(|((end, start, key), members)| (Window { start, end }, key, members)).collect()
}

/// Fires one window: `apply` for a window function; for an aggregate, one
/// `add` of the whole window then `get-result`.
fn fire(
    instance: &mut PluginInstance,
    key: &Key,
    window: Window,
    events: &Events,
) -> anyhow::Result<weir::types::Rows> {
    let value = key.to_value();
    Ok(match instance.plugin().kind() {
        FunctionKind::Aggregate => {
            let empty = instance.create_accumulator()?;
            let acc = instance.add(&value, &empty, events)?;
            instance.get_result(&value, window, &acc)?
        }
        _ => instance.apply(&value, window, events)?,
    })
}
