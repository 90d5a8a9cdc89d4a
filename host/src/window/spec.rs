//! The window a job asks for, read from text such as `tumbling:1s`.

use crate::duration::{format_duration, parse_duration};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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

/// A window's type, as job files and the command line name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Fixed, non-overlapping windows.
    Tumbling,
    /// Overlapping windows.
    Sliding,
    /// Per-key activity sessions.
    Session,
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Sliding => "sliding",
            WindowKind::Session => "session",
        })
    }
}

/// Lengths that do not make a window of their kind: which length
/// (`size`, `slide` or `gap`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{length}: {message}")]
pub struct WindowProblem {
    /// `size`, `slide` or `gap`.
    pub length: &'static str,
    /// What is wrong, and what to do.
    pub message: String,
}

impl WindowSpec {
    /// The window of `kind` with the given lengths: the one place that
    /// checks them, for job files and the command line alike. A kind takes
    /// exactly its own lengths (tumbling: size; sliding: size and slide;
    /// session: gap), each longer than 0, and a slide no longer than the
    /// size.
    pub fn new(
        kind: WindowKind,
        size: Option<Duration>,
        slide: Option<Duration>,
        gap: Option<Duration>,
    ) -> Result<WindowSpec, WindowProblem> {
        let problem = |length, message: String| WindowProblem { length, message };
        let needed = |length, d: Option<Duration>| match d {
            None => Err(problem(length, format!("required for a {kind} window"))),
            Some(d) if d.as_millis() == 0 => Err(problem(length, "must be at least 1 ms".into())),
            Some(d) => Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let unused = |length, d: Option<Duration>| match d {
            Some(_) => Err(problem(length, format!("does not apply to a {kind} window"))),
            None => Ok(()),
        };
        Ok(match kind {
            WindowKind::Tumbling => {
                unused("slide", slide)?;
                unused("gap", gap)?;
                WindowSpec::Tumbling { size: needed("size", size)? }
            }
            WindowKind::Sliding => {
                unused("gap", gap)?;
                let size = needed("size", size)?;
                let slide = needed("slide", slide)?;
                if slide > size {
                    return Err(problem("slide", format!("{slide} ms is longer than the size, {size} ms")));
                }
                WindowSpec::Sliding { size, slide }
            }
            WindowKind::Session => {
                unused("size", size)?;
                unused("slide", slide)?;
                WindowSpec::Session { gap: needed("gap", gap)? }
            }
        })
    }

    /// The window's kind.
    pub fn kind(&self) -> WindowKind {
        match self {
            WindowSpec::Tumbling { .. } => WindowKind::Tumbling,
            WindowSpec::Sliding { .. } => WindowKind::Sliding,
            WindowSpec::Session { .. } => WindowKind::Session,
        }
    }

    /// The window's lengths as (size, slide, gap), the inverse of
    /// [`WindowSpec::new`].
    pub fn lengths(&self) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        let d = |ms: i64| Some(Duration::from_millis(ms.max(0) as u64));
        match *self {
            WindowSpec::Tumbling { size } => (d(size), None, None),
            WindowSpec::Sliding { size, slide } => (d(size), d(slide), None),
            WindowSpec::Session { gap } => (None, None, d(gap)),
        }
    }
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

impl FromStr for WindowSpec {
    type Err = WindowSpecError;

    /// Reads `tumbling:SIZE`, `sliding:SIZE/SLIDE` or `session:GAP`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| WindowSpecError { text: text.to_string(), reason };
        let (kind, args) = text.split_once(':').ok_or_else(|| err("missing ':'".into()))?;
        let length = |part: &str| parse_duration(part.trim()).map(Some).map_err(|e| err(e.to_string()));
        let (kind, size, slide, gap) = match kind.trim() {
            "tumbling" => (WindowKind::Tumbling, length(args)?, None, None),
            "session" => (WindowKind::Session, None, None, length(args)?),
            "sliding" => {
                let (size, slide) = args
                    .split_once('/')
                    .ok_or_else(|| err("sliding takes size/slide, as in 10s/1s".into()))?;
                (WindowKind::Sliding, length(size)?, length(slide)?, None)
            }
            other => return Err(err(format!("unknown window type '{other}'"))),
        };
        WindowSpec::new(kind, size, slide, gap).map_err(|p| err(p.to_string()))
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
        assert!(e.to_string().contains("slide: 2000 ms is longer than the size, 1000 ms"), "{e}");
        let e = "tumbling:0s".parse::<WindowSpec>().unwrap_err();
        assert!(e.to_string().contains("size: must be at least 1 ms"), "{e}");
    }
}
