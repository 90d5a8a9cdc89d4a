//! The decoder's fast path: one scan over a flat JSON object (every value
//! a number, a string without escapes, `true`, `false` or `null`), the
//! shape of nearly every event. It reads what serde would read from such
//! a record, or gives up: anything else (nesting, escapes, a value of the
//! wrong type, broken JSON) is left to the serde decoder, which then
//! decides, with its own reasons. So it never accepts a record serde
//! refuses, nor reads one differently.

/// A JSON scalar as serde_json hands it to a visitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// A non-negative integer (`visit_u64`).
    U64(u64),
    /// A negative integer (`visit_i64`).
    I64(i64),
    /// A number with a fraction or an exponent (`visit_f64`).
    F64(f64),
    /// A string without escapes (`visit_str`).
    Str(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Scans `text` as a flat JSON object, calling `field(name, value)` for
/// each field in order; `field` returns false to give up. Returns true if
/// the whole text was such an object (with only JSON whitespace around
/// it) and `field` took every field.
pub fn scan<'a>(text: &'a str, mut field: impl FnMut(&'a str, Scalar<'a>) -> bool) -> bool {
    let mut s = Scanner { text, bytes: text.as_bytes(), at: 0 };
    s.skip_ws();
    if !s.eat(b'{') {
        return false;
    }
    s.skip_ws();
    if !s.eat(b'}') {
        loop {
            let Some(name) = s.string() else { return false };
            s.skip_ws();
            if !s.eat(b':') {
                return false;
            }
            s.skip_ws();
            let Some(value) = s.value() else { return false };
            if !field(name, value) {
                return false;
            }
            s.skip_ws();
            if s.eat(b',') {
                s.skip_ws();
                continue;
            }
            if s.eat(b'}') {
                break;
            }
            return false;
        }
    }
    s.skip_ws();
    s.at == s.bytes.len()
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    /// JSON's whitespace, as serde_json skips it.
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters (which JSON
    /// forbids raw), as the text between its quotes.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let len = self.bytes[start..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = start + len;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are ASCII quotes of valid UTF-8: char boundaries.
        self.text.get(start..end)
    }

    #[inline]
    fn literal(&mut self, word: &[u8], value: Scalar<'a>) -> Option<Scalar<'a>> {
        let found = self.bytes[self.at..].starts_with(word);
        self.at += if found { word.len() } else { 0 };
        found.then_some(value)
    }

    #[inline]
    fn value(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b't' => self.literal(b"true", Scalar::Bool(true)),
            b'f' => self.literal(b"false", Scalar::Bool(false)),
            b'n' => self.literal(b"null", Scalar::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number in JSON's grammar, read as serde_json reads it. Gives up
    /// on what serde_json reads in its own ways: integers of 19 digits
    /// and more (it reads them exactly, or as floats), `-0` (a float for
    /// serde_json), long exponents, and numbers out of f64's range.
    #[inline]
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.at;
        let negative = self.eat(b'-');
        let int_start = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let int_digits = self.at - int_start;
        let mut float = false;
        if self.eat(b'.') {
            let from = self.at;
            self.digits();
            if self.at == from {
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            let from = self.at;
            self.digits();
            if self.at == from || self.at - from > 3 {
                return None;
            }
            float = true;
        }
        // JSON forbids leading zeros (`01`): serde_json refuses them.
        if let Some(b'0'..=b'9') = self.peek() {
            return None;
        }
        if float {
            let x: f64 = self.text.get(start..self.at)?.parse().ok()?;
            return x.is_finite().then_some(Scalar::F64(x));
        }
        if int_digits > 18 {
            return None;
        }
        let magnitude =
            self.bytes[int_start..self.at].iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        match (negative, magnitude) {
            (false, n) => Some(Scalar::U64(n)),
            (true, 0) => None,
            // Under 10^18: fits.
            (true, n) => Some(Scalar::I64(-(n as i64))),
        }
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// Owned scalars, as serde_json hands them to a visitor.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        U64(u64),
        I64(i64),
        F64(u64),
        Str(String),
        Bool(bool),
        Null,
        Other,
    }

    impl From<Scalar<'_>> for Seen {
        fn from(s: Scalar<'_>) -> Seen {
            match s {
                Scalar::U64(v) => Seen::U64(v),
                Scalar::I64(v) => Seen::I64(v),
                Scalar::F64(v) => Seen::F64(v.to_bits()),
                Scalar::Str(v) => Seen::Str(v.to_string()),
                Scalar::Bool(v) => Seen::Bool(v),
                Scalar::Null => Seen::Null,
            }
        }
    }

    struct SeenValue;

    impl<'de> Visitor<'de> for SeenValue {
        type Value = Seen;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("anything")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seen, E> {
            Ok(Seen::U64(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seen, E> {
            Ok(Seen::I64(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seen, E> {
            Ok(Seen::F64(v.to_bits()))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Seen, E> {
            Ok(Seen::Str(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Seen, E> {
            Ok(Seen::Bool(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Seen, E> {
            Ok(Seen::Null)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Seen, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Seen::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Seen::Other)
        }
    }

    impl<'de> de::Deserialize<'de> for Seen {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seen, D::Error> {
            d.deserialize_any(SeenValue)
        }
    }

    struct Fields;

    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, Seen)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Seen>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }

    /// What serde_json reads from `text` as an object, field by field.
    fn serde(text: &str) -> Option<Vec<(String, Seen)>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = de.deserialize_map(Fields).ok()?;
        de.end().ok()?;
        Some(fields)
    }

    fn fast(text: &str) -> Option<Vec<(String, Seen)>> {
        let mut out = Vec::new();
        scan(text, |name, value| {
            out.push((name.to_string(), Seen::from(value)));
            true
        })
        .then_some(out)
    }

    /// Whatever the fast path reads, serde_json reads the same; and it
    /// reads the plain records (which it must not leave to serde).
    fn check(text: &str, fast_must_read: bool) {
        let got = fast(text);
        if let Some(fields) = &got {
            assert_eq!(Some(fields), serde(text).as_ref(), "{text:?}");
        }
        assert!(!fast_must_read || got.is_some(), "the fast path gave up on {text:?}");
    }

    #[test]
    fn it_reads_flat_records_as_serde_json_does() {
        let plain = [
            r#"{"device_id": 6, "temperature": 372.0823757947627, "execution_time": 1700000000000}"#,
            r#"{}"#,
            " \t\r\n{ } \n",
            r#"{"a":1,"b":-2,"c":0,"d":0.5,"e":-0.0,"f":1e3,"g":1E-3,"h":2.5e+10,"i":-1.25E-7}"#,
            "{\"s\":\"\",\"t\":\"plain text\",\"u\":\"é 中 🦀 \u{2028}\",\"v\":true,\"w\":false,\"x\":null}",
            r#"{"max":999999999999999999,"min":-999999999999999999,"dup":1,"dup":"two"}"#,
            r#"{"tiny":5e-324,"huge":1.7976931348623157e308,"under":1e-400,"sub":2.2250738585072011e-308}"#,
            r#"{"k": 0.1, "k2": 0.30000000000000004, "k3": 123456789012345678e-3}"#,
        ];
        for text in plain {
            check(text, true);
        }
        // Left to serde_json: nesting, escapes, broken or unusual JSON.
        let others = [
            r#"{"a": {"b": 1}}"#,
            r#"{"a": [1, 2]}"#,
            r#"{"a": "esc\"aped"}"#,
            r#"{"a\n": 1}"#,
            "{\"a\": \"raw\u{1}control\"}",
            r#"{"a": 01}"#,
            r#"{"a": -}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": +1}"#,
            r#"{"a": 1e}"#,
            r#"{"a": 1e999}"#,
            r#"{"a": -1e999}"#,
            r#"{"a": 1e-99999}"#,
            r#"{"a": -0}"#,
            r#"{"a": 1234567890123456789}"#,
            r#"{"a": 18446744073709551616}"#,
            r#"{"a": -9223372036854775808}"#,
            r#"{"a": NaN}"#,
            r#"{"a": tru}"#,
            r#"{"a": nulll}"#,
            r#"{"a": 1,}"#,
            r#"{,}"#,
            r#"{"a" 1}"#,
            r#"{"a": 1 "b": 2}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1}}"#,
            r#"{"a": 1"#,
            r#"{"a"#,
            r#"{"#,
            "",
            "[1]",
            "\u{a0}{}",
            r#"{'a': 1}"#,
            r#"{a: 1}"#,
        ];
        for text in others {
            check(text, false);
        }
        assert!(fast(r#"{"a": {"b": 1}}"#).is_none() && fast(r#"{"a": 1e999}"#).is_none());
    }

    #[test]
    fn it_agrees_with_serde_json_on_random_numbers_and_mutations() {
        // Random numbers in every form JSON allows, and random one-byte
        // changes of a record: the fast path never reads anything
        // differently from serde_json.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for _ in 0..20_000 {
            let r = next();
            let digits = 1 + (r % 20) as usize;
            let mut number: String =
                (0..digits).map(|i| char::from(b'0' + ((r >> (i * 3)) % 10) as u8)).collect();
            if r & (1 << 60) != 0 {
                number.insert(0, '-');
            }
            if r & (1 << 61) != 0 {
                number.push_str(&format!(".{}", next() % 100_000));
            }
            if r & (1 << 62) != 0 {
                number.push_str(&format!("e{}", (next() % 700) as i64 - 350));
            }
            check(&format!(r#"{{"n": {number}}}"#), false);
            let x = f64::from_bits(next());
            if x.is_finite() {
                check(&format!(r#"{{"x": {x:?}, "y": {x:e}}}"#), true);
            }
        }
        let record = br#"{"device_id": 6, "temperature": 372.5, "ok": true, "execution_time": 17}"#;
        let bytes: &[u8] = b" \"{}:,.-+e0159tfnu\\\x01x";
        for _ in 0..20_000 {
            let mut mutated = record.to_vec();
            let at = (next() % mutated.len() as u64) as usize;
            mutated[at] = bytes[(next() % bytes.len() as u64) as usize];
            if let Ok(text) = std::str::from_utf8(&mutated) {
                check(text, false);
            }
        }
    }
}
