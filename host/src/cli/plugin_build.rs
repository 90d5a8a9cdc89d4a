//! `weir plugin build`: a guest crate to a component.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::Stdio;
use weir::plugin::toolchain;

#[derive(clap::Args)]
pub struct Args {
    /// The guest crate's folder (it holds Cargo.toml).
    crate_dir: PathBuf,
    /// Where to write the component; by default it stays in the crate's
    /// target folder and its path is printed.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let manifest = args.crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} has no Cargo.toml: give the folder of a guest crate", args.crate_dir.display());
    }
    let manifest =
        manifest.canonicalize().with_context(|| format!("cannot resolve {}", manifest.display()))?;
    toolchain::ensure_guest_target(&args.crate_dir)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| args.crate_dir.join("target"));
    let output = toolchain::guest_build_command(&manifest, &target_dir)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build failed ({}); see its messages above", output.status);
    }
    // cargo reports each artifact on a JSON line; the component is the
    // .wasm file of the crate's cdylib.
    let wasm: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter(|msg| msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        .flat_map(|msg| msg["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
        .collect();
    let [component] = wasm.as_slice() else {
        bail!(
            "expected one component from {}, found {}: is it a cdylib crate? (add [lib] crate-type = [\"cdylib\"])",
            args.crate_dir.display(),
            wasm.len()
        );
    };
    let path = match args.output {
        Some(out) => {
            std::fs::copy(component, &out).with_context(|| format!("cannot write {}", out.display()))?;
            out
        }
        None => component.clone(),
    };
    // Load it, so a contract mismatch shows now rather than at job submit.
    let plugin = super::engine()?.load_file(&path)?;
    println!("{}", super::plugin_inspect::describe(&plugin));
    Ok(())
}
