//! The contract's function signatures, checked against a plugin's exports
//! at load so that a mistyped export is named then, not at its first call.

use super::bindings::map::exports::weir::functions::map::Mapped;
use super::bindings::{CONTRACT_VERSION, types};
use super::store::StoreState;
use types::{Accumulators, Descriptor, Events, FunctionKind, Param, Rows, RowsMany, Value, Window};
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
    let export = format!("weir:functions/{interface}@{CONTRACT_VERSION}");
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
            type ApplyMany<'a> = (&'a [Value], &'a [Window], &'a [u32], &'a Events);
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
            type GetResults<'a> = (&'a [Value], &'a [Window], &'a [u32], &'a Accumulators);
            check::<GetResults, (Result<RowsMany, String>,)>(store, instance, "aggregate", "get-results")
        }
        FunctionKind::Map => check::<(&Events,), (Result<Mapped, String>,)>(store, instance, "map", "map"),
    }
}
