//! The contract's function signatures, checked against a plugin's exports
//! at load so that a mistyped export is named then, not at its first call.

use super::bindings::map::exports::weir::functions::map::Mapped;
use super::bindings::{CONTRACT_VERSION, types};
use super::legacy::{DescriptorV1, LEGACY_VERSION};
use super::store::StoreState;
use types::{Accumulators, Descriptor, Events, FunctionKind, Param, RowRange, Rows, RowsMany, Value, Window};
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Instance, Lift, Lower};

/// Checks one exported function's type; the error names it.
fn check<P, R>(
    store: &mut Store<StoreState>,
    instance: &Instance,
    interface: &str,
    name: &str,
) -> Result<(), String>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    check_version::<P, R>(store, instance, CONTRACT_VERSION, interface, name)
}

/// [`check`] for the contract version `version`.
fn check_version<P, R>(
    store: &mut Store<StoreState>,
    instance: &Instance,
    version: &str,
    interface: &str,
    name: &str,
) -> Result<(), String>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let export = format!("weir:functions/{interface}@{version}");
    let iface = instance
        .get_export_index(&mut *store, None, &export)
        .ok_or_else(|| format!("missing export `{export}`"))?;
    let func = instance
        .get_export_index(&mut *store, Some(&iface), name)
        .ok_or_else(|| format!("missing function `{name}` in export `{export}`"))?;
    instance
        .get_typed_func::<P, R>(&mut *store, &func)
        .map(|_| ())
        .map_err(|e| format!("function `{name}` in export `{export}` has the wrong type: {e:#}"))
}

/// Checks every function the world `kind` exports.
pub(crate) fn check_world(
    store: &mut Store<StoreState>,
    instance: &Instance,
    kind: FunctionKind,
) -> Result<(), String> {
    check::<(), (Descriptor,)>(store, instance, "plugin", "describe")?;
    check::<(&[Param],), (Result<(), String>,)>(store, instance, "plugin", "configure")?;
    match kind {
        FunctionKind::Window => {
            check::<(&Value, Window, &Events), (Result<Rows, String>,)>(store, instance, "window", "apply")?;
            type ApplyMany<'a> = (&'a [Value], &'a [Window], &'a [RowRange], &'a Events);
            check::<ApplyMany, (Result<RowsMany, String>,)>(store, instance, "window", "apply-many")
        }
        FunctionKind::Aggregate => {
            check::<(), (Vec<u8>,)>(store, instance, "aggregate", "create-accumulator")?;
            check::<(&[u8], &Events), (Result<Vec<u8>, String>,)>(store, instance, "aggregate", "add")?;
            check::<(&[u8], &[u8]), (Result<Vec<u8>, String>,)>(store, instance, "aggregate", "merge")?;
            check::<(&[u8], &Value, Window), (Result<Rows, String>,)>(
                store,
                instance,
                "aggregate",
                "get-result",
            )?;
            type AddMany<'a> = (&'a Accumulators, &'a [u32], &'a Events);
            check::<AddMany, (Result<Accumulators, String>,)>(store, instance, "aggregate", "add-many")?;
            type GetResults<'a> = (&'a [Value], &'a [Window], &'a [RowRange], &'a Accumulators);
            check::<GetResults, (Result<RowsMany, String>,)>(store, instance, "aggregate", "get-results")?;
            check::<(&[u8], u32), (Result<Vec<u8>, String>,)>(store, instance, "aggregate", "migrate")
        }
        FunctionKind::Map => check::<(&Events,), (Result<Mapped, String>,)>(store, instance, "map", "map"),
    }
}

/// [`check_world`] for a component built for the 0.1.0 contract: its
/// descriptor has no state version, its batched calls take `ends`, and it
/// has no `migrate`.
pub(crate) fn check_legacy_world(
    store: &mut Store<StoreState>,
    instance: &Instance,
    kind: FunctionKind,
) -> Result<(), String> {
    let v = LEGACY_VERSION;
    check_version::<(), (DescriptorV1,)>(store, instance, v, "plugin", "describe")?;
    check_version::<(&[Param],), (Result<(), String>,)>(store, instance, v, "plugin", "configure")?;
    type Many<'a, T> = (&'a [Value], &'a [Window], &'a [u32], &'a T);
    match kind {
        FunctionKind::Window => {
            type Apply<'a> = (&'a Value, Window, &'a Events);
            check_version::<Apply, (Result<Rows, String>,)>(store, instance, v, "window", "apply")?;
            check_version::<Many<Events>, (Result<RowsMany, String>,)>(
                store,
                instance,
                v,
                "window",
                "apply-many",
            )
        }
        FunctionKind::Aggregate => {
            let a = "aggregate";
            check_version::<(), (Vec<u8>,)>(store, instance, v, a, "create-accumulator")?;
            check_version::<(&[u8], &Events), (Result<Vec<u8>, String>,)>(store, instance, v, a, "add")?;
            check_version::<(&[u8], &[u8]), (Result<Vec<u8>, String>,)>(store, instance, v, a, "merge")?;
            type GetResult<'a> = (&'a [u8], &'a Value, Window);
            check_version::<GetResult, (Result<Rows, String>,)>(store, instance, v, a, "get-result")?;
            type AddMany<'a> = (&'a Accumulators, &'a [u32], &'a Events);
            check_version::<AddMany, (Result<Accumulators, String>,)>(store, instance, v, a, "add-many")?;
            check_version::<Many<Accumulators>, (Result<RowsMany, String>,)>(
                store,
                instance,
                v,
                a,
                "get-results",
            )
        }
        FunctionKind::Map => {
            check_version::<(&Events,), (Result<Mapped, String>,)>(store, instance, v, "map", "map")
        }
    }
}
