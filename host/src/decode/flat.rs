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

/// The fields of the last record scanned, in order: each one's text up to
/// its value (from the record's start, or from after the comma before
/// it, through the colon after its name) and what its name means to the
/// caller. Events of a stream mostly repeat their fields in the same
/// order and layout, so that text is first compared with the one at its
/// place in the last record: one comparison instead of reading the
/// punctuation, the name and looking the name up. Equal bytes read the
/// same.
#[derive(Debug, Clone)]
pub struct Names<T> {
    last: Vec<(Vec<u8>, T)>,
}

impl<T> Default for Names<T> {
    fn default() -> Self {
        Names { last: Vec::new() }
    }
}

/// Scans `b` as a flat JSON object: for each field in order, `field` is
/// called with what its name means (`meaning(name)`, asked only for a
/// field not laid out as the last record's at its place) and its value,
/// and returns false to give up. `meaning` must depend on the name alone.
/// Returns true if the whole of `b` was such an object (with only JSON
/// whitespace around it) and `field` took every field: then `b` is UTF-8
/// (outside strings the grammar allows only ASCII, and every string was
/// checked).
pub fn scan<'a, T: Copy>(
    b: &'a [u8],
    names: &mut Names<T>,
    mut meaning: impl FnMut(&str) -> T,
    mut field: impl FnMut(T, Scalar<'a>) -> bool,
) -> bool {
    // Where the text of field `k` starts: the record's start, then after
    // each comma.
    let mut i = 0;
    let mut k = 0;
    loop {
        let known = names.last.get(k).and_then(|(text, tag)| {
            let end = i + text.len();
            b.get(i..end).is_some_and(|here| same(here, text)).then_some((end, *tag))
        });
        let (at, tag) = match known {
            Some(known) => known,
            None => {
                let from = i;
                i = skip_ws(b, i);
                if k == 0 {
                    if b.get(i) != Some(&b'{') {
                        return false;
                    }
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        return skip_ws(b, i + 1) == b.len();
                    }
                }
                if b.get(i) != Some(&b'"') {
                    return false;
                }
                let Some((name, end)) = string(b, i + 1) else { return false };
                i = skip_ws(b, end + 1);
                if b.get(i) != Some(&b':') {
                    return false;
                }
                i += 1;
                let tag = meaning(name);
                let text = &b[from..i];
                match names.last.get_mut(k) {
                    Some(slot) => {
                        slot.0.clear();
                        slot.0.extend_from_slice(text);
                        slot.1 = tag;
                    }
                    None => names.last.push((text.to_vec(), tag)),
                }
                (i, tag)
            }
        };
        let Some((value, next)) = value(b, skip_ws(b, at)) else { return false };
        if !field(tag, value) {
            return false;
        }
        k += 1;
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i += 1,
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

/// A string whose contents start at `i`, if it has no escapes or control
/// characters and is UTF-8, and the index of its closing quote.
#[inline]
fn string(b: &[u8], i: usize) -> Option<(&str, usize)> {
    let len = b.get(i..)?.iter().position(|&c| STOPS[c as usize])?;
    let end = i + len;
    if b[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&b[i..end]).ok()?, end))
}

/// The eight bytes at `at`, little-endian, if there are eight.
#[inline]
fn word_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Whether two slices hold the same bytes, compared eight at a time
/// (names are short, and a library compare costs a call).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let word = word_at;
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last eight, overlapping the words before.
    word(a, n - 8) == word(b, n - 8)
}

