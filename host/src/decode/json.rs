//! JSON records to columns, in one pass and no intermediate document:
//! each field of the object is matched against the schema and written
//! straight into the batch's columns; other fields are skipped. A flat
//! record (scalars only, no escapes: nearly every event) is read by one
//! scan (`flat.rs`); any other goes through serde, which also gives every
//! bad record its reason.

use super::Batch;
use super::flat::{self, Scalar as Flat};
use crate::record::Key;
use crate::types::{Column, Field, FieldType};
use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Which fields to read from each JSON record.
#[derive(Debug, Clone)]
pub struct RecordSchema {
    /// The key field, if the job keys its records.
    pub key: Option<String>,
    /// The event-time field (integer ms); `None` for processing time.
    pub timestamp: Option<String>,
    /// The declared fields, in column order.
    pub fields: Vec<Field>,
    /// Records larger than this are rejected.
    pub max_record_bytes: usize,
}

/// Why a record could not be decoded; it goes to the dead-letter output
/// with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the limit.
    #[error("record of {size} bytes is over the {limit}-byte limit")]
    Oversized {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8.
    #[error("record is not valid UTF-8")]
    NotUtf8,
    /// Not JSON: the parser's message, with the position.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON, but not an object.
    #[error("malformed JSON: not a JSON object")]
    NotAnObject,
    /// The key field is missing.
    #[error("missing key field '{0}'")]
    MissingKey(String),
    /// The timestamp field is missing.
    #[error("missing timestamp field '{0}'")]
    MissingTimestamp(String),
    /// A declared field is missing.
    #[error("missing field '{0}'")]
    MissingField(String),
    /// A field of the wrong type (including the key and the timestamp).
    #[error("field '{field}': expected {expected}, got {got}")]
    WrongType {
        /// The field.
        field: String,
        /// What the schema wants.
        expected: String,
        /// What the record has.
        got: String,
    },
}

/// Decodes JSON records into a [`Batch`].
pub struct JsonDecoder {
    schema: RecordSchema,
    /// The last flat record's field names, for the fast path.
    names: flat::Names<KeyRole>,
    /// Scratch for the row being decoded, so a bad record leaves the batch
    /// untouched.
    row: Row,
}

#[derive(Default)]
struct Row {
    key: Option<Key>,
    ts: Option<i64>,
    values: Vec<Option<Scalar>>,
    /// A field of the wrong type, found by a seed. serde only carries text
    /// in its errors, so the typed reason is kept here and the serde error
    /// only stops the parse.
    failure: Option<DecodeError>,
}

#[derive(Debug, Clone)]
enum Scalar {
    F64(f64),
    I64(i64),
    Str(String),
    Bool(bool),
}

/// What a JSON key is to the record schema: the key, the timestamp, a
/// declared field (by column), or nothing it reads.
#[derive(Debug, Clone, Copy)]
enum KeyRole {
    Key,
    Timestamp,
    Field(usize),
    Other,
}

impl KeyRole {
    #[inline]
    fn of(schema: &RecordSchema, name: &str) -> KeyRole {
        if schema.key.as_deref() == Some(name) {
            KeyRole::Key
        } else if schema.timestamp.as_deref() == Some(name) {
            KeyRole::Timestamp
        } else if let Some(i) = schema.fields.iter().position(|f| f.name == name) {
            KeyRole::Field(i)
        } else {
            KeyRole::Other
        }
    }
}

impl Row {
    fn clear(&mut self) {
        self.key = None;
        self.ts = None;
        self.failure = None;
        self.values.iter_mut().for_each(|v| *v = None);
    }

    /// Takes one field of a flat record as the serde visitor would, or
    /// says no (a value of the wrong type: serde then gives the reason).
    #[inline]
    fn take(&mut self, schema: &RecordSchema, role: KeyRole, value: Flat<'_>) -> bool {
        match role {
            KeyRole::Key => {
                self.key = Some(match value {
                    Flat::U64(v) if v <= i64::MAX as u64 => Key::Int(v as i64),
                    Flat::I64(v) => Key::Int(v),
                    Flat::Str(s) => Key::Str(s.to_string()),
                    _ => return false,
                })
            }
            KeyRole::Timestamp => {
                self.ts = Some(match value {
                    Flat::U64(v) if v <= i64::MAX as u64 => v as i64,
                    Flat::I64(v) => v,
                    _ => return false,
                })
            }
            KeyRole::Field(i) => {
                self.values[i] = Some(match (schema.fields[i].ty, value) {
                    (FieldType::F64, Flat::F64(v)) => Scalar::F64(v),
                    (FieldType::F64, Flat::I64(v)) => Scalar::F64(v as f64),
                    (FieldType::F64, Flat::U64(v)) => Scalar::F64(v as f64),
                    (FieldType::I64, Flat::I64(v)) => Scalar::I64(v),
                    (FieldType::I64, Flat::U64(v)) if v <= i64::MAX as u64 => Scalar::I64(v as i64),
                    (FieldType::String, Flat::Str(s)) => Scalar::Str(s.to_string()),
                    (FieldType::Bool, Flat::Bool(b)) => Scalar::Bool(b),
                    _ => return false,
                })
            }
            KeyRole::Other => {}
        }
        true
    }
}

