//! A JSON-lines file sink: one record per line.

use super::{Sink, SinkError};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes records to a file, one per line.
pub struct FileSink {
    name: String,
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Bytes in the file, counting what is still buffered.
    written: u64,
}

impl FileSink {
    /// Creates (or truncates) `path`, making its folder if needed.
    pub fn create(path: &Path) -> Result<FileSink, SinkError> {
        let fail = |source: std::io::Error| SinkError::CreateFile { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = std::fs::File::create(path).map_err(fail)?;
        Ok(FileSink {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            written: 0,
        })
    }

    /// Opens `path` keeping what it holds, writing after it (creating it,
    /// and its folder, if needed): for a job that restores a checkpoint and
    /// then cuts the file back with [`Sink::restore`].
    pub fn open_keeping(path: &Path) -> Result<FileSink, SinkError> {
        let fail = |source: std::io::Error| SinkError::CreateFile { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(fail)?;
        let written = file.seek(SeekFrom::End(0)).map_err(fail)?;
        Ok(FileSink {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            written,
        })
    }

    fn write_error(&self, source: std::io::Error) -> SinkError {
        SinkError::WriteFile { path: self.path.clone(), source }
    }
}

impl Sink for FileSink {
    fn send(&mut self, _key: Option<&[u8]>, payload: &[u8]) -> Result<(), SinkError> {
        let written = self.out.write_all(payload).and_then(|()| self.out.write_all(b"\n"));
        self.written += payload.len() as u64 + 1;
        written.map_err(|e| self.write_error(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.write_error(e))
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The file's length, as 8 bytes (little-endian).
    fn checkpoint_state(&mut self) -> Result<Vec<u8>, SinkError> {
        self.flush()?;
        Ok(self.written.to_le_bytes().to_vec())
    }

    /// Cuts the file back to the recorded length (to nothing without a
    /// checkpoint): a restored job writes what followed again.
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), SinkError> {
        let length = match state {
            None => 0,
            Some(bytes) => u64::from_le_bytes(bytes.try_into().map_err(|_| SinkError::State {
                sink: self.name.clone(),
                reason: format!("expected a file length (8 bytes), got {} bytes", bytes.len()),
            })?),
        };
        self.truncate(length)
    }
}

impl FileSink {
    /// Cuts the file to `length` bytes and writes after them.
    fn truncate(&mut self, length: u64) -> Result<(), SinkError> {
        self.flush()?;
        if length > self.written {
            let message = format!(
                "the file holds {} bytes, fewer than the {length} the checkpoint recorded: was it changed outside weir?",
                self.written
            );
            return Err(self.write_error(std::io::Error::other(message)));
        }
        let cut = self.out.get_ref().set_len(length).and_then(|()| self.out.seek(SeekFrom::Start(length)));
        cut.map_err(|e| self.write_error(e))?;
        self.written = length;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_it_is_the_sink_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: it cannot be created.
        let path = dir.path().join("out");
        std::fs::create_dir(&path).unwrap();
        let err = FileSink::create(&path).err().expect("an error");
        assert!(matches!(err, SinkError::CreateFile { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("sink file {}: cannot create it", path.display()));
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(err.sink_name(), path.display().to_string());
    }
}
