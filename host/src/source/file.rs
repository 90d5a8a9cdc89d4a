//! A JSON-lines file source: one partition, offsets are line numbers
//! (0-based). Bounded: it ends at the end of the file.

use super::{Poll, RawRecord, Source, SourceError};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Reads a JSON-lines file.
pub struct FileSource {
    name: String,
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
    offset: i64,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<FileSource, SourceError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|e| SourceError { source_name: name.clone(), message: format!("cannot open: {e}") })?;
        Ok(FileSource {
            name,
            reader: std::io::BufReader::with_capacity(1 << 20, file),
            line: Vec::new(),
            offset: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.name)
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn poll(
        &mut self,
        max: usize,
        _wait: std::time::Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        let mut n = 0;
        while n < max {
            self.line.clear();
            let read = self.reader.read_until(b'\n', &mut self.line).map_err(|e| SourceError {
                source_name: self.name.clone(),
                message: format!("cannot read: {e}"),
            })?;
            if read == 0 {
                break;
            }
            let offset = self.offset;
            self.offset += 1;
            let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
            if payload.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            each(RawRecord { partition: 0, offset, payload });
            n += 1;
        }
        Ok(if n == 0 { Poll::End } else { Poll::Records(n) })
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// A file is always read from its start: there is nothing to commit.
    fn commit(&mut self, _next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }
}
