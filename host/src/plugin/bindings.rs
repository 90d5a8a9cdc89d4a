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

pub use window::weir::functions::types;

use std::fmt;
use types::{Column, FieldType, FunctionKind, Value};

/// The contract's package version; a plugin built for another is refused.
pub const CONTRACT_VERSION: &str = "0.1.0";

impl FunctionKind {
    /// The WIT world that implements this kind.
    pub fn world(self) -> &'static str {
        match self {
            FunctionKind::Window => "window-function",
            FunctionKind::Aggregate => "aggregate-function",
            FunctionKind::Map => "map-function",
        }
    }

    /// The interface, besides `plugin`, that this kind's world exports.
    pub fn interface(self) -> &'static str {
        match self {
            FunctionKind::Window => "window",
            FunctionKind::Aggregate => "aggregate",
            FunctionKind::Map => "map",
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

impl FieldType {
    /// The name job files use: `f64`, `i64`, `string` or `bool`.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::F64 => "f64",
            FieldType::I64 => "i64",
            FieldType::String => "string",
            FieldType::Bool => "bool",
        }
    }

    /// Reads a job file's type name.
    pub fn parse(name: &str) -> Option<FieldType> {
        match name {
            "f64" => Some(FieldType::F64),
            "i64" => Some(FieldType::I64),
            "string" => Some(FieldType::String),
            "bool" => Some(FieldType::Bool),
            _ => None,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Column {
    /// An empty column of the given type.
    pub fn empty(ty: FieldType) -> Column {
        match ty {
            FieldType::F64 => Column::F64(Vec::new()),
            FieldType::I64 => Column::I64(Vec::new()),
            FieldType::String => Column::String(Vec::new()),
            FieldType::Bool => Column::Bool(Vec::new()),
        }
    }

    /// The column's type.
    pub fn ty(&self) -> FieldType {
        match self {
            Column::F64(_) => FieldType::F64,
            Column::I64(_) => FieldType::I64,
            Column::String(_) => FieldType::String,
            Column::Bool(_) => FieldType::Bool,
        }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::String(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    /// Whether the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every value, keeping the allocation.
    pub fn clear(&mut self) {
        match self {
            Column::F64(v) => v.clear(),
            Column::I64(v) => v.clear(),
            Column::String(v) => v.clear(),
            Column::Bool(v) => v.clear(),
        }
    }

    /// The bytes of data the column holds (strings count their length).
    pub fn data_size(&self) -> usize {
        match self {
            Column::F64(v) => v.len() * 8,
            Column::I64(v) => v.len() * 8,
            Column::String(v) => v.iter().map(|s| s.len() + 8).sum(),
            Column::Bool(v) => v.len(),
        }
    }

    /// The value at `row`, if there is one.
    pub fn get(&self, row: usize) -> Option<Value> {
        match self {
            Column::F64(v) => v.get(row).map(|x| Value::F64(*x)),
            Column::I64(v) => v.get(row).map(|x| Value::I64(*x)),
            Column::String(v) => v.get(row).map(|x| Value::String(x.clone())),
            Column::Bool(v) => v.get(row).map(|x| Value::Bool(*x)),
        }
    }
}

impl Value {
    /// The value's type.
    pub fn ty(&self) -> FieldType {
        match self {
            Value::F64(_) => FieldType::F64,
            Value::I64(_) => FieldType::I64,
            Value::String(_) => FieldType::String,
            Value::Bool(_) => FieldType::Bool,
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::F64(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::I64(x) => serde_json::Value::from(*x),
            Value::String(s) => serde_json::Value::from(s.as_str()),
            Value::Bool(b) => serde_json::Value::from(*b),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::F64(x) => write!(f, "{x}"),
            Value::I64(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}