impl JsonDecoder {
    /// A decoder for `schema`.
    pub fn new(schema: RecordSchema) -> JsonDecoder {
        let n = schema.fields.len();
        let row = Row { key: None, ts: None, values: vec![None; n], failure: None };
        JsonDecoder { schema, names: flat::Names::default(), row }
    }

    /// The schema.
    pub fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    /// Decodes one record and appends it to `batch` (stamped with `now` when
    /// the job uses processing time). On error the batch is unchanged.
    pub fn decode_into(
        &mut self,
        payload: &[u8],
        partition: i32,
        offset: i64,
        now: i64,
        batch: &mut Batch,
    ) -> Result<(), DecodeError> {
        self.decode_with(payload, partition, offset, now, batch, true)
    }

    /// [`JsonDecoder::decode_into`], with or without the fast path for
    /// flat records (tests compare the two).
    fn decode_with(
        &mut self,
        payload: &[u8],
        partition: i32,
        offset: i64,
        now: i64,
        batch: &mut Batch,
        fast: bool,
    ) -> Result<(), DecodeError> {
        if payload.len() > self.schema.max_record_bytes {
            return Err(DecodeError::Oversized { size: payload.len(), limit: self.schema.max_record_bytes });
        }
        self.row.clear();
        let (schema, row) = (&self.schema, &mut self.row);
        let role = |name: &str| KeyRole::of(schema, name);
        // A flat record that reads whole is UTF-8 and an object: the
        // checks below can only pass for it.
        if !(fast && flat::scan(payload, &mut self.names, role, |role, value| row.take(schema, role, value)))
        {
            let text = std::str::from_utf8(payload).map_err(|_| DecodeError::NotUtf8)?;
            // Valid JSON that is not an object (an array, a number) is
            // refused here; empty or broken input is left to the parser's
            // message.
            if text.trim_start().chars().next().is_some_and(|c| c != '{') {
                return Err(DecodeError::NotAnObject);
            }
            // Not a flat record, or a bad one: serde reads it again from the
            // start, and says what is wrong with it.
            self.row.clear();
            let mut de = serde_json::Deserializer::from_str(text);
            let visited = de.deserialize_map(RowVisitor { schema: &self.schema, row: &mut self.row });
            match visited {
                Ok(()) => de.end().map_err(|e| DecodeError::Malformed(e.to_string()))?,
                Err(e) => {
                    let reason = self.row.failure.take();
                    return Err(reason.unwrap_or_else(|| DecodeError::Malformed(e.to_string())));
                }
            }
        }
        let key = match &self.schema.key {
            Some(name) => Some(self.row.key.take().ok_or_else(|| DecodeError::MissingKey(name.clone()))?),
            None => None,
        };
        let ts = match &self.schema.timestamp {
            Some(name) => self.row.ts.ok_or_else(|| DecodeError::MissingTimestamp(name.clone()))?,
            None => now,
        };
        if let Some(i) = self.row.values.iter().position(Option::is_none) {
            return Err(DecodeError::MissingField(self.schema.fields[i].name.clone()));
        }
        for (column, value) in batch.columns.iter_mut().zip(self.row.values.iter_mut()) {
            match (column, value.take()) {
                (Column::F64(c), Some(Scalar::F64(x))) => c.push(x),
                (Column::I64(c), Some(Scalar::I64(x))) => c.push(x),
                (Column::String(c), Some(Scalar::Str(x))) => c.push(x),
                (Column::Bool(c), Some(Scalar::Bool(x))) => c.push(x),
                // The visitor only stores scalars of the column's type.
                _ => return Err(DecodeError::Malformed("internal: column type mismatch".into())),
            }
        }
        batch.partitions.push(partition);
        batch.offsets.push(offset);
        batch.keys.push(key);
        batch.timestamps.push(ts);
        Ok(())
    }
}

