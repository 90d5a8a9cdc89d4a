//! Output records as JSON text, written straight into a reused buffer:
//! no `serde_json::Value` per record. Each scalar goes through
//! serde_json's own serializer (its string escaping, its integer and
//! shortest round-trip float formatting), so the bytes are the ones a
//! `serde_json::Value` of the same fields would give, NaN and infinities
//! written as `null` as serde_json writes them.

use crate::record::Key;
use crate::types::{Column, Field, Value, Window};
use crate::window::RowsRef;
use serde::Serialize;

/// Appends one scalar as serde_json writes it. Writing to a `Vec` cannot
/// fail, and neither can serializing a string or a number.
#[inline]
fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = value.serialize(&mut serde_json::Serializer::new(out));
}

/// Appends `s` as a JSON string.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    scalar(out, s);
}

/// Appends an integer.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    scalar(out, &v);
}

/// Appends a float: its shortest round-trip form, `null` if not finite.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    scalar(out, &v);
}

/// Appends `true` or `false`.
#[inline]
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// Appends a key as it appeared in the input: an integer or a string.
#[inline]
pub fn write_key(out: &mut Vec<u8>, key: &Key) {
    match key {
        Key::Int(i) => write_i64(out, *i),
        Key::Str(s) => write_str(out, s),
    }
}

/// Appends a contract value.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::F64(x) => write_f64(out, *x),
        Value::I64(x) => write_i64(out, *x),
        Value::String(s) => write_str(out, s),
        Value::Bool(b) => write_bool(out, *b),
    }
}

/// Appends row `row` of `column`, `null` if the column has no such row.
#[inline]
pub fn write_cell(out: &mut Vec<u8>, column: &Column, row: usize) {
    match column {
        Column::F64(v) => v.get(row).map(|x| write_f64(out, *x)),
        Column::I64(v) => v.get(row).map(|x| write_i64(out, *x)),
        Column::String(v) => v.get(row).map(|x| write_str(out, x)),
        Column::Bool(v) => v.get(row).map(|x| write_bool(out, *x)),
    }
    .unwrap_or_else(|| out.extend_from_slice(b"null"));
}

/// The fields of a JSON object whose names are known before its values,
/// in output order: `{"a":…,"b":…}`. A name given twice keeps its first
/// place and takes its last value, as inserting into serde_json's
/// order-preserving map does, so the bytes stay those of a map built
/// field by field.
#[derive(Debug, Clone)]
pub struct ObjectLayout<S> {
    /// Per field, what goes before its value (`{"name":` for the first,
    /// `,"name":` for the others), and where its value comes from.
    fields: Vec<(Vec<u8>, S)>,
}

impl<S: Copy> ObjectLayout<S> {
    /// The layout of an object built by inserting `fields` in order.
    pub fn new<'n>(fields: impl IntoIterator<Item = (&'n str, S)>) -> Self {
        let mut named: Vec<(&str, S)> = Vec::new();
        for (name, source) in fields {
            match named.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = source,
                None => named.push((name, source)),
            }
        }
        let fields = named
            .into_iter()
            .enumerate()
            .map(|(i, (name, source))| {
                let mut prefix = vec![if i == 0 { b'{' } else { b',' }];
                write_str(&mut prefix, name);
                prefix.push(b':');
                (prefix, source)
            })
            .collect();
        ObjectLayout { fields }
    }

    /// Appends the object, `value` writing each field's value.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, mut value: impl FnMut(&mut Vec<u8>, S)) {
        if self.fields.is_empty() {
            out.push(b'{');
        }
        for (prefix, source) in &self.fields {
            out.extend_from_slice(prefix);
            value(out, *source);
        }
        out.push(b'}');
    }
}

/// Where a field of a window's output record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowField {
    Key,
    Start,
    End,
    /// The function's output column of this index.
    Output(usize),
}

/// The output records of a job's fired windows:
/// `{"<key field>": key, "window_start": ms, "window_end": ms, ...outputs}`,
/// one per output row, fields in that order. The layout (names, escaped,
/// with their separators) is made once per job.
#[derive(Debug, Clone)]
pub struct WindowRecords {
    layout: ObjectLayout<WindowField>,
}

impl WindowRecords {
    /// The records of a job keyed by `key_field` whose function has
    /// `outputs`.
    pub fn new(key_field: &str, outputs: &[Field]) -> WindowRecords {
        let fixed = [
            (key_field, WindowField::Key),
            ("window_start", WindowField::Start),
            ("window_end", WindowField::End),
        ];
        let outputs = outputs.iter().enumerate().map(|(i, f)| (f.name.as_str(), WindowField::Output(i)));
        WindowRecords { layout: ObjectLayout::new(fixed.into_iter().chain(outputs)) }
    }

