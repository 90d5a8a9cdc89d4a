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
//!
//! Each is written as JSON text straight into the caller's buffer, fields
//! in that order.

use crate::encode::{ObjectLayout, write_bool, write_i64, write_key, write_str};
use crate::record::Key;
use crate::types::Window;
use std::io::Write;

/// The fields every dead letter starts with, up to the closing brace's
/// place: `{"kind":…,"reason":…,"source":…,"partition":…`.
fn head(out: &mut Vec<u8>, kind: &str, reason: &str, source: &str, partition: i32) {
    out.extend_from_slice(b"{\"kind\":");
    write_str(out, kind);
    out.extend_from_slice(b",\"reason\":");
    write_str(out, reason);
    out.extend_from_slice(b",\"source\":");
    write_str(out, source);
    out.extend_from_slice(b",\"partition\":");
    write_i64(out, partition.into());
}

/// The payload as JSON text when it is UTF-8, else lossily, flagged; then
/// the closing brace.
fn payload_fields(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(b",\"payload\":");
    let utf8 = match std::str::from_utf8(payload) {
        Ok(text) => {
            write_str(out, text);
            true
        }
        Err(_) => {
            write_str(out, &String::from_utf8_lossy(payload));
            false
        }
    };
    out.extend_from_slice(b",\"payload_utf8\":");
    write_bool(out, utf8);
    out.push(b'}');
}

/// A record that could not be decoded, or that the function failed on.
pub fn record(out: &mut Vec<u8>, source: &str, partition: i32, offset: i64, payload: &[u8], reason: &str) {
    head(out, "record", reason, source, partition);
    out.extend_from_slice(b",\"offset\":");
    write_i64(out, offset);
    payload_fields(out, payload);
}

/// Where a field of a failed window's letter comes from.
#[derive(Clone, Copy)]
enum WindowLetter {
    Kind,
    Reason,
    Source,
    Partition,
    TheKey,
    Start,
    End,
}

/// A window the function failed on. The key goes under the job's key
/// field, which may be named like another field of the letter (then, as
/// in a map built field by field, it takes that field's place, and the
/// later field's value wins).
pub fn window(
    out: &mut Vec<u8>,
    source: &str,
    partition: i32,
    key_field: &str,
    key: &Key,
    window: Window,
    reason: &str,
) {
    use WindowLetter::*;
    let layout = ObjectLayout::new([
        ("kind", Kind),
        ("reason", Reason),
        ("source", Source),
        ("partition", Partition),
        (key_field, TheKey),
        ("window_start", Start),
        ("window_end", End),
    ]);
    layout.write(out, |out, field| match field {
        Kind => write_str(out, "window"),
        Reason => write_str(out, reason),
        Source => write_str(out, source),
        Partition => write_i64(out, partition.into()),
        TheKey => write_key(out, key),
        Start => write_i64(out, window.start),
        End => write_i64(out, window.end),
    });
}

/// An event too late for every window it belongs to.
#[allow(clippy::too_many_arguments)]
pub fn late(
    out: &mut Vec<u8>,
    source: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    event_time: i64,
    watermark: i64,
    allowed_lateness: i64,
) {
    // The reason holds only digits, letters and punctuation that JSON
    // does not escape: written as it is.
    out.extend_from_slice(b"{\"kind\":\"late\",\"reason\":");
    let _ = write!(
        out,
        "\"late: every window of event time {event_time} closed (watermark {watermark}, allowed lateness {allowed_lateness} ms)\""
    );
    out.extend_from_slice(b",\"source\":");
    write_str(out, source);
    out.extend_from_slice(b",\"partition\":");
    write_i64(out, partition.into());
    out.extend_from_slice(b",\"offset\":");
    write_i64(out, offset);
    out.extend_from_slice(b",\"event_time\":");
    write_i64(out, event_time);
    out.extend_from_slice(b",\"watermark\":");
    write_i64(out, watermark);
    payload_fields(out, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    /// The letters as they were built before they were written straight
    /// to bytes: serde_json maps, field by field.
    fn head_map(kind: &str, reason: &str, source: &str, partition: i32) -> Map<String, Value> {
        let mut letter = Map::new();
        letter.insert("kind".into(), Value::from(kind));
        letter.insert("reason".into(), Value::from(reason));
        letter.insert("source".into(), Value::from(source));
        letter.insert("partition".into(), Value::from(partition));
        letter
    }

    fn payload_map(letter: &mut Map<String, Value>, payload: &[u8]) {
        let (text, utf8) = match std::str::from_utf8(payload) {
            Ok(text) => (text.to_string(), true),
            Err(_) => (String::from_utf8_lossy(payload).into_owned(), false),
        };
        letter.insert("payload".into(), Value::from(text));
        letter.insert("payload_utf8".into(), Value::from(utf8));
    }

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn letters_are_the_bytes_serde_json_maps_gave() {
        let payloads: [&[u8]; 5] = [
            b"{not json",
            b"",
            b"\"quoted\" \\ \n\t\x01",
            "é 中 🦀 \u{2028}".as_bytes(),
            b"bad \xff\xfe utf-8",
        ];
        let sources = ["readings", "dir/in \"x\".jsonl", "é"];
        let reasons = ["malformed JSON: key must be a string at line 1 column 2", "quote \" \u{0} tab\t"];
        for payload in payloads {
            for source in sources {
                for reason in reasons {
                    for (partition, offset) in [(0, 0), (i32::MAX, i64::MAX), (i32::MIN, i64::MIN)] {
                        let mut want = head_map("record", reason, source, partition);
                        want.insert("offset".into(), Value::from(offset));
                        payload_map(&mut want, payload);
                        let got = text(|out| record(out, source, partition, offset, payload, reason));
                        assert_eq!(got, Value::Object(want).to_string());

                        let (event_time, watermark, lateness) = (offset.wrapping_sub(7), offset / 2, 1000);
                        let because = format!(
                            "late: every window of event time {event_time} closed (watermark {watermark}, allowed lateness {lateness} ms)"
                        );
                        let mut want = head_map("late", &because, source, partition);
                        want.insert("offset".into(), Value::from(offset));
                        want.insert("event_time".into(), Value::from(event_time));
                        want.insert("watermark".into(), Value::from(watermark));
                        payload_map(&mut want, payload);
                        let got = text(|out| {
                            late(out, source, partition, offset, payload, event_time, watermark, lateness)
                        });
                        assert_eq!(got, Value::Object(want).to_string());
                    }
                }
            }
        }
        let w = Window { start: -5, end: i64::MAX };
        for key in [Key::Int(-3), Key::Str("k \"1\"\n".into())] {
            for key_field in ["device_id", "kind", "partition", "window_start", "window_end", "clé\t"] {
                let mut want = head_map("window", "it trapped: \"x\"", "src", 2);
                want.insert(key_field.to_string(), key.to_json());
                want.insert("window_start".into(), Value::from(w.start));
                want.insert("window_end".into(), Value::from(w.end));
                let got = text(|out| window(out, "src", 2, key_field, &key, w, "it trapped: \"x\""));
                assert_eq!(got, Value::Object(want).to_string(), "{key_field}");
            }
        }
    }
}
