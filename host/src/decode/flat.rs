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

/// The field names of the last record scanned, in order, each with what
/// it means to the caller. Events of a stream mostly repeat their fields
/// in the same order, so a field's name is first checked against the one
/// at its place in the last record: one comparison, instead of scanning
/// the name and looking it up.
#[derive(Debug, Clone)]
pub struct Names<T> {
    last: Vec<(Vec<u8>, T)>,
}

impl<T> Default for Names<T> {
    fn default() -> Self {
        Names { last: Vec::new() }
    }
}

/// Scans `text` as a flat JSON object: for each field in order, `field`
/// is called with what its name means (`meaning(name)`, asked only for a
/// name not at its place of the last record) and its value, and returns
/// false to give up. `meaning` must depend on the name alone. Returns
/// true if the whole text was such an object (with only JSON whitespace
/// around it) and `field` took every field.
pub fn scan<'a, T: Copy>(
    text: &'a str,
    names: &mut Names<T>,
    mut meaning: impl FnMut(&str) -> T,
    mut field: impl FnMut(T, Scalar<'a>) -> bool,
) -> bool {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return false;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return skip_ws(b, i + 1) == b.len();
    }
    let mut k = 0;
    loop {
        if b.get(i) != Some(&b'"') {
            return false;
        }
        let start = i + 1;
        let known = names.last.get(k).and_then(|(name, tag)| {
            let end = start + name.len();
            (b.get(start..end) == Some(name.as_slice()) && b.get(end) == Some(&b'"')).then_some((end, *tag))
        });
        let (end, tag) = match known {
            Some(known) => known,
            None => {
                let Some(end) = string_end(b, start) else { return false };
                // Both ends are ASCII quotes in valid UTF-8: char boundaries.
                let Some(name) = text.get(start..end) else { return false };
                let tag = meaning(name);
                match names.last.get_mut(k) {
                    Some(slot) => {
                        slot.0.clear();
                        slot.0.extend_from_slice(name.as_bytes());
                        slot.1 = tag;
                    }
                    None => names.last.push((name.as_bytes().to_vec(), tag)),
                }
                (end, tag)
            }
        };
        k += 1;
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return false;
        }
        i = skip_ws(b, i + 1);
        let Some((value, next)) = value(text, b, i) else { return false };
        if !field(tag, value) {
            return false;
        }
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return skip_ws(b, i + 1) == b.len(),
            _ => return false,
        }
    }
}

/// The first index at or after `i` that is not JSON whitespace.
#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// Bytes that end the plain run of a string: its closing quote, an
/// escape, or a control character (which JSON forbids raw).
const STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        stops[c] = true;
        c += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// The index of the quote that closes a string whose contents start at
/// `i`, if it has no escapes or control characters.
#[inline]
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let len = b.get(i..)?.iter().position(|&c| STOPS[c as usize])?;
    (b[i + len] == b'"').then_some(i + len)
}

/// The value at `i`, and the index after it.
#[inline]
fn value<'a>(text: &'a str, b: &[u8], i: usize) -> Option<(Scalar<'a>, usize)> {
    let literal =
        |word: &[u8], value: Scalar<'a>| b[i..].starts_with(word).then_some((value, i + word.len()));
    match *b.get(i)? {
        b'"' => {
            let end = string_end(b, i + 1)?;
            Some((Scalar::Str(text.get(i + 1..end)?), end + 1))
        }
        b't' => literal(b"true", Scalar::Bool(true)),
        b'f' => literal(b"false", Scalar::Bool(false)),
        b'n' => literal(b"null", Scalar::Null),
        b'-' | b'0'..=b'9' => number(text, b, i),
        _ => None,
    }
}

/// Whether the 8 bytes of `v` (little-endian) are all ASCII digits.
#[inline]
fn eight_digits(v: u64) -> bool {
    let high = v & 0xF0F0_F0F0_F0F0_F0F0;
    let carried = v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0;
    (high | (carried >> 4)) == 0x3333_3333_3333_3333
}

/// The value of 8 ASCII digits (little-endian: the first in the lowest
/// byte), in a few multiplications.
#[inline]
fn eight_digits_value(v: u64) -> u64 {
    // Pairs of digits, then quadruples, then all eight.
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32
}

