//! `weir plugin new`: a small working guest project, so that a plugin
//! author outside this repository need not guess how to set one up. The
//! contract, the guest helpers, the dependency versions and the build
//! settings all come from what this binary was built with, so the project
//! matches the host that made it.

use super::plugin_build::World;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The contract, as the bundled guests are built against it.
const WIT: &str = include_str!("../../../wit/weir.wit");
/// The helpers the bundled guests use.
const GUEST_SUPPORT: &str = include_str!("../../../guest-functions/guest-support/src/lib.rs");
/// The bundled guests' workspace: the wit-bindgen version and features, the
/// edition and the release profile come from here.
const GUEST_WORKSPACE: &str = include_str!("../../../guest-functions/Cargo.toml");
/// The bundled guests' resolved dependencies, so a new project builds with
/// the same versions.
const GUEST_LOCK: &str = include_str!("../../../guest-functions/Cargo.lock");

const CARGO_TOML: &str = include_str!("plugin_new/Cargo.toml.in");
const GUEST_SUPPORT_TOML: &str = include_str!("plugin_new/guest-support.Cargo.toml.in");
const README: &str = include_str!("plugin_new/README.md.in");
const JOB: &str = include_str!("plugin_new/job.toml.in");
const SAMPLE: &str = include_str!("plugin_new/sample.jsonl");
const GITIGNORE: &str = include_str!("plugin_new/gitignore");
const WINDOW_LIB: &str = include_str!("plugin_new/window.rs");
const AGGREGATE_LIB: &str = include_str!("plugin_new/aggregate.rs");
const MAP_LIB: &str = include_str!("plugin_new/map.rs");

/// The helper package Python guests import, as the bundled ones use it.
const WEIR_GUEST_PY: &str = include_str!("../../../guest-functions/python/weir_guest/__init__.py");
const PY_PROJECT: &str = include_str!("plugin_new/python/pyproject.toml.in");
const PY_README: &str = include_str!("plugin_new/python/README.md.in");
const PY_GITIGNORE: &str = include_str!("plugin_new/python/gitignore");
const PY_WINDOW: &str = include_str!("plugin_new/python/window.py.in");
const PY_AGGREGATE: &str = include_str!("plugin_new/python/aggregate.py.in");
const PY_MAP: &str = include_str!("plugin_new/python/map.py.in");

#[derive(clap::Args)]
pub struct Args {
    /// The folder to create (it may exist if empty); its name is the
    /// function's, and the crate's or the Python module's.
    dir: PathBuf,
    /// The contract world the function implements.
    #[arg(long, value_enum)]
    world: World,
    /// The project's language.
    #[arg(long, default_value = "rust", value_parser = parse_lang)]
    lang: Lang,
}

/// The languages a project can be made in.
#[derive(Clone, Copy)]
enum Lang {
    Rust,
    Python,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
        }
    }
}

fn parse_lang(text: &str) -> Result<Lang, String> {
    match text {
        "rust" => Ok(Lang::Rust),
        "python" => Ok(Lang::Python),
        other => {
            Err(format!("unknown language '{other}': weir plugin new takes --lang rust or --lang python"))
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = project_name(&args.dir)?;
    match args.lang {
        Lang::Rust => check_crate_name(&name)?,
        Lang::Python => check_python_name(&name)?,
    }
    check_empty(&args.dir)?;
    let files = match args.lang {
        Lang::Rust => rust_project(&name, args.world)?,
        Lang::Python => python_project(&name, args.world)?,
    };
    for (path, text) in &files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dir = args.dir.display();
    println!("created {name} ({}, {}) in {dir}", args.world.name(), args.lang.name());
    println!("build it and run it on the sample input:");
    println!("  weir plugin build {dir} -o {}", args.dir.join(format!("{name}.wasm")).display());
    println!("  weir run {} --until-end --print", args.dir.join("job.toml").display());
    Ok(())
}

/// The project's name: the folder's.
fn project_name(dir: &Path) -> anyhow::Result<String> {
    // `.` and `..` have no name of their own: the folder they stand for does.
    let name = match dir.file_name() {
        Some(name) => name.to_os_string(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_os_string()))
            .with_context(|| format!("{} names no folder to make a project in", dir.display()))?,
    };
    let Some(name) = name.to_str() else {
        bail!("the folder name {name:?} is not valid UTF-8: the project is named after its folder");
    };
    Ok(name.to_string())
}

/// Refuses a name cargo would not take for the crate.
fn check_crate_name(name: &str) -> anyhow::Result<()> {
    check_name(name).map_err(|why| {
        anyhow::anyhow!(
            "'{name}' cannot be a crate name ({why}); the crate is named after its folder, so pick another"
        )
    })
}

/// Python keywords, which cannot name a module that is imported.
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// The module a Python project's function lives in: its name with `_` for
/// `-`.
fn python_module(name: &str) -> String {
    name.replace('-', "_")
}

/// Refuses a name whose module could not be imported, or would hide one the
/// build or the helper imports.
fn check_python_name(name: &str) -> anyhow::Result<()> {
    let module = python_module(name);
    let why = if name.is_empty() {
        Some("it is empty")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some("only ASCII letters, digits, - and _ are allowed")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it must start with a letter")
    } else if PYTHON_KEYWORDS.contains(&module.as_str()) {
        Some("it is a Python keyword")
    } else if ["wit_world", "weir_guest", "weir_entry_point", "componentize_py_types", "json"]
        .contains(&module.as_str())
    {
        Some("the build or the weir_guest helper imports a module of that name")
    } else {
        None
    };
    match why {
        Some(why) => bail!(
            "'{name}' cannot name a Python function's module ({why}); the module is named after its \
             folder, so pick another"
        ),
        None => Ok(()),
    }
}

/// Rust keywords (reserved ones too), which cargo refuses as names.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static",
    "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield",
];

