//! Loading a component: finding which world it implements, checking its
//! exports against that world, and reading its descriptor.

use super::bindings::{CONTRACT_VERSION, aggregate, map, window};
use super::engine::PluginEngine;
use super::error::{Failure, LoadError};
use super::instance::PluginInstance;
use super::legacy::LEGACY_VERSION;
use super::limits::PluginLimits;
use super::store::StoreState;
use crate::types::{Descriptor, FunctionKind, Param};
use std::collections::HashSet;
use std::sync::Arc;
use wasmtime::component::{Component, InstancePre};

/// A loaded, checked plugin, ready to be instantiated. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    engine: PluginEngine,
    origin: String,
    sha256: String,
    size: usize,
    descriptor: Descriptor,
    /// The contract version it was built for.
    contract: &'static str,
    pre: WorldPre,
}

/// A pre-linked instance of each world: instantiating from it costs a few
/// microseconds with the pooling allocator.
#[derive(Clone)]
pub(crate) enum WorldPre {
    Window(window::WindowFunctionPre<StoreState>),
    Aggregate(aggregate::AggregateFunctionPre<StoreState>),
    Map(map::MapFunctionPre<StoreState>),
    /// A component built for the 0.1.0 contract (see `legacy`).
    Legacy(InstancePre<StoreState>),
}

/// The full name of one of the contract's interfaces, as a component built
/// for contract `version` exports it.
fn export_name(interface: &str, version: &str) -> String {
    format!("weir:functions/{interface}@{version}")
}

impl Plugin {
    pub(crate) fn from_component(
        engine: PluginEngine,
        component: Component,
        origin: String,
        sha256: String,
        size: usize,
    ) -> Result<Plugin, LoadError> {
        let (kind, version) = detect_world(&engine, &component, &origin)?;
        let mismatch =
            |detail: String| LoadError::WorldMismatch { origin: origin.clone(), world: kind, detail };

        // Name a missing export plainly, before wasmtime's type check.
        let exports: HashSet<String> =
            component.component_type().exports(engine.engine()).map(|(n, _)| n.to_string()).collect();
        for interface in ["plugin", kind.interface()] {
            let name = export_name(interface, version);
            if !exports.contains(&name) {
                return Err(mismatch(format!("missing export `{name}`")));
            }
        }

        let instance_pre: InstancePre<StoreState> = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports { origin: origin.clone(), detail: format!("{e:#}") })?;
        let typed = |e: wasmtime::Error| mismatch(format!("{e:#}"));
        let pre = match kind {
            _ if version == LEGACY_VERSION => WorldPre::Legacy(instance_pre),
            FunctionKind::Window => {
                WorldPre::Window(window::WindowFunctionPre::new(instance_pre).map_err(typed)?)
            }
            FunctionKind::Aggregate => {
                WorldPre::Aggregate(aggregate::AggregateFunctionPre::new(instance_pre).map_err(typed)?)
            }
            FunctionKind::Map => WorldPre::Map(map::MapFunctionPre::new(instance_pre).map_err(typed)?),
        };

        let descriptor = PluginInstance::describe(&engine, &pre, &origin, kind)?;
        if descriptor.kind != kind {
            return Err(LoadError::Descriptor {
                origin,
                problem: format!("it says it is a {} but exports the {} world", descriptor.kind, kind),
            });
        }
        check_descriptor(&descriptor)
            .map_err(|problem| LoadError::Descriptor { origin: origin.clone(), problem })?;

        let contract = version;
        Ok(Plugin { inner: Arc::new(Inner { engine, origin, sha256, size, descriptor, contract, pre }) })
    }

    /// What the plugin says it is.
    pub fn descriptor(&self) -> &Descriptor {
        &self.inner.descriptor
    }

    /// The plugin's name (from its descriptor).
    pub fn name(&self) -> &str {
        &self.inner.descriptor.name
    }

    /// The contract version it was built for: [`CONTRACT_VERSION`], or
    /// [`LEGACY_VERSION`] for an older component.
    pub fn contract_version(&self) -> &'static str {
        self.inner.contract
    }

    /// Which world it implements.
    pub fn kind(&self) -> FunctionKind {
        self.inner.descriptor.kind
    }

    /// Where it came from: a path, or `built-in '<name>'`.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The sha256 of the component, in hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    pub(crate) fn engine(&self) -> &PluginEngine {
        &self.inner.engine
    }

    pub(crate) fn pre(&self) -> &WorldPre {
        &self.inner.pre
    }

    /// A live instance, configured with the job's parameters (already
    /// checked by [`super::schema::resolve_params`]) and held to `limits`.
    pub fn instantiate(
        &self,
        params: Vec<Param>,
        limits: PluginLimits,
    ) -> Result<PluginInstance, super::PluginError> {
        PluginInstance::new(self.clone(), params, limits)
    }
}

/// Which world a component implements, and for which contract version
/// (the current one, else the older one that still loads), from the names
/// of its exports.
fn detect_world(
    engine: &PluginEngine,
    component: &Component,
    origin: &str,
) -> Result<(FunctionKind, &'static str), LoadError> {
    let names: Vec<String> =
        component.component_type().exports(engine.engine()).map(|(n, _)| n.to_string()).collect();
    let worlds = |version: &str| -> Vec<FunctionKind> {
        [FunctionKind::Window, FunctionKind::Aggregate, FunctionKind::Map]
            .into_iter()
            .filter(|k| names.contains(&export_name(k.interface(), version)))
            .collect()
    };
    let (found, version) = match worlds(CONTRACT_VERSION) {
        found if found.is_empty() => (worlds(LEGACY_VERSION), LEGACY_VERSION),
        found => (found, CONTRACT_VERSION),
    };
    match found.as_slice() {
        [kind] => Ok((*kind, version)),
        [] => {
            let other_version = names
                .iter()
                .filter_map(|n| n.strip_prefix("weir:functions/"))
                .find_map(|rest| rest.split_once('@').map(|(_, v)| v.to_string()));
            match other_version {
                Some(found) => Err(LoadError::VersionMismatch {
                    origin: origin.to_string(),
                    found,
                    expected: CONTRACT_VERSION,
                }),
                None => Err(LoadError::UnknownWorld {
                    origin: origin.to_string(),
                    version: CONTRACT_VERSION,
                    exports: if names.is_empty() { "none".into() } else { names.join(", ") },
                }),
            }
        }
        many => Err(LoadError::Ambiguous {
            origin: origin.to_string(),
            worlds: many.iter().map(|k| k.world()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Field and parameter names must be non-empty and unique.
fn check_descriptor(d: &Descriptor) -> Result<(), String> {
    if d.name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    let lists = [
        ("inputs", d.inputs.iter().map(|f| f.name.as_str()).collect::<Vec<_>>()),
        ("outputs", d.outputs.iter().map(|f| f.name.as_str()).collect()),
        ("params", d.params.iter().map(|p| p.name.as_str()).collect()),
    ];
    for (what, names) in lists {
        let mut seen = HashSet::new();
        for name in names {
            if name.is_empty() {
                return Err(format!("an empty name in {what}"));
            }
            if !seen.insert(name) {
                return Err(format!("'{name}' appears twice in {what}"));
            }
        }
    }
    if d.kind == FunctionKind::Window || d.kind == FunctionKind::Aggregate {
        for reserved in ["window_start", "window_end"] {
            if d.outputs.iter().any(|f| f.name == reserved) {
                return Err(format!("output '{reserved}' is reserved for the window's bounds"));
            }
        }
    }
    Ok(())
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        f.to_string()
    }
}
