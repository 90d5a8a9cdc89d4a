//! Floods stdout and returns far more rows than any window has, so that a test can prove the log cap and the output cap hold.

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
            name: "huge-output".into(),
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
        for _ in 0..4096 {
            println!("{}", "spam ".repeat(100));
        }
        let n = 1_000_000 + events.timestamps.len();
        Ok(Rows { len: n as u32, columns: vec![Column::F64(vec![0.5; n])] })
    }

    guest_support::apply_many_by_window!();
}

export!(Hostile);
