//! Output records as JSON.

use crate::record::Key;
use crate::types::{Field, Window};
use crate::window::RowsRef;
use serde_json::{Map, Value};

/// The JSON records of one fired window:
/// `{"<key field>": key, "window_start": ms, "window_end": ms, ...outputs}`,
/// one per output row, fields in that order.
pub fn window_records(
    key_field: &str,
    key: &Key,
    window: Window,
    outputs: &[Field],
    rows: RowsRef<'_>,
) -> Vec<Value> {
    (rows.start..rows.start + rows.len)
        .map(|row| {
            let mut record = Map::with_capacity(3 + outputs.len());
            record.insert(key_field.to_string(), key.to_json());
            record.insert("window_start".into(), Value::from(window.start));
            record.insert("window_end".into(), Value::from(window.end));
            for (field, column) in outputs.iter().zip(rows.columns) {
                let value = column.get(row).map(|v| v.to_json()).unwrap_or(Value::Null);
                record.insert(field.name.clone(), value);
            }
            Value::Object(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Column, FieldType, Rows};

    #[test]
    fn window_records_put_key_and_bounds_first() {
        let outputs = [
            Field { name: "max_temperature".into(), ty: FieldType::F64 },
            Field { name: "count".into(), ty: FieldType::I64 },
        ];
        let rows = Rows { len: 1, columns: vec![Column::F64(vec![351.5]), Column::I64(vec![3])] };
        let out = window_records(
            "device_id",
            &Key::Int(7),
            Window { start: 0, end: 1000 },
            &outputs,
            RowsRef::all(&rows),
        );
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"device_id":7,"window_start":0,"window_end":1000,"max_temperature":351.5,"count":3}"#
        );
    }
}
