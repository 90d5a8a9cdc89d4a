//! `weir plugin build`: a guest crate, a Python module, or a Python project
//! made by `weir plugin new`, to a component.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use weir::plugin::toolchain;
use weir::types::FunctionKind;

/// The componentize-py release Python guests are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The contract, as this binary speaks it: Python builds write it out, so
/// they need no checkout of the repository.
const WIT: &str = include_str!("../../../wit/weir.wit");

/// The helper package Python guests import (`weir_guest`), embedded for the
/// same reason.
const WEIR_GUEST_PY: &str = include_str!("../../../guest-functions/python/weir_guest/__init__.py");

/// The module componentize-py is pointed at: it imports the author's module
/// and exports the classes of the world from its one function class.
const ENTRY_MODULE: &str = "weir_entry_point";

/// The world a component implements, as `--world` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// `window-function`.
    #[value(name = "window-function")]
    Window,
    /// `aggregate-function`.
    #[value(name = "aggregate-function")]
    Aggregate,
    /// `map-function`.
    #[value(name = "map-function")]
    Map,
}

impl World {
    /// The world's name in the contract, as `--world` takes it.
    pub fn name(self) -> &'static str {
        match self {
            World::Window => "window-function",
            World::Aggregate => "aggregate-function",
            World::Map => "map-function",
        }
    }

    fn kind(self) -> FunctionKind {
        match self {
            World::Window => FunctionKind::Window,
            World::Aggregate => FunctionKind::Aggregate,
            World::Map => FunctionKind::Map,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// A guest crate's folder (it holds Cargo.toml), a Python module (a
    /// `.py` file), or a Python project's folder (its pyproject.toml has a
    /// [tool.weir] table, as `weir plugin new --lang python` writes it).
    source: PathBuf,
    /// The world the function implements. Required for a Python module;
    /// for a crate or a project, the built component is checked against it.
    #[arg(short, long, value_enum)]
    world: Option<World>,
    /// Where to write the component. Required for a Python module; a
    /// Python project's goes to `<folder>/<name>.wasm` by default, and a
    /// crate's stays in its target folder (its path is printed).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = if args.source.extension().is_some_and(|e| e == "py") {
        let Some(world) = args.world else {
            bail!("a Python module needs --world window-function, map-function or aggregate-function");
        };
        let Some(output) = &args.output else {
            bail!("a Python module needs -o <file.wasm> for the component");
        };
        build_python(&args.source, world, output, None)?
    } else if let Some(project) = PythonProject::read(&args.source)? {
        let output =
            args.output.clone().unwrap_or_else(|| args.source.join(format!("{}.wasm", project.name)));
        let path =
            build_python(&args.source.join(&project.module), project.world, &output, Some(&args.source))?;
        eprintln!("wrote {}", path.display());
        path
    } else {
        build_crate(&args)?
    };
    // Load it, so a contract mismatch shows now rather than at job submit;
    // this also compiles it for this machine into the cache (logged when it
    // takes seconds, as for a Python component), so the first job does not
    // wait for it.
    let plugin = super::engine()?.load_file(&path)?;
    if let Some(world) = args.world
        && plugin.kind() != world.kind()
    {
        bail!(
            "{} implements the {} world, not {}",
            path.display(),
            plugin.kind().world(),
            world.kind().world()
        );
    }
    println!("{}", super::plugin_inspect::describe(&plugin));
    Ok(())
}

fn build_crate(args: &Args) -> anyhow::Result<PathBuf> {
    let crate_dir = &args.source;
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml nor pyproject.toml: give the folder of a guest crate or of a Python \
             project made by `weir plugin new`, or a Python module (.py)",
            crate_dir.display()
        );
    }
    let manifest =
        manifest.canonicalize().with_context(|| format!("cannot resolve {}", manifest.display()))?;
    toolchain::ensure_guest_target(crate_dir)?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate_dir.join("target"));
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
            crate_dir.display(),
            wasm.len()
        );
    };
    Ok(match &args.output {
        Some(out) => {
            std::fs::copy(component, out).with_context(|| format!("cannot write {}", out.display()))?;
            out.clone()
        }
        None => component.clone(),
    })
}

/// A Python project, as `weir plugin new --lang python` makes it: its
/// `pyproject.toml` names the function and, under `[tool.weir]`, its world
/// and module.
struct PythonProject {
    name: String,
    world: World,
    module: PathBuf,
}

