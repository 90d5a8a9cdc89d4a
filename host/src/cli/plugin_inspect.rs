//! `weir plugin inspect`.

use std::fmt::Write;
use weir::plugin::Plugin;
use weir::types::{Field, Value};

#[derive(clap::Args)]
pub struct Args {
    /// A .wasm component, or the name of a built-in function.
    plugin: String,
}

fn fields(fields: &[Field]) -> String {
    if fields.is_empty() {
        return "(none)".into();
    }
    fields.iter().map(|f| format!("{}: {}", f.name, f.ty)).collect::<Vec<_>>().join(", ")
}

/// A readable summary of a plugin, as `inspect` prints it.
pub fn describe(plugin: &Plugin) -> String {
    let d = plugin.descriptor();
    let mut out = String::new();
    let _ = writeln!(out, "plugin   {} {}", d.name, d.version);
    let _ = writeln!(out, "world    {} (weir:functions@{})", d.kind, plugin.contract_version());
    if d.kind == weir::types::FunctionKind::Aggregate {
        let _ = writeln!(out, "state    version {}", d.state_version);
    }
    let _ = writeln!(out, "about    {}", d.description);
    let _ = writeln!(out, "inputs   {}", fields(&d.inputs));
    let _ = writeln!(out, "outputs  {}", fields(&d.outputs));
    if d.params.is_empty() {
        let _ = writeln!(out, "params   (none)");
    }
    for (i, p) in d.params.iter().enumerate() {
        let label = if i == 0 { "params  " } else { "        " };
        let need = match (&p.required, &p.default) {
            (true, _) => "required".to_string(),
            (false, Some(v)) => format!("default {}", Value::to_json(v)),
            (false, None) => "optional".to_string(),
        };
        let _ = writeln!(out, "{label} {}: {} ({need}) {}", p.name, p.ty, p.description);
    }
    let _ = writeln!(out, "size     {} bytes", plugin.size());
    let _ = writeln!(out, "sha256   {}", plugin.sha256());
    let _ = write!(out, "source   {}", plugin.origin());
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let plugin = super::engine()?.load_ref(&args.plugin)?;
    println!("{}", describe(&plugin));
    Ok(())
}
