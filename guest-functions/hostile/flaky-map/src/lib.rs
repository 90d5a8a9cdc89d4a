//! A map function that fails for a while and refuses some records, as a
//! function that reads a flaky resource might: Kelvin to Celsius (output
//! field `celsius`), except that its first `fail_first` calls fail
//! whatever they get, and any call given a reading equal to `refuse` fails
//! naming it. So retries cure the first failures, and only the records
//! holding the refused reading must end up in the dead letters.

wit_bindgen::generate!({ world: "map-function", path: "../../../wit" });

use exports::weir::functions::map::{Guest as MapGuest, Mapped};
use exports::weir::functions::plugin;
use std::sync::atomic::{AtomicU64, Ordering};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, ParamSpec, Value,
};

struct FlakyMap;

/// The reading refused, as f64 bits (NaN: none).
static REFUSE: AtomicU64 = AtomicU64::new(0x7ff8_0000_0000_0000);
/// Calls still to fail.
static FAIL_FIRST: AtomicU64 = AtomicU64::new(0);

impl plugin::Guest for FlakyMap {
    fn describe() -> Descriptor {
        Descriptor {
            state_version: 0,
            name: "flaky-map".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Map,
            description: "test guest: fails its first calls, refuses one reading".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![Field { name: "celsius".into(), ty: FieldType::F64 }],
            params: vec![
                ParamSpec {
                    name: "fail_first".into(),
                    ty: FieldType::I64,
                    required: false,
                    default: Some(Value::I64(0)),
                    description: "how many calls fail before any succeeds".into(),
                },
                ParamSpec {
                    name: "refuse".into(),
                    ty: FieldType::F64,
                    required: false,
                    default: Some(Value::F64(f64::NAN)),
                    description: "a call given this reading fails".into(),
                },
            ],
        }
    }

    fn configure(params: Vec<Param>) -> Result<(), String> {
        for p in params {
            match (p.name.as_str(), p.value) {
                ("fail_first", Value::I64(n)) => FAIL_FIRST.store(n.max(0) as u64, Ordering::Relaxed),
                ("refuse", Value::F64(x)) => REFUSE.store(x.to_bits(), Ordering::Relaxed),
                (name, _) => return Err(format!("unexpected parameter '{name}'")),
            }
        }
        Ok(())
    }
}

impl MapGuest for FlakyMap {
    fn map(events: Events) -> Result<Mapped, String> {
        let left = FAIL_FIRST.load(Ordering::Relaxed);
        if left > 0 {
            FAIL_FIRST.store(left - 1, Ordering::Relaxed);
            return Err(format!("failing on purpose ({left} more failures to go)"));
        }
        let Some(Column::F64(kelvin)) = events.columns.into_iter().next() else {
            return Err("expected one f64 column 'temperature'".into());
        };
        let refuse = f64::from_bits(REFUSE.load(Ordering::Relaxed));
        if let Some(bad) = kelvin.iter().find(|&&k| k == refuse) {
            return Err(format!("refusing reading {bad}"));
        }
        let rows = (0..kelvin.len() as u32).collect();
        let celsius = kelvin.into_iter().map(|k| k - 273.15).collect();
        Ok(Mapped { rows, columns: vec![Column::F64(celsius)] })
    }
}

export!(FlakyMap);