impl PythonProject {
    /// The project in `dir`, or `None` when `dir` holds no pyproject.toml
    /// (or a Cargo.toml, which makes it a crate).
    fn read(dir: &Path) -> anyhow::Result<Option<PythonProject>> {
        let manifest = dir.join("pyproject.toml");
        if dir.join("Cargo.toml").is_file() || !manifest.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let table: toml::Table =
            text.parse().with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let shown = manifest.display();
        let Some(weir) = table.get("tool").and_then(|t| t.get("weir")) else {
            bail!(
                "{shown} has no [tool.weir] table, so weir cannot tell what to build: add one with world = \
                 \"window-function\" and module = \"<module>.py\", or give the module itself with --world"
            );
        };
        let field = |key: &str| -> anyhow::Result<&str> {
            weir.get(key)
                .and_then(|v| v.as_str())
                .with_context(|| format!("{shown}: [tool.weir] needs {key} = \"…\" (a string)"))
        };
        let world = field("world")?;
        let world = <World as clap::ValueEnum>::from_str(world, false).map_err(|_| {
            anyhow::anyhow!(
                "{shown}: [tool.weir] world = \"{world}\" is not a world: use window-function, \
                 aggregate-function or map-function"
            )
        })?;
        if let Some(lang) = weir.get("lang")
            && lang.as_str() != Some("python")
        {
            bail!("{shown}: [tool.weir] lang = {lang} is not \"python\", which a pyproject.toml builds");
        }
        let module = PathBuf::from(field("module")?);
        if module.extension().is_none_or(|e| e != "py") || module.components().count() != 1 {
            bail!("{shown}: [tool.weir] module = {:?} must name a .py file in the project's folder", module);
        }
        let name = match table.get("project").and_then(|p| p.get("name")) {
            Some(name) => {
                name.as_str().with_context(|| format!("{shown}: [project] name is not a string"))?
            }
            None => module.file_stem().and_then(|s| s.to_str()).unwrap_or("function"),
        };
        Ok(Some(PythonProject { name: name.to_string(), world, module }))
    }
}

/// Builds a Python module with componentize-py, in a temp folder that holds
/// a copy of the module (and the `.py` files beside it), the helper package
/// and the contract, so the author's folder gets no `__pycache__`. A
/// project's own `wit/weir.wit` and `weir_guest/` are used when it has them;
/// otherwise, those embedded in this binary.
fn build_python(
    module_path: &Path,
    world: World,
    output: &Path,
    project: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let world_name = world.kind().world();
    if !module_path.is_file() {
        bail!("{} is not a file", module_path.display());
    }
    let module = python_module_name(module_path)?;

    let dir = tempfile::Builder::new()
        .prefix("weir-python-build")
        .tempdir()
        .context("cannot make a temp folder")?;
    let app = dir.path().join("app");
    let helper = dir.path().join("helper/weir_guest");
    let wit = dir.path().join("wit");
    for d in [&app, &helper, &wit] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let vendored = |path: &str| project.map(|p| p.join(path)).filter(|p| p.is_file());
    match vendored("wit/weir.wit") {
        Some(own) => std::fs::copy(&own, wit.join("weir.wit")).map(drop),
        None => std::fs::write(wit.join("weir.wit"), WIT),
    }
    .context("cannot write the contract")?;
    match vendored("weir_guest/__init__.py") {
        Some(own) => std::fs::copy(&own, helper.join("__init__.py")).map(drop),
        None => std::fs::write(helper.join("__init__.py"), WEIR_GUEST_PY),
    }
    .context("cannot write the helper package")?;
    copy_python_files(module_path, &app)?;
    std::fs::write(
        app.join(format!("{ENTRY_MODULE}.py")),
        format!(
            "import {module}\nimport weir_guest\n\nglobals().update(weir_guest.exports({module}, \"{world_name}\"))\n"
        ),
    )
    .context("cannot write the entry module")?;

    let out_tmp = dir.path().join("out.wasm");
    let mut cmd = componentize_py()?;
    cmd.arg("-d")
        .arg(&wit)
        .args(["-w", world_name, "componentize", "-p"])
        .arg(&app)
        .arg("-p")
        .arg(dir.path().join("helper"))
        .arg(ENTRY_MODULE)
        .arg("-o")
        .arg(&out_tmp)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    eprintln!("building {} with componentize-py {COMPONENTIZE_PY_VERSION}", module_path.display());
    let status = cmd.status().context("cannot run componentize-py")?;
    if !status.success() {
        bail!("componentize-py failed ({status}) on {}; see its messages above", module_path.display());
    }
    std::fs::copy(&out_tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(output.to_path_buf())
}

/// The module name of a `.py` file, which must be importable and must not
/// shadow the modules the build provides.
fn python_module_name(path: &Path) -> anyhow::Result<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let valid = stem.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!(
            "{} is not an importable module name: use letters, digits and _ (such as max_temperature.py)",
            path.display()
        );
    }
    if ["wit_world", "weir_guest", ENTRY_MODULE, "componentize_py_types"].contains(&stem) {
        bail!("{}: the module name '{stem}' is taken by the build; rename the file", path.display());
    }
    Ok(stem.to_string())
}

