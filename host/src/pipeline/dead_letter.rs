//! The records written to the dead-letter and late outputs. Every one says
//! what it is (`kind`), why it is there (`reason`) and where it came from
//! (`source`, `partition`), so nothing is lost and each can be replayed or
//! traced:
//!
//! - `record`: a record that could not be decoded, or that a map function
//!   failed on, with its `offset` and `payload`;
//! - `window`: a window the function failed on, with its key (under the
//!   job's key field) and `window_start`, `window_end`;
//! - `late`: an event too late for every window, with its `event_time` and
//!   the `watermark`.

use crate::record::Key;
use crate::types::Window;
use serde_json::{Map, Value};

/// The fields every dead letter starts with.
fn head(kind: &str, reason: &str, source: &str, partition: i32) -> Map<String, Value> {
    let mut letter = Map::new();
    letter.insert("kind".into(), Value::from(kind));
    letter.insert("reason".into(), Value::from(reason));
    letter.insert("source".into(), Value::from(source));
    letter.insert("partition".into(), Value::from(partition));
    letter
}

/// The payload as JSON text when it is UTF-8, else lossily, flagged.
fn payload_fields(letter: &mut Map<String, Value>, payload: &[u8]) {
    let (text, utf8) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_string(), true),
        Err(_) => (String::from_utf8_lossy(payload).into_owned(), false),
    };
    letter.insert("payload".into(), Value::from(text));
    letter.insert("payload_utf8".into(), Value::from(utf8));
}

/// A record that could not be decoded, or that the function failed on.
pub fn record(source: &str, partition: i32, offset: i64, payload: &[u8], reason: &str) -> Value {
    let mut letter = head("record", reason, source, partition);
    letter.insert("offset".into(), Value::from(offset));
    payload_fields(&mut letter, payload);
    Value::Object(letter)
}

/// A window the function failed on.
pub fn window(
    source: &str,
    partition: i32,
    key_field: &str,
    key: &Key,
    window: Window,
    reason: &str,
) -> Value {
    let mut letter = head("window", reason, source, partition);
    letter.insert(key_field.to_string(), key.to_json());
    letter.insert("window_start".into(), Value::from(window.start));
    letter.insert("window_end".into(), Value::from(window.end));
    Value::Object(letter)
}

/// An event too late for every window it belongs to.
pub fn late(
    source: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    event_time: i64,
    watermark: i64,
    allowed_lateness: i64,
) -> Value {
    let reason = format!(
        "late: every window of event time {event_time} closed (watermark {watermark}, allowed lateness {allowed_lateness} ms)"
    );
    let mut letter = head("late", &reason, source, partition);
    letter.insert("offset".into(), Value::from(offset));
    letter.insert("event_time".into(), Value::from(event_time));
    letter.insert("watermark".into(), Value::from(watermark));
    payload_fields(&mut letter, payload);
    Value::Object(letter)
}