/// Records a field of the wrong type in `failure` and returns the serde
/// error that stops the parse (its text is not used).
fn wrong_type<E: de::Error>(
    failure: &mut Option<DecodeError>,
    field: &str,
    expected: &str,
    got: impl fmt::Display,
) -> E {
    *failure = Some(DecodeError::WrongType {
        field: field.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
    });
    E::custom("a field of the wrong type")
}

struct RowVisitor<'a> {
    schema: &'a RecordSchema,
    row: &'a mut Row,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match KeyRole::of(self.schema, &name) {
                KeyRole::Key => {
                    let seed = KeySeed { name: &name, failure: &mut self.row.failure };
                    self.row.key = Some(map.next_value_seed(seed)?);
                }
                KeyRole::Timestamp => {
                    let seed = TimestampSeed { name: &name, failure: &mut self.row.failure };
                    self.row.ts = Some(map.next_value_seed(seed)?);
                }
                KeyRole::Field(i) => {
                    let ty = self.schema.fields[i].ty;
                    let seed = ScalarSeed { name: &name, ty, failure: &mut self.row.failure };
                    self.row.values[i] = Some(map.next_value_seed(seed)?);
                }
                KeyRole::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// What a JSON value looked like, for messages.
struct Got<'a>(de::Unexpected<'a>);

impl fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            de::Unexpected::Str(s) => write!(f, "the string {s:?}"),
            de::Unexpected::Float(x) => write!(f, "{x}"),
            de::Unexpected::Signed(x) => write!(f, "{x}"),
            de::Unexpected::Unsigned(x) => write!(f, "{x}"),
            de::Unexpected::Bool(b) => write!(f, "{b}"),
            de::Unexpected::Unit => f.write_str("null"),
            de::Unexpected::Seq => f.write_str("an array"),
            de::Unexpected::Map => f.write_str("an object"),
            ref other => write!(f, "{other}"),
        }
    }
}

/// Implements the visitor methods for JSON's scalar kinds by turning each
/// into an `Unexpected` that `$accept` may take or refuse.
macro_rules! scalar_visitor {
    ($visitor:ty, $value:ty, $expected:expr, |$self_:ident, $got:ident| $accept:expr) => {
        impl<'de> Visitor<'de> for $visitor {
            type Value = $value;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str($expected(self))
            }

            fn visit_i64<E: de::Error>($self_, v: i64) -> Result<$value, E> {
                let $got = de::Unexpected::Signed(v);
                $accept
            }

            fn visit_u64<E: de::Error>($self_, v: u64) -> Result<$value, E> {
                let $got = de::Unexpected::Unsigned(v);
                $accept
            }

            fn visit_f64<E: de::Error>($self_, v: f64) -> Result<$value, E> {
                let $got = de::Unexpected::Float(v);
                $accept
            }

            fn visit_str<E: de::Error>($self_, v: &str) -> Result<$value, E> {
                let $got = de::Unexpected::Str(v);
                $accept
            }

            fn visit_bool<E: de::Error>($self_, v: bool) -> Result<$value, E> {
                let $got = de::Unexpected::Bool(v);
                $accept
            }

            fn visit_unit<E: de::Error>($self_) -> Result<$value, E> {
                let $got = de::Unexpected::Unit;
                $accept
            }

            fn visit_seq<A: de::SeqAccess<'de>>($self_, _: A) -> Result<$value, A::Error> {
                let $got = de::Unexpected::Seq;
                $accept
            }

            fn visit_map<A: MapAccess<'de>>($self_, _: A) -> Result<$value, A::Error> {
                let $got = de::Unexpected::Map;
                $accept
            }
        }

        impl<'de> DeserializeSeed<'de> for $visitor {
            type Value = $value;

            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

struct KeySeed<'a> {
    name: &'a str,
    failure: &'a mut Option<DecodeError>,
}

scalar_visitor!(KeySeed<'_>, Key, |_: &KeySeed| "an integer or string key", |self, got| match got {
    de::Unexpected::Signed(v) => Ok(Key::Int(v)),
    de::Unexpected::Unsigned(v) if v <= i64::MAX as u64 => Ok(Key::Int(v as i64)),
    de::Unexpected::Str(s) => Ok(Key::Str(s.to_string())),
    other => Err(wrong_type(self.failure, self.name, "an integer or a string", Got(other))),
});

struct TimestampSeed<'a> {
    name: &'a str,
    failure: &'a mut Option<DecodeError>,
}

scalar_visitor!(TimestampSeed<'_>, i64, |_: &TimestampSeed| "integer milliseconds", |self, got| match got {
    de::Unexpected::Signed(v) => Ok(v),
    de::Unexpected::Unsigned(v) if v <= i64::MAX as u64 => Ok(v as i64),
    other => Err(wrong_type(self.failure, self.name, "an integer of milliseconds", Got(other))),
});

