//! A JSON-lines file source: one partition, offsets are line numbers
//! (0-based). Bounded: it ends at the end of the file. Standard input reads
//! the same way (`weir plugin test --input -`).

use super::{Poll, RawRecord, Source, SourceError};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Reads a JSON-lines file.
pub struct FileSource {
    name: String,
    reader: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    offset: i64,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<FileSource, SourceError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|source| SourceError::OpenFile { path: path.to_path_buf(), source })?;
        Ok(FileSource {
            name,
            reader: Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
            line: Vec::new(),
            offset: 0,
        })
    }

    /// Reads standard input, named `stdin` in messages.
    pub fn stdin() -> FileSource {
        FileSource {
            name: "stdin".into(),
            reader: Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin())),
            line: Vec::new(),
            offset: 0,
        }
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
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|source| SourceError::ReadFile { path: self.path(), source })?;
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

    /// Skips lines up to `offset` of partition 0 (lines already read stay
    /// read: a seek only goes forward).
    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        let fail = |reason: String| SourceError::Seek { name: self.name.clone(), reason };
        for &(partition, offset) in next_offsets {
            if partition != 0 {
                return Err(fail(format!("a file has only partition 0, not {partition}")));
            }
            if offset < self.offset {
                return Err(fail(format!("line {offset} was already read (at line {})", self.offset)));
            }
            while self.offset < offset {
                self.line.clear();
                let read = self
                    .reader
                    .read_until(b'\n', &mut self.line)
                    .map_err(|e| fail(format!("cannot read: {e}")))?;
                if read == 0 {
                    return Err(fail(format!("the file ends at line {}, before line {offset}", self.offset)));
                }
                self.offset += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_it_is_the_source_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.jsonl");
        let err = FileSource::open(&path).err().expect("an error");
        assert!(
            matches!(&err, SourceError::OpenFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(err.to_string(), format!("source file {}: cannot open it", path.display()));
        assert_eq!(err.source_name(), path.display().to_string());
    }

    #[test]
    fn it_reads_lines_and_has_nothing_to_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"a\": 1}\n\n{\"a\": 2}\r\n").unwrap();
        let mut source = FileSource::open(&path).unwrap();
        let mut seen = vec![];
        let poll = source
            .poll(10, std::time::Duration::ZERO, &mut |r| seen.push((r.offset, r.payload.to_vec())))
            .unwrap();
        assert_eq!(poll, Poll::Records(2));
        assert_eq!(seen, [(0, b"{\"a\": 1}".to_vec()), (2, b"{\"a\": 2}".to_vec())]);
        source.commit(&[(0, 3)]).unwrap();
        assert_eq!(
            source.poll(10, std::time::Duration::ZERO, &mut |_| panic!("a record")).unwrap(),
            Poll::End
        );
    }
}