/// Why cargo would refuse `name` as a package name in this project, if it
/// would.
fn check_name(name: &str) -> Result<(), &'static str> {
    let Some(first) = name.chars().next() else {
        return Err("it is empty");
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("only ASCII letters, digits, - and _ are allowed");
    }
    if !first.is_ascii_alphabetic() {
        return Err("it must start with a letter");
    }
    let ident = name.replace('-', "_");
    if KEYWORDS.contains(&ident.as_str()) || ident == "Self" {
        return Err("it is a Rust keyword");
    }
    if matches!(ident.as_str(), "std" | "core" | "alloc" | "proc_macro" | "test") {
        return Err("it is the name of a Rust standard library crate");
    }
    if matches!(name, "deps" | "examples" | "build" | "incremental") {
        return Err("cargo uses it for a folder of its build output");
    }
    if ident == "guest_support" {
        return Err("the project's vendored helper crate has that name");
    }
    Ok(())
}

/// Refuses a folder that is there and holds anything, or is not a folder.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: weir plugin new writes a whole project, so give it a new or empty folder",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => bail!("{} is there and is not a folder", dir.display()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// The files of a Rust project (path in the project, contents).
fn rust_project(name: &str, world: World) -> anyhow::Result<Vec<(String, String)>> {
    let workspace: toml::Table = GUEST_WORKSPACE.parse().context("the embedded guest workspace manifest")?;
    let get = |path: &[&str]| -> anyhow::Result<&toml::Value> {
        let mut value = workspace.get(path[0]);
        for key in &path[1..] {
            value = value.and_then(|v| v.get(*key));
        }
        value.with_context(|| format!("the embedded guest workspace has no {}", path.join(".")))
    };
    let edition = get(&["workspace", "package", "edition"])?
        .as_str()
        .context("the guest workspace's edition is not a string")?;
    let release = get(&["profile", "release"])?.as_table().context("[profile.release] is not a table")?;
    let release = toml::to_string(release).context("cannot write the release profile")?;

    let wit_bindgen = get(&["workspace", "dependencies", "wit-bindgen"])?
        .as_table()
        .context("the guest workspace's wit-bindgen is not a table")?;
    // The version first, as people write it.
    let mut entries: Vec<String> =
        wit_bindgen.get("version").map(|v| format!("version = {v}")).into_iter().collect();
    entries.extend(wit_bindgen.iter().filter(|(k, _)| *k != "version").map(|(k, v)| format!("{k} = {v}")));
    let wit_bindgen = format!("wit-bindgen = {{ {} }}", entries.join(", "));

    let Sample { what, format, window, test } = sample(world);
    let lib = match world {
        World::Window => WINDOW_LIB,
        World::Aggregate => AGGREGATE_LIB,
        World::Map => MAP_LIB,
    };
    let test = format!("weir plugin test {name}.wasm --input sample.jsonl {test}");
    let values = [
        ("name", name),
        ("world", world.name()),
        ("edition", edition),
        ("wit_bindgen", wit_bindgen.as_str()),
        ("release_profile", release.as_str()),
        ("what", what),
        ("test", test.as_str()),
        ("format", format),
        ("window", window),
    ];
    let job = job_file(&values);
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", fill(CARGO_TOML, &values)),
        ("Cargo.lock", lockfile(name)?),
        ("src/lib.rs", lib.to_string()),
        ("wit/weir.wit", WIT.to_string()),
        ("guest-support/Cargo.toml", fill(GUEST_SUPPORT_TOML, &values)),
        ("guest-support/src/lib.rs", GUEST_SUPPORT.to_string()),
        ("README.md", fill(README, &values)),
        ("sample.jsonl", SAMPLE.to_string()),
        ("job.toml", job),
        (".gitignore", GITIGNORE.to_string()),
    ];
    Ok(files.into_iter().map(|(path, text)| (path.to_string(), text)).collect())
}

/// What each world's sample function does, and the `weir plugin test`
/// flags and job settings that run it on the sample.
struct Sample {
    what: &'static str,
    format: &'static str,
    window: &'static str,
    test: &'static str,
}

