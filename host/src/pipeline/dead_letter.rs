//! The records written to the dead-letter and late outputs: the original
//! payload with where it came from and why it is there, so nothing is lost
//! and each record can be replayed.

use serde_json::{Value, json};

/// The payload as JSON text when it is UTF-8, else lossily, flagged.
fn payload_fields(payload: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(payload) {
        Ok(text) => (Value::from(text), true),
        Err(_) => (Value::from(String::from_utf8_lossy(payload).into_owned()), false),
    }
}

/// A record that could not be decoded.
pub fn dead_letter_record(source: &str, partition: i32, offset: i64, payload: &[u8], reason: &str) -> Value {
    let (payload, utf8) = payload_fields(payload);
    json!({
        "reason": reason,
        "source": source,
        "partition": partition,
        "offset": offset,
        "payload": payload,
        "payload_utf8": utf8,
    })
}

/// An event too late for every window it belongs to.
pub fn late_record(
    source: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    event_time: i64,
    watermark: i64,
    allowed_lateness: i64,
) -> Value {
    let (payload, _) = payload_fields(payload);
    json!({
        "reason": format!(
            "late: every window of event time {event_time} closed (watermark {watermark}, allowed lateness {allowed_lateness} ms)"
        ),
        "source": source,
        "partition": partition,
        "offset": offset,
        "event_time": event_time,
        "watermark": watermark,
        "payload": payload,
    })
}
