//! Checkpoints in a local folder, through cap-std: every path is resolved
//! inside the folder, so no path a checkpoint names (`..`, an absolute
//! path, a symlink out) can reach anything outside it.

use super::storage::{CheckpointStorage, StorageError};
use cap_std::fs::Dir;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A local folder holding checkpoints.
pub struct FileStorage {
    url: String,
    root: Dir,
    /// Numbers temporary files, so concurrent writes never share one.
    temp: AtomicU64,
}

impl FileStorage {
    /// Opens (creating it if needed) the folder at absolute `path`; `url`
    /// names it in messages.
    pub fn open(url: &str, path: &str) -> Result<FileStorage, StorageError> {
        let fail = |source| StorageError::Open { url: url.to_string(), root: path.into(), source };
        std::fs::create_dir_all(path).map_err(fail)?;
        let root = Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(fail)?;
        Ok(FileStorage { url: url.to_string(), root, temp: AtomicU64::new(0) })
    }

    fn fail(&self, action: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> StorageError {
        let (url, path) = (self.url.clone(), path.to_string());
        move |source| StorageError::Io { url, action, path, source }
    }
}

impl FileStorage {
    /// Writes `bytes` to a synced temporary file, then puts it at `path`:
    /// renamed over whatever is there (`replace`), or linked, which
    /// refuses a target that exists. Returns whether it was put there.
    fn put(&self, path: &str, bytes: &[u8], replace: bool) -> Result<bool, StorageError> {
        let target = Path::new(path);
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.root.create_dir_all(parent).map_err(self.fail("write", path))?;
        }
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{path}.tmp-{}-{n}", std::process::id());
        let written = (|| {
            let mut file = self.root.create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            if replace {
                return self.root.rename(&temp, &self.root, target).map(|()| true);
            }
            match self.root.hard_link(&temp, &self.root, target) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        // Gone after a rename; left after a link or a failure.
        if written.is_err() || !replace {
            let _ = self.root.remove_file(&temp);
        }
        written.map_err(self.fail("write", path))
    }
}

impl CheckpointStorage for FileStorage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.put(path, bytes, true).map(|_| ())
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        self.put(path, bytes, false)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.root.read(path).map_err(self.fail("read", path))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let folder = if dir.is_empty() { "." } else { dir };
        let entries = match self.root.read_dir(folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fail("list", dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.fail("list", dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn remove_dir(&self, dir: &str) -> Result<(), StorageError> {
        // Renamed out of sight first: a reader (another member of a group
        // reading this one's checkpoints) lists the folder whole or not at
        // all, never half removed. The new name lists as no checkpoint.
        let target = Path::new(dir);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let hidden = target.with_file_name(format!(".removing-{name}-{}-{n}", std::process::id()));
        match self.root.rename(target, &self.root, &hidden) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(self.fail("remove", dir))?,
        }
        self.root.remove_dir_all(&hidden).map_err(self.fail("remove", dir))
    }

    fn url(&self) -> &str {
        &self.url
    }
}
