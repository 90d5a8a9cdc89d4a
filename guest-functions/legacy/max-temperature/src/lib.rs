//! `max-temperature` as it was built against the 0.1.0 contract (`wit/legacy/0.1.0`),
//! kept unchanged so the tests prove that the host still loads and runs
//! components built for the older contract, with the same results.

wit_bindgen::generate!({ world: "window-function", path: "../../../wit/legacy/0.1.0" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, Rows, RowsMany, Value, Window,
};

struct MaxTemperature;

impl plugin::Guest for MaxTemperature {
    fn describe() -> Descriptor {
        Descriptor {
            name: "legacy-max-temperature".into(),
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
        Ok(max_rows(temps))
    }

    fn apply_many(
        keys: Vec<Value>,
        _windows: Vec<Window>,
        ends: Vec<u32>,
        events: Events,
    ) -> Result<RowsMany, String> {
        let Some(Column::F64(temps)) = events.columns.first() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        let (mut maxes, mut counts) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
        let mut start = 0usize;
        for &end in &ends {
            let slice = temps.get(start..end as usize).ok_or("ends do not fit the batch")?;
            start = end as usize;
            maxes.push(guest_support::max_of(slice));
            counts.push(slice.len() as i64);
        }
        // One row per window.
        let row_ends = (1..=ends.len() as u32).collect();
        Ok(RowsMany { ends: row_ends, columns: vec![Column::F64(maxes), Column::I64(counts)] })
    }
}

/// The max and count of one window's temperatures (never empty).
fn max_rows(temps: &[f64]) -> Rows {
    let max = guest_support::max_of(temps);
    Rows { len: 1, columns: vec![Column::F64(vec![max]), Column::I64(vec![temps.len() as i64])] }
}

export!(MaxTemperature);
