//! A JSON-lines file sink: one record per line.

use super::{Sink, SinkError};
use std::io::Write;
use std::path::Path;

/// Writes records to a file, one per line.
pub struct FileSink {
    name: String,
    out: std::io::BufWriter<std::fs::File>,
}

impl FileSink {
    /// Creates (or truncates) `path`, making its folder if needed.
    pub fn create(path: &Path) -> Result<FileSink, SinkError> {
        let name = path.display().to_string();
        let fail =
            |e: std::io::Error| SinkError { sink_name: name.clone(), message: format!("cannot create: {e}") };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = std::fs::File::create(path).map_err(fail)?;
        Ok(FileSink { name, out: std::io::BufWriter::with_capacity(1 << 20, file) })
    }
}

impl Sink for FileSink {
    fn send(&mut self, _key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        let fail = |e: std::io::Error| SinkError {
            sink_name: self.name.clone(),
            message: format!("cannot write: {e}"),
        };
        self.out.write_all(payload).map_err(fail)?;
        self.out.write_all(b"\n").map_err(fail)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out
            .flush()
            .map_err(|e| SinkError { sink_name: self.name.clone(), message: format!("cannot write: {e}") })
    }

    fn name(&self) -> &str {
        &self.name
    }
}