/// Copies the module and the other `.py` files beside it (modules it may
/// import) into `to`.
fn copy_python_files(module: &Path, to: &Path) -> anyhow::Result<()> {
    let folder = match module.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = std::fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", folder.display()))?.path();
        if path.is_file()
            && path.extension().is_some_and(|e| e == "py")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, to.join(name)).with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// A command that runs componentize-py: `$WEIR_COMPONENTIZE_PY` if set,
/// else the one in weir's own venv, made on first use.
fn componentize_py() -> anyhow::Result<Command> {
    if let Some(binary) = std::env::var_os("WEIR_COMPONENTIZE_PY") {
        return Ok(Command::new(binary));
    }
    let venv = venv_dir().context(
        "cannot find a cache folder for componentize-py: set HOME, XDG_CACHE_HOME or WEIR_COMPONENTIZE_PY",
    )?;
    let python = venv.join("bin/python3");
    if !python.is_file() {
        make_venv(&venv)?;
    }
    // The venv may have been moved into place, so run the package through
    // its python rather than through a script whose first line names the
    // folder it was made in.
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
    ]);
    Ok(cmd)
}

/// `$XDG_CACHE_HOME/weir/componentize-py-<version>`, else under `~/.cache`.
fn venv_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}")))
}

/// Makes the venv beside `venv` and moves it into place when complete, so
/// a build interrupted halfway (or one running at the same time) never
/// finds half a venv.
fn make_venv(venv: &Path) -> anyhow::Result<()> {
    let parent = venv.parent().context("the venv folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".componentize-py-venv")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    eprintln!(
        "setting up componentize-py {COMPONENTIZE_PY_VERSION} in {} (once; it downloads about 17 MB from PyPI)",
        venv.display()
    );
    let status =
        Command::new("python3").args(["-m", "venv"]).arg(staging.path()).stdout(Stdio::null()).status();
    match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 is not installed, and building a Python function needs it: install Python 3 with \
             its venv module (on Debian or Ubuntu: apt-get install python3 python3-venv), or set \
             WEIR_COMPONENTIZE_PY to a componentize-py {COMPONENTIZE_PY_VERSION} binary"
        ),
        Err(e) => bail!("cannot run python3: {e}"),
        Ok(s) if !s.success() => bail!(
            "`python3 -m venv` failed ({s}): install Python's venv module (on Debian or Ubuntu: \
             apt-get install python3-venv), or set WEIR_COMPONENTIZE_PY to a componentize-py binary"
        ),
        Ok(_) => {}
    }
    let status = Command::new(staging.path().join("bin/python3"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .stdout(Stdio::null())
        .status()
        .context("cannot run pip in the new venv")?;
    if !status.success() {
        bail!(
            "pip could not install componentize-py=={COMPONENTIZE_PY_VERSION} ({status}; see its messages \
             above): check that PyPI is reachable, or install it yourself (pip install \
             componentize-py=={COMPONENTIZE_PY_VERSION}) and set WEIR_COMPONENTIZE_PY to its binary"
        );
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, venv) {
        // Another build finished first: use its venv.
        let _ = std::fs::remove_dir_all(&staged);
        if !venv.join("bin/python3").is_file() {
            bail!("cannot move the venv to {}: {e}", venv.display());
        }
    }
    Ok(())
}
