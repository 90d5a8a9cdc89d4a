//! Errors from loading and calling plugins.

use crate::types::{FunctionKind, Window};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a plugin could not be loaded. Each message names the plugin and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither a path nor a built-in's name.
    #[error(
        "no plugin named '{name}': give a path to a .wasm component or one of the built-ins ({builtins})"
    )]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The built-ins there are.
        builtins: String,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{origin} is not a WebAssembly file (it does not start with the \\0asm magic bytes)")]
    NotWasm {
        /// Which plugin.
        origin: String,
    },
    /// A core module, not a component.
    #[error(
        "{origin} is a core WebAssembly module, not a component: build it for wasm32-wasip2, \
         for example with `weir plugin build <crate-dir>`"
    )]
    CoreModule {
        /// Which plugin.
        origin: String,
    },
    /// Wasmtime could not compile it.
    #[error("{origin} could not be compiled: {message}")]
    Compile {
        /// Which plugin.
        origin: String,
        /// Wasmtime's reason.
        message: String,
    },
    /// It exports no weir interface at all.
    #[error(
        "{origin} implements none of weir's worlds: it exports none of \
         weir:functions/{{window,aggregate,map}}@{version} (its exports: {exports})"
    )]
    UnknownWorld {
        /// Which plugin.
        origin: String,
        /// The contract version the host expects.
        version: &'static str,
        /// What it does export.
        exports: String,
    },
    /// Built against another version of the contract.
    #[error(
        "{origin} was built for weir:functions@{found}, but this weir speaks @{expected} (and still \
         runs @{}): rebuild it against this weir's wit/",
        crate::plugin::LEGACY_VERSION
    )]
    VersionMismatch {
        /// Which plugin.
        origin: String,
        /// The version it was built for.
        found: String,
        /// The version the host expects.
        expected: &'static str,
    },
    /// It exports more than one world's interface.
    #[error("{origin} exports more than one weir world ({worlds}); a plugin implements exactly one")]
    Ambiguous {
        /// Which plugin.
        origin: String,
        /// The worlds found.
        worlds: String,
    },
    /// An export of its world is missing or has the wrong type.
    #[error("{origin} does not match the {world} world: {detail}")]
    WorldMismatch {
        /// Which plugin.
        origin: String,
        /// The world it seemed to implement.
        world: FunctionKind,
        /// Which export is missing or mistyped, and how.
        detail: String,
    },
    /// It imports something the host does not give plugins.
    #[error("{origin} needs imports weir does not provide to plugins: {detail}")]
    Imports {
        /// Which plugin.
        origin: String,
        /// Wasmtime's account of the missing import.
        detail: String,
    },
    /// `describe` failed or returned nonsense.
    #[error("{origin}: bad describe(): {problem}")]
    Descriptor {
        /// Which plugin.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// The call that failed: which function, and for which key and window.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSite {
    /// The exported function, such as `apply`.
    pub function: &'static str,
    /// The key, as text, when the call was for one key.
    pub key: Option<String>,
    /// The window, when the call was for one window.
    pub window: Option<Window>,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.function)?;
        match (&self.key, &self.window) {
            (Some(k), Some(w)) => write!(f, " (key {k}, window [{}, {}))", w.start, w.end),
            (Some(k), None) => write!(f, " (key {k})"),
            (None, Some(w)) => write!(f, " (window [{}, {}))", w.start, w.end),
            (None, None) => Ok(()),
        }
    }
}

/// A failed plugin call: which plugin, which call, and what went wrong.
/// The host goes on; the instance is replaced before its next call if it
/// trapped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin '{plugin}' failed in {call}: {failure}")]
pub struct PluginError {
    /// The plugin's name.
    pub plugin: String,
    /// The call.
    pub call: CallSite,
    /// What went wrong.
    pub failure: Failure,
}

/// What went wrong in a plugin call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// It ran past its deadline (wall time) and was interrupted.
    #[error("ran past its wall-time deadline of {0:?} and was stopped")]
    Deadline(Duration),
    /// It tried to grow its memory past the limit.
    #[error("exceeded its memory limit of {limit} bytes (asked for {requested} bytes)")]
    Memory {
        /// The limit.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// It returned more output than allowed.
    #[error("returned {size} bytes of output, over its limit of {limit} bytes")]
    OutputTooLarge {
        /// What it returned.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// It trapped (a panic, `unreachable`, an out-of-bounds access, …).
    #[error("trapped: {0}")]
    Trap(String),
    /// It returned an error value.
    #[error("returned an error: {0}")]
    Returned(String),
    /// Its output does not fit its own descriptor.
    #[error("returned malformed output: {0}")]
    BadOutput(String),
    /// It could not be instantiated again after a trap.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// `configure` rejected the job's parameters.
    #[error("rejected its parameters: {0}")]
    Configure(String),
}