    /// Appends the record of row `row` of a window's rows to `out`.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, key: &Key, window: Window, rows: RowsRef<'_>, row: usize) {
        self.layout.write(out, |out, field| match field {
            WindowField::Key => write_key(out, key),
            WindowField::Start => write_i64(out, window.start),
            WindowField::End => write_i64(out, window.end),
            WindowField::Output(i) => match rows.columns.get(i) {
                Some(column) => write_cell(out, column, row),
                None => out.extend_from_slice(b"null"),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FieldType, Rows};
    use serde_json::{Map, Value as Json};

    /// What the records were before they were written straight to bytes:
    /// a serde_json map built field by field.
    fn via_serde_json(
        key_field: &str,
        key: &Key,
        window: Window,
        outputs: &[Field],
        rows: &Rows,
    ) -> Vec<String> {
        (0..rows.len as usize)
            .map(|row| {
                let mut record = Map::new();
                record.insert(key_field.to_string(), key.to_json());
                record.insert("window_start".into(), Json::from(window.start));
                record.insert("window_end".into(), Json::from(window.end));
                for (field, column) in outputs.iter().zip(&rows.columns) {
                    let value = column.get(row).map(|v| v.to_json()).unwrap_or(Json::Null);
                    record.insert(field.name.clone(), value);
                }
                Json::Object(record).to_string()
            })
            .collect()
    }

    fn written(key_field: &str, key: &Key, window: Window, outputs: &[Field], rows: &Rows) -> Vec<String> {
        let records = WindowRecords::new(key_field, outputs);
        let all = RowsRef::all(rows);
        (0..rows.len as usize)
            .map(|row| {
                let mut out = Vec::new();
                records.write(&mut out, key, window, all, row);
                String::from_utf8(out).expect("UTF-8")
            })
            .collect()
    }

    #[test]
    fn window_records_put_key_and_bounds_first() {
        let outputs = [
            Field { name: "max_temperature".into(), ty: FieldType::F64 },
            Field { name: "count".into(), ty: FieldType::I64 },
        ];
        let rows = Rows { len: 1, columns: vec![Column::F64(vec![351.5]), Column::I64(vec![3])] };
        let out = written("device_id", &Key::Int(7), Window { start: 0, end: 1000 }, &outputs, &rows);
        assert_eq!(
            out,
            [r#"{"device_id":7,"window_start":0,"window_end":1000,"max_temperature":351.5,"count":3}"#]
        );
    }

    #[test]
    fn the_bytes_are_serde_jsons_for_awkward_values() {
        let floats = vec![
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1.0 / 3.0,
            372.0823757947627,
            1e21,
            1e-7,
            123456789012345680.0,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let ints = vec![0, 1, -1, 42, i64::MAX, i64::MIN, i64::MIN + 1, 1 << 53, -(1 << 53) - 1];
        let strings: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote \" and backslash \\ and slash /".into(),
            "tab\tnew\nline\rret".into(),
            "\u{0}\u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}\u{1f}\u{20}\u{7f}".into(),
            "unicode: é ß 中文 \u{2028}\u{2029} 🦀 \u{feff}".into(),
            "</script>".into(),
        ];
        let n = floats.len().max(ints.len()).max(strings.len());
        let cycle = |i: usize, len: usize| i % len;
        let rows = Rows {
            len: n as u32,
            columns: vec![
                Column::F64((0..n).map(|i| floats[cycle(i, floats.len())]).collect()),
                Column::I64((0..n).map(|i| ints[cycle(i, ints.len())]).collect()),
                Column::String((0..n).map(|i| strings[cycle(i, strings.len())].clone()).collect()),
                Column::Bool((0..n).map(|i| i % 3 == 0).collect()),
                // Shorter than the others: its missing rows are null.
                Column::F64(vec![2.5]),
            ],
        };
        let outputs: Vec<Field> = [
            ("f", FieldType::F64),
            ("i", FieldType::I64),
            ("s \"quoted\" \u{1}é", FieldType::String),
            ("b", FieldType::Bool),
            ("short", FieldType::F64),
        ]
        .into_iter()
        .map(|(name, ty)| Field { name: name.into(), ty })
        .collect();
        let window = Window { start: i64::MIN, end: i64::MAX };
        let keys = [Key::Int(i64::MIN), Key::Int(i64::MAX), Key::Int(0), Key::Str("k\"\\\u{0}\n🦀".into())];
        for key in &keys {
            for key_field in ["device_id", "clé \"x\"\t", ""] {
                let want = via_serde_json(key_field, key, window, &outputs, &rows);
                assert_eq!(written(key_field, key, window, &outputs, &rows), want, "{key_field} {key}");
            }
        }
    }

    #[test]
    fn a_name_given_twice_keeps_its_place_and_takes_the_last_value() {
        let outputs = [
            Field { name: "count".into(), ty: FieldType::I64 },
            Field { name: "count".into(), ty: FieldType::I64 },
        ];
        let rows = Rows { len: 1, columns: vec![Column::I64(vec![1]), Column::I64(vec![2])] };
        let window = Window { start: 10, end: 20 };
        // A key field named like a bound or an output.
        for key_field in ["window_start", "window_end", "count", "id"] {
            let want = via_serde_json(key_field, &Key::Int(7), window, &outputs, &rows);
            assert_eq!(written(key_field, &Key::Int(7), window, &outputs, &rows), want, "{key_field}");
        }
        let empty: ObjectLayout<()> = ObjectLayout::new([]);
        let mut out = Vec::new();
        empty.write(&mut out, |_, ()| {});
        assert_eq!(out, b"{}");
    }
}
