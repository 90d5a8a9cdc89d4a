//! Panics in `apply` once the window has more than one event (a trap, since guests abort on panic), after writing to stderr, so that a test can prove a trap is reported with its context and the host recovers.

wit_bindgen::generate!({ world: "window-function", path: "../../../wit" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, RowRange, Rows, RowsMany, Value,
    Window,
};

struct Hostile;

impl plugin::Guest for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "trap".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Window,
            description: "hostile test guest".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![Field { name: "out".into(), ty: FieldType::F64 }],
            params: vec![],
        }
    }

    fn configure(_params: Vec<Param>) -> Result<(), String> {
        Ok(())
    }
}

impl window::Guest for Hostile {
    fn apply(_key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        if events.timestamps.len() <= 1 {
            return Ok(Rows { len: 1, columns: vec![Column::F64(vec![1.0])] });
        }
        eprintln!("hostile trap guest: about to panic");
        panic!("hostile trap guest panicked on purpose")
    }

    guest_support::apply_many_by_window!();
}

export!(Hostile);
