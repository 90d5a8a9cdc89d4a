//! Host-side bindings generated from `wit/weir.wit`: one module per world,
//! all sharing the `types` interface of the first.

/// The `window-function` world.
pub mod window {
    wasmtime::component::bindgen!({
        world: "window-function",
        path: "../wit",
        additional_derives: [PartialEq],
    });
}

/// The `aggregate-function` world.
pub mod aggregate {
    wasmtime::component::bindgen!({
        world: "aggregate-function",
        path: "../wit",
        with: { "weir:functions/types": crate::plugin::bindings::window::weir::functions::types },
    });
}

/// The `map-function` world.
pub mod map {
    wasmtime::component::bindgen!({
        world: "map-function",
        path: "../wit",
        additional_derives: [PartialEq],
        with: { "weir:functions/types": crate::plugin::bindings::window::weir::functions::types },
    });
}

/// The contract's shared types; the engine uses them through `crate::types`.
pub use window::weir::functions::types;

/// The contract's package version. A plugin built for it, or for
/// [`super::legacy::LEGACY_VERSION`], loads; one built for another is
/// refused.
pub const CONTRACT_VERSION: &str = "0.2.0";