/// Reads a run of digits from `i` into `mantissa` (wrapping past 19
/// digits, which the caller does not use); returns the index after it.
#[inline]
fn digits(b: &[u8], mut i: usize, mantissa: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut eight = [0; 8];
        eight.copy_from_slice(chunk);
        let v = u64::from_le_bytes(eight);
        if !eight_digits(v) {
            break;
        }
        *mantissa = mantissa.wrapping_mul(100_000_000).wrapping_add(eight_digits_value(v));
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// Powers of ten that f64 holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// A number in JSON's grammar at `i`, read as serde_json reads it, and the
/// index after it. Gives up on what serde_json reads in its own ways:
/// integers of 19 digits and more (it reads them exactly, or as floats),
/// `-0` (a float for serde_json), long exponents, and numbers out of
/// f64's range.
#[inline]
fn number<'a>(text: &'a str, b: &[u8], start: usize) -> Option<(Scalar<'a>, usize)> {
    let negative = b[start] == b'-';
    let mut i = start + usize::from(negative);
    // The digits, integer and fraction, as one integer (exact up to 19
    // digits), and how many of them follow the point.
    let mut mantissa = 0u64;
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i, &mut mantissa),
        _ => return None,
    }
    let int_digits = i - int_start;
    let mut fraction_digits = 0;
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        let from = i + 1;
        i = digits(b, from, &mut mantissa);
        fraction_digits = i - from;
        if fraction_digits == 0 {
            return None;
        }
        float = true;
    }
    let mut exponent = false;
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let from = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == from || i - from > 3 {
            return None;
        }
        (float, exponent) = (true, true);
    }
    // JSON forbids leading zeros (`01`): serde_json refuses them.
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if float {
        // Clinger's fast path: an integer and a power of ten that f64
        // holds exactly divide to the correctly rounded value, as
        // serde_json's (and std's) parsers give.
        let digits = int_digits + fraction_digits;
        let x = if !exponent && digits <= 19 && mantissa < 1 << 53 && fraction_digits < EXACT_POWERS.len() {
            let x = mantissa as f64 / EXACT_POWERS[fraction_digits];
            if negative { -x } else { x }
        } else {
            text.get(start..i)?.parse().ok()?
        };
        return x.is_finite().then_some((Scalar::F64(x), i));
    }
    if int_digits > 18 {
        return None;
    }
    match (negative, mantissa) {
        (false, n) => Some((Scalar::U64(n), i)),
        (true, 0) => None,
        // Under 10^18: fits.
        (true, n) => Some((Scalar::I64(-(n as i64)), i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::cell::RefCell;
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

    /// What the fast path reads, with `names` kept from the records
    /// before (and each name's meaning its place in `known`).
    fn fast_with(
        text: &str,
        names: &mut Names<usize>,
        known: &RefCell<Vec<String>>,
    ) -> Option<Vec<(String, Seen)>> {
        let mut out = Vec::new();
        let meaning = |name: &str| {
            let mut known = known.borrow_mut();
            known.iter().position(|n| n == name).unwrap_or_else(|| {
                known.push(name.to_string());
                known.len() - 1
            })
        };
        let read = scan(text, names, meaning, |tag, value| {
            out.push((known.borrow()[tag].clone(), Seen::from(value)));
            true
        });
        read.then_some(out)
    }

    fn fast(text: &str) -> Option<Vec<(String, Seen)>> {
        fast_with(text, &mut Names::default(), &RefCell::new(Vec::new()))
    }

    /// Whatever the fast path reads, serde_json reads the same, whether
    /// the names of the records before were the same or not; and it reads
    /// the plain records (which it must not leave to serde).
    fn check(text: &str, fast_must_read: bool) {
        let got = fast(text);
        if let Some(fields) = &got {
            assert_eq!(Some(fields), serde(text).as_ref(), "{text:?}");
        }
        assert!(!fast_must_read || got.is_some(), "the fast path gave up on {text:?}");
        let (mut names, known) = (Names::default(), RefCell::new(Vec::new()));
        for _ in 0..2 {
            assert_eq!(fast_with(text, &mut names, &known), got, "{text:?}, read again");
        }
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
        // One set of names across the records, as a decoder keeps it.
        let (mut names, known) = (Names::default(), RefCell::new(Vec::new()));
        for _ in 0..20_000 {
            let mut mutated = record.to_vec();
            let at = (next() % mutated.len() as u64) as usize;
            mutated[at] = bytes[(next() % bytes.len() as u64) as usize];
            if let Ok(text) = std::str::from_utf8(&mutated) {
                check(text, false);
                if let Some(fields) = fast_with(text, &mut names, &known) {
                    assert_eq!(Some(fields), serde(text), "{text:?} after others");
                }
            }
        }
    }

    #[test]
    fn eight_digits_at_a_time_are_read_as_one_by_one() {
        let mut state = 1u64;
        for _ in 0..100_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut bytes = *b"00000000";
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = b'0' + ((state >> (i * 5 + 20)) % 10) as u8;
            }
            let v = u64::from_le_bytes(bytes);
            assert!(eight_digits(v));
            let want = bytes.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            assert_eq!(eight_digits_value(v), want, "{}", String::from_utf8_lossy(&bytes));
            // Any one byte that is not a digit is seen.
            let mut other = bytes;
            let at = (state % 8) as usize;
            other[at] = [b'/', b':', b' ', b'.', b'e', 0x80, 0xff, 0x10][(state >> 60) as usize % 8];
            assert!(!eight_digits(u64::from_le_bytes(other)), "{other:?}");
        }
    }
}
