//! A JSON-lines file source: one partition, offsets are line numbers
//! (0-based). Bounded: it ends at the end of the file. Standard input reads
//! the same way (`weir plugin test --input -`). Lines are handed over
//! straight from the reader's buffer; only a line that spans two fills of
//! it is copied.

use super::{Poll, RawRecord, Source, SourceError};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Reads a JSON-lines file.
pub struct FileSource {
    name: String,
    reader: Box<dyn BufRead + Send>,
    /// The start of a line that the reader's buffer ended in the middle of.
    line: Vec<u8>,
    offset: i64,
}

/// A line without its `\n` (and a `\r` before it), or `None` if it is
/// blank.
#[inline]
fn payload(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
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
            let path = &self.name;
            let buffer = self
                .reader
                .fill_buf()
                .map_err(|source| SourceError::ReadFile { path: PathBuf::from(path), source })?;
            if buffer.is_empty() {
                // The end of the file: its last line may lack a newline.
                if !self.line.is_empty() {
                    let offset = self.offset;
                    self.offset += 1;
                    if let Some(payload) = payload(&self.line) {
                        each(RawRecord { partition: 0, offset, payload });
                        n += 1;
                    }
                    self.line.clear();
                }
                break;
            }
            if !self.line.is_empty() {
                // The rest of a line begun in the previous fill.
                let Some(end) = memchr::memchr(b'\n', buffer) else {
                    self.line.extend_from_slice(buffer);
                    let len = buffer.len();
                    self.reader.consume(len);
                    continue;
                };
                self.line.extend_from_slice(&buffer[..end]);
                self.reader.consume(end + 1);
                let offset = self.offset;
                self.offset += 1;
                if let Some(payload) = payload(&self.line) {
                    each(RawRecord { partition: 0, offset, payload });
                    n += 1;
                }
                self.line.clear();
                continue;
            }
            // Whole lines, straight from the buffer.
            let mut start = 0;
            while n < max {
                let Some(end) = memchr::memchr(b'\n', &buffer[start..]) else { break };
                let offset = self.offset;
                self.offset += 1;
                if let Some(payload) = payload(&buffer[start..start + end]) {
                    each(RawRecord { partition: 0, offset, payload });
                    n += 1;
                }
                start += end + 1;
            }
            if n < max {
                // A line the buffer ends in the middle of.
                self.line.extend_from_slice(&buffer[start..]);
                start = buffer.len();
            }
            self.reader.consume(start);
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
            // Only whole lines were skipped: no line is begun.
            self.line.clear();
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

    #[test]
    fn lines_split_across_the_buffer_are_whole_and_every_line_keeps_its_offset() {
        // Lines of every length, blank ones, CRLF ends and a last line
        // without a newline, read through buffers of many sizes and with
        // polls of many sizes: the same records as splitting the text.
        let mut text = String::new();
        for i in 0..300 {
            match i % 7 {
                0 => text.push('\n'),
                1 => text.push_str("  \t \r\n"),
                2 => text.push_str(&format!("{{\"n\": {i}, \"pad\": \"{}\"}}\r\n", "x".repeat(i % 40))),
                _ => text.push_str(&format!("{{\"n\": {i}, \"s\": \"{}\"}}\n", "é".repeat(i % 23))),
            }
        }
        text.push_str("{\"last\": true}");
        let want: Vec<(i64, Vec<u8>)> = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i as i64, l.strip_suffix('\r').unwrap_or(l).as_bytes().to_vec()))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        for capacity in [1, 2, 3, 7, 16, 61, 4096] {
            for max in [1, 3, 1000] {
                let reader = std::io::BufReader::with_capacity(
                    capacity,
                    std::io::Cursor::new(text.clone().into_bytes()),
                );
                let mut source =
                    FileSource { name: "test".into(), reader: Box::new(reader), line: Vec::new(), offset: 0 };
                let mut seen = vec![];
                loop {
                    let poll = source
                        .poll(max, std::time::Duration::ZERO, &mut |r| {
                            seen.push((r.offset, r.payload.to_vec()))
                        })
                        .unwrap();
                    match poll {
                        Poll::Records(k) => assert!(k <= max),
                        Poll::End => break,
                        Poll::Idle => panic!("a file is never idle"),
                    }
                }
                assert!(seen == want, "buffer of {capacity}, polls of {max}");
            }
        }
    }

    #[test]
    fn a_seek_skips_to_a_line_and_reading_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"a\": 0}\n{\"a\": 1}\n\n{\"a\": 3}\n{\"a\": 4}").unwrap();
        let mut source = FileSource::open(&path).unwrap();
        source.seek(&[(0, 3)]).unwrap();
        let mut seen = vec![];
        source
            .poll(10, std::time::Duration::ZERO, &mut |r| seen.push((r.offset, r.payload.to_vec())))
            .unwrap();
        assert_eq!(seen, [(3, b"{\"a\": 3}".to_vec()), (4, b"{\"a\": 4}".to_vec())]);
        let mut source = FileSource::open(&path).unwrap();
        let Err(err) = source.seek(&[(0, 9)]) else { panic!("a seek past the end") };
        assert!(err.to_string().contains("the file ends at line 5, before line 9"), "{err}");
    }
}
