//! Per-job limits on what a plugin may use.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What one plugin instance may use. Every field has a default, so a job
/// file sets only what it wants to change:
///
/// ```toml
/// [function.limits]
/// deadline = "200ms"
/// memory = "32MiB"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// The wall-clock time one call may take before it is stopped. It is
    /// measured in epoch ticks (every 5 ms), not CPU time: time the thread
    /// spends waiting for a core counts too.
    #[serde(with = "crate::duration::serde_text")]
    pub deadline: Duration,
    /// The most linear memory the instance may grow to, in bytes (or text
    /// such as `64MiB`).
    #[serde(with = "byte_size")]
    pub memory: usize,
    /// The most output one call may return, in bytes of column data.
    #[serde(with = "byte_size")]
    pub output: usize,
    /// The most stdout and stderr text one call may write to the host log;
    /// the rest is dropped and counted.
    #[serde(with = "byte_size")]
    pub log: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits { deadline: Duration::from_secs(1), memory: 64 << 20, output: 16 << 20, log: 16 << 10 }
    }
}

/// Byte sizes as a number or text such as `64MiB`, `512KiB` or `1GiB`.
mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let bytes = match Raw::deserialize(d)? {
            Raw::Number(n) => Some(n),
            Raw::Text(text) => parse(&text),
        };
        bytes
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("expected a size like 64MiB, 512KiB or 1048576"))
    }

    fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().ok()?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            _ => return None,
        };
        n.checked_mul(1 << shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_partial_limits_with_defaults() {
        let limits: PluginLimits = toml::from_str("deadline = \"200ms\"\nmemory = \"32MiB\"").unwrap();
        assert_eq!(limits.deadline, Duration::from_millis(200));
        assert_eq!(limits.memory, 32 << 20);
        assert_eq!(limits.output, PluginLimits::default().output);
    }

    #[test]
    fn names_a_bad_size() {
        let err = toml::from_str::<PluginLimits>("memory = \"lots\"").unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        assert!(err.to_string().contains("64MiB"), "{err}");
    }
}
