//! Records as the host sees them: a key, a timestamp and typed fields.

use crate::types::{Column, Field, FieldType, Value};
use std::fmt;

/// A record key: what a job keys by. Keys are integers or strings, so they
/// hash and order exactly (floats would not).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An integer key, such as a device id.
    Int(i64),
    /// A string key.
    Str(String),
}

impl Key {
    /// Reads a key from a JSON value: an integer or a string.
    pub fn from_json(value: &serde_json::Value) -> Option<Key> {
        match value {
            serde_json::Value::Number(n) => n.as_i64().map(Key::Int),
            serde_json::Value::String(s) => Some(Key::Str(s.clone())),
            _ => None,
        }
    }

    /// The key as a contract value, for plugin calls.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Int(i) => Value::I64(*i),
            Key::Str(s) => Value::String(s.clone()),
        }
    }

    /// The key as JSON, as it appeared in the input.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Key::Int(i) => serde_json::Value::from(*i),
            Key::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

impl From<&Key> for Key {
    fn from(key: &Key) -> Key {
        key.clone()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Reads a `name:type` field declaration, such as `temperature:f64`.
pub fn parse_field(text: &str) -> Result<Field, String> {
    let (name, ty) = text.split_once(':').ok_or_else(|| format!("expected name:type, got '{text}'"))?;
    let ty = FieldType::parse(ty.trim())
        .ok_or_else(|| format!("field '{name}': unknown type '{ty}' (use f64, i64, string or bool)"))?;
    Ok(Field { name: name.trim().to_string(), ty })
}

/// Appends a JSON value to a column of its declared type; `Err` says why it
/// does not fit. NaN and infinities cannot appear in JSON, so every f64
/// appended is finite.
pub fn push_json(column: &mut Column, value: &serde_json::Value) -> Result<(), String> {
    match (column, value) {
        (Column::F64(v), serde_json::Value::Number(n)) => v.push(n.as_f64().ok_or("not a finite number")?),
        (Column::I64(v), serde_json::Value::Number(n)) => v.push(n.as_i64().ok_or("not a 64-bit integer")?),
        (Column::String(v), serde_json::Value::String(s)) => v.push(s.clone()),
        (Column::Bool(v), serde_json::Value::Bool(b)) => v.push(*b),
        (column, other) => return Err(format!("expected {}, got {other}", column.ty())),
    }
    Ok(())
}
