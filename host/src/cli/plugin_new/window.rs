//! A window function: the maximum `temperature` and the number of readings
//! in each window, per key. weir calls `apply` with one window's events, in
//! columns (one list per declared input field, plus the timestamps).

wit_bindgen::generate!({ world: "window-function", path: "wit" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows, RowsMany, Value,
    Window,
};

struct Function;

impl plugin::Guest for Function {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Window,
            description: "Maximum temperature and reading count per window".into(),
            // The fields the function reads, in this order, and writes.
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![
                Field { name: "max_temperature".into(), ty: FieldType::F64 },
                Field { name: "count".into(), ty: FieldType::I64 },
            ],
            params: vec![],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        match params.first() {
            Some(p) => Err(format!("{} takes no parameters, got '{}'", env!("CARGO_PKG_NAME"), p.name)),
            None => Ok(()),
        }
    }
}

impl window::Guest for Function {
    fn apply(_key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        if temps.is_empty() {
            // No events, no output row.
            return Ok(Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] });
        }
        let max = guest_support::max_of(temps);
        Ok(Rows { len: 1, columns: vec![Column::F64(vec![max]), Column::I64(vec![temps.len() as i64])] })
    }

    // weir fires many windows in one call; this calls `apply` once per
    // window. Write `apply_many` yourself when it can do better.
    guest_support::apply_many_by_window!();
}

export!(Function);
