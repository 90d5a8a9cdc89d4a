//! A percentile window function over any f64 field: shows that the contract
//! knows nothing of temperatures. The job binds the input `value` to one of
//! its fields and may set the parameter `p` (default 0.95).
//!
//! It uses the nearest-rank method: the smallest value such that at least
//! `p` of the window's values are less than or equal to it.

wit_bindgen::generate!({ world: "window-function", path: "../../wit" });

use exports::weir::functions::{plugin, window};
use std::sync::atomic::{AtomicU64, Ordering};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, ParamSpec, RowRange, Rows, RowsMany,
    Value, Window,
};

const DEFAULT_P: f64 = 0.95;

/// The configured `p`, as f64 bits (a guest instance is single-threaded;
/// the atomic only avoids `static mut`).
static P_BITS: AtomicU64 = AtomicU64::new(DEFAULT_P.to_bits());

struct Percentile;

impl plugin::Guest for Percentile {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "percentile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: FunctionKind::Window,
            description: "The p-th percentile (nearest rank) of a field per window".into(),
            inputs: vec![Field { name: "value".into(), ty: FieldType::F64 }],
            outputs: vec![
                Field { name: "percentile".into(), ty: FieldType::F64 },
                Field { name: "count".into(), ty: FieldType::I64 },
            ],
            params: vec![ParamSpec {
                name: "p".into(),
                ty: FieldType::F64,
                required: false,
                default: Some(Value::F64(DEFAULT_P)),
                description: "the percentile, in (0, 1]".into(),
            }],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        for param in params {
            match (param.name.as_str(), param.value) {
                ("p", Value::F64(p)) if p > 0.0 && p <= 1.0 => P_BITS.store(p.to_bits(), Ordering::Relaxed),
                ("p", Value::F64(p)) => return Err(format!("p must be in (0, 1], got {p}")),
                ("p", _) => return Err("p must be a float such as 0.95".into()),
                (other, _) => return Err(format!("unknown parameter '{other}'; percentile takes 'p'")),
            }
        }
        Ok(())
    }
}

impl window::Guest for Percentile {
    fn apply(_key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        let Some(Column::F64(mut values)) = events.columns.into_iter().next() else {
            return Err("expected one f64 column 'value'".into());
        };
        if values.is_empty() {
            return Ok(Rows { len: 0, columns: vec![Column::F64(vec![]), Column::I64(vec![])] });
        }
        let p = f64::from_bits(P_BITS.load(Ordering::Relaxed));
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        let (_, nth, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
        let nth = *nth;
        Ok(Rows { len: 1, columns: vec![Column::F64(vec![nth]), Column::I64(vec![values.len() as i64])] })
    }

    guest_support::apply_many_by_window!();
}

export!(Percentile);
