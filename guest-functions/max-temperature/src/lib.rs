//! MaxTemperature as a window function: the maximum temperature and the
//! number of readings in each window, the shape of the homework's
//! `MaxTemperatureWindowFunction.apply(key, window, inputs)`.

wit_bindgen::generate!({ world: "window-function", path: "../../wit" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, Rows, Value, Window,
};

struct MaxTemperature;

impl plugin::Guest for MaxTemperature {
    fn describe() -> Descriptor {
        Descriptor {
            name: "max-temperature".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Window,
            description: "Maximum temperature and reading count per window".into(),
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
            Some(p) => Err(format!("max-temperature takes no parameters, got '{}'", p.name)),
            None => Ok(()),
        }
    }
}

impl window::Guest for MaxTemperature {
    fn apply(_key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        if temps.is_empty() {
            return Ok(Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] });
        }
        // A plain fold: the compiler vectorises it with simd128.
        let max = temps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(Rows {
            len: 1,
            columns: vec![Column::F64(vec![max]), Column::I64(vec![temps.len() as i64])],
        })
    }
}

export!(MaxTemperature);