struct ScalarSeed<'a> {
    name: &'a str,
    ty: FieldType,
    failure: &'a mut Option<DecodeError>,
}

scalar_visitor!(ScalarSeed<'_>, Scalar, |_: &ScalarSeed| "a scalar", |self, got| match (self.ty, got) {
    (FieldType::F64, de::Unexpected::Float(v)) => Ok(Scalar::F64(v)),
    (FieldType::F64, de::Unexpected::Signed(v)) => Ok(Scalar::F64(v as f64)),
    (FieldType::F64, de::Unexpected::Unsigned(v)) => Ok(Scalar::F64(v as f64)),
    (FieldType::I64, de::Unexpected::Signed(v)) => Ok(Scalar::I64(v)),
    (FieldType::I64, de::Unexpected::Unsigned(v)) if v <= i64::MAX as u64 => Ok(Scalar::I64(v as i64)),
    (FieldType::String, de::Unexpected::Str(s)) => Ok(Scalar::Str(s.to_string())),
    (FieldType::Bool, de::Unexpected::Bool(b)) => Ok(Scalar::Bool(b)),
    (ty, other) => Err(wrong_type(self.failure, self.name, ty.name(), Got(other))),
});

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(RecordSchema {
            key: Some("device_id".into()),
            timestamp: Some("execution_time".into()),
            fields: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            max_record_bytes: 256,
        })
    }

    fn decode(line: &str) -> Result<Batch, DecodeError> {
        let mut d = decoder();
        let mut batch = Batch::new(&d.schema().fields.clone());
        d.decode_into(line.as_bytes(), 3, 42, 0, &mut batch).map(|()| batch)
    }

    #[test]
    fn decodes_into_columns_and_skips_other_fields() {
        let b =
            decode(r#"{"device_id": 7, "extra": {"a": [1, 2]}, "temperature": 351.2, "execution_time": 35}"#)
                .unwrap();
        assert_eq!((b.partitions[0], b.offsets[0], b.timestamps[0]), (3, 42, 35));
        assert_eq!(b.keys, vec![Some(Key::Int(7))]);
        assert_eq!(b.columns, vec![Column::F64(vec![351.2])]);
        let b = decode(r#"{"device_id": "d-7", "temperature": 300, "execution_time": 1}"#).unwrap();
        assert_eq!(b.keys, vec![Some(Key::Str("d-7".into()))]);
        assert_eq!(b.columns, vec![Column::F64(vec![300.0])], "integers widen to f64");
    }

    #[test]
    fn every_kind_of_bad_record_has_its_reason() {
        let cases: [(&str, DecodeError); 10] = [
            ("{nope", DecodeError::Malformed("key must be a string at line 1 column 2".into())),
            ("[1, 2]", DecodeError::NotAnObject),
            (" 17", DecodeError::NotAnObject),
            ("", DecodeError::Malformed("EOF while parsing a value at line 1 column 0".into())),
            (r#"{"temperature": 1.0, "execution_time": 1}"#, DecodeError::MissingKey("device_id".into())),
            (
                r#"{"device_id": 1, "temperature": 1.0}"#,
                DecodeError::MissingTimestamp("execution_time".into()),
            ),
            (r#"{"device_id": 1, "execution_time": 1}"#, DecodeError::MissingField("temperature".into())),
            (
                r#"{"device_id": 1.5, "temperature": 1.0, "execution_time": 1}"#,
                DecodeError::WrongType {
                    field: "device_id".into(),
                    expected: "an integer or a string".into(),
                    got: "1.5".into(),
                },
            ),
            (
                r#"{"device_id": 1, "temperature": "hot", "execution_time": 1}"#,
                DecodeError::WrongType {
                    field: "temperature".into(),
                    expected: "f64".into(),
                    got: "the string \"hot\"".into(),
                },
            ),
            (
                r#"{"device_id": 1, "temperature": null, "execution_time": "noon"}"#,
                DecodeError::WrongType {
                    field: "temperature".into(),
                    expected: "f64".into(),
                    got: "null".into(),
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(decode(line).unwrap_err(), expected, "{line}");
        }
        // The value's text is kept whole, whatever it contains.
        assert_eq!(
            decode(r#"{"device_id": 1, "temperature": "3 at line 9 \u0002", "execution_time": 1}"#)
                .unwrap_err(),
            DecodeError::WrongType {
                field: "temperature".into(),
                expected: "f64".into(),
                got: "the string \"3 at line 9 \\u{2}\"".into(),
            }
        );
        assert_eq!(
            decode(&format!("{{\"x\": \"{}\"}}", "a".repeat(300))).unwrap_err(),
            DecodeError::Oversized { size: 309, limit: 256 }
        );
        let mut d = decoder();
        let mut batch = Batch::new(&d.schema().fields.clone());
        assert_eq!(d.decode_into(b"{\"device_id\": \xff}", 0, 0, 0, &mut batch), Err(DecodeError::NotUtf8));
        // Numbers too large for f64 are refused by the parser: no infinities.
        assert!(matches!(
            decode(r#"{"device_id": 1, "temperature": 1e999, "execution_time": 1}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(r#"{"device_id": 1, "temperature": 1.0, "execution_time": 1} trailing"#),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_bad_record_leaves_the_batch_unchanged() {
        let mut d = decoder();
        let mut batch = Batch::new(&d.schema().fields.clone());
        d.decode_into(br#"{"device_id": 1, "temperature": 1.0, "execution_time": 1}"#, 0, 0, 0, &mut batch)
            .unwrap();
        let before = format!("{batch:?}");
        let _ = d.decode_into(
            br#"{"device_id": 2, "temperature": "x", "execution_time": 1}"#,
            0,
            1,
            0,
            &mut batch,
        );
        let _ = d.decode_into(br#"{"device_id": 2, "temperature": 3.0}"#, 0, 2, 0, &mut batch);
        assert_eq!(format!("{batch:?}"), before);
    }

    #[test]
    fn processing_time_stamps_records_with_now() {
        let mut d = JsonDecoder::new(RecordSchema {
            key: None,
            timestamp: None,
            fields: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            max_record_bytes: 1024,
        });
        let mut batch = Batch::new(&d.schema().fields.clone());
        d.decode_into(br#"{"temperature": 300.0}"#, 0, 0, 1234, &mut batch).unwrap();
        assert_eq!((batch.timestamps[0], batch.keys[0].clone()), (1234, None));
    }

    #[test]
    fn the_fast_path_decodes_exactly_as_serde_does() {
        // Records of every field type, with mutations that break them in
        // every way: the fast path gives the same batch, or the same
        // reason, as serde alone.
        let schema = RecordSchema {
            key: Some("k".into()),
            timestamp: Some("t".into()),
            fields: vec![
                Field { name: "f".into(), ty: FieldType::F64 },
                Field { name: "i".into(), ty: FieldType::I64 },
                Field { name: "s".into(), ty: FieldType::String },
                Field { name: "b".into(), ty: FieldType::Bool },
            ],
            max_record_bytes: 1 << 10,
        };
        let records = [
            r#"{"k": 7, "t": 1700000000000, "f": 372.0823757947627, "i": -3, "s": "x", "b": true}"#,
            r#"{"b":false,"s":"é 中","i":9223372036854775807,"f":-0.0,"t":-5,"k":"dev-1","x":null}"#,
            r#"{"k": -9, "t": 0, "f": 12, "i": 0, "s": "", "b": true, "k": 8, "f": 1e-3}"#,
            r#"{"k": 1, "t": 2, "f": 3, "i": 4, "s": "five", "b": false, "other": [1, {"a": 2}]}"#,
        ];
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        };
        let alphabet: &[u8] = b" \"{}[]:,.-+eE0123456789tfnulrsx\\\x01\xc3";
        let mut compared = 0;
        // One fast decoder for every record, as a job keeps it (with the
        // names of the record before); a fresh serde-only one each time.
        let mut fast = JsonDecoder::new(schema.clone());
        for round in 0..40_000 {
            let mut slow = JsonDecoder::new(schema.clone());
            let mut line = records[round % records.len()].as_bytes().to_vec();
            for _ in 0..(round % 3) {
                let at = next() as usize % line.len();
                match next() % 3 {
                    0 => line[at] = alphabet[next() as usize % alphabet.len()],
                    1 => {
                        line.remove(at);
                    }
                    _ => line.insert(at, alphabet[next() as usize % alphabet.len()]),
                }
            }
            let (mut a, mut b) = (Batch::new(&schema.fields), Batch::new(&schema.fields));
            let got = fast.decode_with(&line, 1, round as i64, 99, &mut a, true);
            let want = slow.decode_with(&line, 1, round as i64, 99, &mut b, false);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&line));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", String::from_utf8_lossy(&line));
            compared += usize::from(got.is_ok());
        }
        assert!(compared > 10_000, "only {compared} records decoded");
    }
}