/// The value at `i`, and the index after it.
#[inline]
fn value(b: &[u8], i: usize) -> Option<(Scalar<'_>, usize)> {
    let literal = |word: &[u8], value| b[i..].starts_with(word).then_some((value, i + word.len()));
    match *b.get(i)? {
        b'"' => string(b, i + 1).map(|(s, end)| (Scalar::Str(s), end + 1)),
        b't' => literal(b"true", Scalar::Bool(true)),
        b'f' => literal(b"false", Scalar::Bool(false)),
        b'n' => literal(b"null", Scalar::Null),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
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

/// How many of the 8 bytes of `v` (little-endian) are ASCII digits before
/// the first that is not (8 if all are).
#[inline]
fn leading_digits(v: u64) -> u32 {
    // Digits become 0..=9; a byte is flagged when it has its high bit, or
    // gets it by adding 0x76 (at 10 and up; no carry leaves a byte).
    let a = v ^ 0x3030_3030_3030_3030;
    let flagged =
        (a | ((a & 0x7F7F_7F7F_7F7F_7F7F).wrapping_add(0x7676_7676_7676_7676))) & 0x8080_8080_8080_8080;
    flagged.trailing_zeros() / 8
}

/// Powers of ten up to 10^8.
const POWERS_OF_TEN: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Reads a run of digits from `i` into `mantissa` (wrapping past 19
/// digits, which the caller does not use), up to eight at a time;
/// returns the index after it.
#[inline]
fn digits(b: &[u8], mut i: usize, mantissa: &mut u64) -> usize {
    while let Some(v) = word_at(b, i) {
        let n = leading_digits(v);
        if n == 8 {
            *mantissa = mantissa.wrapping_mul(100_000_000).wrapping_add(eight_digits_value(v));
            i += 8;
            continue;
        }
        if n > 0 {
            // The n digits moved up to the high bytes, zeros ('0') below:
            // eight digits of the same value.
            let shift = 8 * (8 - n);
            let padded = (v << shift) | (0x3030_3030_3030_3030 >> (64 - shift));
            let power = POWERS_OF_TEN[n as usize];
            *mantissa = mantissa.wrapping_mul(power).wrapping_add(eight_digits_value(padded));
        }
        return i + n as usize;
    }
    // The record's last few bytes, one at a time.
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// `mantissa / 10^k`, correctly rounded, for the cases that need no
/// big numbers: Clinger's fast path (an integer and a power of ten that
/// f64 holds exactly divide to the correctly rounded quotient), and for
/// mantissas of 54 to 64 bits a division in 128 bits, rounded to nearest
/// even by hand.
#[inline]
fn decimal(mantissa: u64, k: usize) -> Option<f64> {
    if mantissa < 1 << 53 {
        return EXACT_POWERS.get(k).map(|power| mantissa as f64 / power);
    }
    // m / 10^k = (m / 5^k) / 2^k: the quotient by 5^k to 53 bits, then an
    // exact scaling by a power of two (the result is a normal number).
    let five = *POWERS_OF_FIVE.get(k)?;
    let n = u128::from(mantissa) << 64;
    let (q, r) = (n / u128::from(five), n % u128::from(five));
    // q >= 2^53 * 2^64 / 5^27 > 2^54: more than 53 bits.
    let shift = 128 - q.leading_zeros() - 53;
    let mut top = (q >> shift) as u64;
    let rest = q & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rest > half || (rest == half && (r != 0 || top & 1 == 1)) {
        top += 1;
    }
    // top <= 2^53: exact as f64.
    let exponent = i64::from(shift) - 64 - k as i64;
    let scale = f64::from_bits(((exponent + 1023) as u64) << 52);
    Some(top as f64 * scale)
}

/// 5^k for k up to 27, the most that fit in 64 bits.
const POWERS_OF_FIVE: [u64; 28] = {
    let mut powers = [1u64; 28];
    let mut k = 1;
    while k < 28 {
        powers[k] = powers[k - 1] * 5;
        k += 1;
    }
    powers
};

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
fn number(b: &[u8], start: usize) -> Option<(Scalar<'static>, usize)> {
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
        // Up to 19 digits the mantissa is exact, and a short fraction
        // divides it by a power of ten exactly (`decimal`), to the
        // correctly rounded value serde_json's (and std's) parsers give.
        let digits = int_digits + fraction_digits;
        let exact = (!exponent && digits <= 19).then(|| decimal(mantissa, fraction_digits)).flatten();
        let x = match exact {
            Some(x) => x,
            // Digits, a sign, a point and an exponent: ASCII.
            None => std::str::from_utf8(&b[start..i]).ok()?.parse().ok()?,
        };
        let x = if negative && exact.is_some() { -x } else { x };
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
        let read = scan(text.as_bytes(), names, meaning, |tag, value| {
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
            assert_eq!(leading_digits(v), 8);
            let want = bytes.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            assert_eq!(eight_digits_value(v), want, "{}", String::from_utf8_lossy(&bytes));
            // Any one byte that is not a digit is seen.
            let mut other = bytes;
            let at = (state % 8) as usize;
            other[at] = [b'/', b':', b' ', b'.', b'e', 0x80, 0xff, 0x10][(state >> 60) as usize % 8];
            assert!(leading_digits(u64::from_le_bytes(other)) < 8, "{other:?}");
        }
    }

    #[test]
    fn same_compares_as_equality_does() {
        let mut state = 3u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        };
        for _ in 0..50_000 {
            let n = (next() % 40) as usize;
            let a: Vec<u8> = (0..n).map(|_| b"ab"[(next() % 2) as usize]).collect();
            let mut b = a.clone();
            if n > 0 && next() % 2 == 0 {
                let at = (next() % n as u64) as usize;
                b[at] ^= 1 << (next() % 8);
            }
            if next() % 8 == 0 {
                b.push(b'a');
            }
            assert_eq!(same(&a, &b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn long_decimals_are_rounded_as_std_rounds_them() {
        // Mantissas of up to 19 digits with up to 27 of them after the
        // point: the 128-bit division rounds each as std's parser does,
        // ties and near-ties included.
        let mut state = 11u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state
        };
        for round in 0..200_000 {
            let digits = 16 + (next() % 4) as u32;
            let mantissa = match round % 4 {
                // Near a tie: an f64's halfway point, scaled to a decimal.
                0 => (1u64 << 53) + (next() % (1 << 40)) * 2 + 1,
                _ => next() % 10u64.pow(digits),
            }
            .min(10u64.pow(19) - 1);
            let k = (next() % 28) as usize;
            let text = mantissa.to_string();
            let (int, frac) = if k >= text.len() {
                ("0".to_string(), format!("{}{text}", "0".repeat(k - text.len())))
            } else {
                (text[..text.len() - k].to_string(), text[text.len() - k..].to_string())
            };
            let written = if k == 0 { int.clone() } else { format!("{int}.{frac}") };
            let want: f64 = written.parse().unwrap();
            if let Some(got) = decimal(mantissa, k) {
                assert_eq!(got.to_bits(), want.to_bits(), "{written}");
            }
            if k > 0 && int.len() + frac.len() <= 19 {
                assert_eq!(
                    fast(&format!(r#"{{"x": {written}}}"#)),
                    Some(vec![("x".into(), Seen::F64(want.to_bits()))])
                );
            }
        }
    }

    #[test]
    fn digit_runs_of_every_length_and_place_are_read_exactly() {
        let mut state = 5u64;
        for _ in 0..100_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let run = (state >> 40) as usize % 22;
            let before = (state >> 20) as usize % 5;
            let after = (state >> 10) as usize % 12;
            let mut text = vec![b'x'; before];
            let digits_at = text.len();
            for d in 0..run {
                text.push(b'0' + ((state >> (d % 60)) % 10) as u8);
            }
            let tail: &[u8] = b",:}] .e-9";
            text.extend((0..after).map(|j| tail[(j + (state as usize)) % tail.len()]));
            let want_end =
                digits_at + run + text[digits_at + run..].iter().take_while(|c| c.is_ascii_digit()).count();
            let want = text[digits_at..want_end]
                .iter()
                .fold(0u64, |n, &d| n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')));
            let mut got = 0;
            let end = digits(&text, digits_at, &mut got);
            assert_eq!((end, got), (want_end, want), "{}", String::from_utf8_lossy(&text));
        }
        for c in 0..=255u8 {
            let v = u64::from_le_bytes([b'1', b'2', c, b'3', b'4', b'5', b'6', b'7']);
            assert_eq!(leading_digits(v), if c.is_ascii_digit() { 8 } else { 2 }, "{c}");
        }
    }
}