fn sample(world: World) -> Sample {
    match world {
        World::Window => Sample {
            what: "It gives the maximum temperature and the number of readings of each \
                   device in each one-second window.",
            format: "key = \"device_id\"\ntimestamp = \"execution_time\"",
            window: "\n[window]\ntype = \"tumbling\"\nsize = \"1s\"\n",
            test: "--key device_id --fields temperature:f64 \\\n    --timestamp execution_time --window tumbling:1s",
        },
        World::Aggregate => Sample {
            what: "It gives the maximum temperature and the number of readings of each \
                   device in each two-second window sliding by one second, keeping an \
                   accumulator per window pane.",
            format: "key = \"device_id\"\ntimestamp = \"execution_time\"",
            window: "\n[window]\ntype = \"sliding\"\nsize = \"2s\"\nslide = \"1s\"\n",
            test: "--key device_id --fields temperature:f64 \\\n    --timestamp execution_time --window sliding:2s/1s",
        },
        World::Map => Sample {
            what: "It converts each record's temperature from kelvin to degrees Celsius \
                   and keeps the rest of the record.",
            format: "",
            window: "",
            test: "--fields temperature:f64",
        },
    }
}

/// Replaces each `{{key}}` of `template` with its value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value))
}

/// The job file that runs the function over the sample.
fn job_file(values: &[(&str, &str)]) -> String {
    // An empty [format] line would leave a blank line in the job file.
    fill(JOB, values).replace("[format]\n\n", "[format]\n")
}

/// The files of a Python project (path in the project, contents).
fn python_project(name: &str, world: World) -> anyhow::Result<Vec<(String, String)>> {
    let module = python_module(name);
    let sample = sample(world);
    let function = match world {
        World::Window => PY_WINDOW,
        World::Aggregate => PY_AGGREGATE,
        World::Map => PY_MAP,
    };
    let test = format!("weir plugin test {name}.wasm --input sample.jsonl {}", sample.test);
    let values = [
        ("name", name),
        ("module", module.as_str()),
        ("world", world.name()),
        ("what", sample.what),
        ("test", test.as_str()),
        ("format", sample.format),
        ("window", sample.window),
    ];
    Ok(vec![
        (format!("{module}.py"), fill(function, &values)),
        ("pyproject.toml".into(), fill(PY_PROJECT, &values)),
        ("weir_guest/__init__.py".into(), WEIR_GUEST_PY.to_string()),
        ("wit/weir.wit".into(), WIT.to_string()),
        ("README.md".into(), fill(PY_README, &values)),
        ("sample.jsonl".into(), SAMPLE.to_string()),
        ("job.toml".into(), job_file(&values)),
        (".gitignore".into(), PY_GITIGNORE.to_string()),
    ])
}

/// One `[[package]]` of a Cargo.lock.
#[derive(serde::Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Lockfile {
    version: u32,
    package: Vec<LockedPackage>,
}

/// A Cargo.lock for the project `name`: wit-bindgen and what it depends on,
/// as the bundled guests have them resolved, plus the project and its
/// vendored helpers. Written as cargo writes it, so cargo keeps it as it is.
fn lockfile(name: &str) -> anyhow::Result<String> {
    let lock: Lockfile = toml::from_str(GUEST_LOCK).context("the embedded guest Cargo.lock")?;
    let find = |dep: &str| {
        // A dependency is "name", or "name version" when several versions
        // are locked, maybe with its source after.
        let mut parts = dep.split_whitespace();
        let dep_name = parts.next().unwrap_or_default();
        let dep_version = parts.next();
        lock.package
            .iter()
            .position(|p| p.name == dep_name && dep_version.is_none_or(|v| v == p.version))
            .with_context(|| format!("the embedded guest Cargo.lock does not lock '{dep}'"))
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![find("wit-bindgen")?];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            for dep in &lock.package[i].dependencies {
                todo.push(find(dep)?);
            }
        }
    }
    let ours = [
        LockedPackage {
            name: name.to_string(),
            version: "0.1.0".into(),
            source: None,
            checksum: None,
            dependencies: vec!["guest-support".into(), "wit-bindgen".into()],
        },
        LockedPackage {
            name: "guest-support".into(),
            version: "0.1.0".into(),
            source: None,
            checksum: None,
            dependencies: vec![],
        },
    ];
    // cargo orders packages by name, then version.
    let mut packages: BTreeMap<(&str, Vec<u64>), &LockedPackage> = BTreeMap::new();
    for p in needed.iter().map(|&i| &lock.package[i]).chain(&ours) {
        let version = p.version.split(['.', '-', '+']).map(|n| n.parse().unwrap_or(0)).collect();
        packages.insert((p.name.as_str(), version), p);
    }
    let mut text = format!(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = {}\n",
        lock.version
    );
    for p in packages.values() {
        text += &format!("\n[[package]]\nname = \"{}\"\nversion = \"{}\"\n", p.name, p.version);
        if let Some(source) = &p.source {
            text += &format!("source = \"{source}\"\n");
        }
        if let Some(checksum) = &p.checksum {
            text += &format!("checksum = \"{checksum}\"\n");
        }
        if !p.dependencies.is_empty() {
            text += "dependencies = [\n";
            for dep in &p.dependencies {
                text += &format!(" \"{dep}\",\n");
            }
            text += "]\n";
        }
    }
    Ok(text)
}
