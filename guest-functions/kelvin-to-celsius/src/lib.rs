//! Kelvin to Celsius as a map function (the Kelvin-to-Celsius job): each
//! record comes out unchanged except for `temperature`, which becomes
//! `temperature - 273.15`.

wit_bindgen::generate!({ world: "map-function", path: "../../wit" });

use exports::weir::functions::map::{Guest as MapGuest, Mapped};
use exports::weir::functions::plugin;
use weir::functions::types::{Column, Descriptor, Events, Field, FieldType, FunctionKind, Param};

/// 0 °C in kelvin.
const ZERO_CELSIUS_IN_KELVIN: f64 = 273.15;

struct KelvinToCelsius;

impl plugin::Guest for KelvinToCelsius {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "kelvin-to-celsius".into(),
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
            Some(p) => Err(format!("kelvin-to-celsius takes no parameters, got '{}'", p.name)),
            None => Ok(()),
        }
    }
}

impl MapGuest for KelvinToCelsius {
    fn map(events: Events) -> Result<Mapped, String> {
        let Some(Column::F64(kelvin)) = events.columns.into_iter().next() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        let rows = (0..kelvin.len() as u32).collect();
        let celsius = kelvin.into_iter().map(|k| k - ZERO_CELSIUS_IN_KELVIN).collect();
        Ok(Mapped { rows, columns: vec![Column::F64(celsius)] })
    }
}

export!(KelvinToCelsius);
