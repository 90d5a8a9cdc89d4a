//! The IoT readings of weir's temperature jobs: what `weir produce` and
//! `weir demo` send, and the workload of the tests and benchmarks. They are
//! the same as `scripts/gen_readings.py` writes (and as
//! `examples/readings.jsonl` holds), so runs are reproducible: event `i` has
//! `execution_time = 1_700_000_000_000 + 5·i` ms,
//! `device_id = 1 + splitmix64(i) mod K` and `temperature = 333 + 50·u`
//! kelvin with `u = (splitmix64(i XOR 0x5DEECE66D) >> 11) · 2^-53`.

use std::io::Write;

/// The first reading's `execution_time`, in ms since the epoch.
pub const START_MS: i64 = 1_700_000_000_000;
/// The step between two readings' `execution_time`, in ms.
pub const STEP_MS: i64 = 5;
/// How many devices send readings unless told otherwise.
pub const DEFAULT_DEVICES: u64 = 10;

/// splitmix64's output function (Steele, Lea and Flood).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One reading: `{"device_id": d, "temperature": t, "execution_time": ms}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// The device, 1 to K.
    pub device_id: u64,
    /// The temperature in kelvin, in [333, 383).
    pub temperature: f64,
    /// The event time in ms since the epoch.
    pub execution_time: i64,
}

impl Reading {
    /// Reading number `i` of a run with `devices` devices (at least 1).
    pub fn generate(i: u64, devices: u64) -> Reading {
        let u = (splitmix64(i ^ 0x5DEE_CE66D) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        Reading {
            device_id: 1 + splitmix64(i) % devices.max(1),
            temperature: 333.0 + 50.0 * u,
            execution_time: START_MS.wrapping_add(STEP_MS.wrapping_mul(i as i64)),
        }
    }

    /// Appends the reading as JSON, byte for byte as `gen_readings.py`
    /// writes it (Python's float repr is the shortest round-trip form, as is
    /// Rust's `{:?}`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"device_id\": {}, \"temperature\": {:?}, \"execution_time\": {}}}",
            self.device_id, self.temperature, self.execution_time
        );
    }

    /// The reading as a JSON line without the newline.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(96);
        self.write_json(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the message key: the device id in decimal.
    pub fn write_key(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{}", self.device_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_python_generator() {
        // From `python3 scripts/gen_readings.py 3`.
        let expected = [
            r#"{"device_id": 6, "temperature": 372.0823757947627, "execution_time": 1700000000000}"#,
            r#"{"device_id": 6, "temperature": 339.3886331161124, "execution_time": 1700000000005}"#,
            r#"{"device_id": 1, "temperature": 349.91281952174313, "execution_time": 1700000000010}"#,
        ];
        for (i, line) in expected.iter().enumerate() {
            assert_eq!(Reading::generate(i as u64, 10).to_json(), *line);
        }
    }

    #[test]
    fn stays_in_range() {
        for i in 0..10_000 {
            let r = Reading::generate(i, 7);
            assert!((1..=7).contains(&r.device_id));
            assert!((333.0..383.0).contains(&r.temperature));
        }
    }
}
