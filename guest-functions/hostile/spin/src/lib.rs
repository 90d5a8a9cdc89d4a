//! Spins forever in `apply` once the window has more than one event, so that a test can prove the wall-time deadline stops it and the same instance is replaced.

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
            name: "spin".into(),
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
        // One event: answer normally, so a test can check the host recovers.
        if events.timestamps.len() <= 1 {
            return Ok(Rows { len: 1, columns: vec![Column::F64(vec![1.0])] });
        }
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    guest_support::apply_many_by_window!();
}

export!(Hostile);
