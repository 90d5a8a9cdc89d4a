//! A map function: each record comes out unchanged except for
//! `temperature`, converted from kelvin to degrees Celsius. weir calls `map`
//! with a batch of records in columns (one list per declared input field);
//! it returns the rows it keeps and their new values of the output fields.

wit_bindgen::generate!({ world: "map-function", path: "wit" });

use exports::weir::functions::map::{Guest as MapGuest, Mapped};
use exports::weir::functions::plugin;
use weir::functions::types::{Column, Descriptor, Events, Field, FieldType, FunctionKind, Param};

/// 0 °C in kelvin.
const ZERO_CELSIUS_IN_KELVIN: f64 = 273.15;

struct Function;

impl plugin::Guest for Function {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Map,
            description: "Converts temperature from kelvin to degrees Celsius".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
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

impl MapGuest for Function {
    fn map(events: Events) -> Result<Mapped, String> {
        let Some(Column::F64(kelvin)) = events.columns.into_iter().next() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        // Every row is kept (a filter would list fewer).
        let rows = (0..kelvin.len() as u32).collect();
        let celsius = kelvin.into_iter().map(|k| k - ZERO_CELSIUS_IN_KELVIN).collect();
        Ok(Mapped { rows, columns: vec![Column::F64(celsius)] })
    }
}

export!(Function);
