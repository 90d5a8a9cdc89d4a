//! The window a job asks for, read from text such as `tumbling:1s`.

use crate::duration::{format_duration, parse_duration};
use std::fmt;
use std::str::FromStr;

/// A window definition; all lengths are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling {
        /// Window length.
        size: i64,
    },
    /// Windows of `size` starting every `slide`.
    Sliding {
        /// Window length.
        size: i64,
        /// Distance between window starts; divides nothing in particular.
        slide: i64,
    },
    /// Per-key windows closed by `gap` without events.
    Session {
        /// Inactivity gap.
        gap: i64,
    },
}

/// Window text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a window like tumbling:1s, sliding:10s/1s or session:5s, got '{text}': {reason}")]
pub struct WindowSpecError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

fn millis(text: &str, part: &str) -> Result<i64, String> {
    let d = parse_duration(part).map_err(|e| e.to_string())?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("{part} is too long"))?;
    if ms <= 0 {
        return Err(format!("'{part}' in '{text}' must be longer than 0"));
    }
    Ok(ms)
}

impl FromStr for WindowSpec {
    type Err = WindowSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| WindowSpecError { text: text.to_string(), reason };
        let (kind, args) = text.split_once(':').ok_or_else(|| err("missing ':'".into()))?;
        match kind.trim() {
            "tumbling" => Ok(WindowSpec::Tumbling { size: millis(text, args).map_err(err)? }),
            "session" => Ok(WindowSpec::Session { gap: millis(text, args).map_err(err)? }),
            "sliding" => {
                let (size, slide) = args
                    .split_once('/')
                    .ok_or_else(|| err("sliding takes size/slide, as in 10s/1s".into()))?;
                let (size, slide) = (millis(text, size).map_err(err)?, millis(text, slide).map_err(err)?);
                if slide > size {
                    return Err(err(format!("the slide ({slide} ms) is longer than the size ({size} ms)")));
                }
                Ok(WindowSpec::Sliding { size, slide })
            }
            other => Err(err(format!("unknown window type '{other}'"))),
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |ms: i64| format_duration(std::time::Duration::from_millis(ms as u64));
        match *self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling:{}", d(size)),
            WindowSpec::Sliding { size, slide } => write!(f, "sliding:{}/{}", d(size), d(slide)),
            WindowSpec::Session { gap } => write!(f, "session:{}", d(gap)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_kind() {
        for text in ["tumbling:1s", "sliding:10s/1s", "session:5s", "tumbling:250ms"] {
            let spec: WindowSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!("sliding:1s/100ms".parse(), Ok(WindowSpec::Sliding { size: 1000, slide: 100 }));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = "tumbling:abc".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("got 'abc'"), "{e}");
        let e = "hopping:1s".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("unknown window type 'hopping'"), "{e}");
        let e = "sliding:1s/2s".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("slide (2000 ms) is longer"), "{e}");
        let e = "tumbling:0s".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("must be longer than 0"), "{e}");
    }
}
